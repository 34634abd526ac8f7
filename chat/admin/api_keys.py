"""API keys for staff: every user's keys (never a key itself, only its first characters); revoke them."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from chat.admin.model_admins import ReviewOnlyAdmin
from chat.models import ApiKey
from chat.services import api_key_revoke


@admin.register(ApiKey)
class ApiKeyAdmin(ReviewOnlyAdmin):
    """Staff see every user's API keys (never the key: only its first characters) and may revoke them."""

    owner_field = "user"
    list_display = ["name", "user", "key_prefix", "models", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), ("user", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    ordering = ["-created_at"]
    fields = ["user", "name", "key_prefix", "models", "created_at", "last_used_at", "expires_at", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke"]

    @admin.display(description=_("Key"))
    def key_prefix(self, api_key: ApiKey) -> str:
        return f"{api_key.prefix}…"

    @admin.display(description=_("Models"))
    def models(self, api_key: ApiKey) -> str:
        return ", ".join(api_key.allowed_models) or "all"

    @admin.action(description=_("Revoke selected API keys"), permissions=["view"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        keys = list(queryset.filter(revoked_at__isnull=True))
        for api_key in keys:
            api_key_revoke(api_key=api_key)
        self.message_user(request, _("Revoked %(count)s API key(s).") % {"count": len(keys)})
