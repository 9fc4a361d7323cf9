"""Projects, memberships and API keys."""

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from curation.audit.services import audit_record
from curation.models import ApiKey, Membership, Project, Role

API_KEY_PREFIX = "lt_"
# Writing last_used_at on every request would turn each ingest call into two writes; a minute is precise enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@transaction.atomic
def project_create(*, name: str, slug: str = "", owner: User | None = None) -> Project:
    project = Project.objects.create(name=name, slug=slug or slugify(name)[:64])
    if owner is not None:
        Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    return project


def project_get_or_create(*, slug: str) -> tuple[Project, bool]:
    return Project.objects.get_or_create(slug=slug, defaults={"name": slug.replace("-", " ").title()})


def membership_set(*, project: Project, user: User, role: str) -> Membership:
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


def _hash_key(raw: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough: nobody can brute-force the pre-image.
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def api_key_create(
    *, project: Project, name: str = "", role: str = Role.EDITOR, created_by: User | None = None
) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw secret, which is never stored and cannot be shown again."""
    prefix = secrets.token_hex(4)
    raw = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        project=project, name=name, role=role, prefix=prefix, key_hash=_hash_key(raw), created_by=created_by
    )
    audit_record(
        project=project, action="key.create", actor=created_by,
        detail={"prefix": key.prefix, "name": name, "role": role},
    )  # fmt: skip
    return key, raw


@transaction.atomic
def api_key_revoke(*, key: ApiKey, actor: User | None = None) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(
            project=key.project, action="key.revoke", actor=actor,
            detail={"prefix": key.prefix, "name": key.name, "role": key.role},
        )  # fmt: skip
    return key


def api_key_authenticate(*, raw: str) -> ApiKey | None:
    """The active key matching `raw`, with its project loaded; records when it was last used."""
    if not raw.startswith(API_KEY_PREFIX):
        return None
    key = ApiKey.objects.select_related("project").filter(key_hash=_hash_key(raw), revoked_at__isnull=True).first()
    if key is None:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
