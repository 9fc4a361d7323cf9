"""Tags: on logs one by one or in bulk, and their management (rename, colour, merge, delete).

Bulk changes are single INSERT … SELECT / DELETE statements over the filtered query, so tagging a
hundred thousand logs is one round trip per chunk, not one per log.
"""

import re

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import QuerySet

from curation.audit.services import audit_record
from curation.logs.lookups import queryset_sql
from curation.logs.services import tags_get_or_create
from curation.models import ApiKey, LogEntry, LogTag, Project, Tag

_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
MAX_TAG_LENGTH = 100


def tag_names_clean(names: list[str] | str) -> list[str]:
    """Tag names from a list or a comma-separated string: stripped, de-duplicated, checked."""
    raw = names.split(",") if isinstance(names, str) else names
    cleaned = list(dict.fromkeys(name.strip() for name in raw if name.strip()))
    if not cleaned:
        raise ValidationError({"tags": "Name at least one tag."})
    too_long = [name for name in cleaned if len(name) > MAX_TAG_LENGTH]
    if too_long:
        raise ValidationError({"tags": f"'{too_long[0][:20]}…' is longer than {MAX_TAG_LENGTH} characters."})
    return cleaned


def _log_ids_sql(logs: QuerySet[LogEntry]) -> tuple[str, tuple]:
    sql, params = queryset_sql(logs.order_by().values("id"))
    return sql, tuple(params)


def tags_add(*, project: Project, logs: QuerySet[LogEntry], names: list[str]) -> int:
    """Tag every log of `logs` (already scoped to `project`) with each of `names`; returns the
    number of (log, tag) pairs that were new."""
    tags = tags_get_or_create(project=project, names=names)
    sql, params = _log_ids_sql(logs)
    added = 0
    with connection.cursor() as cursor:
        for tag in tags.values():
            # "WHERE true" lets SQLite tell the upsert's ON CONFLICT from a join condition.
            cursor.execute(
                f"INSERT INTO curation_logtag (log_id, tag_id) SELECT matched.id, %s FROM ({sql}) matched "  # noqa: S608
                "WHERE true ON CONFLICT DO NOTHING",
                (tag.pk, *params),
            )
            added += cursor.rowcount
    return added


def tags_remove(*, project: Project, logs: QuerySet[LogEntry], names: list[str]) -> int:
    """Remove `names` from every log of `logs`; returns the number of (log, tag) pairs removed."""
    tags = Tag.objects.filter(project=project, name__in=names)
    links = LogTag.objects.filter(tag__in=tags, log__in=logs.order_by().values("id"))
    return links._raw_delete(links.db)  # no signals or cascades hang off LogTag: skip the collector


@transaction.atomic
def tag_update(
    *,
    tag: Tag,
    name: str | None = None,
    color: str | None = None,
    actor: User | None = None,
    api_key: ApiKey | None = None,
) -> Tag:
    """Rename or recolour a tag: audited as `tag.rename` and `tag.recolour`, each with what it was and became."""
    old_name, old_color = tag.name, tag.color
    if name is not None:
        name = name.strip()
        if not name or len(name) > MAX_TAG_LENGTH:
            raise ValidationError({"name": f"A tag name is 1 to {MAX_TAG_LENGTH} characters."})
        if Tag.objects.filter(project_id=tag.project_id, name=name).exclude(pk=tag.pk).exists():
            raise ValidationError({"name": f"Tag '{name}' already exists: merge into it instead."})
        tag.name = name
    if color is not None:
        if not _COLOR.match(color):
            raise ValidationError({"color": "A colour is #rrggbb."})
        tag.color = color
    tag.save()
    if tag.name != old_name:
        audit_record(project=tag.project, action="tag.rename", actor=actor, api_key=api_key,
                     detail={"from": old_name, "to": tag.name})  # fmt: skip
    if tag.color != old_color:
        audit_record(project=tag.project, action="tag.recolour", actor=actor, api_key=api_key,
                     detail={"name": tag.name, "from": old_color, "to": tag.color})  # fmt: skip
    return tag


@transaction.atomic
def tag_merge(*, source: Tag, target: Tag, actor: User | None = None, api_key: ApiKey | None = None) -> int:
    """Give every log tagged `source` the tag `target`, then delete `source` (audited as `tag.merge`). Returns logs
    moved."""
    if source.project_id != target.project_id or source.pk == target.pk:
        raise ValidationError({"target": "Merge into another tag of the same project."})
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO curation_logtag (log_id, tag_id) SELECT log_id, %s FROM curation_logtag "
            "WHERE tag_id = %s ON CONFLICT DO NOTHING",
            (target.pk, source.pk),
        )
        moved = cursor.rowcount
    _tag_delete(source)
    audit_record(project=target.project, action="tag.merge", count=moved, actor=actor, api_key=api_key,
                 detail={"from": source.name, "into": target.name})  # fmt: skip
    return moved


@transaction.atomic
def tag_delete(*, tag: Tag, actor: User | None = None, api_key: ApiKey | None = None) -> int:
    """Delete a tag and its links; the logs stay (audited as `tag.delete`). Returns the number of logs it was on."""
    removed = _tag_delete(tag)
    audit_record(project=tag.project, action="tag.delete", count=removed, actor=actor, api_key=api_key,
                 detail={"name": tag.name})  # fmt: skip
    return removed


def _tag_delete(tag: Tag) -> int:
    links = LogTag.objects.filter(tag=tag)
    removed = links._raw_delete(links.db)
    tag.delete()
    return removed
