from datetime import UTC, datetime

from django.db import migrations
from django.db.models import F, Q

# The range curation.ingest.times accepts, written out: a migration does not change when the code does.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def log_times_into_range(apps, schema_editor) -> None:  # noqa: ANN001
    """Logs stored before times were bounded may hold one Python cannot read (year 10000 or 1 BC in UTC), which
    made every page listing them fail. They get their arrival time, as a kept unreadable log with such a time
    does now; the time as sent stays in the original. Nothing is read into Python: one UPDATE."""
    LogEntry = apps.get_model("curation", "LogEntry")
    outside = Q(created_at__lt=EARLIEST) | Q(created_at__gt=LATEST)
    LogEntry.objects.using(schema_editor.connection.alias).filter(outside).update(created_at=F("ingested_at"))


class Migration(migrations.Migration):

    dependencies = [
        ("curation", "0014_bulkjob_heartbeat"),
    ]

    operations = [
        migrations.RunPython(log_times_into_range, migrations.RunPython.noop, elidable=True),
    ]
