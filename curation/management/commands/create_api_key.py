from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from curation.models import Role
from curation.projects.services import api_key_create, project_get_or_create


class Command(BaseCommand):
    help = (
        "Create an API key for a project (the project is created if missing). "
        "The key is printed alone on the last line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--name", default="", help="What the key is for, shown in the key list.")
        parser.add_argument(
            "--role", default=Role.EDITOR, choices=Role.values, help="What the key may do (default: editor)."
        )

    @transaction.atomic
    def handle(self, *args: object, project: str, name: str, role: str, **options: object) -> None:
        found, created = project_get_or_create(slug=project)
        key, raw = api_key_create(project=found, name=name, role=role)
        if created:
            self.stderr.write(f"Created project '{found.slug}'.")
        self.stderr.write(f"API key {key.prefix}… for project '{found.slug}'. Store it now: it is not shown again.")
        self.stdout.write(raw)
