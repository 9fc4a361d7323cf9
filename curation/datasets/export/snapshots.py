"""Snapshots: a dataset frozen into an immutable JSONL file (OpenAI chat format, one line per entry in
id order, each with its `"split"` and `"entry_id"`) with its SHA-256 and counts. Fine-tunes train on
snapshots; the entry id maps what a fine-tune reports per example (its loss) back to the entry.

A dataset of preference pairs is frozen as TRL preference rows (`prompt`, `chosen`, `rejected`, and `tools` when
there are any), with the same `"split"` and `"entry_id"`: the lines a DPO fine-tune reads. A pair that cannot be
written (no rejected answer) is left out and not counted.

A small dataset is frozen in the request; a large one by a worker, with progress on the row.
"""

import hashlib
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import orjson
from django.contrib.auth.models import User
from django.core.files import File
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from curation.audit.services import audit_record
from curation.common.queueing import task_send_or_fail
from curation.common.server_paths import error_text
from curation.datasets.export.formats import to_openai
from curation.datasets.export.preference import to_trl_preference
from curation.datasets.export.services import (
    Row,
    StoredPairRow,
    entries_count,
    entry_rows,
    pair_rows,
    row_batches,
    stored_pair,
)
from curation.models import ApiKey, Dataset, DatasetKind, DatasetSnapshot, JobStatus, Split

logger = logging.getLogger(__name__)

# Up to this many entries a snapshot is written in the request (a second or two); above, by a worker.
INLINE_LIMIT = 20_000
# A worker writes its progress on the row at most this often.
PROGRESS_EVERY_S = 0.5


def snapshot_request(
    *, dataset: Dataset, created_by: User | None = None, api_key: ApiKey | None = None
) -> DatasetSnapshot:
    """Freeze `dataset`: right away when it is small (the snapshot comes back succeeded), otherwise
    queued for a worker (it comes back queued; poll it)."""
    snapshot = _snapshot_new(dataset=dataset, created_by=created_by)
    if snapshot.rows_total <= INLINE_LIMIT:
        return snapshot_build(snapshot_id=snapshot.pk, api_key=api_key)
    from curation.datasets.export.tasks import snapshot_build_task

    api_key_id = api_key.pk if api_key else None
    rows = DatasetSnapshot.objects.filter(pk=snapshot.pk)
    transaction.on_commit(
        lambda: task_send_or_fail(snapshot_build_task, snapshot.pk, api_key_id, job=rows, event="curation.snapshot")
    )
    return snapshot


def snapshot_create(
    *,
    dataset: Dataset,
    created_by: User | None = None,
    api_key: ApiKey | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> DatasetSnapshot:
    """Freeze `dataset` in this process whatever its size (the CLI, with its progress bar)."""
    snapshot = _snapshot_new(dataset=dataset, created_by=created_by)
    return snapshot_build(snapshot_id=snapshot.pk, api_key=api_key, on_progress=on_progress)


def _snapshot_new(*, dataset: Dataset, created_by: User | None) -> DatasetSnapshot:
    return DatasetSnapshot.objects.create(
        project_id=dataset.project_id,
        dataset=dataset,
        created_by=created_by,
        rows_total=entries_count(dataset=dataset),
        split_seed=dataset.split_seed,
        validation_ratio=dataset.validation_ratio,
    )


def snapshot_build(
    *,
    snapshot_id: int,
    api_key: ApiKey | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> DatasetSnapshot:
    """Write the snapshot's file. Idempotent: a finished snapshot is left alone, an interrupted one is
    written again from the start. The SHA-256 is computed while the file is written, so the same
    content always gives the same hash. On failure the error is kept on the row and no file is left."""
    snapshot = DatasetSnapshot.objects.select_related("dataset__project", "created_by").get(pk=snapshot_id)
    if snapshot.is_finished:
        return snapshot
    dataset = snapshot.dataset
    if dataset is None:  # deleted before a worker got to it: there is nothing left to write
        DatasetSnapshot.objects.filter(pk=snapshot.pk).update(
            status=JobStatus.FAILED, error="Its dataset was deleted before it was written.", finished_at=timezone.now()
        )
        snapshot.refresh_from_db()
        return snapshot
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(status=JobStatus.RUNNING, rows_done=0)
    try:
        _write(snapshot, dataset, on_progress)
        with transaction.atomic():
            snapshot.status, snapshot.finished_at = JobStatus.SUCCEEDED, timezone.now()
            snapshot.save()
            audit_record(
                project=dataset.project,
                action="dataset.snapshot",
                count=snapshot.rows_total,
                actor=snapshot.created_by,
                api_key=api_key,
                detail={"dataset_id": dataset.pk, "dataset": dataset.name, "snapshot_id": snapshot.pk,
                        "sha256": snapshot.sha256},
            )  # fmt: skip
    except Exception as exc:
        if snapshot.file:
            snapshot.file.delete(save=False)  # nothing may point at a file whose row did not succeed
        DatasetSnapshot.objects.filter(pk=snapshot.pk).update(
            status=JobStatus.FAILED,
            error=error_text(exc),
            finished_at=timezone.now(),
            file="",
            sha256="",
        )
        logger.exception("curation.snapshot_failed snapshot=%s", snapshot.pk)
        raise
    return snapshot


def _write(snapshot: DatasetSnapshot, dataset: Dataset, on_progress: Callable[[int], None] | None) -> None:
    digest = hashlib.sha256()
    splits: Counter[str] = Counter()
    reported_at = time.monotonic()
    with tempfile.TemporaryFile() as tmp:
        chunks = (
            _pair_chunks(pair_rows(dataset_id=dataset.pk, split=None), splits)
            if dataset.kind == DatasetKind.PREFERENCE
            else _chunks(entry_rows(dataset_id=dataset.pk, split=None), splits)
        )
        for chunk in chunks:
            digest.update(chunk)
            tmp.write(chunk)
            if on_progress is not None:
                on_progress(splits.total())
            if time.monotonic() - reported_at >= PROGRESS_EVERY_S:
                DatasetSnapshot.objects.filter(pk=snapshot.pk).update(rows_done=splits.total())
                reported_at = time.monotonic()
        tmp.seek(0)
        snapshot.sha256 = digest.hexdigest()
        snapshot.rows_total = snapshot.rows_done = splits.total()
        snapshot.rows_train, snapshot.rows_validation = splits[Split.TRAIN], splits[Split.VALIDATION]
        name = f"{slugify(dataset.name) or 'dataset'}-{snapshot.sha256[:12]}.jsonl"
        snapshot.file.save(name, File(tmp), save=False)


def _chunks(rows: Iterable[Row], splits: Counter[str]) -> Iterator[bytes]:
    for batch in row_batches(rows):
        lines = []
        for entry_id, messages, tools, split, options in batch:
            row = to_openai(messages, tools, set(), options)
            row["split"] = split
            row["entry_id"] = entry_id
            lines.append(orjson.dumps(row))
            splits[split] += 1
        yield b"\n".join(lines) + b"\n"


def _pair_chunks(rows: Iterable[StoredPairRow], splits: Counter[str]) -> Iterator[bytes]:
    for batch in row_batches(rows):
        lines = []
        for entry_id, messages, tools, split, options, rejected in batch:
            lost: set[str] = set()
            pair = stored_pair(messages, rejected, lost)
            if pair is None:
                continue
            row = to_trl_preference(pair, tools, lost, options)
            row["split"] = split
            row["entry_id"] = entry_id
            lines.append(orjson.dumps(row))
            splits[split] += 1
        if lines:
            yield b"\n".join(lines) + b"\n"
