"""Calls to the OpenAI-compatible API as conversations: each call is a reply, sent like the chat's.

A call carries its whole history. Stored as a conversation (source `api`, the key's name), it either
continues the key's conversation whose current path its messages extend
(`selectors.api_conversation_continued_by`) or starts a new one; the messages it adds are stored on that
branch, its last (a user message) is sent with
`message_send`, so the user's limits, daily budget and the engine are the chat's own.
"""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from chat import selectors
from chat.errors import ChatError
from chat.models import ApiKey, Conversation, Message
from chat.services.api_keys import api_key_model_check
from chat.services.conversations import (
    conversation_create,
    conversation_leaf_set,
    model_validate,
    text_storable,
    title_from,
)
from chat.services.parameters import parameters_validate
from chat.services.replies import SendResult, message_send

ROLES = (Message.Role.USER, Message.Role.ASSISTANT)


@dataclass(frozen=True)
class ApiCall:
    """One call as the service takes it: `turns` are (role, text), user and assistant, the last a user's."""

    model: str
    turns: Sequence[tuple[str, str]]
    system_prompt: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CallStarted:
    conversation: Conversation
    sent: SendResult
    continued: bool  # an earlier call's conversation was continued


def _checked_turns(call: ApiCall) -> list[tuple[str, str]]:
    turns = []
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    for index, (role, text) in enumerate(call.turns):
        where = f"messages[{index}]"
        if role not in ROLES:
            raise ChatError("invalid", f"`{where}.role` must be user or assistant here.", field=f"{where}.role")
        if len(text) > limit:
            message = f"`{where}` has {len(text):,} characters; the limit is {limit:,}."
            raise ChatError("message_too_long", message, field=f"{where}.content")
        turns.append((role, text_storable(text, field=f"{where}.content")))
    if not turns or turns[-1][0] != Message.Role.USER:
        raise ChatError("invalid", "The last message must be the user's.", field="messages")
    if not turns[-1][1].strip():
        raise ChatError("empty_message", "The last message is empty.", field="messages")
    return turns


def completion_start(*, api_key: ApiKey, call: ApiCall) -> CallStarted:
    """Store the call's conversation and start its reply, or refuse it with nothing written."""
    model = model_validate(call.model, user_id=api_key.user_id)
    api_key_model_check(api_key=api_key, model_ref=model)
    turns = _checked_turns(call)
    parameters = parameters_validate(model_ref=model, given=dict(call.parameters), current={})
    # message_send checks the limits, in the same transaction as every write: a refusal stores nothing.
    with transaction.atomic():
        found = selectors.api_conversation_continued_by(
            api_key_id=api_key.pk, system_prompt=call.system_prompt, turns=turns
        )
        if found is None:
            conversation, held, parent = _conversation_for_call(api_key, call, model, parameters, turns), 0, None
        else:
            conversation, held, parent = found.conversation, found.held, found.leaf
            conversation.model, conversation.parameters = model, parameters
            conversation.save(update_fields=["model", "parameters"])
        # The history the call adds goes on the branch it extends, one message under the other.
        for role, text in turns[held:-1]:
            parent = Message.objects.create(conversation=conversation, parent_id=parent, role=role, content=text).pk
        if parent is not None:
            conversation_leaf_set(conversation=conversation, leaf_id=parent)
        sent = message_send(conversation=conversation, client_id=uuid.uuid4().hex, content=turns[-1][1])
    return CallStarted(conversation=conversation, sent=sent, continued=found is not None)


def _conversation_for_call(
    api_key: ApiKey, call: ApiCall, model: str, parameters: dict[str, Any], turns: list[tuple[str, str]]
) -> Conversation:
    first_user = next(text for role, text in turns if role == Message.Role.USER)
    conversation = conversation_create(
        owner=api_key.user, model=model, system_prompt=call.system_prompt, title=title_from(first_user)
    )
    conversation.source = Conversation.Source.API
    conversation.api_key = api_key
    conversation.api_key_name = api_key.name
    conversation.parameters = parameters
    conversation.save(update_fields=["source", "api_key", "api_key_name", "parameters"])
    return conversation
