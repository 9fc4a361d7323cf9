""" "More like this" in the explorer: the logs whose embeddings are nearest a log's (see docs/dedup.md).

A project's logs are embedded by a worker (LogEmbeddingJob, `project_embed_logs`), newest first and at
most LOGTUNE_SIMILAR_LOGS_MAX of them, in committed batches: embedding every log of a busy project would
take hours on CPUs, and the recent ones are the ones analysts look for. "More like this" embeds the log asked
about if it has no fresh embedding yet (one text: milliseconds, once the model is loaded), then scans
the stored vectors of the logs in scope chunk by chunk (`matrix.vector_chunks`), keeping only the best `k`:
memory stays at one chunk, whatever the size of the index. The explorer's `similar_to` filter reads only stored
vectors (`selectors.logs_like_ids`).
"""

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet

from curation.audit.services import audit_record
from curation.common.gpu_workers import embedding_queue
from curation.common.queueing import task_send_or_fail
from curation.datasets.dedup.services import embedding_work_run
from curation.logs.similar.matrix import vector_chunks
from curation.logs.similar.selectors import score_chunk
from curation.models import ApiKey, JobStatus, LogEmbedding, LogEmbeddingJob, LogEntry, Project
from curation.text.embeddings import text_hash, text_of_conversation, vector_bytes, vector_from_bytes

logger = logging.getLogger(__name__)

# Logs embedded and committed together: a crash loses at most one batch, and progress moves every few seconds.
BATCH = 256
RESULTS_DEFAULT, RESULTS_MAX = 20, 100


# --- the index --------------------------------------------------------------------------------------


def log_embedding_job_create(
    *,
    project: Project,
    actor: User | None = None,
    api_key: ApiKey | None = None,
    limit: int | None = None,
    send: bool = True,
) -> LogEmbeddingJob:
    """Queue the embedding of the project's newest `limit` (LOGTUNE_SIMILAR_LOGS_MAX) logs that have no
    embedding or a stale one (audited as `logs.embed`); a job already queued or running for the project is returned
    instead, so a double click does not embed twice. `send=False` leaves the task to the caller (`embed_logs` runs
    it)."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        current = project.log_embedding_jobs.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).first()
        if current is not None:
            return current
        limit = settings.LOGTUNE_SIMILAR_LOGS_MAX if limit is None else limit
        job = LogEmbeddingJob.objects.create(
            project=project, created_by=actor, limit=limit, total=min(limit, project.logs.count())
        )
        audit_record(project=project, action="logs.embed", count=job.total, actor=actor, api_key=api_key,
                     detail={"job": job.pk, "limit": limit})  # fmt: skip
        if send:
            from curation.logs.similar.tasks import project_embed_logs_task

            rows = LogEmbeddingJob.objects.filter(pk=job.pk)
            transaction.on_commit(
                lambda: task_send_or_fail(
                    project_embed_logs_task, job.pk, job=rows, event="curation.log_embedding", queue=embedding_queue()
                )
            )
    return job


def project_embed_logs(
    *, job_id: int, on_progress: Callable[[LogEmbeddingJob], None] | None = None
) -> LogEmbeddingJob:
    """Embed the job's project's newest `limit` logs that have no embedding or a stale one, newest first, batch
    by batch (`embedding_work_run`). A finished job is left as it is."""
    job = LogEmbeddingJob.objects.select_related("project").get(pk=job_id)
    if job.is_finished:
        return job

    def batches() -> Iterator[list[LogEntry]]:
        logs = LogEntry.objects.filter(project=job.project).order_by("-id").select_related("embedding")
        logs = logs.only("id", "messages", "embedding__text_hash")
        while job.done < job.total and (batch := list(logs[: min(BATCH, job.total - job.done)])):
            logs = logs.filter(id__lt=batch[-1].pk)
            yield batch

    def store(rows: list[tuple[int, np.ndarray, str]]) -> None:
        _store(job.project_id, rows)

    return embedding_work_run(
        job, total=min(job.limit, job.project.logs.count()), batches=batches(), store=store, on_progress=on_progress,
        event="curation.log_embedding",
    )  # fmt: skip


def _store(project_id: int, rows: list[tuple[int, np.ndarray, str]]) -> None:
    LogEmbedding.objects.bulk_create(
        [
            LogEmbedding(project_id=project_id, log_id=pk, vector=vector_bytes(vector), text_hash=digest)
            for pk, vector, digest in rows
        ],
        update_conflicts=True, unique_fields=["log"], update_fields=["vector", "text_hash", "created_at"],
    )  # fmt: skip


# --- the search -------------------------------------------------------------------------------------


@dataclass
class SimilarLogs:
    log: LogEntry
    searched: int  # embedded logs in scope compared with the log (itself left out)
    results: list[tuple[LogEntry, float]] = field(default_factory=list)  # best first, with the cosine


def log_vector(*, log: LogEntry) -> np.ndarray:
    """The log's embedding: the stored one when it is fresh, else computed now and stored (it is in the index
    from then on)."""
    text = text_of_conversation(log.messages)
    digest = text_hash(text)
    stored = LogEmbedding.objects.filter(log=log).first()
    if stored is not None and stored.text_hash == digest:
        return vector_from_bytes(stored.vector)
    from curation.text.embeddings import embed

    vector = embed([text])[0]
    _store(log.project_id, [(log.pk, vector, digest)])
    return vector


def logs_similar(
    *, project: Project, log: LogEntry, k: int = RESULTS_DEFAULT, within: QuerySet[LogEntry] | None = None
) -> SimilarLogs:
    """The `k` embedded logs of `project` most like `log` (the log itself excluded), best first, ties going to
    the newest; `within` (a filter of the project's logs, e.g. the explorer's) narrows the search.

    Logs edited since they were embedded are compared by their old text until the next indexing run.
    """
    if not 1 <= k <= RESULTS_MAX:
        raise ValueError(f"k must be from 1 to {RESULTS_MAX}")
    query = log_vector(log=log).astype(np.float32)
    candidates = LogEmbedding.objects.filter(project=project).exclude(log_id=log.pk)
    if within is not None:
        candidates = candidates.filter(log__in=within.values("id"))
    best: list[tuple[float, int]] = []  # a min-heap of (score, log id) holding the k best so far
    searched = 0
    for rows in vector_chunks(candidates.values_list("log_id", "vector")):
        searched += score_chunk(query, rows, best, k)
    ranked = sorted(best, reverse=True)
    found = LogEntry.objects.filter(pk__in=[log_id for _, log_id in ranked]).defer("original", "search_text")
    by_id = {entry.pk: entry for entry in found.prefetch_related("tags")}
    results = [(by_id[log_id], score) for score, log_id in ranked if log_id in by_id]
    return SimilarLogs(log=log, searched=searched, results=results)
