"""Taking up a reply whose worker died: where the next worker goes on from.

Only a reply streaming from a response its provider keeps (OpenAI's background mode) can be taken up:
the reaper hands it to another worker (services.replies_hand_off_stale), which reattaches to that
response after the cursor of the last frame published, so followers get every character once: the
frames it publishes go on with the same seq and the same offsets in each part.

The live log has that last frame with its cursor (they are written together, atomically). If the log
is gone (Redis restarted meanwhile), the last checkpoint has the parts, seq and cursor, saved together,
and the log is started again from it: the text streamed since that checkpoint comes again from the
provider, after the checkpoint's cursor, so nothing is lost there either.
"""

import logging
from dataclasses import dataclass
from typing import Any

from chat.engine.frames import Clock, FrameCoalescer
from chat.engine.resilience import best_effort
from chat.live import FrameEnd, LiveState, live_log
from chat.models import Message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumePoint:
    """Where a reply taken up goes on: its parts as stored, the frames they make, and the cursor they
    reach in the provider's response `response_id` (None: from the response's start)."""

    response_id: str
    records: list[dict[str, Any]]
    seq: int
    ends: list[FrameEnd]
    cursor: int | None

    def __str__(self) -> str:
        return f"frame {self.seq}, after event {self.cursor} of {self.response_id}"

    def frames(self, reply: Message, *, clock: Clock | None = None) -> FrameCoalescer:
        """The coalescer that goes on from here."""
        return FrameCoalescer.resumed(
            conversation_id=reply.conversation_id,
            message_id=reply.pk,
            records=self.records,
            seq=self.seq,
            ends=self.ends,
            cursor=self.cursor,
            clock=clock,
        )


async def resume_point(reply: Message) -> ResumePoint | None:
    """Where to go on with a reply handed over by the reaper; None for a reply that starts afresh."""
    if not (reply.resumes and reply.upstream_response_id):
        return None
    stored = _stored_records(reply)
    state, ends = await _live_state(reply.pk)
    if state is not None and _agrees(state, ends, reply):
        records = [
            {**_meta(stored, index), "kind": kind, "text": text} for index, (kind, text) in enumerate(state.parts)
        ]
        return ResumePoint(reply.upstream_response_id, records, state.seq, ends, state.cursor)
    logger.info("reply %s: no live log to go on from; going on from its last checkpoint", reply.pk)
    ends = _checkpoint_ends(stored, reply.seq)
    parts = [(record["kind"], record["text"]) for record in stored]
    await best_effort(live_log().restore(reply.pk, parts, ends, reply.upstream_cursor))
    return ResumePoint(reply.upstream_response_id, stored, reply.seq, ends, reply.upstream_cursor)


async def _live_state(message_id: int) -> tuple[LiveState | None, list[FrameEnd]]:
    try:
        state = await live_log().state(message_id)
        return state, (await live_log().ends(message_id) if state is not None else [])
    except Exception:  # noqa: BLE001 - Redis away: the checkpoint will do
        logger.warning("could not read the live log of reply %s", message_id, exc_info=True)
        return None, []


def _agrees(state: LiveState, ends: list[FrameEnd], reply: Message) -> bool:
    """The log holds every frame it counts, with their cursor, and no fewer than the last checkpoint."""
    return len(ends) == state.seq >= reply.seq and (state.cursor is not None or state.seq == 0)


def _stored_records(reply: Message) -> list[dict[str, Any]]:
    """The reply's parts as its last checkpoint saved them (a reply of text alone keeps only `content`)."""
    if reply.parts:
        return [dict(part) for part in reply.parts]
    return [{"kind": "text", "text": reply.content}] if reply.content else []


def _meta(stored: list[dict[str, Any]], index: int) -> dict[str, Any]:
    """What the checkpoint keeps of a part besides its text: its provider data, how long it took."""
    return {key: value for key, value in stored[index].items() if key != "text"} if index < len(stored) else {}


def _checkpoint_ends(records: list[dict[str, Any]], seq: int) -> list[FrameEnd]:
    """Frame ends for a log started again from a checkpoint, which keeps only where the last frame ended.
    The earlier frames are said to end at the reply's start: a client resuming from one of them gets the
    whole last part again (and drops what it has of it) or a snapshot, never a delta that skips text."""
    if not seq:
        return []
    last = (len(records) - 1, len(records[-1]["text"])) if records else (0, 0)
    return [(0, 0)] * (seq - 1) + [last]
