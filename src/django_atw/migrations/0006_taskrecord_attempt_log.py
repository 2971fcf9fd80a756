from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_atw", "0005_api_tokens"),
    ]

    operations = [
        migrations.AddField(
            model_name="taskrecord",
            name="attempt_log",
            field=models.JSONField(blank=True, default=list, help_text="Failed attempts, oldest first."),
        ),
    ]
