"""Reads: every query the chat features make, each scoped to its owner."""

from collections.abc import Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, OuterRef, QuerySet

from chat.errors import ChatError
from chat.models import ApiKey, Conversation, Message


def _active_replies() -> QuerySet[Message]:
    return Message.objects.filter(status__in=Message.ACTIVE_STATUSES)


def conversation_list_for(*, user: AbstractBaseUser, source: str | None = None) -> QuerySet[Conversation]:
    """The user's conversations (of one source, if given), most recent activity first, each marked `running`."""
    running = _active_replies().filter(conversation=OuterRef("pk"))
    conversations = Conversation.objects.filter(owner=user)
    if source is not None:
        conversations = conversations.filter(source=source)
    return conversations.annotate(running=Exists(running)).order_by("-updated_at", "-pk")


def conversation_get_for(*, user: AbstractBaseUser, conversation_id: object) -> Conversation:
    """The user's conversation, or `not_found`: another user's conversation answers exactly like a missing one.
    An id that is not an integer is `invalid` (its type says nothing about anyone's conversations)."""
    if not isinstance(conversation_id, int) or isinstance(conversation_id, bool):
        raise ChatError("invalid", "`conversation` must be an integer id.")
    conversation = Conversation.objects.filter(pk=conversation_id, owner=user).first()
    if conversation is None or not user.is_authenticated:
        raise ChatError("not_found")
    return conversation


def messages_for(*, conversation: Conversation) -> QuerySet[Message]:
    """The conversation as its owner sees it: superseded messages left out."""
    return conversation.messages.filter(superseded_at__isnull=True).order_by("id")


def latest_reply_for(*, conversation_id: int) -> Message | None:
    return (
        Message.objects.filter(conversation_id=conversation_id, role=Message.Role.ASSISTANT, superseded_at__isnull=True)
        .order_by("-id")
        .first()
    )


def active_reply_for(*, conversation_id: int) -> Message | None:
    return _active_replies().filter(conversation_id=conversation_id).first()


def message_by_client_id(*, conversation: Conversation, client_id: str) -> Message | None:
    return conversation.messages.filter(client_id=client_id).first()


def reply_after(*, message: Message) -> Message | None:
    """The assistant message that answers a user message, if any."""
    return (
        Message.objects.filter(conversation_id=message.conversation_id, pk__gt=message.pk, role=Message.Role.ASSISTANT)
        .order_by("id")
        .first()
    )


# How many of a key's recent conversations a call is compared with when looking for the one it continues.
CONTINUATION_CANDIDATES = 20


def api_conversation_continued_by(
    *, api_key_id: int, system_prompt: str, turns: Sequence[tuple[str, str]]
) -> tuple[Conversation, int] | None:
    """The conversation an API call continues, and how many of `turns` it already holds: one of the same key's, with the same system prompt and no
    reply running, whose messages as its owner sees them (`messages_for`) are, role and text, the first
    messages of `turns` and fewer than all of them. The longest such wins, then the most recent."""
    if len(turns) < 2:
        return None  # a call of one message extends nothing: spare the lookup (most scripted calls)
    first_role, first_text = turns[0]
    candidates = (
        Conversation.objects.filter(api_key_id=api_key_id, system_prompt=system_prompt)
        .exclude(Exists(_active_replies().filter(conversation=OuterRef("pk"))))
        .filter(messages__superseded_at__isnull=True, messages__role=first_role, messages__content=first_text)
        .distinct()
        .order_by("-updated_at", "-pk")[:CONTINUATION_CANDIDATES]
    )
    best: tuple[int, Conversation] | None = None
    for conversation in candidates:
        stored = list(messages_for(conversation=conversation).values_list("role", "content")[: len(turns)])
        extended = 0 < len(stored) < len(turns) and stored == list(turns[: len(stored)])
        if extended and (best is None or len(stored) > best[0]):
            best = (len(stored), conversation)
    return None if best is None else (best[1], best[0])


def api_keys_for(*, user: AbstractBaseUser) -> QuerySet[ApiKey]:
    """The user's API keys, newest first, revoked ones included (they say when)."""
    return ApiKey.objects.filter(user=user).order_by("-created_at", "-pk")


def api_key_get_for(*, user: AbstractBaseUser, key_id: object) -> ApiKey:
    """The user's key, or `not_found` (another user's key answers exactly like a missing one)."""
    key = ApiKey.objects.filter(pk=key_id, user=user).first() if str(key_id).isdigit() else None
    if key is None:
        raise ChatError("not_found", "No such API key.")
    return key
