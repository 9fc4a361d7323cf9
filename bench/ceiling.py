"""The ceiling of a write path: the rows it stored, read back and stored again with raw COPY.

Reading back what was stored gives the ceiling exactly the same column values, ids included, with no second
copy of the service's row building to keep in step with it. `ingest.py` and `import_file.py` both use it.
"""

import bisect
import contextlib
import queue
import threading
import time

import psycopg

LOG_TABLE = "curation_logentry"
TAG_TABLE = "curation_logtag"


def stored_batches(conn: psycopg.Connection, *, batch_size: int) -> list[tuple[bytes, bytes]]:
    """The stored rows in COPY's text format: (log rows, their tag rows) per `batch_size` logs, in id order."""
    logs = _copy_out(conn, f"COPY (SELECT {_log_columns(conn)} FROM {LOG_TABLE} ORDER BY id) TO STDOUT")
    tags = _copy_out(conn, f"COPY (SELECT log_id, tag_id FROM {TAG_TABLE} ORDER BY log_id) TO STDOUT")
    tag_log_ids = [_leading_id(row) for row in tags]
    batches = []
    for start in range(0, len(logs), batch_size):
        rows = logs[start : start + batch_size]
        first = bisect.bisect_left(tag_log_ids, _leading_id(rows[0]))
        end = bisect.bisect_right(tag_log_ids, _leading_id(rows[-1]))
        batches.append((b"".join(rows), b"".join(tags[first:end])))
    return batches


def _log_columns(conn: psycopg.Connection) -> str:
    """The log table's stored columns, id first; generated ones (PostgreSQL computes them) left out."""
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
        [LOG_TABLE],
    ).fetchall()
    return ", ".join(f'"{name}"' for (name,) in rows)


def _copy_out(conn: psycopg.Connection, statement: str) -> list[bytes]:
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        data = b"".join(bytes(block) for block in copy)
    return data.splitlines(keepends=True)  # newlines inside values are escaped as \\n


def _leading_id(row: bytes) -> int:
    return int(row.split(b"\t", 1)[0])


def copy_batches(conn: psycopg.Connection, batches: list[tuple[bytes, bytes]], *, url: str, connections: int) -> float:
    """Empty the log tables (and what refers to them), then COPY the batches from `connections` parallel sessions,
    each batch's logs and tags in one transaction; seconds."""
    columns = _log_columns(conn)
    conn.execute(f"TRUNCATE {LOG_TABLE} CASCADE")
    checkpoint(conn)
    todo: queue.SimpleQueue[tuple[bytes, bytes]] = queue.SimpleQueue()
    for batch in batches:
        todo.put(batch)
    sessions = [psycopg.connect(url) for _ in range(connections)]
    errors: list[BaseException] = []

    def session(db: psycopg.Connection) -> None:
        try:
            while not errors:
                try:
                    log_rows, tag_rows = todo.get_nowait()
                except queue.Empty:
                    return
                with db.transaction(), db.cursor() as cursor:
                    with cursor.copy(f"COPY {LOG_TABLE} ({columns}) FROM STDIN") as copy:
                        copy.write(log_rows)
                    with cursor.copy(f"COPY {TAG_TABLE} (log_id, tag_id) FROM STDIN") as copy:
                        copy.write(tag_rows)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(db,), name=f"copy-{n}") for n, db in enumerate(sessions)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    for db in sessions:
        db.close()
    if errors:
        raise errors[0]
    return seconds


def checkpoint(conn: psycopg.Connection) -> None:
    """Start a measured phase with no dirty buffers left by the one before (superusers only)."""
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
        conn.execute("CHECKPOINT")


def count(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return row[0] if row else 0
