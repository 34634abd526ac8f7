# The features of issues 15, 18 and 19 were built side by side, each with one migration after 0012;
# this joins them, with the conversation's model options that two of them set.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0013_attach"),
        ("chat", "0013_i18n"),
        ("chat", "0013_review"),
        ("chat", "0013_teams"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='conversation',
            options={'default_manager_name': 'objects', 'ordering': ['-updated_at'], 'verbose_name': 'conversation', 'verbose_name_plural': 'conversations'},
        ),
    ]
