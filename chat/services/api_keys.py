"""API keys for the OpenAI-compatible API: made (the key shown once), checked, revoked.

A key is `sc-` and 43 URL-safe characters from `secrets` (256 bits): so much entropy that a plain
SHA-256 of it, looked up by its digest, is as safe as a slow password hash and costs nothing per call.
Only the digest and the first characters (to recognise the key by) are stored.
"""

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.errors import ChatError
from chat.models import ApiKey
from chat.providers import registry

KEY_PREFIX = "sc-"
SHOWN_CHARS = 10  # `sc-` and 7 characters: enough to tell keys apart, far too few to guess the rest
NAME_MAX_CHARS = 100
MAX_EXPIRY_DAYS = 3650
# A key's last use is written at most this often: a burst of calls writes one row, not one per call.
LAST_USED_PRECISION = timedelta(seconds=60)


@dataclass(frozen=True)
class NewApiKey:
    """A key just made: `secret` is the key itself, which nothing keeps."""

    api_key: ApiKey
    secret: str


def api_key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _checked_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > NAME_MAX_CHARS or "\x00" in name:
        raise ChatError(
            "invalid", _("A key needs a name of 1 to %(max)s characters.") % {"max": NAME_MAX_CHARS}, field="name"
        )
    return " ".join(name.split())


def _checked_models(models: Iterable[object]) -> list[str]:
    offered = {model.ref for model in registry.available_models()}
    chosen = []
    for model in models:
        if not isinstance(model, str) or model not in offered:
            raise ChatError(
                "unknown_model",
                _("%(model)s is not a model this server offers.") % {"model": repr(model)},
                field="allowed_models",
            )
        if model not in chosen:
            chosen.append(model)
    return chosen


def _checked_expiry(expires_in_days: object) -> datetime | None:
    if expires_in_days is None:
        return None
    if not isinstance(expires_in_days, int) or isinstance(expires_in_days, bool):
        raise ChatError("invalid", _("The expiry must be a whole number of days."), field="expires_in_days")
    if not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise ChatError(
            "invalid", _("The expiry must be 1 to %(max)s days.") % {"max": MAX_EXPIRY_DAYS}, field="expires_in_days"
        )
    return timezone.now() + timedelta(days=expires_in_days)


def api_key_create(
    *, user: AbstractBaseUser, name: object, expires_in_days: object = None, allowed_models: Iterable[object] = ()
) -> NewApiKey:
    """A new key for `user`; its secret is in the result only. Nothing is written on bad input."""
    name = _checked_name(name)
    models = _checked_models(allowed_models)
    expires_at = _checked_expiry(expires_in_days)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=secret[:SHOWN_CHARS],
        digest=api_key_digest(secret),
        allowed_models=models,
        expires_at=expires_at,
    )
    return NewApiKey(api_key=api_key, secret=secret)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke the key: the next call with it is refused (keys are checked on every call)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=api_key.revoked_at)
    return api_key


def api_key_authenticate(*, secret: str) -> ApiKey:
    """The live key `secret` is, with its user loaded, or `invalid_api_key`: whether the key is unknown,
    revoked, expired or its user deactivated is not said."""
    now = timezone.now()
    api_key = None
    if secret.startswith(KEY_PREFIX):
        api_key = ApiKey.objects.select_related("user").filter(digest=api_key_digest(secret)).first()
    usable = (
        api_key is not None
        and api_key.revoked_at is None
        and (api_key.expires_at is None or api_key.expires_at > now)
        and api_key.user.is_active
    )
    if not usable:
        raise ChatError("invalid_api_key")
    if api_key.last_used_at is None or api_key.last_used_at < now - LAST_USED_PRECISION:
        api_key.last_used_at = now
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key


def api_key_model_check(*, api_key: ApiKey, model_ref: str) -> None:
    """`model_not_allowed` when the key is limited to other models."""
    if api_key.allowed_models and model_ref not in api_key.allowed_models:
        raise ChatError("model_not_allowed", f"This API key may not use {model_ref}.", field="model")
