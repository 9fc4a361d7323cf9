"""Reads of the index of logs: its size, its latest job, the stored vector of a log, and the scans that compare
vectors chunk by chunk (memory stays at one chunk whatever the size of the index). Nothing here computes an
embedding: that is a write (`services.log_vector`)."""

import contextlib
import heapq
from collections.abc import Iterator

import numpy as np
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import QuerySet

from curation.logs.lookups import queryset_sql
from curation.models import LogEmbedding, LogEmbeddingJob, LogEntry, Project
from curation.text.embeddings import DIMENSION, vector_from_bytes

# Stored vectors read and scored at once by a search: 4,096 x 1.5 KB.
SCAN_CHUNK = 4096
# The explorer's `similar_to` filter: the logs at least this alike (0.5 to 1), the best this many at most.
SIMILARITY_MIN, SIMILARITY_DEFAULT = 0.5, 0.8
LIKE_MAX = 10_000
# A filter's logs are kept this long for the same index: the table, its facets and its next pages ask again.
LIKE_CACHE_S = 300


class LogNotIndexed(Exception):
    """The log has no stored embedding yet: ask for logs like it on its page, or index the project's logs."""


def log_vector_stored(*, log: LogEntry) -> np.ndarray | None:
    """The log's stored embedding, fresh or not; None when it has none."""
    raw = LogEmbedding.objects.filter(log=log).values_list("vector", flat=True).first()
    return None if raw is None else vector_from_bytes(raw)


def log_embedding_job_latest(*, project: Project) -> LogEmbeddingJob | None:
    return project.log_embedding_jobs.first()


def log_index_size(*, project: Project) -> int:
    """Logs of the project with an embedding (fresh or not): the ones "more like this" searches."""
    return LogEmbedding.objects.filter(project=project).count()


def logs_like_ids(*, project: Project, log: LogEntry, min_similarity: float) -> list[int]:
    """Ids of the project's indexed logs at least `min_similarity` like `log` (the log itself included), the
    best LIKE_MAX at most: the explorer's `similar_to` filter.

    The answer is cached for a few minutes under the index's state (its size and latest write), so the
    explorer's table, facets and pages scan the vectors once; indexing more logs gives a new answer.

    Only stored vectors are read: a filter never computes an embedding in a web request. A log without one
    raises LogNotIndexed; a log edited since it was embedded is compared by its old text until the next run.
    """
    stored = log_vector_stored(log=log)
    if stored is None:
        raise LogNotIndexed(log.pk)
    from curation.logs.similar.matrix import index_matrix, index_state

    query = stored.astype(np.float32)
    state = index_state(project=project)
    key = f"logtune:like:{project.pk}:{log.pk}:{min_similarity:.4f}:{state.key}"
    with contextlib.suppress(Exception):  # a cache that is down only costs the scan below
        cached = cache.get(key)
        if cached is not None:
            return cached
    matrix = index_matrix(project=project, state=state)
    scores = np.asarray(matrix.vectors @ query)
    rows = np.flatnonzero(scores >= min_similarity)
    found = [(float(scores[row]), int(matrix.ids[row])) for row in rows.tolist()]
    found.sort(reverse=True)
    ids = sorted({log.pk, *(log_id for _, log_id in found[:LIKE_MAX])})
    with contextlib.suppress(Exception):
        cache.set(key, ids, LIKE_CACHE_S)
    return ids


def vector_chunks(rows: QuerySet) -> Iterator[list[tuple[int, bytes]]]:
    """(log id, vector) rows of `rows` in chunks of SCAN_CHUNK, streamed from the database.

    On PostgreSQL through a server-side cursor in binary format: bytea arrives as bytes instead of hex
    text to decode, which halves the time of a search over a large index (bench/similar.py).
    """
    if connection.vendor == "postgresql":
        sql, params = queryset_sql(rows)
        with transaction.atomic(), connection.connection.cursor(name="logtune_similar", binary=True) as cursor:
            cursor.itersize = SCAN_CHUNK
            cursor.execute(sql, params)
            while chunk := cursor.fetchmany(SCAN_CHUNK):
                yield chunk
        return
    chunk = []
    for log_id, vector in rows.iterator(chunk_size=SCAN_CHUNK):
        chunk.append((log_id, bytes(vector)))
        if len(chunk) == SCAN_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def chunk_matrix(rows: list[tuple[int, bytes]]) -> np.ndarray:
    """The vectors of a chunk of (log id, vector) rows as one (rows x 384) float32 matrix."""
    return np.frombuffer(b"".join(vector for _, vector in rows), dtype="<f4").reshape(len(rows), DIMENSION)


def score_chunk(query: np.ndarray, rows: list[tuple[int, bytes]], best: list[tuple[float, int]], k: int) -> int:
    ids = [log_id for log_id, _ in rows]
    matrix = chunk_matrix(rows)
    # Rounded: copies differ in the last bits of float32, and equal scores go to the newer log. Rows tied with
    # the chunk's k-th best all go to the heap, which breaks the ties.
    scores = np.round(matrix @ query, 4)
    if len(scores) > k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        chosen = np.flatnonzero(scores >= kth)
    else:
        chosen = np.arange(len(scores))
    for row in chosen.tolist():
        item = (float(scores[row]), ids[row])
        if len(best) < k:
            heapq.heappush(best, item)
        elif item > best[0]:
            heapq.heapreplace(best, item)
    return len(ids)
