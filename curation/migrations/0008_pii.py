from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('curation', '0007_project_proxy_upstreams'),
    ]

    operations = [
        migrations.AddField(
            model_name='project',
            name='redact_pii_on_ingest',
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name='logentry',
            name='pii',
            field=models.JSONField(blank=True, default=list),
        ),
    ]
