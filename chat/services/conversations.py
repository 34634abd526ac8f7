"""Conversations: create, rename, switch model, change the system prompt or parameters, switch branch,
delete."""

from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chat import rows, selectors, teams
from chat.errors import ChatError
from chat.models import Conversation
from chat.providers import registry
from chat.services.parameters import parameters_accepted, parameters_validate
from chat.services.retention import conversation_hide_held, conversation_is_held
from chat.services.search_index import (
    search_index_conversation_title,
    search_index_conversations,
    search_index_forget,
)

TITLE_MAX_CHARS = 60


def text_storable(text: str, *, field: str) -> str:
    """The text, or `invalid` naming the field if it holds a NUL character: PostgreSQL cannot store one
    (SQLite can), and both databases must give the same answer."""
    if "\x00" in text:
        raise ChatError("invalid", f"`{field}` must not contain the NUL character (U+0000).")
    return text


def model_validate(model_ref: object, *, user_id: int | None = None) -> str:
    """The model reference if this server offers it (else `unknown_model`) and, for a user, their groups
    allow it (else `model_not_allowed`)."""
    if not isinstance(model_ref, str):
        raise ChatError("invalid", "`model` must be a string such as `openai:gpt-4o-mini`.")
    try:
        registry.resolve(model_ref)
    except registry.UnknownModel:
        raise ChatError("unknown_model") from None
    if user_id is not None:
        teams.model_check(user_id=user_id, model_ref=model_ref)
    return model_ref


def default_model_for(*, user_id: int) -> str:
    """The server's default model if the user may use it, else the first they may (else the default,
    which a send then refuses with `model_not_allowed`)."""
    default = registry.default_model_ref()
    allowed = teams.models_allowed(user_id=user_id, offered=registry.available_models())
    if not allowed or any(model.ref == default for model in allowed):
        return default
    return allowed[0].ref


def conversation_create(
    *,
    owner: AbstractBaseUser,
    model: str = "",
    system_prompt: str = "",
    title: str = "",
    parameters: object = None,
) -> Conversation:
    """A new, empty conversation; the model defaults to the server's default."""
    # Only the empty string means "the default": a falsy non-string ({}, [], 0, False) is refused like any other.
    model_ref = model_validate(default_model_for(user_id=owner.pk) if model == "" else model, user_id=owner.pk)
    with transaction.atomic():
        conversation = Conversation.objects.create(
            owner=owner,
            model=model_ref,
            system_prompt=_checked_system_prompt(system_prompt),
            title=_clean_title(title),
            parameters={}
            if parameters is None
            else parameters_validate(model_ref=model_ref, given=parameters, current={}),
        )
        search_index_conversation_title(conversation_id=conversation.pk, title=conversation.title)
    return conversation


def _clean_title(title: object) -> str:
    if not isinstance(title, str):
        raise ChatError("invalid", "`title` must be a string.")
    return " ".join(text_storable(title, field="title").split())[:200]


def _checked_system_prompt(system_prompt: object) -> str:
    if not isinstance(system_prompt, str) or len(system_prompt) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ChatError("invalid", "`system_prompt` must be text within the message size limit.")
    return text_storable(system_prompt, field="system_prompt")


def _moment_if(flag: object, field: str) -> datetime | None:
    """`pinned` / `archived` as given: true is now, false is none; anything else is `invalid`."""
    if not isinstance(flag, bool):
        raise ChatError("invalid", f"`{field}` must be true or false.")
    return timezone.now() if flag else None


def conversation_update(
    *,
    conversation: Conversation,
    title: str | None = None,
    model: str | None = None,
    system_prompt: str | None = None,
    parameters: object = None,
    pinned: bool | None = None,
    archived: bool | None = None,
) -> Conversation:
    """Rename, switch model, change the system prompt, set parameters, pin or archive (each only when
    given). Pinned conversations head the sidebar; archived ones leave it (they stay in search and the
    Archived view).

    `parameters` sets the given ones (null clears one) for the conversation's model, the new one when
    `model` is given too; a model switch keeps the parameters the new model accepts and drops the rest.
    """
    changes: dict[str, Any] = {}
    if pinned is not None:
        changes["pinned_at"] = _moment_if(pinned, "pinned")
    if archived is not None:
        changes["archived_at"] = _moment_if(archived, "archived")
    if title is not None:
        changes["title"] = _clean_title(title)
        changes["title_by_user"] = True  # the owner's name: a model's title never replaces it
    if model is not None:
        changes["model"] = model_validate(model, user_id=conversation.owner_id)
    if system_prompt is not None:
        changes["system_prompt"] = _checked_system_prompt(system_prompt)
    model_ref = changes.get("model", conversation.model)
    touches_parameters = parameters is not None or "model" in changes
    if not (changes or touches_parameters):
        return conversation
    with transaction.atomic():
        if touches_parameters:
            # The stored values as they are now (this instance may be stale): a parameter set meanwhile
            # by another request is kept, not overwritten with an old value.
            current = (
                Conversation.objects.select_for_update().values_list("parameters", flat=True).get(pk=conversation.pk)
            )
            if parameters is not None:
                changes["parameters"] = parameters_validate(model_ref=model_ref, given=parameters, current=current)
            elif current:
                provider, new_model = registry.resolve(model_ref)
                changes["parameters"] = parameters_accepted(provider=provider, model=new_model, values=current)
        # Every field is checked before any is set; only the given ones are written, so a field changed
        # meanwhile by another request is not overwritten with an old value.
        for field, value in changes.items():
            setattr(conversation, field, value)
        if changes:
            conversation.save(update_fields=list(changes))
            if "title" in changes:
                search_index_conversations(conversation_ids=[conversation.pk])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete the conversation and its messages; `busy` while a reply runs in it. Under a legal hold it is
    only hidden from its owner, and kept (chat.services.retention)."""
    if selectors.active_reply_for(conversation_id=conversation.pk):
        raise ChatError("busy", _("Stop the running reply before deleting this conversation."))
    if conversation_is_held(conversation=conversation):
        conversation_hide_held(conversation=conversation)
        return
    with transaction.atomic():
        search_index_forget(conversation=conversation)
        conversation.delete()


def conversation_leaf_set(*, conversation: Conversation, leaf_id: int) -> None:
    """Make `leaf_id` the end of the branch the conversation shows."""
    conversation.current_leaf_id = leaf_id
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf_id=leaf_id)


def conversation_advance(*, conversation: Conversation, leaf_id: int, title: str | None = None) -> None:
    """A reply just started: `leaf_id` ends the branch shown, the conversation is active now (the sidebar's
    order, the limits' index) and, given, has its first `title`; one statement (written out: every send
    makes it, see chat/rows.py)."""
    changes: dict[str, Any] = {"current_leaf_id": leaf_id, "updated_at": timezone.now()}
    if title is not None:
        changes["title"] = title
    rows.update(Conversation, conversation.pk, changes)
    for name, value in changes.items():
        setattr(conversation, name, value)


def conversation_switch(*, conversation: Conversation, message: object) -> selectors.Path:
    """Show the branch through `message`: its current leaf becomes the newest message under it (the
    branch written last below it; itself if it has none). Allowed while a reply runs on any branch:
    that reply goes on where it is. Returns the new path; `not_found` for another conversation's id."""
    target = selectors.message_get_in(conversation=conversation, message_id=message)
    tree = selectors.tree_for(conversation=conversation)
    conversation_leaf_set(conversation=conversation, leaf_id=tree.newest_leaf_under(target.pk))
    return selectors.path_for(conversation=conversation)


def conversation_touch(*, conversation: Conversation) -> None:
    """Mark the conversation as active now (the sidebar's order, and the limits' index)."""
    conversation.updated_at = timezone.now()
    rows.update(Conversation, conversation.pk, {"updated_at": conversation.updated_at})


def title_from(text: str) -> str:
    """A title from the first message: its first line, cut at a word near 60 characters."""
    line = " ".join(text.strip().split("\n", 1)[0].split())
    if len(line) <= TITLE_MAX_CHARS:
        return line
    # One character more, so a word that ends exactly at the limit is kept; one long word is cut at the limit.
    cut = line[: TITLE_MAX_CHARS + 1].rsplit(" ", 1)[0][:TITLE_MAX_CHARS]
    return cut + "…"
