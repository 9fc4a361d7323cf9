"""Embeddings of dataset entries, near-duplicate clusters and "keep one per cluster" (see docs/dedup.md).

A worker embeds the entries (EmbeddingJob, `dataset_embed`) in committed batches; the clusters are then
computed on request from the stored vectors, for whatever threshold the user sets, since clustering
stored vectors takes far less time than embedding them. An entry edited after it was embedded holds
another text than its embedding's (`text_hash`): it counts as missing until the next run.
"""

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from django.contrib.auth.models import User
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import transaction
from django.utils import timezone

from curation.audit.services import audit_record
from curation.common.queueing import task_send_or_fail
from curation.common.server_paths import error_text
from curation.datasets.services import entries_delete
from curation.models import (
    ApiKey,
    Dataset,
    DatasetEntry,
    EmbeddingJob,
    EmbeddingWork,
    EntryEmbedding,
    JobStatus,
    LogEntry,
)
from curation.text.embeddings import (
    DIMENSION,
    near_duplicate_clusters,
    text_hash,
    text_of_conversation,
    vector_bytes,
    vector_from_bytes,
)

logger = logging.getLogger(__name__)

# Entries embedded and committed together: a crash loses at most one batch, and progress moves every few seconds.
BATCH = 256
# 0.95 even with leader clusters: on templated traffic distinct requests of one kind often score 0.9, and keep-one
# at 0.9 deleted a third of the distinct conversations of bench/dedup.py (docs/dedup.md#the-threshold).
THRESHOLD_MIN, THRESHOLD_MAX, THRESHOLD_DEFAULT = 0.5, 1.0, 0.95
# Characters of the first user turn shown for each entry of a cluster.
SNIPPET_CHARS = 160


# --- the job ----------------------------------------------------------------------------------------


def embedding_job_create(
    *, dataset: Dataset, actor: User | None = None, api_key: ApiKey | None = None
) -> EmbeddingJob:
    """Queue the embedding of `dataset`'s entries (audited as `entries.embed`); a job already queued or running for
    it is returned instead, so a double click does not embed everything twice."""
    with transaction.atomic():
        Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
        current = dataset.embedding_jobs.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).first()
        if current is not None:
            return current
        job = EmbeddingJob.objects.create(dataset=dataset, created_by=actor, total=dataset.entries.count())
        audit_record(project=dataset.project, action="entries.embed", count=job.total, actor=actor, api_key=api_key,
                     detail={"dataset_id": dataset.pk, "dataset": dataset.name, "job": job.pk})  # fmt: skip
        from curation.datasets.dedup.tasks import dataset_embed_task

        rows = EmbeddingJob.objects.filter(pk=job.pk)
        transaction.on_commit(
            lambda: task_send_or_fail(dataset_embed_task, job.pk, job=rows, event="curation.embedding")
        )
    return job


def dataset_embed(*, job_id: int, on_progress: Callable[[EmbeddingJob], None] | None = None) -> EmbeddingJob:
    """Embed the entries of the job's dataset that have no embedding or a stale one, batch by batch
    (`embedding_work_run`). A finished job is left as it is."""
    job = EmbeddingJob.objects.select_related("dataset").get(pk=job_id)
    if job.is_finished:
        return job

    def batches() -> Iterator[list[DatasetEntry]]:
        last_id = 0
        while entries := list(
            DatasetEntry.objects.filter(dataset=job.dataset, id__gt=last_id)
            .order_by("id")
            .select_related("embedding")
            .only("id", "messages", "embedding__text_hash")[:BATCH]
        ):
            last_id = entries[-1].pk
            yield entries

    def store(rows: list[tuple[int, np.ndarray, str]]) -> None:
        EntryEmbedding.objects.bulk_create(
            [EntryEmbedding(entry_id=pk, vector=vector_bytes(v), text_hash=digest) for pk, v, digest in rows],
            update_conflicts=True, unique_fields=["entry"], update_fields=["vector", "text_hash", "created_at"],
        )  # fmt: skip

    return embedding_work_run(
        job, total=job.dataset.entries.count(), batches=batches(), store=store, on_progress=on_progress,
        event="curation.embedding",
    )  # fmt: skip


Work = TypeVar("Work", bound=EmbeddingWork)
Embedded = TypeVar("Embedded", DatasetEntry, LogEntry)


def embedding_work_run(
    job: Work,
    *,
    total: int,
    batches: Iterable[list[Embedded]],
    store: Callable[[list[tuple[int, np.ndarray, str]]], None],
    on_progress: Callable[[Work], None] | None,
    event: str,
) -> Work:
    """Run an embedding job over `batches` of entries or logs (with `messages` and their `embedding`).

    In each batch, the rows whose stored embedding is missing or was computed from another text are
    embedded, `store`d as (id, vector, text hash), and the job's progress saved, all in one transaction:
    a run stopped half way (a worker killed, a redelivered task) loses one batch at most, and the next
    run finds the rows embedded so far fresh and embeds only the rest. The job ends succeeded, or failed
    with the error, which is raised again.
    """
    from curation.text.embeddings import get_embedder

    job.status, job.started_at, job.done, job.total = JobStatus.RUNNING, job.started_at or timezone.now(), 0, total
    job.save(update_fields=["status", "started_at", "done", "total"])
    try:
        embed = get_embedder().embed
        for rows in batches:
            texts = {row.pk: text_of_conversation(row.messages) for row in rows}
            stale = [row.pk for row in rows if _stored_hash(row) != text_hash(texts[row.pk])]
            vectors = embed([texts[pk] for pk in stale]) if stale else np.empty((0, DIMENSION), dtype=np.float32)
            with transaction.atomic():
                store([(pk, vector, text_hash(texts[pk])) for pk, vector in zip(stale, vectors, strict=True)])
                job.done += len(rows)
                job.embedded += len(stale)
                job.save(update_fields=["done", "embedded"])
            if on_progress:
                on_progress(job)
    except Exception as exc:
        job.status, job.error, job.finished_at = JobStatus.FAILED, error_text(exc), timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        logger.exception("%s_failed job=%s", event, job.pk)
        raise
    job.status, job.finished_at, job.total = JobStatus.SUCCEEDED, timezone.now(), max(job.total, job.done)
    job.save(update_fields=["status", "finished_at", "total"])
    logger.info("%s_done job=%s embedded=%s", event, job.pk, job.embedded)
    return job


def _stored_hash(row: DatasetEntry | LogEntry) -> str | None:
    try:
        return row.embedding.text_hash
    except ObjectDoesNotExist:
        return None


def embedding_job_latest(*, dataset: Dataset) -> EmbeddingJob | None:
    return dataset.embedding_jobs.first()


# --- near-duplicates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterEntry:
    id: int
    first_user_turn: str
    last_user_turn: str = ""  # the question the answer answers, when the conversation has several
    answer: str = ""  # the last assistant answer, cut to SNIPPET_CHARS
    answer_chars: int = 0  # the whole answer's length: what "keep the longest answer" compares
    edited: bool = False  # a reviewer changed the entry


# Which entry of a cluster "keep one per cluster" keeps: ties (and the default) go to the oldest.
KEEP_RULES = {"oldest": "the oldest", "longest": "the longest answer", "edited": "an edited one"}
KEEP_DEFAULT = "oldest"


def kept_of(cluster: list[ClusterEntry], keep: str) -> ClusterEntry:
    """The entry of `cluster` (oldest first) that the rule `keep` keeps."""
    if keep not in KEEP_RULES:
        raise ValidationError({"keep": f"One of {', '.join(KEEP_RULES)}."})
    if keep == "longest":
        return max(cluster, key=lambda entry: (entry.answer_chars, -entry.id))
    if keep == "edited":
        return next((entry for entry in cluster if entry.edited), cluster[0])
    return cluster[0]


@dataclass
class NearDuplicates:
    threshold: float
    entries: int  # entries of the dataset
    embedded: int  # entries with a fresh embedding: the ones clustered
    clusters: list[list[ClusterEntry]] = field(default_factory=list)

    @property
    def missing(self) -> int:
        """Entries with no embedding, or one older than their last edit: not in any cluster until embedded."""
        return self.entries - self.embedded

    @property
    def duplicates(self) -> int:
        """Entries that keeping one per cluster would delete."""
        return sum(len(cluster) - 1 for cluster in self.clusters)


def threshold_clean(value: object) -> float:
    try:
        threshold = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValidationError({"threshold": f"A number from {THRESHOLD_MIN} to {THRESHOLD_MAX}."}) from None
    if not THRESHOLD_MIN <= threshold <= THRESHOLD_MAX:  # also refuses nan
        raise ValidationError({"threshold": f"A number from {THRESHOLD_MIN} to {THRESHOLD_MAX}."})
    return threshold


def dataset_near_duplicates(*, dataset: Dataset, threshold: float) -> NearDuplicates:
    """Clusters of the dataset's entries whose embeddings are at least `threshold` alike to the cluster's oldest
    entry (leader clustering, oldest first: see `near_duplicate_clusters`), largest first, each cluster's entries
    oldest first; entries without a fresh embedding are left out."""
    threshold = threshold_clean(threshold)
    ids, snippets, vectors = [], [], []
    rows = (
        DatasetEntry.objects.filter(dataset=dataset)
        .order_by("id")
        .select_related("embedding")
        .only("id", "messages", "edited", "embedding__vector", "embedding__text_hash")
    )
    total = 0
    for entry in rows.iterator(chunk_size=2000):
        total += 1
        stored = _stored_hash(entry)
        if stored is None or stored != text_hash(text_of_conversation(entry.messages)):
            continue
        ids.append(entry.pk)
        snippets.append(_cluster_entry(entry))
        vectors.append(vector_from_bytes(entry.embedding.vector))
    result = NearDuplicates(threshold=threshold, entries=total, embedded=len(ids))
    if len(ids) > 1:
        matrix = np.vstack(vectors)
        result.clusters = [
            [snippets[row] for row in cluster] for cluster in near_duplicate_clusters(matrix, threshold)
        ]
    return result


def _cluster_entry(entry: DatasetEntry) -> ClusterEntry:
    """What a reviewer compares in a cluster: the first and last questions, and the answer."""
    from curation.text.rendering import content_text

    messages = entry.messages if isinstance(entry.messages, list) else []
    turns = [message for message in messages if isinstance(message, dict)]
    questions = [_flat(content_text(turn.get("content"))) for turn in turns if turn.get("role") == "user"]
    answers = [_flat(content_text(turn.get("content"))) for turn in turns if turn.get("role") == "assistant"]
    answer = answers[-1] if answers else ""
    return ClusterEntry(
        id=entry.pk,
        first_user_turn=_snippet(questions[0]) if questions else "",
        last_user_turn=_snippet(questions[-1]) if len(questions) > 1 else "",
        answer=_snippet(answer),
        answer_chars=len(answer),
        edited=entry.edited,
    )


def _flat(text: str) -> str:
    return " ".join(text.split())


def _snippet(text: str) -> str:
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"


def dataset_keep_one_per_cluster(
    *,
    dataset: Dataset,
    threshold: float,
    dry_run: bool = False,
    keep: str = KEEP_DEFAULT,
    actor: User | None = None,
    api_key: ApiKey | None = None,
) -> tuple[NearDuplicates, list[int]]:
    """Delete all but one entry of each near-duplicate cluster: by default the oldest (the one reviewers have had
    longest, and the same one on a second run), or by `keep` the one with the longest answer or an edited one (the
    oldest of them). Every entry deleted is at least `threshold` alike to the cluster's oldest. Returns the clusters
    and the ids deleted (dry run: that would be)."""
    if keep not in KEEP_RULES:
        raise ValidationError({"keep": f"One of {', '.join(KEEP_RULES)}."})
    found = dataset_near_duplicates(dataset=dataset, threshold=threshold)
    kept = {kept_of(cluster, keep).id for cluster in found.clusters}
    drop = sorted(entry.id for cluster in found.clusters for entry in cluster if entry.id not in kept)
    if drop and not dry_run:
        entries_delete(dataset=dataset, ids=drop, actor=actor, api_key=api_key)
    return found, drop
