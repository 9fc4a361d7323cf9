from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('curation', '0006_importjob_heartbeat'),
    ]

    operations = [
        migrations.AddField(
            model_name='project',
            name='openai_base_url',
            field=models.URLField(default='https://api.openai.com/v1'),
        ),
        migrations.AddField(
            model_name='project',
            name='anthropic_base_url',
            field=models.URLField(default='https://api.anthropic.com'),
        ),
    ]
