from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from curation.audit.services import audit_record
from curation.logs.reparse import logs_reparse_batch, logs_to_reparse
from curation.models import LogStatus, Project


class Command(BaseCommand):
    help = (
        "Read a project's stored logs again from their originals with this version's readers, after an upgrade: "
        "unreadable logs that a reader can now read get their conversation, and readable ones what the readers "
        "keep now. Only the columns a reader fills change (the original, tags and metadata never do), in batches by "
        "id with a progress bar; an interrupted run resumes with --after-id, and running it again changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument(
            "--status", choices=[choice.value for choice in LogStatus], help="Only logs of this status (unreadable)."
        )
        parser.add_argument("--after-id", type=int, default=0, help="Resume: read only logs with a greater id.")
        parser.add_argument("--batch-size", type=int, default=500, help="Logs read and written per transaction.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (for logs and scripts).")

    def handle(
        self,
        *args: object,
        project: str,
        status: str | None,
        after_id: int,
        batch_size: int,
        no_progress: bool,
        **opts: object,
    ) -> None:
        found = Project.objects.filter(slug=project).first()
        if found is None:
            raise CommandError(f"Project '{project}' not found.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        total = logs_to_reparse(project=found, status=status, after_id=after_id).count()
        bar = tqdm(total=total, unit="logs", desc=found.slug, disable=no_progress)
        read = changed = now_readable = unreadable = 0
        position = after_id
        try:
            while True:
                batch = logs_reparse_batch(project=found, after_id=position, size=batch_size, status=status)
                if batch.last_id is None:
                    break
                position, read, changed = batch.last_id, read + batch.read, changed + batch.changed
                now_readable, unreadable = now_readable + batch.now_readable, unreadable + batch.unreadable
                bar.update(batch.read)
                bar.set_postfix(last_id=position, changed=changed)
        except KeyboardInterrupt:
            bar.close()
            raise CommandError(f"Interrupted after log {position}: resume with --after-id {position}.") from None
        bar.close()
        detail = {"read": read, "now_readable": now_readable, "unreadable": unreadable, "status": status or ""}
        audit_record(project=found, action="logs.reparse", count=changed, detail=detail)
        self.stdout.write(
            f"Read {read:,} logs again: {changed:,} changed, {now_readable:,} unreadable logs are now readable, "
            f"{unreadable:,} are still unreadable."
        )
