"""The admin's list filters: each exact-match choice list is read off an index, never counted."""

from typing import Any

from django.contrib import admin
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from chat.admin.selectors import conversation_api_keys, conversation_models, message_distinct_values
from chat.models import Feedback, Message


class MessageValueFilter(admin.SimpleListFilter):
    """Exact match on one message field; choices are its non-blank values, read off an index."""

    def values(self) -> set[str]:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(value, value) for value in sorted(self.values() - {""})]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(**{self.parameter_name: self.value()}) if self.value() else queryset


class MessageErrorCodeFilter(MessageValueFilter):
    title = _("error code")
    parameter_name = "error_code"

    def values(self) -> set[str]:
        return {code for (code,) in message_distinct_values(fields=["error_code"])}


class MessageProviderFilter(MessageValueFilter):
    title = _("provider")
    parameter_name = "provider"

    def values(self) -> set[str]:
        return {provider for provider, _ in message_distinct_values(fields=["provider", "model"])}


class MessageModelFilter(MessageValueFilter):
    title = _("model")
    parameter_name = "model"

    def values(self) -> set[str]:
        return {model for _, model in message_distinct_values(fields=["provider", "model"])}


class LastActivityFilter(admin.DateFieldListFilter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = _("last activity")


class ConversationProviderFilter(admin.SimpleListFilter):
    title = _("provider")
    parameter_name = "provider"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        providers = sorted({reference.partition(":")[0] for reference in conversation_models()})
        return [(provider, provider) for provider in providers]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(model__startswith=f"{self.value()}:") if self.value() else queryset


class ConversationApiKeyFilter(admin.SimpleListFilter):
    title = _("API key")
    parameter_name = "api_key"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            (str(key.pk), f"{key.name} ({key.prefix}…, {key.user})")
            for key in conversation_api_keys(reviewer=request.user)
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(api_key_id=int(value)) if value and value.isdigit() else queryset


class ConversationModelFilter(admin.SimpleListFilter):
    title = _("model")
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(reference, reference) for reference in conversation_models()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(model=self.value()) if self.value() else queryset


class LastStatusFilter(admin.SimpleListFilter):
    title = _("last status")
    parameter_name = "last_status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return Message.Status.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(last_status=self.value()) if self.value() else queryset


class FeedbackFilter(admin.SimpleListFilter):
    title = _("feedback")
    parameter_name = "feedback"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [*Feedback.Rating.choices, ("any", _("Any feedback")), ("none", _("No feedback"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        given = Feedback.objects.filter(message=OuterRef("pk"))
        if self.value() in Feedback.Rating.values:
            return queryset.filter(Exists(given.filter(rating=self.value())))
        if self.value() in ("any", "none"):
            return queryset.filter(Exists(given)) if self.value() == "any" else queryset.exclude(Exists(given))
        return queryset


class SupersededFilter(admin.SimpleListFilter):
    title = _("superseded")
    parameter_name = "superseded"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", _("Superseded")), ("no", _("Current"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(superseded_at__isnull=self.value() == "no")
        return queryset
