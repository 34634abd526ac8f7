# The features of issues 15, 18 and 19 were built side by side, each with one migration after 0012;
# this joins them (it changes nothing in the schema).

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0013_attach"),
        ("chat", "0013_i18n"),
        ("chat", "0013_review"),
        ("chat", "0013_teams"),
    ]

    operations = []
