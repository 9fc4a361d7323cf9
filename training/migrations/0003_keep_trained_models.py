"""A fine-tune outlives its dataset (dataset set null, its snapshot kept: curation 0012 lets snapshots outlive
datasets), and records when and by whom its weights were deleted."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('curation', '0012_keep_trained_models'),
        ('training', '0002_finetunejob_enqueued_at'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='finetunejob',
            name='weights_deleted_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='finetunejob',
            name='weights_deleted_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='finetunejob',
            name='weights_deleted_by_key',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='curation.apikey'),
        ),
        migrations.AlterField(
            model_name='finetunejob',
            name='dataset',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='finetunes', to='curation.dataset'),
        ),
        migrations.AlterField(
            model_name='finetunejob',
            name='snapshot',
            field=models.ForeignKey(on_delete=django.db.models.deletion.RESTRICT, related_name='finetunes', to='curation.datasetsnapshot'),
        ),
    ]
