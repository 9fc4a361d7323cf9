from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from curation.audit.services import audit_record
from curation.logs.pii.services import logs_pii_scan_batch
from curation.models import LogEntry, Project


class Command(BaseCommand):
    help = (
        "Find the personal data in a project's stored logs and fill their `pii` kinds (logs stored before "
        "ingestion recorded them), in batches by id, with a progress bar. Each batch is committed on its own: "
        "an interrupted scan is resumed with --after-id, and running it again changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--after-id", type=int, default=0, help="Resume: scan only logs with a greater id.")
        parser.add_argument("--batch-size", type=int, default=1000, help="Logs read and written per transaction.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (for logs and scripts).")

    def handle(
        self, *args: object, project: str, after_id: int, batch_size: int, no_progress: bool, **opts: object
    ) -> None:
        found = Project.objects.filter(slug=project).first()
        if found is None:
            raise CommandError(f"Project '{project}' not found.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        total = LogEntry.objects.filter(project=found, pk__gt=after_id).count()
        bar = tqdm(total=total, unit="logs", desc=found.slug, disable=no_progress)
        scanned = changed = 0
        position = after_id
        try:
            while True:
                batch = logs_pii_scan_batch(project=found, after_id=position, size=batch_size)
                if batch.last_id is None:
                    break
                position, scanned, changed = batch.last_id, scanned + batch.scanned, changed + batch.changed
                bar.update(batch.scanned)
                bar.set_postfix(last_id=position, changed=changed)
        except KeyboardInterrupt:
            bar.close()
            raise CommandError(f"Interrupted after log {position}: resume with --after-id {position}.") from None
        bar.close()
        audit_record(
            project=found, action="logs.pii_scan", count=changed, detail={"scanned": scanned, "after_id": after_id}
        )
        self.stdout.write(f"Scanned {scanned:,} logs; {changed:,} had their personal data kinds updated.")
