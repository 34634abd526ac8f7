"""Share links: create one for a conversation's current path, revoke it, and copy a shared snapshot
into the viewer's own new conversation ("continue in my account")."""

import secrets
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chat import selectors
from chat.errors import ChatError
from chat.models import Conversation, Message, ShareLink, stored_parts
from chat.services.conversations import conversation_create, conversation_leaf_set
from chat.services.search_index import search_index_messages

TOKEN_BYTES = 32  # 256 random bits: a link cannot be guessed, only given
EXPIRY_MAX_DAYS = 365


def _expiry(expires_in_days: object) -> datetime | None:
    if expires_in_days is None:
        return None
    whole = isinstance(expires_in_days, int) and not isinstance(expires_in_days, bool)
    if not whole or not 1 <= expires_in_days <= EXPIRY_MAX_DAYS:
        raise ChatError(
            "invalid",
            _("`expires_in_days` must be a whole number of days from 1 to %(max)s.") % {"max": EXPIRY_MAX_DAYS},
        )
    return timezone.now() + timedelta(days=expires_in_days)


def snapshot_of(messages: list[Message]) -> list[dict[str, Any]]:
    """What a shared page shows of each message: role, model, visible parts. No ids, no usage."""
    return [
        {"role": message.role, "model": message.model_reference or None, "parts": message.part_list()}
        for message in messages
        if message.part_list()
    ]


def share_create(*, conversation: Conversation, expires_in_days: object = None) -> ShareLink:
    """A new link to the conversation's current path as it is now (a running reply: its text so far)."""
    expires_at = _expiry(expires_in_days)
    snapshot = snapshot_of(selectors.path_for(conversation=conversation).messages)
    if not snapshot:
        raise ChatError("invalid", _("This conversation has nothing to share yet."))
    return ShareLink.objects.create(
        token=secrets.token_urlsafe(TOKEN_BYTES),
        owner_id=conversation.owner_id,
        conversation=conversation,
        title=conversation.title,
        snapshot=snapshot,
        expires_at=expires_at,
    )


def share_revoke(*, share: ShareLink) -> ShareLink:
    """The link stops working at once (and for good); revoking twice changes nothing."""
    if share.revoked_at is None:
        share.revoked_at = timezone.now()
        ShareLink.objects.filter(pk=share.pk, revoked_at=None).update(revoked_at=share.revoked_at)
    return share


def share_copy(*, share: ShareLink, owner: AbstractBaseUser) -> Conversation:
    """A new conversation of the viewer's, with the snapshot's messages as its one branch (the
    server's default model: the sharer's may not be offered to them)."""
    with transaction.atomic():
        conversation = conversation_create(owner=owner, title=share.title)
        parent_id = None
        created = []
        for item in share.snapshot:
            message = Message.objects.create(
                conversation=conversation,
                parent_id=parent_id,
                role=item["role"],
                model=item.get("model") or "",
                provider=(item.get("model") or "").partition(":")[0],
                **_stored(item["parts"]),
            )
            created.append(message.pk)
            parent_id = message.pk
        conversation_leaf_set(conversation=conversation, leaf_id=parent_id)
        search_index_messages(message_ids=created)
    return conversation


def _stored(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return stored_parts([{"kind": part["kind"], "text": part["text"]} for part in parts])
