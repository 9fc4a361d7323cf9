from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from curation.logs.similar.selectors import log_index_size
from curation.logs.similar.services import log_embedding_job_create, project_embed_logs
from curation.models import JobStatus, LogEmbeddingJob, Project


class Command(BaseCommand):
    help = (
        'Build or update the index of "more like this" for a project in this process, with a progress bar: embed '
        "its newest logs that have no embedding or a stale one (what the panel's button does on a worker). Each "
        "batch is committed on its own, so an interrupted run keeps its work, and running it again embeds only "
        "logs received or changed since. Suits a cron job."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument(
            "--limit", type=int, default=None, help="Newest logs looked at (default LOGTUNE_SIMILAR_LOGS_MAX)."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (for logs and scripts).")

    def handle(self, *args: object, project: str, limit: int | None, no_progress: bool, **opts: object) -> None:
        found = Project.objects.filter(slug=project).first()
        if found is None:
            raise CommandError(f"Project '{project}' not found.")
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.")
        busy = found.log_embedding_jobs.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).first()
        if busy is not None:
            raise CommandError(f"Indexing job {busy.pk} is {busy.status} for '{found.slug}': wait for it to finish.")
        job = log_embedding_job_create(project=found, limit=limit or settings.LOGTUNE_SIMILAR_LOGS_MAX, send=False)
        bar = tqdm(total=job.total, unit="logs", desc=found.slug, disable=no_progress)

        def progress(job: LogEmbeddingJob) -> None:
            bar.update(job.done - bar.n)
            bar.set_postfix(embedded=job.embedded)

        try:
            job = project_embed_logs(job_id=job.pk, on_progress=progress)
        except KeyboardInterrupt:
            LogEmbeddingJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error="Interrupted.")
            raise CommandError("Interrupted: the logs embedded so far are kept; run it again to go on.") from None
        finally:
            bar.close()
        self.stdout.write(
            f"Looked at {job.done:,} logs and embedded {job.embedded:,}; "
            f"{log_index_size(project=found):,} logs of '{found.slug}' are indexed."
        )
