"""Starting and stopping replies: send, regenerate, edit, continue, cancel; idempotent and limited.

Every new message goes into the conversation's tree (chat/tree.py) and ends the current branch."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import prefetch_related_objects
from django.utils import timezone
from django.utils.translation import gettext as _

from chat import limits, rows, selectors
from chat.errors import ChatError
from chat.models import Attachment, Conversation, Message
from chat.services.attachments import attachments_attach, attachments_check_model, attachments_for_message
from chat.services.conversations import conversation_advance, model_validate, text_storable, title_from
from chat.services.search_index import (
    search_index_columns,
    search_index_conversation_title,
    search_index_written,
)
from chat.tree import Tree

CLIENT_ID_MAX_CHARS = 64


@dataclass(frozen=True)
class SendResult:
    user_message: Message | None
    reply: Message
    created: bool
    # The conversation's tree once the reply exists (sibling positions for the frames); None until
    # `_idempotent_and_limited` reads it, when the service did not have it already.
    tree: Tree | None = None


def _validate_content(content: object, *, with_files: bool = False) -> str:
    if content is None and with_files:
        content = ""
    if not isinstance(content, str):
        raise ChatError("invalid", "`content` must be a string.")
    if not content.strip() and not with_files:  # a message may be its files alone
        raise ChatError("empty_message")
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(content) > limit:
        raise ChatError(
            "message_too_long",
            _("The message is %(length)s characters; the limit is %(limit)s.")
            % {"length": f"{len(content):,}", "limit": f"{limit:,}"},
        )
    return text_storable(content, field="content")


def _validate_client_id(client_id: object) -> str:
    if not isinstance(client_id, str) or not 0 < len(client_id) <= CLIENT_ID_MAX_CHARS:
        raise ChatError("invalid", f"`client_id` must be a string of 1 to {CLIENT_ID_MAX_CHARS} characters.")
    return text_storable(client_id, field="client_id")


def _new_reply(conversation: Conversation, *, parent_id: int | None, model: str, client_id: str = "") -> Message:
    provider, _, _ = model.partition(":")
    reply = Message(
        conversation=conversation,
        parent_id=parent_id,
        role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
        client_id=client_id,
        provider=provider,
        model=model,
    )
    return rows.insert(reply)


def _start_reply(
    conversation: Conversation,
    *,
    check: limits.StartCheck,
    client_id: str,
    parent_id: int | None,
    user_content: str | None = None,
    model: str | None = None,
    attachments: Sequence[Attachment] = (),
    tree: Tree | None = None,
) -> SendResult:
    """Create (optionally) a user message under `parent_id` and a pending reply under it (else under
    `parent_id` itself), atomically, and make the reply the current leaf; `busy` if one runs.

    `tree`, the conversation's as read before: the result's tree is it with the new messages, not read again."""
    _check_queue_room(queued=check.queued)
    title = None
    try:
        with transaction.atomic():
            user_message = None
            if user_content is not None:
                # Indexed as it is written: on PostgreSQL in the INSERT itself, on SQLite its FTS5 row below.
                user_message = rows.insert(
                    Message(
                        conversation=conversation,
                        parent_id=parent_id,
                        role=Message.Role.USER,
                        content=user_content,
                        client_id=client_id,
                    ),
                    computed=search_index_columns(content=user_content, parts=[]),
                )
                if attachments:
                    attachments_attach(message=user_message, attachments=attachments)
                    prefetch_related_objects([user_message], "attachments")  # for the frames
                reply = _new_reply(conversation, parent_id=user_message.pk, model=model or conversation.model)
                search_index_written(message_id=user_message.pk, content=user_content, parts=[])
                if not conversation.title:
                    title = title_from(user_content or (attachments[0].name if attachments else ""))
            else:
                reply = _new_reply(
                    conversation, parent_id=parent_id, model=model or conversation.model, client_id=client_id
                )
            conversation_advance(conversation=conversation, leaf_id=reply.pk, title=title)
            if title is not None:
                search_index_conversation_title(conversation_id=conversation.pk, title=title)
    except IntegrityError:
        # The partial unique indexes: one reply runs per conversation, whichever process asks, and a
        # client id is used once per conversation (a repeat that raced its first send).
        existing = selectors.message_by_client_id(conversation=conversation, client_id=client_id)
        if existing is not None:
            return _replay(existing)
        raise ChatError("busy") from None
    if tree is not None:
        known = [(pk, parent, tree.roles[pk]) for pk, parent in tree.parents.items()]
        known += [(m.pk, m.parent_id, m.role) for m in (user_message, reply) if m is not None]
        tree = Tree.of(known)
    return SendResult(user_message=user_message, reply=reply, created=True, tree=tree)


def _waiting_replies() -> "models.QuerySet[Message]":
    return Message.objects.filter(status=Message.Status.PENDING, cancel_requested=False)


def _check_queue_room(*, queued: int) -> None:
    """`queue_full` when the allowed number of the user's replies really wait for a worker (`queued`, as
    the start check counted them): they were told `queued` because no worker had a free slot. A pending
    reply a free worker is about to take does not count.

    The database is the count every process shares; two sends at the same instant may both pass.
    """
    limit = settings.CHAT_MAX_QUEUED_PER_USER
    if queued >= limit:
        message = _("%(limit)s of your replies are waiting for a free worker. Try again once one has started.") % {
            "limit": limit
        }
        raise ChatError("queue_full", message, retry_after=limits.SLOT_RETRY_AFTER_SECONDS)


def reply_mark_queued(*, message_id: int) -> int | None:
    """No worker has a free slot: the reply, if still pending, is marked as really waiting (see
    `_check_queue_room`). Returns how many replies wait ahead of it; None once a worker took it."""
    if not _waiting_replies().filter(pk=message_id).update(queued_at=timezone.now()):
        return None
    return reply_queue_position(message_id=message_id)


def reply_queue_position(*, message_id: int) -> int | None:
    """How many replies, of any user, wait for a worker ahead of this one; None once it was taken."""
    if not _waiting_replies().filter(pk=message_id).exists():
        return None
    return _waiting_replies().filter(pk__lt=message_id).count()


def reply_refuse_job(*, message_id: int, code: str) -> Message:
    """The job could not be queued (`queue_full`, `unavailable`): the reply fails now, not after the expiry."""
    Message.objects.filter(pk=message_id, status=Message.Status.PENDING).update(
        status=Message.Status.FAILED,
        error_code=code,
        error_message=ChatError(code).message,
        finished_at=timezone.now(),
    )
    return Message.objects.select_related("conversation").get(pk=message_id)


def _replay(existing: Message) -> SendResult:
    """The result of a send that already happened (same client id): nothing new is created."""
    if existing.role == Message.Role.USER:
        prefetch_related_objects([existing], "attachments")
        reply = selectors.reply_after(message=existing)
        return SendResult(user_message=existing, reply=reply, created=False)
    return SendResult(user_message=None, reply=existing, created=False)


def _idempotent_and_limited(service: Callable[..., SendResult]) -> Callable[..., SendResult]:
    """Every way of starting a reply: the same `client_id` again answers with what it created the
    first time (never refused: the client is only catching up); a new one must pass the user's limits.
    Either way the result comes with the conversation's tree."""

    @wraps(service)
    def start(*, conversation: Conversation, client_id: object, **kwargs: Any) -> SendResult:
        client_id = _validate_client_id(client_id)
        check = limits.reply_start_check(
            user_id=conversation.owner_id, conversation_id=conversation.pk, client_id=client_id
        )
        if check.existing_id is not None:
            result = _replay(Message.objects.get(pk=check.existing_id))
        else:
            result = service(conversation=conversation, client_id=client_id, check=check, **kwargs)
        if result.tree is None:
            result = replace(result, tree=selectors.tree_for(conversation=conversation))
        return result

    return start


@_idempotent_and_limited
def message_send(
    *,
    conversation: Conversation,
    client_id: str,
    check: limits.StartCheck,
    content: object,
    attachments: object = None,
) -> SendResult:
    """Post the user's message at the end of the current branch, with the uploaded files it names
    (`attachments`, ids), and a pending reply. Idempotent on `client_id`; `busy` while a reply runs."""
    files = attachments_for_message(conversation=conversation, ids=attachments)
    content = _checked_new_message(conversation, content, check, files)
    tree = selectors.tree_for(conversation=conversation)
    leaf = selectors.current_leaf_in(conversation, tree)
    return _start_reply(
        conversation,
        check=check,
        client_id=client_id,
        parent_id=leaf,
        user_content=content,
        attachments=files,
        tree=tree,
    )


def _checked_new_message(
    conversation: Conversation, content: object, check: limits.StartCheck, files: Sequence[Attachment] = ()
) -> str:
    """A new user message may be posted: its text is valid, the model offered and able to take its
    files, no reply running."""
    content = _validate_content(content, with_files=bool(files))
    model_validate(conversation.model, user_id=conversation.owner_id)
    attachments_check_model(model_ref=conversation.model, attachments=files)
    _check_not_busy(check)
    return content


def _check_not_busy(check: limits.StartCheck) -> None:
    """`busy` if the start check saw a reply running in the conversation (the unique index of running
    replies refuses one that starts after it, see `_start_reply`)."""
    if check.busy:
        raise ChatError("busy")


def _target(conversation: Conversation, message: object, *, role: str, nothing: ChatError) -> Message:
    """The message an edit or a regenerate is about: the one named (of this conversation, of `role`),
    else the last of `role` on the current branch, else `nothing`."""
    if message is not None:
        target = selectors.message_get_in(conversation=conversation, message_id=message)
        if target.role != role:
            raise ChatError(
                "invalid", f"`message` must be a {'reply' if role == Message.Role.ASSISTANT else 'user message'}."
            )
        return target
    path = selectors.path_for(conversation=conversation).messages
    target = next((m for m in reversed(path) if m.role == role), None)
    if target is None:
        raise nothing
    return target


@_idempotent_and_limited
def reply_regenerate(
    *,
    conversation: Conversation,
    client_id: str,
    check: limits.StartCheck,
    message: object = None,
    model: object = None,
) -> SendResult:
    """A new answer beside a reply (default: the current branch's last), the old one kept as its
    sibling; with `model`, from that model (the conversation's stays as it is). A reply that was
    continued is regenerated as a whole: the new answer is a sibling of its first part."""
    model_ref = model_validate(conversation.model if model is None else model, user_id=conversation.owner_id)
    target = _target(conversation, message, role=Message.Role.ASSISTANT, nothing=ChatError("nothing_to_regenerate"))
    _check_not_busy(check)
    tree = selectors.tree_for(conversation=conversation)
    head = tree.answer_head(target.pk)
    question = tree.parents[head]
    if question is not None:  # the files of the message it answers must suit the model asked
        attachments_check_model(model_ref=model_ref, attachments=Attachment.objects.filter(message_id=question))
    return _start_reply(
        conversation, check=check, client_id=client_id, parent_id=tree.parents[head], model=model_ref, tree=tree
    )


@_idempotent_and_limited
def message_edit(
    *,
    conversation: Conversation,
    client_id: str,
    check: limits.StartCheck,
    content: object,
    message: object = None,
    attachments: object = None,
) -> SendResult:
    """An edited copy of a user message (default: the current branch's last), beside it, and its reply;
    the old message and everything under it stay as the other branch. The copy keeps the message's
    files, or has those `attachments` names (kept ones of the message, and newly uploaded ones)."""
    nothing = ChatError("nothing_to_regenerate", _("There is no message to edit."))
    target = _target(conversation, message, role=Message.Role.USER, nothing=nothing)
    files = attachments_for_message(conversation=conversation, ids=attachments, kept_from=target)
    content = _checked_new_message(conversation, content, check, files)
    return _start_reply(
        conversation,
        check=check,
        client_id=client_id,
        parent_id=target.parent_id,
        user_content=content,
        attachments=files,
    )


@_idempotent_and_limited
def reply_continue(*, conversation: Conversation, client_id: str, check: limits.StartCheck) -> SendResult:
    """Continue a stopped, interrupted or failed reply at the end of the current branch: a new reply,
    its child, picks up after the kept partial text with the same model; both are one answer.

    A reply stopped while it was still reasoning (no answer text yet) can be continued too: its
    reasoning stays shown, but cannot go back to the model (no provider takes back reasoning cut off
    unsigned), so the continuation reasons again from the question."""
    tree = selectors.tree_for(conversation=conversation)
    leaf_id = selectors.current_leaf_in(conversation, tree)
    last = conversation.messages.filter(pk=leaf_id).first() if leaf_id is not None else None
    resumable = {Message.Status.CANCELLED, Message.Status.INTERRUPTED, Message.Status.FAILED}
    kept = last is not None and bool(last.content or last.reasoning)
    if not kept or last.role != Message.Role.ASSISTANT or last.status not in resumable:
        raise ChatError("nothing_to_continue")
    model_ref = model_validate(last.model_reference or conversation.model, user_id=conversation.owner_id)
    return _start_reply(conversation, check=check, client_id=client_id, parent_id=last.pk, model=model_ref, tree=tree)


def generation_cancel(*, conversation: Conversation) -> Message:
    """Ask the running reply to stop. A reply no worker has taken yet is cancelled here and now."""
    reply = selectors.active_reply_for(conversation_id=conversation.pk)
    if reply is None:
        raise ChatError("not_running")
    now = timezone.now()
    taken = Message.objects.filter(pk=reply.pk, status=Message.Status.PENDING).update(
        status=Message.Status.CANCELLED, cancel_requested=True, finished_at=now, finish_reason="cancelled"
    )
    if not taken:
        Message.objects.filter(pk=reply.pk).update(cancel_requested=True)
    reply.refresh_from_db()
    return reply
