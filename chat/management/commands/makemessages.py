"""`manage.py makemessages`, which also finds the chat scripts' `t("…")`, `tf("…", {…})` and `tn(…)`.

The scripts call Django's window.gettext through these one-line helpers (static/chat/*.js), which
xgettext does not know as keywords; Django documents subclassing the command to add options.
"""

from django.core.management.commands import makemessages

KEYWORDS = ["--keyword=t", "--keyword=tf", "--keyword=tn:1,2"]


class Command(makemessages.Command):
    xgettext_options = [*makemessages.Command.xgettext_options, *KEYWORDS]
