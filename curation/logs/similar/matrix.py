"""A project's index of log vectors as one matrix in a file, for the searches that score every indexed log (search by
meaning, the `similar_to` filter).

Reading 50,000 vectors from the database costs a quarter of a second; scoring them from a file the page cache
holds, a few tens of milliseconds. The file is a cache of the database, named after the state of the index (its
size and the time of its latest write): the first search after the index changed reads the vectors once
(`selectors.vector_chunks`) and writes the file, later searches in any process of the machine map it. A file is
written under a temporary name and renamed, so a reader sees a whole file or none; the project's older files are
removed then. Deleting the folder only costs the next search a read of the database.
"""

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db.models import Count, Max

from curation.logs.similar.selectors import chunk_matrix, vector_chunks
from curation.models import LogEmbedding, Project
from curation.text.embeddings import DIMENSION


@dataclass(slots=True)
class IndexState:
    size: int
    latest: float  # the latest write, as a POSIX time; 0 for an empty index

    @property
    def key(self) -> str:
        return f"{self.size}-{round(self.latest * 1_000_000)}"


@dataclass(slots=True)
class IndexMatrix:
    ids: np.ndarray  # int64, one per row
    vectors: np.ndarray  # float32, rows x DIMENSION, unit length


def index_state(*, project: Project) -> IndexState:
    found = LogEmbedding.objects.filter(project=project).aggregate(size=Count("pk"), latest=Max("created_at"))
    return IndexState(size=found["size"], latest=found["latest"].timestamp() if found["latest"] else 0.0)


def index_folder() -> Path:
    return Path(settings.LOGTUNE_INDEX_DIR)


def index_matrix(*, project: Project, state: IndexState) -> IndexMatrix:
    """Every indexed vector of the project and its log's id, as of `state`: from the file when there is one for
    that state, else read from the database and written to one (when the folder is writable)."""
    path = index_folder() / f"logs-{project.pk}-{state.key}.bin"
    with contextlib.suppress(OSError, ValueError):
        return _read(path)
    matrix = _from_database(project)
    with contextlib.suppress(OSError):
        _write(path, matrix, project)
    return matrix


# A file holds the rows' log ids (little-endian int64), then their vectors (little-endian float32, row by row).
_ROW_BYTES = 8 + 4 * DIMENSION


def _read(path: Path) -> IndexMatrix:
    """The file mapped, not read: the page cache serves every process of the machine the same pages."""
    rows, rest = divmod(path.stat().st_size, _ROW_BYTES)
    if rest:
        raise ValueError(f"{path} is not an index matrix")
    if not rows:
        return _empty()
    ids = np.memmap(path, dtype="<i8", mode="r", shape=(rows,))
    vectors = np.memmap(path, dtype="<f4", mode="r", offset=8 * rows, shape=(rows, DIMENSION))
    return IndexMatrix(ids=ids, vectors=vectors)


def _empty() -> IndexMatrix:
    return IndexMatrix(ids=np.empty(0, dtype=np.int64), vectors=np.empty((0, DIMENSION), dtype=np.float32))


def _from_database(project: Project) -> IndexMatrix:
    ids: list[np.ndarray] = []
    vectors: list[np.ndarray] = []
    for rows in vector_chunks(LogEmbedding.objects.filter(project=project).values_list("log_id", "vector")):
        ids.append(np.fromiter((log_id for log_id, _ in rows), dtype=np.int64, count=len(rows)))
        vectors.append(chunk_matrix(rows))
    if not ids:
        return _empty()
    return IndexMatrix(ids=np.concatenate(ids), vectors=np.concatenate(vectors))


def _write(path: Path, matrix: IndexMatrix, project: Project) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".writing-", suffix=".bin")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(np.ascontiguousarray(matrix.ids, dtype="<i8").tobytes())
            stream.write(np.ascontiguousarray(matrix.vectors, dtype="<f4").tobytes())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    for older in path.parent.glob(f"logs-{project.pk}-*.bin"):
        if older != path:
            with contextlib.suppress(FileNotFoundError):
                older.unlink()
