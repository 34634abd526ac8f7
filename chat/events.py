"""The one place that names groups and builds the frames clients receive (see docs/protocol.md).

Frames are built here and only here, so the protocol document and the code cannot drift apart.
A live frame crosses the channel layer already encoded as JSON, so a consumer relays it to its
socket without decoding and re-encoding it for every listener.
"""

import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from channels.layers import get_channel_layer
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from chat.errors import ChatError
from chat.live import live_log
from chat.models import Attachment, Conversation, Feedback, ImportJob, Message, ShareLink, answer_text
from chat.providers.base import ModelInfo
from chat.providers.parameters import ParameterRule
from chat.search import SearchHit
from chat.tree import Tree

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 2  # 2: replies have parts (docs/protocol.md); clients that ask for 1 get text only
PROTOCOL_VERSIONS = (1, 2)
Frame = dict[str, Any]


def protocol_from(value: str | None) -> int:
    """The protocol version a client asked for (`?protocol=` on the WebSocket URL or the SSE stream);
    1 when it names none, as every client before version 2 did."""
    if value is None:
        return 1
    if value.strip() not in {str(version) for version in PROTOCOL_VERSIONS}:
        versions = " or ".join(map(str, PROTOCOL_VERSIONS))
        raise ChatError("invalid", f"`protocol` must be {versions}.")
    return int(value)


def conversation_group(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def session_group(session_key: str) -> str:
    """Joined by the SSE streams of one login session; named by a hash, so no session key reaches Redis."""
    return "session-" + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def cancel_group(conversation_id: int) -> str:
    """Joined by the worker running this conversation's reply, on the jobs layer."""
    return f"cancel-{conversation_id}"


def encode(frame: Frame) -> str:
    return orjson.dumps(frame).decode()


def parts_payload(parts: list[dict[str, Any]], *, with_text: bool = True) -> list[Frame]:
    """A reply's parts in order: each `{"kind", "length"}`, `duration_ms` where known, and its `text`
    unless told otherwise."""
    payload = []
    for part in parts:
        entry: Frame = {"kind": part["kind"], "length": len(part["text"])}
        if "duration_ms" in part:
            entry["duration_ms"] = part["duration_ms"]
        if with_text:
            entry["text"] = part["text"]
        payload.append(entry)
    return payload


def message_payload(
    message: Message,
    *,
    with_content: bool = True,
    tree: Tree | None = None,
    feedback: Mapping[int, Feedback] | None = None,
) -> Frame:
    """A message as clients see it. `parent` always; with its conversation's `tree`, also its
    sibling position: `siblings` (ids, oldest first, itself included), `index` (0-based), `count`;
    with the reader's `feedback` (by message id), a reply's `feedback` (null: none given)."""
    parts = message.part_list()
    payload: Frame = {
        "id": message.pk,
        "parent": message.parent_id,
        "role": message.role,
        "status": message.status,
        "client_id": message.client_id or None,
        "model": message.model or None,
        "provider": message.provider or None,
        "finish_reason": message.finish_reason or None,
        "error": {"code": message.error_code, "message": message.error_message} if message.error_code else None,
        "usage": {
            "input_tokens": message.input_tokens,
            "output_tokens": message.output_tokens,
            "cached_input_tokens": message.cached_input_tokens,
            "cache_write_tokens": message.cache_write_tokens,
            "reasoning_tokens": message.reasoning_tokens,
            "estimated": message.tokens_estimated,
        },
        # What the reply cost (a decimal string, in CHAT_CURRENCY), null with no price known; `estimated`
        # when its token counts are, `partial` when it ended before its answer did (stopped, failed...).
        "cost": None
        if message.cost is None
        else {
            "amount": str(message.cost),
            "currency": settings.CHAT_CURRENCY,
            "estimated": message.cost_estimated,
            "partial": message.status != Message.Status.COMPLETE,
        },
        "time_to_first_token_ms": message.time_to_first_token_ms,
        "send_to_first_token_ms": message.send_to_first_token_ms,
        "duration_ms": message.duration_ms,
        "tokens_per_second": message.tokens_per_second,
        "seq": message.seq,
        "length": len(message.content),
        "parts": parts_payload(parts, with_text=with_content),
        "created_at": message.created_at.isoformat() if message.created_at else None,
    }
    if message.status == Message.Status.STREAMING and message.started_at is not None:
        # How long the reply has streamed, by the server's clock: a tab that joins late (a reload, a
        # second tab) tells the live speed from it, not from when it happened to join.
        payload["elapsed_ms"] = max(0, int((timezone.now() - message.started_at).total_seconds() * 1000))
    if with_content:
        payload["content"] = message.content
    if message.role == Message.Role.USER:
        payload["attachments"] = [attachment_payload(a) for a in _attachments_of(message)]
    if tree is not None and message.pk in tree:
        payload.update(tree.position(message.pk))
    if feedback is not None and message.role == Message.Role.ASSISTANT:
        payload["feedback"] = feedback_payload(feedback.get(message.pk))
    return payload


def _attachments_of(message: Message) -> list[Attachment]:
    """A message's files as its selector prefetched them (chat.selectors.path_for, the send service):
    frames are built on the event loop, where no query may run; never prefetched, a message has none shown."""
    prefetched = getattr(message, "_prefetched_objects_cache", {})
    return list(prefetched["attachments"]) if "attachments" in prefetched else []


def attachment_payload(attachment: Attachment) -> Frame:
    """A file as clients see it: what it is, and where its owner fetches it (and its thumbnail)."""
    return {
        "id": attachment.pk,
        "name": attachment.name,
        "kind": attachment.kind,
        "mime": attachment.mime,
        "size": attachment.size,
        "width": attachment.width,
        "height": attachment.height,
        "message": attachment.message_id,
        "url": reverse("chat:api-attachment-file", args=[attachment.pk]),
        "thumbnail_url": reverse("chat:api-attachment-thumbnail", args=[attachment.pk])
        if attachment.thumbnail_name
        else None,
    }


def feedback_payload(feedback: Feedback | None) -> Frame | None:
    if feedback is None:
        return None
    return {"rating": feedback.rating, "comment": feedback.comment, "updated_at": feedback.updated_at.isoformat()}


def feedback_frame(*, conversation_id: int, message_id: int, feedback: Feedback | None) -> Frame:
    """A reply's feedback as it now is (null: removed), for every tab of its owner."""
    return {
        "type": "feedback",
        "conversation": conversation_id,
        "message": message_id,
        "feedback": feedback_payload(feedback),
    }


def conversation_payload(conversation: Conversation, *, running: bool) -> Frame:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "parameters": conversation.parameters,
        "source": conversation.source,
        "api_key_name": conversation.api_key_name or None,
        "updated_at": conversation.updated_at.isoformat(),
        "pinned_at": conversation.pinned_at.isoformat() if conversation.pinned_at else None,
        "archived_at": conversation.archived_at.isoformat() if conversation.archived_at else None,
        "running": running,
    }


def model_payload(model: ModelInfo, rules: Mapping[str, ParameterRule]) -> Frame:
    """A model as `GET /api/models` and the chat's settings list it, with the parameters it accepts."""
    return {
        "ref": model.ref,
        "provider": model.provider,
        "label": model.label,
        "context_tokens": model.context_tokens,
        "vision": model.vision,
        "pdf": model.pdf,
        "parameters": {name: _rule_payload(rule) for name, rule in rules.items()},
    }


def _rule_payload(rule: ParameterRule) -> Frame:
    payload: Frame = {"kind": rule.kind, "label": rule.label, "help": rule.help}
    for name in ("minimum", "maximum", "default"):
        if (value := getattr(rule, name)) is not None:
            payload[name] = value
    if rule.choices:
        payload["choices"] = list(rule.choices)
    if rule.kind == "strings":
        payload |= {"max_items": rule.max_items, "max_chars": rule.max_chars}
    if rule.allow_zero:
        payload["allow_zero"] = True
    return payload


def share_payload(share: ShareLink, *, url: str) -> Frame:
    """A share link as its owner sees it (GET /api/shares): `url` is the public page."""
    return {
        "id": share.pk,
        "conversation": share.conversation_id,
        "title": share.title,
        "url": url,
        "messages": len(share.snapshot),
        "created_at": share.created_at.isoformat(),
        "expires_at": share.expires_at.isoformat() if share.expires_at else None,
        "revoked_at": share.revoked_at.isoformat() if share.revoked_at else None,
    }


def import_job_payload(job: ImportJob) -> Frame:
    """An import's state, polled by the page for its progress bar (GET /api/imports/<id>)."""
    return {
        "id": job.pk,
        "status": job.status,
        "kind": job.kind or None,
        "filename": job.filename,
        "total": job.total,
        "done": job.done,
        "created": job.created,
        "skipped": job.skipped,
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def search_hit_payload(hit: SearchHit) -> Frame:
    """One search result (GET /api/search): snippets are segments `{"text", "mark"}`, never markup."""
    return {
        "conversation": hit.conversation_id,
        "title": hit.title,
        "message": hit.message_id,
        "role": hit.role,
        "score": round(hit.score, 6),
        "snippet": hit.snippet,
        "title_snippet": hit.title_snippet,
    }


def hello_frame(*, user_id: int, limits: Frame, protocol: int) -> Frame:
    """`protocol`: the version this connection speaks; `protocols`: every version the server does."""
    return {
        "type": "hello",
        "protocol": protocol,
        "protocols": list(PROTOCOL_VERSIONS),
        "user": user_id,
        "limits": limits,
    }


def message_frame(message: Message, *, tree: Tree | None = None) -> Frame:
    """A new message: it ends the current branch, under its `parent`."""
    payload = message_payload(message, tree=tree)
    return {"type": "message", "conversation": message.conversation_id, "message": payload}


def path_frame(
    *,
    conversation_id: int,
    leaf: int | None,
    messages: list[Message],
    tree: Tree,
    feedback: Mapping[int, Feedback] | None = None,
) -> Frame:
    """The branch a conversation shows, root first, each message with content and sibling position."""
    return {
        "type": "path",
        "conversation": conversation_id,
        "leaf": leaf,
        "messages": [message_payload(message, tree=tree, feedback=feedback) for message in messages],
    }


def start_frame(message: Message) -> Frame:
    return {
        "type": "start",
        "conversation": message.conversation_id,
        "message": message.pk,
        "model": message.model,
        "provider": message.provider,
        "seq": 0,
    }


def delta_frame(
    *, conversation_id: int, message_id: int, seq: int, part: int, kind: str, offset: int, text: str
) -> Frame:
    """Text of one part of a reply; `offset` counts within that part."""
    return {
        "type": "delta",
        "conversation": conversation_id,
        "message": message_id,
        "seq": seq,
        "part": part,
        "kind": kind,
        "offset": offset,
        "text": text,
    }


def accepted_frame(
    *,
    client_id: str,
    conversation_id: int,
    user_message: Message | None,
    reply: Message,
    duplicate: bool,
    tree: Tree | None = None,
) -> Frame:
    """The answer to a reply-starting request: its messages, and whether they already existed."""
    return {
        "type": "accepted",
        "client_id": client_id,
        "conversation": conversation_id,
        "user_message": message_payload(user_message, tree=tree) if user_message else None,
        "message": message_payload(reply, tree=tree),
        "duplicate": duplicate,
    }


def queued_frame(*, conversation_id: int, message_id: int, ahead: int) -> Frame:
    """The reply waits for a free worker slot; `ahead` replies were queued before it."""
    return {"type": "queued", "conversation": conversation_id, "message": message_id, "ahead": ahead}


def done_frame(message: Message) -> Frame:
    return {
        "type": "done",
        "conversation": message.conversation_id,
        "message": message_payload(message, with_content=False),
    }


def snapshot_frame(
    *, conversation_id: int, reply: Message | None, parts: list[tuple[str, str]] | None = None, seq: int = 0
) -> Frame:
    """The state of the conversation's latest reply; `parts`/`seq` come from the live log when it runs."""
    payload = None
    if reply is not None:
        payload = message_payload(reply) if parts is None else live_message_payload(reply, parts=parts, seq=seq)
    return {"type": "snapshot", "conversation": conversation_id, "message": payload}


def live_message_payload(
    message: Message, *, parts: list[tuple[str, str]], seq: int, tree: Tree | None = None
) -> Frame:
    """A running reply's payload with the live log's text (newer than the last checkpoint) and `seq`."""
    payload = message_payload(message, tree=tree)
    content = answer_text(parts)
    live = [{"kind": kind, "text": text} for kind, text in parts]
    payload.update(content=content, seq=seq, length=len(content), parts=parts_payload(live))
    return payload


def conversation_frame(conversation: Conversation, *, running: bool) -> Frame:
    return conversation_frame_of(conversation_payload(conversation, running=running))


def conversation_frame_of(payload: Frame) -> Frame:
    return {"type": "conversation", "conversation": payload}


def conversation_deleted_frame(conversation_id: int) -> Frame:
    return {"type": "conversation_deleted", "conversation": conversation_id}


def error_frame(error: ChatError, *, ref: str | None = None, conversation_id: int | None = None) -> Frame:
    frame: Frame = {"type": "error", "code": error.code, "message": error.message}
    if error.retry_after is not None:
        frame["retry_after"] = error.retry_after
    if error.field is not None:
        frame["field"] = error.field
    if ref is not None:
        frame["ref"] = ref
    if conversation_id is not None:
        frame["conversation"] = conversation_id
    return frame


def pong_frame() -> Frame:
    return {"type": "pong"}


async def publish(
    group: str, frame: Frame, *, message_id: int | None = None, seq: int | None = None, answered: str | None = None
) -> None:
    """Send one frame to every client following `group` (at most once: the database is the truth).

    Frames about a reply also carry its message id and seq outside the JSON, so consumers can
    drop what a snapshot already covered, and SSE can set `id:`, without decoding the frame.
    `answered`: the channel of a socket that already has this frame as its answer; it skips it.
    """
    event = _layer_event(frame, message_id=message_id, seq=seq)
    if answered is not None:
        event["answered"] = answered
    try:
        wire = _pubsub_wire(group, event)
        if wire is not None and await live_log().publish(*wire):
            return
        await get_channel_layer().group_send(group, event)
    except Exception:  # noqa: BLE001 - Redis away: a lost frame is recovered by seq/offset, never fatal
        logger.warning("frame %s to %s not delivered", frame["type"], group, exc_info=True)


def _layer_event(frame: Frame, *, message_id: int | None, seq: int | None) -> Frame:
    event: Frame = {"type": "chat.frame", "kind": frame["type"], "json": encode(frame)}
    if message_id is not None:
        event["message"] = message_id
        event["seq"] = seq or 0
    if frame["type"] == "delta" and frame["kind"] != "text":
        event["part_kind"] = frame["kind"]  # protocol-1 followers get text only: dropped undecoded
    return event


def text_only(event: Frame) -> bool:
    """Whether a protocol-1 follower gets this layer event: everything but deltas of non-text parts."""
    return "part_kind" not in event


def delta_wire(**delta: Any) -> tuple[str, bytes] | None:
    """A delta (the fields of `delta_frame`) as the Redis pub/sub layer would publish it: (Redis
    channel, bytes); None on other layers.

    The live log then publishes it itself, after the append and in the same round trip (chat.live).
    """
    frame = delta_frame(**delta)
    event = _layer_event(frame, message_id=delta["message_id"], seq=delta["seq"])
    return _pubsub_wire(conversation_group(delta["conversation_id"]), event)


def _pubsub_wire(group: str, event: Frame) -> tuple[str, bytes] | None:
    layer = get_channel_layer()
    channel_of = pubsub_channel_of(layer)
    if channel_of is None:
        return None
    return channel_of(group), layer.serialize(event)


def pubsub_channel_of(layer: Any) -> Callable[[str], str] | None:
    """On the Redis pub/sub layer, the Redis channel each group is published on (chat.fanout subscribes
    to the same); None on other layers. Call it in the event loop that will use it."""
    if type(layer).__name__ != "RedisPubSubChannelLayer":
        return None
    # channels_redis 4.3 internals (pinned): one shard, and the channel a group is published on.
    loop_layer = layer._get_layer()
    if len(loop_layer._shards) != 1:
        return None
    return loop_layer._get_group_channel_name


async def publish_delta(**delta: Any) -> None:
    """Publish a delta (the fields of `delta_frame`) to the reply's conversation."""
    frame = delta_frame(**delta)
    await publish(conversation_group(delta["conversation_id"]), frame, message_id=delta["message_id"], seq=delta["seq"])


async def publish_start(message: Message) -> None:
    await publish(conversation_group(message.conversation_id), start_frame(message), message_id=message.pk, seq=0)


async def publish_queued(*, conversation_id: int, message_id: int, ahead: int) -> None:
    frame = queued_frame(conversation_id=conversation_id, message_id=message_id, ahead=ahead)
    await publish(conversation_group(conversation_id), frame, message_id=message_id, seq=0)


async def publish_done(message: Message) -> None:
    frame = done_frame(message)
    await publish(conversation_group(message.conversation_id), frame, message_id=message.pk, seq=message.seq)


async def publish_to_conversation(conversation_id: int, frame: Frame) -> None:
    await publish(conversation_group(conversation_id), frame)


async def publish_path(frame: Frame, *, answered: str | None = None) -> None:
    """A `path` frame (a branch switch) to every follower of its conversation but the socket that
    asked, which has it as its answer (`answered`, its channel name)."""
    await publish(conversation_group(frame["conversation"]), frame, answered=answered)


async def publish_feedback(frame: Frame, *, answered: str | None = None) -> None:
    """A `feedback` frame to every tab following its conversation but the socket that asked (`answered`)."""
    await publish(conversation_group(frame["conversation"]), frame, answered=answered)


async def publish_to_user(user_id: int, frame: Frame) -> None:
    await publish(user_group(user_id), frame)


async def publish_conversation_of(reply: Message) -> None:
    """Tell the owner's sidebars whether the reply's conversation is running (`reply.conversation` loaded)."""
    conversation = reply.conversation
    await publish_to_user(conversation.owner_id, conversation_frame(conversation, running=reply.is_active))


# --- Events that are not frames: stop signals to workers, ended sessions to live connections -----------


def session_ended_event(session_key: str) -> Frame:
    return {"type": "session.ended", "session_key": session_key}


async def publish_session_ended(*, user_id: int, session_key: str) -> None:
    """Close every socket and SSE stream of this login session (other sessions stay open)."""
    event = session_ended_event(session_key)
    layer = get_channel_layer()
    await layer.group_send(user_group(user_id), event)  # WebSocket consumers compare the key themselves
    await layer.group_send(session_group(session_key), event)  # SSE streams of this session


async def publish_stop_request(conversation_id: int) -> None:
    """Ask whichever worker runs this conversation's reply to stop, on the jobs layer."""
    event = {"type": "generation.cancel", "conversation": conversation_id}
    await get_channel_layer("jobs").group_send(cancel_group(conversation_id), event)
