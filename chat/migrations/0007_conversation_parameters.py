from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0006_message_usage_details"),
    ]

    operations = [
        migrations.AddField(
            model_name="conversation",
            name="parameters",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
