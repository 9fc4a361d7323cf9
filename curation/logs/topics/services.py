"""Topics of a project's traffic, computed by a worker (TopicJob, `topics_compute`): what is in the logs, and what is
worth fine-tuning on.

The project's indexed logs (their sentence embeddings, built for "more like this": curation/logs/similar/) are
clustered with k-means and each cluster labelled by its most distinctive words (curation/text/topics.py). Memory
stays bounded: the vectors are streamed twice in chunks (`vector_chunks`), once to draw the sample k-means is fitted
on, once to assign every log its nearest centroid; only ids and topic numbers are kept per log, and the words are
read from a sample of each topic's conversations. The figures of each topic (logs, tokens, cost, latency, errors,
logs per day) are then read column by column from its logs, and everything is written in one transaction: the
topics, each log's topic, and the removal of the previous run's memberships. A run stopped half way leaves the
previous run in place; a redelivered task starts over.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from decimal import Decimal

import numpy as np
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from curation.audit.services import audit_record
from curation.common.queueing import task_send_or_fail
from curation.common.server_paths import error_text
from curation.logs.similar.matrix import chunk_matrix, vector_chunks
from curation.logs.similar.selectors import log_index_size
from curation.models import (
    ApiKey,
    JobStatus,
    LogEmbedding,
    LogEntry,
    LogStatus,
    Project,
    Topic,
    TopicJob,
    TopicMembership,
)
from curation.text.embeddings import text_of_conversation
from curation.text.topics import Sample, centroids_fit, nearest_centroid, topic_count, topic_label, topic_terms

logger = logging.getLogger(__name__)

K_LOW, K_HIGH = 2, 200  # what a person may ask for
TEXTS_PER_TOPIC = 150  # conversations read to label a topic
TREND_DAYS = 14
READ_CHUNK = 10_000  # logs whose figures are read at once
WRITE_BATCH = 20_000
# A queued or running job that has not moved for this long lost its worker (and its task): a new request replaces it.
STALE = timedelta(minutes=30)
SEED = 0
_COPY_MEMBERSHIPS = "COPY curation_topicmembership (topic_id, log_id) FROM STDIN"


class NothingIndexed(ValidationError):
    """The project has no indexed logs: there is nothing to cluster until they are indexed (More like this)."""

    def __init__(self) -> None:
        super().__init__(
            {
                "index": "No log of this project is indexed yet: index its logs first (More like this on a log's "
                "page, POST /api/v1/log-embeddings or manage.py embed_logs), then compute the topics."
            }
        )


def topic_job_create(
    *,
    project: Project,
    k: int | None = None,
    actor: User | None = None,
    api_key: ApiKey | None = None,
    send: bool = True,
) -> TopicJob:
    """Queue the computation of the project's topics (`k` of them, or a number chosen from the index's size),
    audited as `topics.compute`. A job already queued or running for the project is returned instead, unless it
    has not moved for STALE (its worker died with its task), which is failed and replaced. Raises NothingIndexed
    when no log is indexed, and a ValidationError naming `k` out of K_LOW..K_HIGH."""
    if k is not None and not K_LOW <= k <= K_HIGH:
        raise ValidationError({"k": f"From {K_LOW} to {K_HIGH} topics, or none to let the index's size decide."})
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        busy = project.topic_jobs.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
        busy.filter(seen_at__lt=timezone.now() - STALE).update(
            status=JobStatus.FAILED, error="The worker stopped answering.", finished_at=timezone.now()
        )
        current = busy.first()
        if current is not None:
            return current
        indexed = log_index_size(project=project)
        if not indexed:
            raise NothingIndexed()
        job = TopicJob.objects.create(project=project, created_by=actor, requested_k=k)
        audit_record(project=project, action="topics.compute", count=indexed, actor=actor, api_key=api_key,
                     detail={"job": job.pk, "k": k})  # fmt: skip
        if send:
            from curation.logs.topics.tasks import topics_compute_task

            rows = TopicJob.objects.filter(pk=job.pk)
            transaction.on_commit(
                lambda: task_send_or_fail(topics_compute_task, job.pk, job=rows, event="curation.topics")
            )
    return job


@dataclass
class _Clusters:
    ids: np.ndarray  # the indexed logs' ids, ascending
    topics: np.ndarray  # each one's topic, 0 the largest
    count: int  # topics with at least one log


def topics_compute(*, job_id: int, on_progress: Callable[[TopicJob], None] | None = None) -> TopicJob:
    """Compute the job's project's topics (see the module's docstring). A finished job is left as it is; the job
    ends succeeded, or failed with the error, which is raised again. `on_progress` sees the job at each phase."""
    job = TopicJob.objects.select_related("project").get(pk=job_id)
    if job.is_finished:
        return job
    job.status, job.started_at, job.error = JobStatus.RUNNING, timezone.now(), ""
    job.save(update_fields=["status", "started_at", "error"])

    def progress(phase: str, done: int) -> None:
        job.phase, job.done, job.seen_at = phase, done, timezone.now()
        job.save(update_fields=["phase", "done", "seen_at"])
        if on_progress:
            on_progress(job)

    try:
        progress("read", 0)
        sample, indexed = _sample(job.project)
        progress("cluster", 25)
        clusters = _cluster(job.project, sample, job.requested_k or topic_count(indexed))
        progress("label", 55)
        terms = _terms(clusters)
        progress("stats", 75)
        figures = _figures(job.project, clusters)
        progress("write", 90)
        _write(job, clusters, terms, figures)
    except Exception as exc:
        job.status, job.error, job.finished_at = JobStatus.FAILED, error_text(exc), timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        logger.exception("curation.topics_failed job=%s", job.pk)
        raise
    logger.info("curation.topics_done job=%s logs=%s topics=%s", job.pk, job.logs, job.k)
    if on_progress:
        on_progress(job)
    return job


def _embeddings(project: Project) -> QuerySet:
    return LogEmbedding.objects.filter(project=project).order_by("log_id").values_list("log_id", "vector")


def _sample(project: Project) -> tuple[np.ndarray, int]:
    """A uniform sample of the indexed vectors, and how many there are (the first pass)."""
    sample, seen = Sample(seed=SEED), 0
    for rows in vector_chunks(_embeddings(project)):
        sample.add(chunk_matrix(rows))
        seen += len(rows)
    if not seen:
        raise NothingIndexed()
    return sample.vectors, seen


def _cluster(project: Project, sample: np.ndarray, k: int) -> _Clusters:
    """Centroids fitted on the sample, then every indexed log's nearest (the second pass); topics numbered by
    size, the largest first, empty ones dropped."""
    centroids = centroids_fit(sample, k, seed=SEED)
    ids, nearest = [], []
    for rows in vector_chunks(_embeddings(project)):
        ids.append(np.fromiter((log_id for log_id, _ in rows), dtype=np.int64, count=len(rows)))
        nearest.append(nearest_centroid(chunk_matrix(rows), centroids))
    all_ids, all_nearest = np.concatenate(ids), np.concatenate(nearest)
    sizes = np.bincount(all_nearest, minlength=len(centroids))
    by_size = np.argsort(-sizes, kind="stable")
    rank = np.empty(len(centroids), dtype=np.int32)
    rank[by_size] = np.arange(len(centroids), dtype=np.int32)
    return _Clusters(ids=all_ids, topics=rank[all_nearest], count=int((sizes > 0).sum()))


def _terms(clusters: _Clusters) -> list[list[str]]:
    """Each topic's distinctive terms, from the conversations of at most TEXTS_PER_TOPIC of its logs."""
    rng = np.random.default_rng(SEED)
    chosen: dict[int, int] = {}
    for topic, members in enumerate(_members(clusters)):
        picked = rng.choice(members, size=min(len(members), TEXTS_PER_TOPIC), replace=False)
        chosen.update((int(log_id), topic) for log_id in picked)
    texts: list[list[str]] = [[] for _ in range(clusters.count)]
    ids = sorted(chosen)
    for start in range(0, len(ids), 2_000):
        rows = LogEntry.objects.filter(pk__in=ids[start : start + 2_000]).values_list("id", "messages")
        for log_id, messages in rows:
            texts[chosen[log_id]].append(text_of_conversation(messages))
    return topic_terms(texts)


def _members(clusters: _Clusters) -> list[np.ndarray]:
    """The log ids of each topic, in order."""
    order = np.argsort(clusters.topics, kind="stable")
    sizes = np.bincount(clusters.topics, minlength=clusters.count)[: clusters.count]
    return np.split(clusters.ids[order], np.cumsum(sizes)[:-1])


@dataclass
class _Figures:
    """Per topic (arrays indexed by topic), from the logs still there when they were read."""

    found: np.ndarray  # the clustered logs still there (a mask over clusters.ids)
    size: np.ndarray
    tokens: np.ndarray
    cost_nanos: np.ndarray  # cost in 1e-8 USD, summed exactly
    costed: np.ndarray  # logs with a cost
    p50: list[float | None]
    p95: list[float | None]
    errors: np.ndarray
    trend: np.ndarray  # topics x TREND_DAYS
    trend_end: date | None


def _figures(project: Project, clusters: _Clusters) -> _Figures:
    """Logs, tokens, cost, latency percentiles, errors and logs per day of each topic, read in chunks."""
    count = clusters.count
    found = np.zeros(len(clusters.ids), dtype=bool)
    names = ("topic", "tokens", "cost", "latency", "error", "day")
    columns: dict[str, list[np.ndarray]] = {name: [] for name in names}
    rows = (
        LogEntry.objects.filter(project=project, embedding__isnull=False)
        .order_by()
        .values_list("id", "created_at", "total_tokens", "cost_usd", "latency_ms", "status")
    )
    chunk: list[tuple] = []
    for row in rows.iterator(chunk_size=READ_CHUNK):
        chunk.append(row)
        if len(chunk) == READ_CHUNK:
            _read_chunk(chunk, clusters, found, columns)
            chunk = []
    _read_chunk(chunk, clusters, found, columns)
    topic, tokens, cost, latency, error, day = (np.concatenate(columns[name]) for name in names)
    trend = np.zeros((count, TREND_DAYS), dtype=np.int64)
    end = int(day.max()) if len(day) else None
    if end is not None:
        recent = day > end - TREND_DAYS
        np.add.at(trend, (topic[recent], day[recent] - (end - TREND_DAYS + 1)), 1)
    cost_nanos = np.zeros(count, dtype=np.int64)
    np.add.at(cost_nanos, topic[cost >= 0], cost[cost >= 0])
    timed = ~np.isnan(latency)
    p50, p95 = _percentiles(topic[timed], latency[timed], count)
    return _Figures(
        found=found,
        size=np.bincount(topic, minlength=count),
        tokens=np.bincount(topic, weights=tokens, minlength=count).astype(np.int64),
        cost_nanos=cost_nanos,
        costed=np.bincount(topic[cost >= 0], minlength=count),
        p50=p50,
        p95=p95,
        errors=np.bincount(topic[error], minlength=count),
        trend=trend,
        trend_end=date.fromordinal(end) if end is not None else None,
    )


def _read_chunk(chunk: list[tuple], clusters: _Clusters, found: np.ndarray, columns: dict[str, list]) -> None:
    """Append the figures of the chunk's clustered logs to `columns` (a log indexed since is left out)."""
    ids = np.fromiter((row[0] for row in chunk), dtype=np.int64, count=len(chunk))
    where = np.minimum(np.searchsorted(clusters.ids, ids), max(len(clusters.ids) - 1, 0))
    known = clusters.ids[where] == ids if len(clusters.ids) else np.zeros(len(ids), dtype=bool)
    found[where[known]] = True
    kept = [row for row, keep in zip(chunk, known.tolist(), strict=True) if keep]
    columns["topic"].append(clusters.topics[where[known]])
    columns["tokens"].append(np.fromiter((row[2] or 0 for row in kept), dtype=np.float64, count=len(kept)))
    columns["cost"].append(
        np.fromiter((-1 if row[3] is None else int(row[3].scaleb(8)) for row in kept), dtype=np.int64, count=len(kept))
    )
    columns["latency"].append(
        np.fromiter((np.nan if row[4] is None else row[4] for row in kept), dtype=np.float64, count=len(kept))
    )
    columns["error"].append(np.fromiter((row[5] == LogStatus.ERROR for row in kept), dtype=bool, count=len(kept)))
    columns["day"].append(
        np.fromiter((row[1].astimezone(UTC).toordinal() for row in kept), dtype=np.int64, count=len(kept))
    )


def _percentiles(topic: np.ndarray, latency: np.ndarray, count: int) -> tuple[list, list]:
    """p50 and p95 of each topic's latencies, interpolated as PostgreSQL's percentile_cont."""
    order = np.lexsort((latency, topic))
    sizes = np.bincount(topic, minlength=count)
    groups = np.split(latency[order], np.cumsum(sizes)[:-1])
    p50 = [float(np.percentile(group, 50)) if len(group) else None for group in groups]
    p95 = [float(np.percentile(group, 95)) if len(group) else None for group in groups]
    return p50, p95


def _write(job: TopicJob, clusters: _Clusters, terms: list[list[str]], figures: _Figures) -> None:
    """Store the run in one transaction: its topics, each log's topic, and the end of the previous run's
    memberships; the job succeeds with it."""
    count = clusters.count
    change = [_change(figures.trend[topic]) for topic in range(count)]
    with transaction.atomic():
        # Two deliveries of the task running at once: the first to get here stores its run, the other stops.
        if TopicJob.objects.select_for_update().get(pk=job.pk).is_finished:
            return
        topics = Topic.objects.bulk_create(
            Topic(
                job=job, number=topic + 1, label=topic_label(terms[topic], topic + 1), terms=terms[topic],
                size=int(figures.size[topic]), tokens=int(figures.tokens[topic]),
                cost_usd=Decimal(int(figures.cost_nanos[topic])).scaleb(-8) if figures.costed[topic] else None,
                latency_p50=figures.p50[topic], latency_p95=figures.p95[topic], errors=int(figures.errors[topic]),
                trend=figures.trend[topic].tolist(), trend_end=figures.trend_end, trend_change=change[topic],
            )
            for topic in range(count)
        )  # fmt: skip
        topic_ids = np.array([topic.pk for topic in topics], dtype=np.int64)
        _memberships_insert(topic_ids[clusters.topics[figures.found]], clusters.ids[figures.found])
        older = Topic.objects.filter(job__project_id=job.project_id).exclude(job=job).values("id")
        stale = TopicMembership.objects.filter(topic_id__in=older)
        stale._raw_delete(stale.db)
        job.status, job.finished_at, job.done, job.phase = JobStatus.SUCCEEDED, timezone.now(), 100, ""
        job.k, job.logs = count, int(figures.found.sum())
        job.save(update_fields=["status", "finished_at", "done", "phase", "k", "logs"])


def _change(trend: np.ndarray) -> float | None:
    """The last 7 days' logs against the 7 before: 0.5 is 50% more; None when the 7 before had none."""
    before, last = int(trend[: TREND_DAYS // 2].sum()), int(trend[TREND_DAYS // 2 :].sum())
    return last / before - 1 if before else None


def _memberships_insert(topic_ids: np.ndarray, log_ids: np.ndarray) -> None:
    if connection.vendor != "postgresql":
        TopicMembership.objects.bulk_create(
            (TopicMembership(topic_id=int(t), log_id=int(i)) for t, i in zip(topic_ids, log_ids, strict=True)),
            batch_size=WRITE_BATCH,
        )
        return
    # COPY: several times cheaper than INSERTs for a million rows.
    with connection.cursor() as cursor, cursor.copy(_COPY_MEMBERSHIPS) as copy:
        for start in range(0, len(log_ids), WRITE_BATCH):
            end = start + WRITE_BATCH
            pairs = zip(topic_ids[start:end].tolist(), log_ids[start:end].tolist(), strict=True)
            copy.write("".join(f"{t}\t{i}\n" for t, i in pairs))
