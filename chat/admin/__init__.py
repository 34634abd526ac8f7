"""Transcript review for staff, in Django's admin.

model_admins.py  the ModelAdmins: conversations, messages, the audit trail, the usage page
api_keys.py      the API keys' ModelAdmin: see and revoke
filters.py       list filters
selectors.py     reads: review lists, search, transcripts, usage
services.py      writes: the audit trail of who opened which transcript
exports.py       JSON and Markdown transcript exports
history_admins.py  share links and import jobs
groups.py        groups with their policy (models, limits, budgets), review scopes and retention inline; the price table
reviewing.py     review scopes (who may review which group's members)
retention.py     a group's retention, legal holds, purge records
"""

from chat.admin import api_keys, groups, history_admins, model_admins, retention  # noqa: F401 - registers the ModelAdmins
