"""Trained models outlive their dataset, and entries remember a deleted source log.

A snapshot gets its own project (copied from its dataset here) and keeps the dataset's name, so the one a
fine-tune trained on can stay when the dataset is deleted. An entry whose log is deleted records which log it
was, when, and who deleted it. A bulk job records the API key that asked for it."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def snapshots_project_from_dataset(apps, schema_editor):
    Dataset = apps.get_model("curation", "Dataset")
    DatasetSnapshot = apps.get_model("curation", "DatasetSnapshot")
    DatasetSnapshot.objects.update(
        project_id=Subquery(Dataset.objects.filter(pk=OuterRef("dataset_id")).values("project_id")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("curation", "0011_redaction_job"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="datasetsnapshot",
            name="project",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="snapshots",
                to="curation.project",
            ),
        ),
        migrations.RunPython(snapshots_project_from_dataset, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="datasetsnapshot",
            name="project",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="snapshots", to="curation.project"
            ),
        ),
        migrations.AlterField(
            model_name="datasetsnapshot",
            name="dataset",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="snapshots",
                to="curation.dataset",
            ),
        ),
        migrations.AddField(
            model_name="datasetsnapshot",
            name="dataset_name",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name="datasetentry",
            name="source_log_id",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="datasetentry",
            name="source_deleted_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="datasetentry",
            name="source_deleted_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="datasetentry",
            name="source_deleted_by_key",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="curation.apikey",
            ),
        ),
        migrations.AddField(
            model_name="bulkjob",
            name="api_key",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="curation.apikey",
            ),
        ),
    ]
