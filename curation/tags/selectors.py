"""Reads of tags: their names, and how many logs carry each (capped)."""

from curation.common.counts import CappedCount, capped_counts
from curation.models import LogTag, Project, Tag


def tags_with_counts(*, project: Project) -> list[tuple[Tag, CappedCount]]:
    tags = list(Tag.objects.filter(project=project).order_by("name"))
    counts = capped_counts([LogTag.objects.filter(tag=tag) for tag in tags])
    return list(zip(tags, counts, strict=True))


def tag_names(*, project: Project) -> list[str]:
    return list(Tag.objects.filter(project=project).order_by("name").values_list("name", flat=True))
