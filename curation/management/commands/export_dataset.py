import os
import sys
from pathlib import Path
from typing import BinaryIO

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from curation.audit.services import audit_record
from curation.datasets.export import FORMATS, Export, export_stream, snapshot_create
from curation.datasets.export.services import entries_count
from curation.models import Dataset, Project, Split


class Command(BaseCommand):
    help = (
        "Export a dataset as a training file (openai, sharegpt, alpaca, prompt_completion JSONL, parquet, or the "
        "preference pairs of its edited entries as preference or openai_preference JSONL), with "
        "a progress bar and, at the end, what the format could not carry. --snapshot freezes an immutable, hashed "
        "snapshot instead, the one fine-tunes train on."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset", help="Dataset id or name.")
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--format", default="openai", choices=FORMATS)
        parser.add_argument("--split", choices=Split.values, help="One split; all when left out.")
        parser.add_argument("--output", help="File, or - for stdout (default: a file named after the dataset).")
        parser.add_argument("--snapshot", action="store_true", help="Freeze a snapshot (OpenAI lines + split).")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (for logs and scripts).")

    def handle(
        self,
        *args: object,
        dataset: str,
        project: str,
        format: str,
        split: str | None,
        output: str | None,
        snapshot: bool,
        no_progress: bool,
        **opts: object,
    ) -> None:
        found = Project.objects.filter(slug=project).first()
        if found is None:
            raise CommandError(f"Project '{project}' not found.")
        chosen = _dataset(found, dataset)
        if snapshot and (split or output or format != "openai"):
            raise CommandError("A snapshot holds every split as OpenAI lines: leave out --format, --split, --output.")
        total = entries_count(dataset=chosen, split=split, format=format)
        bar = tqdm(total=total, unit="rows", desc=chosen.name, disable=no_progress or output == "-")
        if snapshot:
            self._snapshot(chosen, bar)
            return
        try:
            export = export_stream(dataset=chosen, format=format, split=split)
        except ValidationError as exc:  # a chat format asked of a dataset of pairs
            raise CommandError(" ".join(exc.messages)) from None
        detail = {"dataset_id": chosen.pk, "dataset": chosen.name, "format": format, "split": split or "all"}
        audit_record(project=found, action="dataset.export", count=total, detail={**detail, "via": "cli"})
        if output == "-":
            _write(export, sys.stdout.buffer, bar)
            summary = self.stderr  # stdout carries the data
        else:
            path = Path(output or export.filename)
            partial = path.with_name(path.name + ".part")  # a failed export leaves no truncated file behind
            with partial.open("wb") as handle:
                _write(export, handle, bar)
            os.replace(partial, path)
            summary = self.stdout
            summary.write(f"Wrote {path}")
        bar.close()
        for line in export.report.summary():
            summary.write(line)

    def _snapshot(self, dataset: Dataset, bar: tqdm) -> None:
        snapshot = snapshot_create(dataset=dataset, on_progress=lambda rows: bar.update(rows - bar.n))
        bar.close()
        self.stdout.write(
            f"Snapshot {snapshot.pk}: {snapshot.rows_total} rows ({snapshot.rows_train} train, "
            f"{snapshot.rows_validation} validation), sha256 {snapshot.sha256}, file {snapshot.file.name}"
        )


def _dataset(project: Project, ref: str) -> Dataset:
    datasets = Dataset.objects.filter(project=project)
    found = datasets.filter(pk=int(ref)).first() if ref.isdigit() else None
    found = found or datasets.filter(name=ref).first()
    if found is None:
        raise CommandError(f"No dataset '{ref}' (id or name) in project '{project.slug}'.")
    return found


def _write(export: Export, handle: BinaryIO, bar: tqdm) -> None:
    for chunk in export.chunks:
        handle.write(chunk)
        bar.update(export.report.rows_read - bar.n)
    handle.flush()
