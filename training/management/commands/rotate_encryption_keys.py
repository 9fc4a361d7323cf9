from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from training.endpoints.secrets import SecretUnreadable, secret_rotate
from training.models import ModelEndpoint


class Command(BaseCommand):
    help = (
        "Encrypt every stored secret (model endpoints' API keys) again with the first of LOGTUNE_ENCRYPTION_KEYS "
        "(or the key derived from SECRET_KEY). Run it after putting a new key first; then remove the old one."
    )

    def handle(self, *args: object, **options: object) -> None:
        rotated, unreadable = 0, []
        with transaction.atomic():
            for endpoint in ModelEndpoint.objects.exclude(api_key_encrypted="").select_for_update():
                try:
                    endpoint.api_key_encrypted = secret_rotate(endpoint.api_key_encrypted)
                except SecretUnreadable:
                    unreadable.append(f"{endpoint.project.slug}/{endpoint.name}")
                    continue
                endpoint.save(update_fields=["api_key_encrypted"])
                rotated += 1
        self.stdout.write(f"Encrypted {rotated} endpoint key{'s' if rotated != 1 else ''} again with the first key.")
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} key(s) no configured key decrypts (enter them again on the endpoints page): "
                + ", ".join(unreadable)
            )
