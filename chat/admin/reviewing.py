"""Review scopes in the admin: on a group's page, the staff members who may review its members' transcripts."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from chat.models import ReviewScope


class ReviewScopeInline(admin.TabularInline):
    """Reviewers of a group: each may read the transcripts of the group's members (superusers only grant)."""

    model = ReviewScope
    fk_name = "group"
    extra = 0
    raw_id_fields = ["reviewer"]
    readonly_fields = ["granted_at"]
    verbose_name = _("reviewer of this group's members")
    verbose_name_plural = _("reviewers of this group's members")
