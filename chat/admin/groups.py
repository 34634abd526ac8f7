"""Groups and what they allow: Django's Group admin with the group's policy (models, limits, money
budgets), who reviews its members and how long their conversations are kept, inline; and the price table."""

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.models import Group
from django.utils.translation import gettext_lazy as _

from chat.admin.retention import GroupRetentionInline
from chat.admin.reviewing import ReviewScopeInline
from chat.models import GroupPolicy, ModelPrice
from chat.providers import registry


class GroupPolicyForm(forms.ModelForm):
    """The allowed models as checkboxes of the models this server offers (none ticked: every model)."""

    allowed_models = forms.MultipleChoiceField(
        label=_("Allowed models"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: every model the server offers."),
    )

    class Meta:
        model = GroupPolicy
        fields = [
            "allowed_models",
            "messages_per_minute",
            "max_running",
            "daily_token_budget",
            "daily_cost_budget",
            "monthly_cost_budget",
            "group_daily_cost_budget",
            "group_monthly_cost_budget",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        offered = [(model.ref, f"{model.label} ({model.ref})") for model in registry.available_models()]
        kept = [(ref, ref) for ref in (self.instance.allowed_models or []) if ref not in dict(offered)]
        self.fields["allowed_models"].choices = offered + kept


class GroupPolicyInline(admin.StackedInline):
    model = GroupPolicy
    form = GroupPolicyForm
    can_delete = True
    max_num = 1
    verbose_name = _("policy: models and limits")
    verbose_name_plural = _("policy: models and limits")
    fieldsets = [
        (None, {"fields": ["allowed_models"]}),
        (
            _("Limits of each member (empty: the global default; 0: no limit)"),
            {"fields": ["messages_per_minute", "max_running", "daily_token_budget"]},
        ),
        (
            _("Money budgets (CHAT_CURRENCY)"),
            {
                "fields": [
                    ("daily_cost_budget", "monthly_cost_budget"),
                    ("group_daily_cost_budget", "group_monthly_cost_budget"),
                ],
                "description": _(
                    "The first two are each member's own spend; the last two the whole group's together. "
                    "A member's effective limits are the most generous of their groups'."
                ),
            },
        ),
    ]


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(DjangoGroupAdmin):
    inlines = [GroupPolicyInline, ReviewScopeInline, GroupRetentionInline]


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Prices per million tokens. Add a row with a later `effective from` to change a price: replies keep
    the price of the moment they were sent."""

    list_display = [
        "model",
        "effective_from",
        "input_per_million",
        "output_per_million",
        "cached_read_per_million",
        "cache_write_per_million",
        "reasoning_per_million",
    ]
    list_filter = ["model"]
    search_fields = ["model"]
    date_hierarchy = "effective_from"
