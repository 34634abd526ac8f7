"""Deltas into frames: the coalescer that batches a reply's tokens, and the append-then-publish choice.

A frame is written to the live log before it is published, so a snapshot read after subscribing
always meets the live frames without a gap.
"""

import asyncio
import logging
import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from django.conf import settings

from chat import events
from chat.live import FrameEnd, LiveFrame, Part, live_log
from chat.models import PROVIDER_KEYS, answer_text

logger = logging.getLogger(__name__)


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the coalescer needs of time: the running event loop, or a controlled clock in tests."""

    def time(self) -> float: ...
    def call_at(self, when: float, callback: Callable[[], object], /) -> Timer: ...


def frame_window(streaming: int) -> float:
    """The batching window when `streaming` replies share this process's frame budget."""
    window = settings.CHAT_FRAME_WINDOW_MS / 1000
    min_window = settings.CHAT_FRAME_MIN_WINDOW_MS / 1000
    return min(window, max(min_window, streaming / settings.CHAT_FRAME_RATE))


class FrameCoalescer:
    """Turns deltas into frames: the first delta after a quiet spell goes at once, a burst is batched.

    The batching window adapts to load: the replies streaming in this process share a budget of
    CHAT_FRAME_RATE frames a second (50 replies: 100 ms, by default), from CHAT_FRAME_MIN_WINDOW_MS (a
    model slower than one token per that window has every token sent at once) up to
    CHAT_FRAME_WINDOW_MS. Every frame costs the same on the channel layer and in every consumer,
    however few characters it carries, so this keeps the relay's cost per token flat as load grows.
    So a reply of T seconds makes at most T / min window + 1 frames, however fast its tokens come.

    A reply is a list of parts (reasoning, then the answer, say): a delta of another kind than the
    part being written ends that part (what is buffered goes out at once) and opens the next one.
    A frame holds text of one part; its offset counts within that part; `seq` counts all frames.

    What the provider needs back on the next turn (a thinking block's signature, a redacted thinking
    block) is kept for the reply's record (`records`), never published: clients see the same parts
    as ever. Such a block ends the part being written, so each signed block stays a part of its own.

    Deltas of a provider that numbers its events carry a cursor: `cursor` is that of the last delta
    published, written to the live log with its frame, so the log's text and cursor always agree (and
    a checkpoint's, which copies `records`, `seq` and `cursor` at one instant).
    """

    def __init__(self, *, conversation_id: int, message_id: int, clock: Clock | None = None) -> None:
        self.conversation_id = conversation_id
        self.message_id = message_id
        self.max_chars = settings.CHAT_FRAME_MAX_CHARS
        # frame_window's settings, read once: the coalescer asks for its window at every delta.
        self._window = settings.CHAT_FRAME_WINDOW_MS / 1000
        self._min_window = settings.CHAT_FRAME_MIN_WINDOW_MS / 1000
        self._rate = settings.CHAT_FRAME_RATE
        self.seq = 0
        self._kinds: list[str] = []  # each part's kind; the last part is the one being written
        self._sent: list[list[str]] = []  # per part, the texts of its frames (joined lazily)
        self._lengths: list[int] = []  # per part, the length published so far
        self._ends: list[FrameEnd] = []  # where each frame ended: enough to rebuild a lost live log
        self._began: list[float] = []  # per part, when its first delta came (the clock's time)
        self._kept: list[dict[str, str]] = []  # per part, the provider's data for it (a signature)
        # Provider blocks with no text to show (redacted thinking), each with the number of parts before it.
        self._hidden: list[tuple[int, dict[str, str]]] = []
        self._block_ended = False  # the provider ended the last part's block: the next delta opens a part
        self._last_delta = 0.0
        self._pending: list[str] = []  # text of the last part, not yet published
        self._pending_chars = 0
        self._last_flush = -math.inf
        self._timer: Timer | None = None
        self.cursor: int | None = None  # the cursor of the last delta published
        self._pending_cursor: int | None = None  # that of the last delta buffered
        self._prior_ms: list[int] = []  # per part taken over from another worker, the time it took there
        self._lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._clock: Clock = clock or self._loop
        self._flushes: set[asyncio.Task[None]] = set()
        _open.add(self)

    @classmethod
    def resumed(
        cls,
        *,
        conversation_id: int,
        message_id: int,
        records: Sequence[Mapping[str, Any]],
        seq: int,
        ends: Sequence[FrameEnd],
        cursor: int | None,
        clock: Clock | None = None,
    ) -> "FrameCoalescer":
        """A coalescer that goes on with a reply another worker streamed: its parts as stored (`records`),
        `seq` frames ending at `ends`, and the `cursor` they reach. The next frame is seq + 1, at the end of
        the last part (or opening the next)."""
        frames = cls(conversation_id=conversation_id, message_id=message_id, clock=clock)
        now = frames._clock.time()
        for record in records:
            frames._kinds.append(record["kind"])
            frames._sent.append([record["text"]])
            frames._lengths.append(len(record["text"]))
            frames._began.append(now)
            frames._kept.append({key: record[key] for key in PROVIDER_KEYS if key in record})
            frames._prior_ms.append(int(record.get("duration_ms") or 0))
        frames.seq = seq
        frames._ends = list(ends)
        frames.cursor = cursor
        frames._last_delta = now
        return frames

    @property
    def parts(self) -> list[Part]:
        """Every part published so far, `(kind, text)` (what clients may have seen)."""
        for sent in self._sent:
            if len(sent) > 1:
                sent[:] = ["".join(sent)]
        return [(kind, sent[0] if sent else "") for kind, sent in zip(self._kinds, self._sent, strict=True)]

    @property
    def records(self) -> list[dict[str, str]]:
        """Every part as the reply stores it: `{"kind", "text"}` with the provider's data for it, and the
        blocks with no text in their places among them."""
        records = [
            {"kind": kind, "text": text, **kept} for (kind, text), kept in zip(self.parts, self._kept, strict=True)
        ]
        for position, block in reversed(self._hidden):
            records.insert(position, dict(block))
        return records

    def keep(self, kind: str, *, signature: str = "", redacted: str = "") -> None:
        """Keep provider data with the reply, publish nothing: the `signature` ending the block of the
        part being written (with no such part, as in omitted thinking, a block of its own), or the opaque
        data of a `redacted` block. Either ends the part being written."""
        writing = bool(self._kinds) and self._kinds[-1] == kind and not self._block_ended
        if signature and writing:
            self._kept[-1]["signature"] = signature
        elif signature:
            self._hidden.append((len(self._kinds), {"kind": kind, "text": "", "signature": signature}))
        if redacted:
            self._hidden.append((len(self._kinds), {"kind": kind, "text": "", "redacted": redacted}))
        self._block_ended = True

    def durations_ms(self) -> list[int]:
        """How long each part took: from its first delta to the next part's first (or the last delta)."""
        if not self._began:
            return []
        ends = [*self._began[1:], self._last_delta]
        prior = [*self._prior_ms, *[0] * (len(self._began) - len(self._prior_ms))]
        return [
            before + max(0, round((end - began) * 1000))
            for began, end, before in zip(self._began, ends, prior, strict=True)
        ]

    @property
    def content(self) -> str:
        """The answer text published so far: the text parts, joined."""
        return answer_text(self.parts)

    async def add(self, text: str, *, kind: str = "text", cursor: int | None = None) -> None:
        now = self._clock.time()
        if not self._kinds or kind != self._kinds[-1] or self._block_ended:
            await self.flush()  # the part being written ends here
            self._kinds.append(kind)
            self._sent.append([])
            self._lengths.append(0)
            self._began.append(now)
            self._kept.append({})
            self._block_ended = False
        self._last_delta = now
        self._pending.append(text)
        self._pending_chars += len(text)
        if cursor is not None:
            self._pending_cursor = cursor
        if self._due() or self._pending_chars >= self.max_chars:
            await self.flush()
        else:
            self._arm_timer()

    def _window_end(self) -> float:
        # frame_window(len(_open)), with the settings read at the start
        return self._last_flush + min(self._window, max(self._min_window, len(_open) / self._rate))

    def _due(self) -> bool:
        """The batching window since the last frame has passed (the timer's own expression: no rounding gap)."""
        return self._clock.time() >= self._window_end()

    def _arm_timer(self) -> None:
        if self._timer is None:
            self._timer = self._clock.call_at(self._window_end(), self._flush_later)

    def _flush_later(self) -> None:
        self._timer = None
        task = self._loop.create_task(self.flush(when_due=True))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def flush(self, *, when_due: bool = False) -> None:
        """Publish what is buffered. `when_due` (the timer's flush): only if the window has passed, since
        another frame may have gone out between the timer firing and this running; else wait again."""
        if not when_due and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        async with self._lock:
            if not self._pending:
                return
            if when_due and not self._due():
                self._arm_timer()
                return
            text = "".join(self._pending)
            self._pending.clear()
            self._pending_chars = 0
            if self._pending_cursor is not None:
                self.cursor, self._pending_cursor = self._pending_cursor, None
            part = len(self._kinds) - 1
            offset = self._lengths[part]
            self._lengths[part] += len(text)
            self.seq += 1
            self._sent[part].append(text)
            self._ends.append((part, self._lengths[part]))
            self._last_flush = self._clock.time()
            live = LiveFrame(part=part, kind=self._kinds[part], text=text, end=self._lengths[part], cursor=self.cursor)
            try:
                await self._log_and_publish(live, offset)
            except Exception:  # noqa: BLE001 - the layer is best effort; clients resync from the snapshot
                logger.warning("could not publish frame %s of reply %s", self.seq, self.message_id, exc_info=True)

    async def _log_and_publish(self, live: LiveFrame, offset: int) -> None:
        frame = {
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "seq": self.seq,
            "part": live.part,
            "kind": live.kind,
            "offset": offset,
            "text": live.text,
        }
        wire = events.delta_wire(**frame)
        # On Redis pub/sub, one script appends then publishes, batched with other replies' frames.
        if wire is not None and await live_log().append_and_publish(self.message_id, live, self.seq, wire):
            return
        if await live_log().append(self.message_id, live) != self.seq:
            # Redis restarted (the log is gone) or missed a frame while away: rewrite it whole,
            # so snapshots taken from now on are right again.
            await live_log().restore(self.message_id, self.parts, self._ends, self.cursor)
        await events.publish_delta(**frame)

    async def close(self) -> None:
        """Publish whatever is still buffered."""
        _open.discard(self)
        await self.flush()
        await self._flushed()

    async def discard(self) -> None:
        """The reply is no longer this worker's: drop what is buffered and publish nothing more."""
        _open.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending.clear()
        self._pending_chars = 0
        self._pending_cursor = None
        await self._flushed()

    async def _flushed(self) -> None:
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)


_open: weakref.WeakSet[FrameCoalescer] = weakref.WeakSet()  # replies streaming in this process
