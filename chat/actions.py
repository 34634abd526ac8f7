"""What a client can ask for, whatever the transport: the WebSocket consumer and the HTTP API both
call these. Each runs a service, tells every follower, and hands any new reply to a worker."""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import AbstractBaseUser

from chat import events, selectors, services
from chat.engine import jobs
from chat.errors import ChatError
from chat.events import Frame
from chat.live import LiveState, live_log
from chat.models import ApiKey, Conversation, Message
from chat.providers import registry
from chat.tree import Tree


@dataclass(frozen=True)
class ReplyStarted:
    """What a send returns to its sender: the messages, and whether they already existed."""

    conversation_id: int
    user_message: Message | None
    reply: Message
    duplicate: bool
    tree: Tree

    def frame(self, *, client_id: str) -> Frame:
        return events.accepted_frame(
            client_id=client_id,
            conversation_id=self.conversation_id,
            user_message=self.user_message,
            reply=self.reply,
            duplicate=self.duplicate,
            tree=self.tree,
        )


@database_sync_to_async
def _owned(user: AbstractBaseUser, conversation_id: object) -> Conversation:
    return selectors.conversation_get_for(user=user, conversation_id=conversation_id)


async def conversation_for(user: AbstractBaseUser, conversation_id: object) -> Conversation:
    """The user's conversation or ChatError('not_found'), for foreign ids too; `invalid` for a non-integer."""
    return await _owned(user, conversation_id)


async def _announce(conversation: Conversation, result: services.SendResult) -> ReplyStarted:
    """Tell every follower about a reply just started, and hand it to a worker."""
    started = ReplyStarted(
        conversation.pk, result.user_message, result.reply, duplicate=not result.created, tree=result.tree
    )
    if result.created:
        for message in (result.user_message, result.reply):
            if message is not None:
                await events.publish_to_conversation(conversation.pk, events.message_frame(message, tree=result.tree))
        await events.publish_to_user(conversation.owner_id, events.conversation_frame(conversation, running=True))
        await jobs.submit(message_id=result.reply.pk, conversation_id=conversation.pk)
    return started


# Every way of starting a reply, by the name clients use, with the fields each takes besides `client_id`.
REPLY_STARTERS: dict[str, tuple[Callable[..., services.SendResult], tuple[str, ...]]] = {
    "send": (services.message_send, ("content", "attachments")),
    "regenerate": (services.reply_regenerate, ("message", "model")),
    "retry": (services.reply_regenerate, ("message", "model")),
    "edit": (services.message_edit, ("content", "message", "attachments")),
    "continue": (services.reply_continue, ()),
}


def _owned_and_started(
    user: AbstractBaseUser, conversation_id: object, service: Callable[..., services.SendResult], **kwargs: Any
) -> tuple[Conversation, services.SendResult | ChatError]:
    conversation = selectors.conversation_get_for(user=user, conversation_id=conversation_id)
    try:
        return conversation, service(conversation=conversation, **kwargs)
    except ChatError as refusal:
        return conversation, refusal


async def start_reply(
    user: AbstractBaseUser,
    conversation_id: object,
    *,
    kind: str,
    fields: Mapping[str, Any],
    follow: Callable[[int], Awaitable[None]] | None = None,
) -> ReplyStarted:
    """Send, regenerate (retry), edit or continue, as named by `kind` (see REPLY_STARTERS), in the user's
    conversation (else `conversation_for`'s errors): checked and started in one trip to the database thread.

    `follow(conversation id)` runs once the conversation is known to be the user's, the start refused or
    not, and before anyone is told about the new reply (a socket that follows it gets its frames too)."""
    service, names = REPLY_STARTERS[kind]
    arguments = {name: fields.get(name) for name in names}
    conversation, outcome = await database_sync_to_async(_owned_and_started)(
        user, conversation_id, service, client_id=fields.get("client_id"), **arguments
    )
    if follow is not None:
        await follow(conversation.pk)
    if isinstance(outcome, ChatError):
        raise outcome
    return await _announce(conversation, outcome)


@database_sync_to_async
def _path_frame(conversation: Conversation, path: selectors.Path) -> Frame:
    feedback = selectors.feedback_for(user_id=conversation.owner_id, messages=path.messages)
    return events.path_frame(
        conversation_id=conversation.pk, leaf=path.leaf, messages=path.messages, tree=path.tree, feedback=feedback
    )


async def current_path(conversation: Conversation) -> Frame:
    """The `path` frame of the branch the conversation shows (the owner's conversation, already checked)."""
    path = await database_sync_to_async(selectors.path_for)(conversation=conversation)
    return await _path_frame(conversation, path)


async def switch_branch(
    user: AbstractBaseUser, conversation_id: object, *, message: object, answered: str | None = None
) -> Frame:
    """Show the branch through `message`; every follower (other tabs) gets the new `path` frame, but
    the socket whose channel is `answered`: it gets the frame returned here as its answer."""
    conversation = await conversation_for(user, conversation_id)
    path = await database_sync_to_async(services.conversation_switch)(conversation=conversation, message=message)
    frame = await _path_frame(conversation, path)
    await events.publish_path(frame, answered=answered)
    return frame


async def give_feedback(
    user: AbstractBaseUser,
    conversation_id: object,
    *,
    message: object,
    rating: object,
    comment: object = None,
    answered: str | None = None,
) -> Frame:
    """Rate a reply ("up", "down"; None removes the rating) with an optional comment; every tab of
    the user gets the `feedback` frame returned, but the socket whose channel is `answered`."""
    conversation = await conversation_for(user, conversation_id)
    if rating is None:
        reply = await database_sync_to_async(services.feedback_clear)(
            user=user, conversation=conversation, message_id=message
        )
        frame = events.feedback_frame(conversation_id=conversation.pk, message_id=reply.pk, feedback=None)
    else:
        feedback = await database_sync_to_async(services.feedback_set)(
            user=user, conversation=conversation, message_id=message, rating=rating, comment=comment
        )
        frame = events.feedback_frame(
            conversation_id=conversation.pk, message_id=feedback.message_id, feedback=feedback
        )
    await events.publish_feedback(frame, answered=answered)
    return frame


async def start_api_call(api_key: ApiKey, call: services.ApiCall) -> ReplyStarted:
    """An OpenAI-compatible call: its conversation stored (new, or the one it continues) and its reply started."""
    started = await database_sync_to_async(services.completion_start)(api_key=api_key, call=call)
    return await _announce(started.conversation, started.sent)


async def stop_reply(user: AbstractBaseUser, conversation_id: object) -> Message:
    """Stop the running reply. The worker saves it as `cancelled` and tells every follower."""
    conversation = await conversation_for(user, conversation_id)
    reply = await database_sync_to_async(services.generation_cancel)(conversation=conversation)
    if reply.status == Message.Status.CANCELLED:
        # No worker had taken it: nobody else will announce the end, nor stop what a worker that died left
        # running upstream (a reply handed over, waiting for a worker, streams from a kept response).
        if reply.upstream_response_id:
            await registry.cancel_response(reply.model, reply.upstream_response_id)
        await events.publish_done(reply)
        await events.publish_to_user(conversation.owner_id, events.conversation_frame(conversation, running=False))
    else:
        await jobs.request_stop(conversation_id=conversation.pk)
    return reply


@dataclass(frozen=True)
class Position:
    """Where a client already is in a reply: it has every frame up to `seq` of `message`."""

    message_id: int
    seq: int


async def catch_up(
    conversation_id: int, position: Position | None = None, *, protocol: int = events.PROTOCOL_VERSION
) -> tuple[Frame, int | None, int]:
    """The frame that brings a client up to date on a conversation's latest reply: the running one,
    on whichever branch, else the last of the current branch.

    Call it after joining the conversation's group. Returns (frame, message id, seq covered):
    live frames of that message up to `seq` are already in the frame and must be dropped.
    With a `position` in the running reply's last part, the frame is a delta with only the missing
    text of that part; otherwise (the position is in an earlier part, or a protocol-1 client's last
    part is not text) it is a snapshot of the whole reply, which replaces what the client has.
    """
    reply = await database_sync_to_async(selectors.catch_up_reply_for)(conversation_id=conversation_id)
    if reply is None:
        return events.snapshot_frame(conversation_id=conversation_id, reply=None), None, 0
    state = None
    if reply.is_active:
        state = await live_log().state(reply.pk)
        if state is None:
            # Not begun yet, or finished between the two reads: the database has the final word.
            await database_sync_to_async(reply.refresh_from_db)()
    if state is not None and position is not None and position.message_id == reply.pk and position.seq <= state.seq:
        frame = await _missing_text(conversation_id, reply.pk, state, position.seq, protocol=protocol)
        if frame is not None:
            return frame, reply.pk, state.seq
    if state is not None:
        frame = events.snapshot_frame(conversation_id=conversation_id, reply=reply, parts=state.parts, seq=state.seq)
        return frame, reply.pk, state.seq
    return events.snapshot_frame(conversation_id=conversation_id, reply=reply), reply.pk, reply.seq


async def _missing_text(
    conversation_id: int, message_id: int, state: LiveState, seq: int, *, protocol: int
) -> Frame | None:
    """A delta from `seq` to the live state, if what is missing lies in the last part only."""
    position = await live_log().position_after(message_id, seq)
    if position is None or not state.parts:
        return None
    part, offset = position
    last = len(state.parts) - 1
    kind, text = state.parts[last]
    if part != last or (protocol < 2 and kind != "text"):
        return None
    return events.delta_frame(
        conversation_id=conversation_id,
        message_id=message_id,
        seq=state.seq,
        part=part,
        kind=kind,
        offset=offset,
        text=text[offset:],
    )
