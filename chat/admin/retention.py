"""Retention in the admin: a group's keep days (on its page), legal holds, and the record of every purge."""

from typing import Any

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from chat.models import GroupRetention, LegalHold, PurgeRecord


class GroupRetentionInline(admin.StackedInline):
    model = GroupRetention
    can_delete = False
    verbose_name = _("retention")
    verbose_name_plural = _("retention: how long members' conversations are kept after their last activity")


class SuperuserOnlyAdmin(admin.ModelAdmin):
    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_module_permission(request)


@admin.register(LegalHold)
class LegalHoldAdmin(SuperuserOnlyAdmin):
    """Superusers place holds (on a user or on one conversation) and lift them by deleting the hold."""

    list_display = ["placed_at", "user", "conversation", "reason", "placed_by"]
    raw_id_fields = ["user", "conversation"]
    search_fields = ["reason", "user__username"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_module_permission(request)

    def save_model(self, request: HttpRequest, obj: LegalHold, form: Any, change: bool) -> None:
        if not change:
            obj.placed_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(PurgeRecord)
class PurgeRecordAdmin(SuperuserOnlyAdmin):
    """What each purge deleted, as counts; nobody may alter the record."""

    list_display = ["purged_at", "via", "conversations", "messages", "shares", "extra"]
    list_filter = ["via"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
