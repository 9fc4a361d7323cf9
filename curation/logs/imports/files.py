"""Reading an import's file: decompressed when it is gzip, up to LOGTUNE_MAX_IMPORT_EXPANDED_BYTES, line by line
with a bound on a line's length."""

import gzip
import io
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, cast

from django.conf import settings

from curation.models import ImportJob

GZIP_MAGIC = b"\x1f\x8b"


class ExpandedTooLarge(Exception):
    """A compressed file decompresses to more than LOGTUNE_MAX_IMPORT_EXPANDED_BYTES."""


class _Bounded(io.RawIOBase):
    """A decompressed stream that gives at most `limit` bytes and then raises: a gzip bomb stops
    after `limit` bytes of reading, not once the disk, the database or the worker's time runs out."""

    def __init__(self, inner: io.BufferedIOBase, limit: int) -> None:
        self.inner, self.limit, self.left = inner, limit, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self.inner.readinto(memoryview(buffer)[: self.left + 1])
        self.left -= count
        if self.left < 0:
            raise ExpandedTooLarge(
                f"The file decompresses to more than {self.limit} bytes (LOGTUNE_MAX_IMPORT_EXPANDED_BYTES)"
            )
        return count


@contextmanager
def import_file_open(job: ImportJob, path: Path | None) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """(raw file, line stream): the stream is decompressed when the file starts with the gzip magic,
    up to LOGTUNE_MAX_IMPORT_EXPANDED_BYTES; the raw file's position measures progress in bytes of
    the file as stored."""
    raw = cast(BinaryIO, open(path, "rb") if path is not None else job.file.open("rb"))  # noqa: SIM115
    try:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        if compressed:
            decompressed = _Bounded(gzip.GzipFile(fileobj=raw, mode="rb"), settings.LOGTUNE_MAX_IMPORT_EXPANDED_BYTES)
            yield raw, cast(BinaryIO, io.BufferedReader(decompressed, buffer_size=1 << 20))
        else:
            yield raw, raw
    finally:
        raw.close()


def stream_open(raw: BinaryIO, *, seekable: bool = False) -> BinaryIO:
    """`raw`'s lines to read: decompressed when it starts with the gzip magic, up to
    LOGTUNE_MAX_IMPORT_EXPANDED_BYTES (ExpandedTooLarge past it); `seekable`: a stream that seeks cheaply (a gzip file
    is decompressed to a temporary file first)."""
    compressed = raw.read(2) == GZIP_MAGIC
    raw.seek(0)
    if not compressed:
        return raw
    limit = settings.LOGTUNE_MAX_IMPORT_EXPANDED_BYTES
    stream = cast(BinaryIO, io.BufferedReader(_Bounded(gzip.GzipFile(fileobj=raw, mode="rb"), limit), 1 << 20))
    if not seekable:
        return stream
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 (the caller's to close)
    shutil.copyfileobj(stream, spool, 1 << 20)
    spool.seek(0)
    return cast(BinaryIO, spool)


def numbered_lines(stream: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) for each line; None for a line longer than `limit`, which is skipped whole."""
    number = 0
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit:
            while line and not line.endswith(b"\n"):
                line = stream.readline(1 << 20)
            yield number, None
        else:
            yield number, line
