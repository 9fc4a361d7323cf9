"""Exports: a dataset's entries streamed through a writer, in keyset batches, so memory stays flat
whatever the size of the dataset. Snapshots (`snapshots`) are written from the same rows."""

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import TypeVar

import orjson
from django.core.exceptions import ValidationError
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils.text import slugify

from curation.datasets.export.columns import arrow_schemas, to_parquet_row
from curation.datasets.export.formats import (
    FORMATS,
    LOSSLESS_FORMATS,
    PREFERENCE_FORMATS,
    SKIPPED_NO_REPLY,
    WRITERS,
    ExportReport,
    Writer,
    last_reply,
)
from curation.datasets.export.preference import PREFERENCE_WRITERS, Pair, preference_pair
from curation.models import Dataset, DatasetEntry, DatasetKind, Split

BATCH_SIZE = 2_000
# A preview converts at most this many entries, so the page can warn about a large dataset quickly.
PREVIEW_LIMIT = 100_000

JSONL_TYPE = "application/x-ndjson"
PARQUET_TYPE = "application/vnd.apache.parquet"

Row = tuple[int, list[dict], list[dict], str, dict]  # id, messages, tools, split, options
T = TypeVar("T")
# id, messages, tools, split, options, the rejected answer: a stored pair of a dataset of pairs
StoredPairRow = tuple[int, list[dict], list[dict], str, dict, dict | None]
SKIPPED_NO_REJECTED = "no rejected answer: skipped"
PAIRS_FORMATS_ONLY = (
    "A dataset of preference pairs is exported as pairs: format 'preference' (TRL) or 'openai_preference', "
    "not '{format}'."
)
PairRow = tuple[int, list[dict], list[dict], dict, list[dict] | None]  # id, messages, tools, options, log's messages


@dataclass
class Export:
    """A download in the making: nothing is read until `chunks` is iterated; `report` fills as it goes."""

    content_type: str
    filename: str
    chunks: Iterator[bytes]
    report: ExportReport


def export_check(*, format: str, split: str | None, kind: str = DatasetKind.CHAT) -> None:
    if format not in FORMATS:
        raise ValidationError({"format": f"Unknown format '{format}'; one of {', '.join(FORMATS)}."})
    if kind == DatasetKind.PREFERENCE and format not in PREFERENCE_FORMATS:
        raise ValidationError({"format": PAIRS_FORMATS_ONLY.format(format=format)})
    if split is not None and split not in Split.values:
        choices = ", ".join(Split.values)
        raise ValidationError({"split": f"Unknown split '{split}'; one of {choices}, or none for all."})


def export_stream(*, dataset: Dataset, format: str, split: str | None = None) -> Export:
    """Stream the entries of `dataset` (one split, or all) in `format`, ordered by entry id."""
    export_check(format=format, split=split, kind=dataset.kind)
    report = ExportReport(format=format)
    if dataset.kind == DatasetKind.PREFERENCE:
        chunks = _preference_chunks(stored_pairs_made(pair_rows(dataset_id=dataset.pk, split=split)), format, report)
        return Export(JSONL_TYPE, _filename(dataset, format, split, "jsonl"), chunks, report)
    if format in PREFERENCE_FORMATS:
        chunks = _preference_chunks(edit_pairs_made(edited_rows(dataset_id=dataset.pk, split=split)), format, report)
        return Export(JSONL_TYPE, _filename(dataset, format, split, "jsonl"), chunks, report)
    rows = entry_rows(dataset_id=dataset.pk, split=split)
    if format == "parquet":
        chunks = _parquet_chunks(rows, report)
        return Export(PARQUET_TYPE, _filename(dataset, format, split, "parquet"), chunks, report)
    chunks = _jsonl_chunks(rows, WRITERS[format], report)
    return Export(JSONL_TYPE, _filename(dataset, format, split, "jsonl"), chunks, report)


def export_preview(
    *, dataset: Dataset, format: str, split: str | None = None, limit: int = PREVIEW_LIMIT
) -> ExportReport:
    """What an export in `format` would lose, without writing it. The first `limit` entries are
    converted (`rows_read` of `rows_total`); the OpenAI and Parquet formats lose nothing, so their
    entries are only counted."""
    export_check(format=format, split=split, kind=dataset.kind)
    report = ExportReport(format=format, rows_total=entries_count(dataset=dataset, split=split, format=format))
    if dataset.kind == DatasetKind.PREFERENCE:
        for _ in _preference_lines(
            stored_pairs_made(islice(pair_rows(dataset_id=dataset.pk, split=split), limit)), format, report
        ):
            pass
        return report
    if format in LOSSLESS_FORMATS:
        report.rows_read = report.rows_written = report.rows_total or 0
        return report
    if format in PREFERENCE_FORMATS:
        for _ in _preference_lines(
            edit_pairs_made(islice(edited_rows(dataset_id=dataset.pk, split=split), limit)), format, report
        ):
            pass
        return report
    writer = WRITERS[format]
    for _, messages, tools, _split, options in islice(entry_rows(dataset_id=dataset.pk, split=split), limit):
        lost: set[str] = set()
        report.add(writer(messages, tools, lost, options) is not None, lost)
    return report


def entries_count(*, dataset: Dataset, split: str | None = None, format: str = "openai") -> int:
    """The entries an export in `format` reads: the edited ones for the preference formats."""
    entries = DatasetEntry.objects.filter(dataset=dataset)
    if format in PREFERENCE_FORMATS and dataset.kind == DatasetKind.CHAT:
        entries = entries.filter(edited=True)
    return (entries.filter(split=split) if split else entries).count()


# --- reading entries ------------------------------------------------------------------------------


def entry_rows(*, dataset_id: int, split: str | None) -> Iterator[Row]:
    """Entries in id order. Without a split, the two splits are read side by side and merged, so each
    query is a range scan of the (dataset, split, id) index rather than a sort of the whole dataset."""
    if split is not None:
        return _keyset(dataset_id, split)
    return heapq.merge(*(_keyset(dataset_id, value) for value in Split.values), key=itemgetter(0))


def _keyset(dataset_id: int, split: str) -> Iterator[Row]:
    after = 0
    while True:
        batch = list(
            DatasetEntry.objects.filter(dataset_id=dataset_id, split=split, id__gt=after)
            .order_by("id")
            .values_list(
                "id", Cast("messages", TextField()), Cast("tools", TextField()), Cast("options", TextField())
            )[:BATCH_SIZE]
        )
        for entry_id, messages, tools, options in batch:
            # The JSON comes as text and is parsed with orjson: several times faster than the json
            # module, which was most of an export's time. orjson keeps the keys in the order of the text.
            yield entry_id, orjson.loads(messages), orjson.loads(tools) if tools else [], split, _options(options)
        if len(batch) < BATCH_SIZE:
            return
        after = batch[-1][0]


def edited_rows(*, dataset_id: int, split: str | None) -> Iterator[PairRow]:
    """Edited entries in id order, with their source log's messages (None when the log is gone or there was
    none). Few entries are edited, so one ordered query in keyset batches serves both splits."""
    entries = DatasetEntry.objects.filter(dataset_id=dataset_id, edited=True)
    if split is not None:
        entries = entries.filter(split=split)
    after = 0
    while True:
        batch = list(
            entries.filter(id__gt=after)
            .order_by("id")
            .values_list(
                "id", Cast("messages", TextField()), Cast("tools", TextField()), Cast("options", TextField()),
                Cast("log__messages", TextField()),
            )[:BATCH_SIZE]
        )  # fmt: skip
        for entry_id, messages, tools, options, original in batch:
            parsed_tools = orjson.loads(tools) if tools else []
            source = orjson.loads(original) if original else None
            yield entry_id, orjson.loads(messages), parsed_tools, _options(options), source
        if len(batch) < BATCH_SIZE:
            return
        after = batch[-1][0]


def pair_rows(*, dataset_id: int, split: str | None) -> Iterator[StoredPairRow]:
    """The stored pairs of a dataset of pairs in id order, each with its rejected answer (None when it has none)."""
    entries = DatasetEntry.objects.filter(dataset_id=dataset_id)
    if split is not None:
        entries = entries.filter(split=split)
    after = 0
    while True:
        batch = list(
            entries.filter(id__gt=after)
            .order_by("id")
            .values_list(
                "id", Cast("messages", TextField()), Cast("tools", TextField()), "split",
                Cast("options", TextField()), Cast("rejected", TextField()),
            )[:BATCH_SIZE]
        )  # fmt: skip
        for entry_id, messages, tools, entry_split, options, rejected in batch:
            parsed_tools = orjson.loads(tools) if tools else []
            answer = orjson.loads(rejected) if rejected else None
            yield entry_id, orjson.loads(messages), parsed_tools, entry_split, _options(options), answer
        if len(batch) < BATCH_SIZE:
            return
        after = batch[-1][0]


def stored_pair(messages: list[dict], rejected: dict | None, lost: set[str]) -> Pair | None:
    """A stored pair: the conversation up to its last assistant turn, that turn (chosen), and the rejected answer."""
    last = last_reply(messages, lost)
    if last is None:
        lost.add(SKIPPED_NO_REPLY)
        return None
    if not isinstance(rejected, dict):
        lost.add(SKIPPED_NO_REJECTED)
        return None
    return Pair(prompt=messages[:last], chosen=messages[last], rejected=rejected)


def _options(text: str | None) -> dict:
    return orjson.loads(text) if text and text != "{}" else {}


def row_batches(rows: Iterable[T]) -> Iterator[list[T]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, BATCH_SIZE)):
        yield batch


# --- writing --------------------------------------------------------------------------------------


def _jsonl_chunks(rows: Iterable[Row], writer: Writer, report: ExportReport) -> Iterator[bytes]:
    for batch in row_batches(rows):
        lines = []
        for _, messages, tools, _split, options in batch:
            lost: set[str] = set()
            row = writer(messages, tools, lost, options)
            report.add(row is not None, lost)
            if row is not None:
                lines.append(orjson.dumps(row))
        if lines:
            yield b"\n".join(lines) + b"\n"


MadePair = tuple[Pair | None, list[dict], dict, set[str]]  # the pair (None: skipped), tools, options, what was lost


def edit_pairs_made(rows: Iterable[PairRow]) -> Iterator[MadePair]:
    """Pairs of edited entries: the edited answer chosen, the log's answer rejected."""
    for _, messages, tools, options, original in rows:
        lost: set[str] = set()
        yield preference_pair(messages, original, lost), tools, options, lost


def stored_pairs_made(rows: Iterable[StoredPairRow]) -> Iterator[MadePair]:
    """Pairs of a dataset of pairs, as stored."""
    for _, messages, tools, _split, options, rejected in rows:
        lost: set[str] = set()
        yield stored_pair(messages, rejected, lost), tools, options, lost


def _preference_lines(pairs: Iterable[MadePair], format: str, report: ExportReport) -> Iterator[bytes]:
    writer = PREFERENCE_WRITERS[format]
    for pair, tools, options, lost in pairs:
        row = writer(pair, tools, lost, options) if pair is not None else None
        report.add(row is not None, lost)
        if row is not None:
            yield orjson.dumps(row)


def _preference_chunks(pairs: Iterable[MadePair], format: str, report: ExportReport) -> Iterator[bytes]:
    for batch in row_batches(pairs):
        lines = list(_preference_lines(batch, format, report))
        if lines:
            yield b"\n".join(lines) + b"\n"


class _Drain:
    """A write-only file for ParquetWriter that hands back, batch by batch, what was written, so the
    file is streamed instead of built in memory. `tell` counts every byte: the footer's offsets use it."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _parquet_chunks(rows: Iterable[Row], report: ExportReport) -> Iterator[bytes]:
    """One row group per batch: columns id, split, the OpenAI line's messages as structs (`columns`), its tools
    as JSON text, its parallel_tool_calls and its response_format (JSON)."""
    import pyarrow as pa  # only exports to Parquet pay for loading Arrow
    import pyarrow.parquet as pq

    storage, schema = arrow_schemas()
    sink = _Drain()
    with pq.ParquetWriter(sink, schema, compression="zstd") as parquet:
        for batch in row_batches(rows):
            columns: dict[str, list] = {name: [] for name in schema.names}
            for entry_id, messages, tools, split, options in batch:
                row = to_parquet_row(messages, tools, set(), options)
                report.add(True, set())
                columns["id"].append(entry_id)
                columns["split"].append(split)
                for name in ("messages", "tools", "parallel_tool_calls", "response_format"):
                    columns[name].append(row[name])
            parquet.write_table(pa.table(columns, schema=storage).cast(schema))
            yield sink.take()
    yield sink.take()


def _filename(dataset: Dataset, format: str, split: str | None, extension: str) -> str:
    kind = "" if format == extension else f"-{format}"  # "math-train-alpaca.jsonl", "math-train.parquet"
    return f"{slugify(dataset.name) or 'dataset'}-{split or 'all'}{kind}.{extension}"
