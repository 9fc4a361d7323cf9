import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from tqdm import tqdm

from curation.logs.imports.batch_join import BatchJoinError, batch_files_join, join_summary
from curation.logs.imports.files import ExpandedTooLarge
from curation.logs.imports.run import import_job_run
from curation.logs.imports.services import PendingImportsTooLarge, import_job_create, import_job_create_local
from curation.logs.imports.sniff import import_file_problem
from curation.logs.ingest.envelope import FORMATS
from curation.models import ImportJob, Project

WORKER_HINT_AFTER_S = 10


class Command(BaseCommand):
    help = (
        "Import a JSONL or JSONL.gz file of logs into a project, with a progress bar. By default the file is "
        "queued for a Celery worker and followed here; --inline imports it in this process instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--inline", action="store_true", help="Import in this process; no worker needed.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (for logs and scripts).")
        parser.add_argument(
            "--format", choices=sorted(FORMATS), default="",
            help="Read every line as this shape; by default each line's shape is recognised.",
        )  # fmt: skip
        parser.add_argument(
            "--batch-input", type=Path, metavar="INPUT",
            help="FILE is an OpenAI Batch API output file and INPUT its input file: each answer is imported with its "
            "request (joined by custom_id).",
        )  # fmt: skip

    def handle(self, *args: object, file: Path, batch_input: Path | None, **opts: Any) -> None:
        if batch_input is None:
            self._import(file, **opts)
            return
        with tempfile.TemporaryDirectory() as folder:
            self._import(self._joined(file, batch_input, Path(folder)), **opts)

    def _joined(self, file: Path, batch_input: Path, folder: Path) -> Path:
        """The Batch output file joined to its input file, in `folder` under the output file's name."""
        for path in (file, batch_input):
            if not path.is_file():
                raise CommandError(f"{path}: no such file")
        try:
            with file.open("rb") as output, batch_input.open("rb") as input:
                join = batch_files_join(output, input)
        except (BatchJoinError, ExpandedTooLarge) as exc:
            raise CommandError(f"{batch_input}: {exc}") from None
        joined = folder / file.name
        with joined.open("wb") as out:
            shutil.copyfileobj(join.file, out)
        self.stdout.write(f"Joined {file.name} to {batch_input.name}: {join_summary(join)}.")
        return joined

    def _import(
        self, file: Path, *, project: str, inline: bool, no_progress: bool, format: str, **opts: object
    ) -> None:
        if not file.is_file():
            raise CommandError(f"{file}: no such file")
        found = Project.objects.filter(slug=project).first()
        if found is None:
            raise CommandError(f"Project '{project}' not found (create it with create_api_key --project {project}).")
        with file.open("rb") as handle:
            problem = import_file_problem(handle)
        if problem:
            raise CommandError(f"{file}: {problem}")
        bar = tqdm(total=file.stat().st_size, unit="B", unit_scale=True, desc=file.name, disable=no_progress)
        show = _progress_to(bar)
        if inline:
            job = import_job_create_local(project=found, path=file, format=format)
            try:
                job = import_job_run(job_id=job.pk, path=file, on_progress=show)
            except Exception as exc:
                raise CommandError(f"Import failed: {exc}") from exc
        else:
            try:
                with file.open("rb") as handle, transaction.atomic():
                    job = import_job_create(
                        project=found, file=File(handle, name=file.name), source_name=file.name, format=format
                    )
            except PendingImportsTooLarge as exc:
                raise CommandError(f"{exc} Or import it here with --inline.") from None
            job = self._follow(job, show)
        bar.close()
        self._summarise(job)

    def _follow(self, job: ImportJob, show: object) -> ImportJob:
        started = time.monotonic()
        hinted = False
        while not job.is_finished:
            time.sleep(0.5)
            job.refresh_from_db()
            show(job)  # type: ignore[operator]
            if job.status == "queued" and not hinted and time.monotonic() - started > WORKER_HINT_AFTER_S:
                self.stderr.write("Still queued: is a Celery worker running? (make run starts one; or use --inline)")
                hinted = True
        return job

    def _summarise(self, job: ImportJob) -> None:
        """The counts and the first line errors; then, when the import failed (it stored nothing, or stopped),
        the reason as the command's error, so that it exits non-zero."""
        self.stdout.write(
            f"Imported {job.accepted} logs ({job.duplicates} duplicates, {job.rejected} rejected lines) "
            f"from {job.lines_done} lines."
        )
        if job.rejected:
            self.stdout.write(f"Error report: /api/v1/imports/{job.pk}/errors?project={job.project.slug}")
            for line_error in job.line_errors.all()[:5]:
                self.stdout.write(f"  line {line_error.line}: {line_error.error}")
        if job.status == "failed":
            raise CommandError(f"Import {job.pk} failed: {job.error}")


def _progress_to(bar: tqdm):
    def show(job: ImportJob) -> None:
        bar.update(job.bytes_done - bar.n)
        bar.set_postfix(accepted=job.accepted, rejected=job.rejected, refresh=False)

    return show
