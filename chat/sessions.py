"""Live connections follow the login session that opened them: logout closes them at once, and an
expired, flushed or password-changed session is noticed by a periodic re-check."""

import logging
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import auth
from django.http import HttpRequest

from chat import events

logger = logging.getLogger(__name__)


def session_user_is(*, session_key: str | None, user_id: int) -> bool:
    """Whether this session, read afresh from its store, still logs in this (active) user.

    Django's own `get_user` does the checks: the session exists and has not expired, the user is
    active, and the session's auth hash still matches (a password change ends other sessions).
    """
    if not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = auth.get_user(SimpleNamespace(session=store))
    return user.is_authenticated and user.pk == user_id


def ended_on_logout(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """`user_logged_out` receiver: every socket of this session closes (other sessions stay open)."""
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is None or not session_key:
        return
    try:
        async_to_sync(events.publish_session_ended)(user_id=user.pk, session_key=session_key)
    except Exception:  # noqa: BLE001 - logout must succeed; the periodic re-check closes them later
        logger.warning("could not tell live connections that a session ended", exc_info=True)
