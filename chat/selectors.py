"""Reads: every query the chat features make, each scoped to its owner."""

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


def api_keys_for(*, user: AbstractBaseUser) -> QuerySet[ApiKey]:
    """The user's API keys, newest first, revoked ones included (they say when)."""
    return ApiKey.objects.filter(user=user).order_by("-created_at", "-pk")


def api_key_get_for(*, user: AbstractBaseUser, key_id: object) -> ApiKey:
    """The user's key, or `not_found` (another user's key answers exactly like a missing one)."""
    key = ApiKey.objects.filter(pk=key_id, user=user).first() if str(key_id).isdigit() else None
    if key is None:
        raise ChatError("not_found", "No such API key.")
    return key
