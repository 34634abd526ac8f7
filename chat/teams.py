"""Groups: the models a user may use and the limits that apply to them.

A user's effective limits are the most generous of their groups' policies (a field a policy leaves
empty is the global default for that group); a user in no group with a policy has the global defaults.
For a limit, 0 means none, and none beats any number. Every figure is read from the database, so
every server process and worker sees the same, within CHAT_LIMITS_CACHE_SECONDS: a process keeps the
group policies it read for a user that long (every send needs them), and forgets them at once when a
policy or a group membership changes in that process (`policies_forget`, connected in chat/apps.py).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils.translation import gettext as _

from chat import rows
from chat.errors import ChatError
from chat.models import GroupPolicy


@dataclass(frozen=True)
class PooledBudget:
    """A group's money budget shared by all its members (None: the group has none for that period)."""

    group_id: int
    daily: Decimal | None
    monthly: Decimal | None


@dataclass(frozen=True)
class EffectiveLimits:
    """What applies to one user. `allowed_models` None: every model offered. A limit of 0: none."""

    allowed_models: frozenset[str] | None
    messages_per_minute: int
    max_running: int
    daily_token_budget: int
    daily_cost_budget: Decimal
    monthly_cost_budget: Decimal
    pooled: tuple[PooledBudget, ...] = ()

    @property
    def has_money_budget(self) -> bool:
        return bool(self.daily_cost_budget or self.monthly_cost_budget) or any(
            pool.daily or pool.monthly for pool in self.pooled
        )

    def allows(self, model_ref: str) -> bool:
        return self.allowed_models is None or model_ref in self.allowed_models


def _defaults() -> EffectiveLimits:
    return EffectiveLimits(
        allowed_models=None,
        messages_per_minute=settings.CHAT_MESSAGES_PER_MINUTE,
        max_running=settings.CHAT_MAX_CONCURRENT_PER_USER,
        daily_token_budget=settings.CHAT_DAILY_TOKEN_BUDGET,
        daily_cost_budget=settings.CHAT_DAILY_COST_BUDGET,
        monthly_cost_budget=settings.CHAT_MONTHLY_COST_BUDGET,
    )


def most_generous(values: list[int | Decimal]) -> int | Decimal:
    """The most generous of some limits: 0 (no limit) if any is, else the largest."""
    return 0 if any(value == 0 for value in values) else max(values)


def _of(policy: GroupPolicy, field: str, default: int | Decimal) -> int | Decimal:
    value = getattr(policy, field)
    return default if value is None else value


# The clock of the policy cache (seconds); tests replace it.
clock: Callable[[], float] = time.monotonic
# At most this many users' policies are kept: the users of the last few seconds, not every user ever.
POLICY_CACHE_USERS = 10_000
# user id -> (read at, their groups' policies)
_policies: dict[int, tuple[float, tuple[GroupPolicy, ...]]] = {}


# `GroupPolicy.objects.filter(group__user__id=user_id).order_by("pk")`, written out (chat/rows.py): read
# at every user's first send and claim in a cache window, on the database thread every send waits for.
@cache
def _policies_of_user() -> str:
    policies, members = GroupPolicy._meta.db_table, get_user_model().groups.through._meta.db_table
    return f"JOIN {members} member ON member.group_id = {policies}.group_id WHERE member.user_id = %s ORDER BY {policies}.id"


def _policies_of(user_id: int) -> tuple[GroupPolicy, ...]:
    """The user's groups' policies: one query, or none within CHAT_LIMITS_CACHE_SECONDS of the last."""
    now, ttl = clock(), settings.CHAT_LIMITS_CACHE_SECONDS
    cached = _policies.get(user_id)
    if cached is not None and now - cached[0] < ttl:
        return cached[1]
    policies = tuple(rows.read(GroupPolicy, _policies_of_user(), [user_id]))
    if ttl > 0:
        if len(_policies) >= POLICY_CACHE_USERS:
            _policies.clear()
        _policies[user_id] = (now, policies)
    return policies


def policies_forget(**_: Any) -> None:
    """A policy, a group or a membership changed: every user's policies are read again at their next use."""
    _policies.clear()


def limits_for(*, user_id: int) -> EffectiveLimits:
    """The user's effective limits: one query, none while their policies are cached."""
    defaults = _defaults()
    policies = _policies_of(user_id)
    if not policies:
        return defaults
    limits = {
        field: most_generous([_of(policy, field, getattr(defaults, field)) for policy in policies])
        for field in ("messages_per_minute", "max_running", "daily_token_budget")
        + ("daily_cost_budget", "monthly_cost_budget")
    }
    # Any group allowing every model allows every model; else the union of what the groups allow.
    lists = [policy.allowed_models for policy in policies]
    allowed = None if any(not models for models in lists) else frozenset(ref for models in lists for ref in models)
    pooled = tuple(
        PooledBudget(policy.group_id, policy.group_daily_cost_budget, policy.group_monthly_cost_budget)
        for policy in policies
    )
    return EffectiveLimits(allowed_models=allowed, pooled=pooled, **limits)


def model_check(*, user_id: int, model_ref: str) -> None:
    """`model_not_allowed` when none of the user's groups may use the model."""
    if not limits_for(user_id=user_id).allows(model_ref):
        raise ChatError("model_not_allowed", _("Your groups may not use %(model)s.") % {"model": model_ref})


def models_allowed(*, user_id: int, offered: list) -> list:
    """The offered models (registry ModelInfo) the user may use, in the order given."""
    limits = limits_for(user_id=user_id)
    return [model for model in offered if limits.allows(model.ref)]
