"""Staff see the users' share links (and may revoke them) and import jobs; nobody edits them here."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from chat import services
from chat.admin.model_admins import ReviewOnlyAdmin
from chat.admin.selectors import without_owner_deleted
from chat.models import ImportJob, ShareLink


@admin.register(ShareLink)
class ShareLinkAdmin(ReviewOnlyAdmin):
    list_display = ["title", "owner", "created_at", "expires_at", "revoked_at", "message_count"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), ("expires_at", admin.EmptyFieldListFilter)]
    search_fields = ["title", "owner__username"]
    list_select_related = ["owner"]
    exclude = ["token"]  # the link itself: staff review what is shared, they do not get to open it as a visitor
    readonly_fields = ["title", "owner", "conversation", "snapshot", "created_at", "expires_at", "revoked_at"]
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ShareLink]:
        # A conversation its owner deleted under a legal hold is a record only: its snapshots are not shown.
        return without_owner_deleted(super().get_queryset(request))

    @admin.display(description=_("Messages"))
    def message_count(self, share: ShareLink) -> int:
        return len(share.snapshot)

    @admin.action(description=_("Revoke the selected links"))
    def revoke(self, request: HttpRequest, queryset: QuerySet[ShareLink]) -> None:
        for share in queryset:
            services.share_revoke(share=share)


@admin.register(ImportJob)
class ImportJobAdmin(ReviewOnlyAdmin):
    list_display = ["created_at", "owner", "kind", "filename", "status", "created", "skipped", "error_code"]
    list_filter = ["status", "kind"]
    search_fields = ["owner__username", "filename"]
    list_select_related = ["owner"]
    exclude = ["payload"]
    readonly_fields = [
        "owner",
        "kind",
        "filename",
        "status",
        "total",
        "done",
        "created",
        "skipped",
        "error_code",
        "error_message",
        "created_at",
        "finished_at",
    ]
