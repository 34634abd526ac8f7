"""Transcript review for staff: read-only conversations and messages, exports, usage, and an audit trail.

Access: superusers review everyone; other active staff review only the members of the groups they hold a
review scope on (chat.review), every other row answering 404 as if it did not exist; nobody may add or
change history from here; only superusers may delete; only superusers see who opened which transcript.
"""

import csv
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from chat.admin import charts
from chat.admin.exports import transcript_export_json, transcript_export_markdown
from chat.admin.filters import (
    ConversationApiKeyFilter,
    ConversationModelFilter,
    ConversationProviderFilter,
    FeedbackFilter,
    LastActivityFilter,
    LastStatusFilter,
    MessageErrorCodeFilter,
    MessageModelFilter,
    MessageProviderFilter,
    SupersededFilter,
)
from chat.admin.selectors import (
    UsageSummary,
    conversation_review_queryset,
    conversation_search,
    transcript_messages,
    transcript_tree,
    transcripts_for_export,
    usage_summary_for_period,
    without_owner_deleted,
)
from chat.admin.services import transcript_view_record
from chat.attachments_api import file_response
from chat.models import Attachment, Conversation, Message, TranscriptView
from chat.review import reviewable


class ReviewOnlyAdmin(admin.ModelAdmin):
    """Staff may look at the rows of the users they may review (`owner_field`); history cannot be added to
    or changed here; deleting is for superusers. A row out of scope is a 404 on every route."""

    owner_field: str | None = "owner"  # the path to the user whose row it is; None: no owner (superusers only)
    show_facets = admin.ShowFacets.NEVER  # facet counts are a COUNT per filter choice: too dear at scale
    show_full_result_count = False  # spares a COUNT(*) over the whole table on every filtered page

    def may_view(self, user: Any) -> bool:
        return user.is_active and user.is_staff

    def may_delete(self, user: Any) -> bool:
        return user.is_active and user.is_superuser

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.may_view(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.may_view(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.may_delete(request.user)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return self.in_scope(request, super().get_queryset(request))

    def in_scope(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.owner_field is None:
            return queryset if request.user.is_superuser else queryset.none()
        return reviewable(queryset, reviewer=request.user, owner_field=self.owner_field)

    def _in_scope_or_404(self, request: HttpRequest, object_ids: list[str]) -> None:
        """Out of scope answers exactly like missing (the admin's own answer would be a redirect)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        wanted = {unquote(object_id) for object_id in object_ids}
        try:
            found = self.get_queryset(request).filter(pk__in=wanted).count()
        except (ValueError, TypeError):  # not an id at all
            found = -1
        if found != len(wanted):
            raise Http404("No such object.")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        self._in_scope_or_404(request, [object_id])
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        self._in_scope_or_404(request, [object_id])
        return super().delete_view(request, object_id, extra_context)

    def history_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        self._in_scope_or_404(request, [object_id])
        return super().history_view(request, object_id, extra_context)

    def response_action(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """An action (an export) naming any row out of scope is a 404, not an export of the rest."""
        self._in_scope_or_404(request, request.POST.getlist(ACTION_CHECKBOX_NAME))
        return super().response_action(request, queryset)

    class Media:
        css = {"all": ["admin_transcript.css"]}


def _deleted_by_owner(conversation: Conversation) -> str:
    moment = timezone.localtime(conversation.deleted_by_owner_at)
    return gettext("Deleted by its owner on %(date)s (kept for a legal hold)") % {"date": f"{moment:%Y-%m-%d %H:%M}"}


def _tokens(count: int | None, estimated: bool) -> str:
    return f"~{count or 0:,}" if estimated else f"{count or 0:,}"


class UsagePeriodForm(forms.Form):
    start = forms.DateField(label=_("From"), widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("To"), widget=forms.DateInput(attrs={"type": "date"}))

    @classmethod
    def for_request(cls, request: HttpRequest) -> "UsagePeriodForm":
        """Bound to the query string, or to the last 30 days when the page is first opened."""
        if "start" in request.GET or "end" in request.GET:
            return cls(request.GET)
        today = timezone.localdate()
        return cls({"start": today - timedelta(days=29), "end": today})

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("start") and cleaned.get("end") and cleaned["start"] > cleaned["end"]:
            raise forms.ValidationError(_("The period must start on or before its last day."))
        return cleaned


ExportRenderer = Callable[..., str]
EXPORT_FORMATS: dict[str, tuple[ExportRenderer, str, str]] = {
    TranscriptView.Via.JSON: (transcript_export_json, "application/json; charset=utf-8", "json"),
    TranscriptView.Via.MARKDOWN: (transcript_export_markdown, "text/markdown; charset=utf-8", "md"),
}


@admin.register(Conversation)
class ConversationAdmin(ReviewOnlyAdmin):
    list_display = [
        "conversation_title",
        "owner",
        "source_label",
        "model",
        "message_count",
        "tokens_in",
        "tokens_out",
        "last_status",
        "last_activity",
    ]
    list_filter = [
        ("owner", admin.RelatedOnlyFieldListFilter),
        "source",
        ConversationApiKeyFilter,
        ConversationProviderFilter,
        ConversationModelFilter,
        LastStatusFilter,
        ("updated_at", LastActivityFilter),
    ]
    list_select_related = ["owner"]
    search_fields = ["title"]  # shows the search box; get_search_results also searches message content
    search_help_text = _("Titles and message content. Several words must all match; quote a phrase.")
    date_hierarchy = "created_at"
    ordering = ["-updated_at"]
    list_per_page = 50
    fields = [
        "owner",
        "title",
        "source_label",
        "model",
        "parameters_set",
        "created_at",
        "last_activity",
        "message_count",
        "tokens_in",
        "tokens_out",
    ]
    readonly_fields = fields
    actions = ["export_json", "export_markdown"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return self.in_scope(request, conversation_review_queryset())

    def get_fields(self, request: HttpRequest, obj: Conversation | None = None) -> list[str]:
        if obj is not None and obj.deleted_by_owner_at:  # a record: who, when, how much; no content
            return [name for name in self.fields if name not in ("title", "parameters_set")]
        return self.fields

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        return conversation_search(conversations=queryset, query=search_term), False

    @admin.display(description=_("Title"), ordering="title")
    def conversation_title(self, conversation: Conversation) -> str:
        if conversation.deleted_by_owner_at:
            return _deleted_by_owner(conversation)
        return str(conversation)

    @admin.display(description=_("Source"), ordering="source")
    def source_label(self, conversation: Conversation) -> str:
        if conversation.source == Conversation.Source.API:
            key = conversation.api_key_name or _("deleted key")
            return f"API · {key}"
        return conversation.get_source_display()

    @admin.display(description=_("Parameters"))
    def parameters_set(self, conversation: Conversation) -> str:
        return conversation.parameter_summary or _("defaults")

    @admin.display(description=_("Messages"), ordering="message_count")
    def message_count(self, conversation: Conversation) -> int:
        return conversation.message_count

    @admin.display(description=_("Tokens in"), ordering="tokens_in")
    def tokens_in(self, conversation: Conversation) -> str:
        return _tokens(conversation.tokens_in, conversation.tokens_estimated)

    @admin.display(description=_("Tokens out"), ordering="tokens_out")
    def tokens_out(self, conversation: Conversation) -> str:
        return _tokens(conversation.tokens_out, conversation.tokens_estimated)

    @admin.display(description=_("Last status"), ordering="last_status")
    def last_status(self, conversation: Conversation) -> str:
        return Message.Status(conversation.last_status).label if conversation.last_status else "-"

    @admin.display(description=_("Last activity"), ordering="updated_at")
    def last_activity(self, conversation: Conversation) -> str:
        # Formatted here: a readonly field shows a method's datetime as str() (microseconds and all).
        return date_format(timezone.localtime(conversation.updated_at), "DATETIME_FORMAT")

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict,
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Conversation | None = None,
    ) -> HttpResponse:
        if obj is not None:
            transcript_view_record(viewer=request.user, conversations=[obj], via=TranscriptView.Via.PAGE)
            context["audit_url"] = self._audit_url(request, obj)
        if obj is not None and obj.deleted_by_owner_at:  # kept for a legal hold: a record, not the content
            context["deleted_by_owner"] = _deleted_by_owner(obj)
        elif obj is not None:
            context["transcript"] = transcript_tree(conversation=obj, messages=transcript_messages(conversation=obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _audit_url(self, request: HttpRequest, conversation: Conversation) -> str | None:
        if not request.user.is_superuser:
            return None
        return reverse("admin:chat_transcriptview_changelist") + f"?conversation__id__exact={conversation.pk}"

    @admin.action(description=_("Export selected conversations as JSON"), permissions=["view"])
    def export_json(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        return self._export(request, queryset, TranscriptView.Via.JSON)

    @admin.action(description=_("Export selected conversations as Markdown"), permissions=["view"])
    def export_markdown(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        return self._export(request, queryset, TranscriptView.Via.MARKDOWN)

    def _export(self, request: HttpRequest, queryset: QuerySet[Conversation], via: TranscriptView.Via) -> HttpResponse:
        render, content_type, extension = EXPORT_FORMATS[via]
        conversations = transcripts_for_export(conversations=queryset)
        transcript_view_record(viewer=request.user, conversations=conversations, via=via)
        now = timezone.now()
        body = render(conversations=conversations, exported_by=request.user.get_username(), exported_at=now)
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="transcripts-{now:%Y%m%d-%H%M%S}.{extension}"'
        return response

    def get_urls(self) -> list[URLPattern]:
        usage = path("usage/", self.admin_site.admin_view(self.usage_view), name="chat_conversation_usage")
        file = path(
            "attachments/<int:pk>/", self.admin_site.admin_view(self.attachment_view), name="chat_attachment_file"
        )
        return [usage, file, *super().get_urls()]

    def attachment_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """A file of a transcript, to staff who may review its owner (out of scope answers like missing);
        recorded like opening the transcript (via `attachment`). Served as the owner gets it: inline only
        for images and thumbnails."""
        if not self.has_view_permission(request):
            raise Http404
        reviewable_conversations = self.get_queryset(request)
        attachment = (
            Attachment.objects.select_related("conversation")
            .filter(pk=pk, conversation__in=reviewable_conversations)
            .first()
        )
        if attachment is None:
            raise Http404
        thumbnail = request.GET.get("thumbnail") == "1" and bool(attachment.thumbnail_name)
        if not thumbnail:  # thumbnails are part of the page already recorded
            transcript_view_record(
                viewer=request.user, conversations=[attachment.conversation], via=TranscriptView.Via.ATTACHMENT
            )
        return file_response(attachment, thumbnail=thumbnail, inline=request.GET.get("inline") == "1")

    def usage_view(self, request: HttpRequest) -> HttpResponse:
        """The usage dashboard (`?format=csv`: its rows as CSV)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = UsagePeriodForm.for_request(request)
        summary = usage_summary_for_period(**form.cleaned_data, reviewer=request.user) if form.is_valid() else None
        if summary is not None and request.GET.get("format") == "csv":
            return usage_csv(summary)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Usage dashboard"),
            "form": form,
            "summary": summary,
            "charts": usage_charts(summary) if summary is not None else None,
            "currency": settings.CHAT_CURRENCY,
            "csv_query": f"{request.GET.urlencode()}&format=csv" if request.GET else "format=csv",
            "media": self.media,
        }
        return TemplateResponse(request, "admin/chat/usage_summary.html", context)


def usage_charts(summary: UsageSummary) -> dict[str, SafeString]:
    """The dashboard's SVG charts: cost and tokens by day, tokens by model, cost of the top users."""
    currency = settings.CHAT_CURRENCY
    return {
        "cost_by_day": charts.columns(
            [(f"{row.day:%Y-%m-%d}", row.cost) for row in summary.by_day], title=_("Cost by day"), unit=currency
        ),
        "tokens_by_day": charts.columns(
            [(f"{row.day:%Y-%m-%d}", row.tokens_in + row.tokens_out) for row in summary.by_day],
            title=_("Tokens by day"),
            unit=_("tokens"),
        ),
        "tokens_by_model": charts.rows(
            [(row.model, row.tokens_in + row.tokens_out) for row in summary.by_model],
            title=_("Tokens by model"),
            unit=_("tokens"),
        ),
        "cost_by_user": charts.rows(
            [(row.username, row.cost) for row in summary.top_users], title=_("Top users by cost"), unit=currency
        ),
    }


COST_PLACES = Decimal("0.00000001")  # as stored: SQLite's sums drop trailing zeros, PostgreSQL's keep them
CSV_HEADER = ["day", "user", "groups", "model", "messages", "replies", "tokens_in", "tokens_out", "cost", "failures"]


def usage_csv(summary: UsageSummary) -> HttpResponse:
    """The dashboard's grouped rows, one a day, user and model (the model empty for users' own messages)."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="usage-{summary.start}-{summary.end}.csv"'
    groups = {row.user_id: ";".join(row.groups) for row in summary.rows}
    writer = csv.writer(response)
    writer.writerow(CSV_HEADER)
    for cell in sorted(summary.cells, key=lambda cell: (cell.day, cell.username, cell.model)):
        writer.writerow(
            [
                cell.day.isoformat(),
                _csv_safe(cell.username),
                _csv_safe(groups.get(cell.user_id, "")),
                _csv_safe(cell.model),
                cell.messages,
                cell.assistant_replies,
                cell.tokens_in,
                cell.tokens_out,
                cell.cost.quantize(COST_PLACES),
                cell.failures,
            ]
        )
    return response


def _csv_safe(text: str) -> str:
    """A name a spreadsheet would run as a formula (`=`, `+`, `-`, `@`) is quoted with an apostrophe."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@admin.register(Message)
class MessageAdmin(ReviewOnlyAdmin):
    list_display = [
        "id",
        "conversation_link",
        "owner",
        "role",
        "status",
        "provider",
        "model",
        "error_code",
        "tokens",
        "created_at",
        "excerpt",
        "superseded",
    ]
    list_filter = [
        "status",
        MessageErrorCodeFilter,
        MessageProviderFilter,
        MessageModelFilter,
        "role",
        SupersededFilter,
        FeedbackFilter,
        ("created_at", admin.DateFieldListFilter),
    ]
    owner_field = "conversation__owner"
    list_select_related = ["conversation__owner"]
    search_fields = ["content"]
    search_help_text = _("Message content. Several words must all match; quote a phrase.")
    ordering = ["-id"]
    list_per_page = 50

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        # A conversation its owner deleted under a legal hold is a record only: none of its messages is shown.
        return without_owner_deleted(super().get_queryset(request))

    @admin.display(description=_("Conversation"), ordering="conversation")
    def conversation_link(self, message: Message) -> str:
        url = reverse("admin:chat_conversation_change", args=[message.conversation_id])
        return format_html('<a href="{}#message-{}">{}</a>', url, message.pk, message.conversation)

    @admin.display(description=_("Owner"), ordering="conversation__owner")
    def owner(self, message: Message) -> str:
        return message.conversation.owner.get_username()

    @admin.display(description=_("Tokens in / out"))
    def tokens(self, message: Message) -> str:
        estimated = message.tokens_estimated
        return f"{_tokens(message.input_tokens, estimated)} / {_tokens(message.output_tokens, estimated)}"

    @admin.display(description=_("Content"))
    def excerpt(self, message: Message) -> str:
        return Truncator(message.content).chars(80)

    @admin.display(description=_("Superseded"), boolean=True, ordering="superseded_at")
    def superseded(self, message: Message) -> bool:
        return message.superseded_at is not None


@admin.register(TranscriptView)
class TranscriptViewAdmin(ReviewOnlyAdmin):
    """Who opened or exported which transcript: superusers only, and nobody may alter it."""

    list_display = ["viewed_at", "viewer_username", "conversation_link", "via"]
    list_filter = ["via", ("viewer", admin.RelatedOnlyFieldListFilter), ("viewed_at", admin.DateFieldListFilter)]
    search_fields = ["viewer_username", "conversation_label"]
    owner_field = None

    def may_view(self, user: Any) -> bool:
        return user.is_active and user.is_superuser

    def may_delete(self, user: Any) -> bool:
        return False

    @admin.display(description=_("Conversation"), ordering="conversation_label")
    def conversation_link(self, view: TranscriptView) -> str:
        if view.conversation_id is None:
            return f"{view.conversation_label} (deleted)"
        url = reverse("admin:chat_conversation_change", args=[view.conversation_id])
        return format_html('<a href="{}">{}</a>', url, view.conversation_label)
