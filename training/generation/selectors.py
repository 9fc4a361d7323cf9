"""Reads of generation: documents and their chunks, jobs, their rows and counts."""

from django.db.models import Count, QuerySet

from curation.models import Project
from curation.text.documents import DocumentError
from training.generation.documents import document_chunks
from training.models import GeneratedRow, GenerationJob, RowStatus, SourceDocument


def documents_of(*, project: Project) -> QuerySet[SourceDocument]:
    return SourceDocument.objects.filter(project=project)


def document_get(*, project: Project, document_id: int) -> SourceDocument | None:
    return SourceDocument.objects.filter(project=project, pk=document_id).first()


def document_chunk_list(document: SourceDocument) -> list[dict]:
    """The document's chunks at the default size, each with its first 300 characters as `text`."""
    try:
        chunks = document_chunks(document)
    except (DocumentError, OSError):  # the file went missing or cannot be read any more
        return []
    return [{"index": c.index, "id": c.id, "heading_path": list(c.heading_path), "start": c.start, "end": c.end,
             "first_page": c.first_page, "last_page": c.last_page, "text": c.text[:300]} for c in chunks]  # fmt: skip


def generation_jobs(*, project: Project) -> QuerySet[GenerationJob]:
    return GenerationJob.objects.filter(project=project)


def generation_job_get(*, project: Project, job_id: int) -> GenerationJob | None:
    return GenerationJob.objects.filter(project=project, pk=job_id).first()


def rows_of(*, job: GenerationJob, status: str = "", reason: str = "") -> QuerySet[GeneratedRow]:
    rows = GeneratedRow.objects.filter(job=job)
    if status:
        rows = rows.filter(status=status)
    if reason:
        rows = rows.filter(status=RowStatus.DROPPED, drop_reason=reason)
    return rows.order_by("id")


def row_get(*, project: Project, row_id: int) -> GeneratedRow | None:
    return GeneratedRow.objects.filter(job__project=project, pk=row_id).select_related("job").first()


def drop_counts(*, job: GenerationJob) -> dict[str, int]:
    found = GeneratedRow.objects.filter(job=job, status=RowStatus.DROPPED).values_list("drop_reason")
    return dict(found.annotate(n=Count("id")).order_by("drop_reason"))


def status_counts(*, job: GenerationJob) -> dict[str, int]:
    found = dict(GeneratedRow.objects.filter(job=job).values_list("status").annotate(n=Count("id")).order_by())
    return {status: found.get(status, 0) for status in RowStatus.values}


def review_neighbours(*, job: GenerationJob, row_id: int) -> tuple[int | None, int | None]:
    """The pending rows before and after `row_id`, in the order written."""
    pending = GeneratedRow.objects.filter(job=job, status=RowStatus.PENDING)
    before = pending.filter(id__lt=row_id).order_by("-id").values_list("id", flat=True).first()
    after = pending.filter(id__gt=row_id).order_by("id").values_list("id", flat=True).first()
    return before, after
