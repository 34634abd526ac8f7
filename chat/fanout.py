"""Live frames to this process's sockets and streams: one subscription per group and event loop, not
one channel-layer receive per consumer per frame.

With Redis pub/sub (`RedisFanout`) a process holds ONE Redis connection per event loop, subscribed to
every group one of its sockets follows; each published frame is decoded once and put in the `Inbox` of
every local follower. `follow()` returns only once Redis confirmed the subscription: a follower then
reads its snapshot from the live log, and every frame is either in that snapshot or arrives after it.
When the connection drops, the reader reconnects, subscribes again to every group, and gives each
follower a `fanout.resync` event once the group is live again: it sends itself a fresh snapshot, so
nothing published during the outage is lost. On any other layer (embedded: the in-memory one; the
list-based Redis layer) `LayerFanout` gives the same interface over one layer channel per group.
"""

import asyncio
import collections
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from channels.layers import get_channel_layer
from django.conf import settings

from chat import events
from chat.errors import ChatError
from chat.per_loop import PerLoop

logger = logging.getLogger(__name__)

INBOX_CAPACITY = 1000  # events; past it the follower is told to re-snapshot instead (nothing is lost)
CONFIRM_SECONDS = 5.0  # how long follow() waits for Redis to confirm a subscription
RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0)  # backoff between reconnects (the last one repeats)

Event = dict[str, Any]


def resync_event(group: str | None) -> Event:
    """A follower's cue to send itself a fresh snapshot of `group` (None: of every group it follows)."""
    return {"type": "fanout.resync", "group": group}


class Inbox:
    """One follower's events, in order. Bounded: a follower that falls `INBOX_CAPACITY` events behind
    loses them and gets a single `fanout.resync` instead (its snapshot covers what it lost).

    A WebSocket consumer also puts its client's own messages here (`put_own`): never dropped, and read
    before the events already waiting, as Channels' dispatch loop would take a client frame first. One
    queue for both lets the consumer read in one plain loop: a frame costs a deque pop, not a task and
    an `asyncio.wait` as in Channels' `await_many_dispatch`."""

    def __init__(self, capacity: int = INBOX_CAPACITY) -> None:
        self._events: collections.deque[Event] = collections.deque()
        self._own: collections.deque[Event] = collections.deque()
        self._capacity = capacity
        self._waiter: asyncio.Future | None = None

    def put(self, event: Event) -> None:
        if len(self._events) >= self._capacity:
            self._events.clear()
            event = resync_event(None)
        self._events.append(event)
        self._wake()

    def put_own(self, message: Event) -> None:
        """The follower's own message (a client frame, its disconnect): never dropped, read first."""
        self._own.append(message)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Event:
        while not self._own and not self._events:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._own.popleft() if self._own else self._events.popleft()

    def __len__(self) -> int:
        return len(self._events)


class Fanout(Protocol):
    async def follow(self, group: str, inbox: Inbox) -> None: ...
    async def unfollow(self, group: str, inbox: Inbox) -> None: ...


class _Followers:
    """Which local inboxes follow each group."""

    def __init__(self) -> None:
        self.by_group: dict[str, set[Inbox]] = {}

    def add(self, group: str, inbox: Inbox) -> bool:
        """Add; True if it is the group's first follower."""
        inboxes = self.by_group.setdefault(group, set())
        inboxes.add(inbox)
        return len(inboxes) == 1

    def remove(self, group: str, inbox: Inbox) -> bool:
        """Remove; True if the group has no follower left."""
        inboxes = self.by_group.get(group)
        if inboxes is None or inbox not in inboxes:
            return False
        inboxes.discard(inbox)
        if inboxes:
            return False
        del self.by_group[group]
        return True

    def deliver(self, group: str, event: Event) -> None:
        for inbox in self.by_group.get(group, ()):
            inbox.put(event)


class RedisFanout:
    """One Redis pub/sub connection (per event loop) for every group this process's followers follow.

    `connect` opens a redis.asyncio Connection (RESP2, not decoding): the reader speaks SUBSCRIBE and
    reads replies itself, so it sees every reconnect and can tell followers to re-snapshot."""

    def __init__(
        self,
        *,
        channel_of: Callable[[str], str],
        decode: Callable[[bytes], Event],
        connect: Callable[[], Awaitable[Any]],
    ) -> None:
        self._channel_of = channel_of
        self._decode = decode
        self._connect = connect
        self._followers = _Followers()
        self._groups: dict[bytes, str] = {}  # Redis channel -> group, for every group followed
        self._confirmed: dict[bytes, asyncio.Future] = {}  # set once Redis confirmed the subscription
        self._outstanding: collections.Counter[bytes] = collections.Counter()  # SUBSCRIBEs not confirmed yet
        self._resync: set[bytes] = set()  # channels to re-snapshot once confirmed again (after a reconnect)
        self._connection: Any = None
        self._reader: asyncio.Task | None = None
        self.subscribe_commands = 0  # SUBSCRIBE commands sent (tests count them)
        self.connections = 0  # connections opened

    async def follow(self, group: str, inbox: Inbox) -> None:
        """Deliver `group`'s events to `inbox`; returns once the subscription is live in Redis."""
        self._followers.add(group, inbox)
        channel = self._channel_of(group).encode()
        confirmed = self._confirmed.get(channel)
        if confirmed is None:
            confirmed = self._confirmed[channel] = asyncio.get_running_loop().create_future()
            self._groups[channel] = group
            await self._subscribe(channel)
        await _taken(self, group, inbox, confirmed, "Redis did not confirm the subscription to %s")

    async def unfollow(self, group: str, inbox: Inbox) -> None:
        if not self._followers.remove(group, inbox):
            return
        channel = self._channel_of(group).encode()
        self._groups.pop(channel, None)
        self._confirmed.pop(channel, None)
        self._resync.discard(channel)
        if self._connection is not None:
            try:
                await self._connection.send_command("UNSUBSCRIBE", channel)
            except Exception:  # noqa: BLE001 - the reader sees the broken connection and reconnects
                logger.debug("could not unsubscribe from %s", group, exc_info=True)

    async def _subscribe(self, channel: bytes) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._run())
            return  # the reader subscribes to every followed group once connected
        if self._connection is None:
            return  # reconnecting: the reader subscribes to it
        try:
            await self._send_subscribe(self._connection, [channel])
        except Exception:  # noqa: BLE001 - the reader sees the broken connection and reconnects
            logger.debug("could not subscribe to %r", channel, exc_info=True)

    async def _send_subscribe(self, connection: Any, channels: list[bytes]) -> None:
        self._outstanding.update(channels)
        self.subscribe_commands += 1
        await connection.send_command("SUBSCRIBE", *channels)

    async def _run(self) -> None:
        """Connect, subscribe to every followed group, read; on any failure start again, forever while
        some group is followed (a reader that dies is logged and restarts)."""
        failures = 0
        while self._groups:
            connection = None
            try:
                connection = await self._connect()
                self.connections += 1
                self._connection = connection
                self._outstanding.clear()
                await self._send_subscribe(connection, list(self._groups))
                failures = 0
                await self._read(connection)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis away or a bug: log it, reconnect, re-snapshot
                logger.warning("the fan-out's Redis connection failed; reconnecting", exc_info=failures == 0)
            finally:
                self._connection = None
                if connection is not None:
                    await _disconnect(connection)
            self._lost_connection()
            await asyncio.sleep(RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)])
            failures += 1
        self._reader = None

    def _lost_connection(self) -> None:
        """Every confirmed subscription is gone with the connection: wait for a new confirmation, then
        tell its followers to re-snapshot (what was published meanwhile reached no one)."""
        for channel, confirmed in list(self._confirmed.items()):
            if confirmed.done():
                self._confirmed[channel] = asyncio.get_running_loop().create_future()
                self._resync.add(channel)

    async def _read(self, connection: Any) -> None:
        while True:
            reply = await connection.read_response(timeout=math.inf, push_request=True)
            kind = reply[0]
            if kind == b"message":
                self._dispatch(reply[1], reply[2])
            elif kind == b"subscribe":
                self._confirm(reply[1])

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        group = self._groups.get(channel)
        if group is None:
            return  # unsubscribed meanwhile
        try:
            event = self._decode(data)
        except Exception:  # noqa: BLE001 - one bad message must not stop the reader
            logger.warning("could not decode a message on %r", channel, exc_info=True)
            return
        self._followers.deliver(group, event)  # decoded once, for every local follower

    def _confirm(self, channel: bytes) -> None:
        self._outstanding[channel] -= 1
        if self._outstanding[channel] > 0:
            return  # a later SUBSCRIBE of it is still in flight: its reply is the one that counts
        del self._outstanding[channel]
        confirmed = self._confirmed.get(channel)
        if confirmed is None or confirmed.done():
            return
        confirmed.set_result(None)
        if channel in self._resync:
            self._resync.discard(channel)
            self._followers.deliver(self._groups[channel], resync_event(self._groups[channel]))


class LayerFanout:
    """The same interface over a channel layer: per group and event loop one layer channel, read by one
    task that puts every event in each local follower's inbox."""

    def __init__(self, layer: Any) -> None:
        self._layer = layer
        self._followers = _Followers()
        self._readers: dict[str, asyncio.Task] = {}
        self._ready: dict[str, asyncio.Future] = {}

    async def follow(self, group: str, inbox: Inbox) -> None:
        self._followers.add(group, inbox)
        ready = self._ready.get(group)
        if ready is None:
            ready = self._ready[group] = asyncio.get_running_loop().create_future()
            self._readers[group] = asyncio.get_running_loop().create_task(self._read(group, ready))
        await _taken(self, group, inbox, ready, "the channel layer did not take the subscription to %s")

    async def unfollow(self, group: str, inbox: Inbox) -> None:
        if not self._followers.remove(group, inbox):
            return
        self._ready.pop(group, None)
        reader = self._readers.pop(group, None)
        if reader is not None:
            reader.cancel()

    async def _read(self, group: str, ready: asyncio.Future) -> None:
        channel = await self._layer.new_channel()
        rejoin = False
        try:
            while True:
                try:
                    await self._layer.group_add(group, channel)
                    if not ready.done():
                        ready.set_result(None)
                    if rejoin:
                        self._followers.deliver(group, resync_event(group))
                    while True:
                        self._followers.deliver(group, await self._layer.receive(channel))
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the layer's Redis away: join again, then re-snapshot
                    logger.warning("the fan-out lost group %s; joining it again", group, exc_info=True)
                    rejoin = True
                    await asyncio.sleep(RECONNECT_SECONDS[-1])
        finally:
            if not ready.done():
                ready.cancel()
            try:
                await asyncio.shield(self._layer.group_discard(group, channel))
            except Exception:  # noqa: BLE001
                logger.debug("could not leave group %s", group, exc_info=True)


async def _taken(fanout: Fanout, group: str, inbox: Inbox, subscribed: asyncio.Future, refusal: str) -> None:
    """Wait (CONFIRM_SECONDS at most) for a follow's subscription to be live; if it never is, the inbox
    stops following and the follower gets `unavailable`. Shielded: one follower giving up leaves the
    subscription to the others waiting on it."""
    try:
        async with asyncio.timeout(CONFIRM_SECONDS):
            await asyncio.shield(subscribed)
    except TimeoutError:
        await fanout.unfollow(group, inbox)
        logger.warning(refusal, group)
        raise ChatError("unavailable") from None


async def _disconnect(connection: Any) -> None:
    try:
        await connection.disconnect()
    except Exception:  # noqa: BLE001
        logger.debug("could not close the fan-out's connection", exc_info=True)


def _redis_connector() -> Callable[[], Awaitable[Any]]:
    import redis.asyncio as redis

    # RESP2 and bytes: replies are [b"subscribe" | b"message", channel, data]. Named, so an operator (or a
    # test) finds it in CLIENT LIST.
    pool = redis.ConnectionPool.from_url(
        settings.REDIS_URL,
        protocol=2,
        socket_keepalive=True,
        socket_connect_timeout=2,
        client_name=f"{settings.CHAT_REDIS_PREFIX}:fanout",
    )

    async def connect() -> Any:
        connection = pool.make_connection()
        await connection.connect()
        return connection

    return connect


def _make_fanout() -> Fanout:
    layer = get_channel_layer()
    channel_of = events.pubsub_channel_of(layer)
    if channel_of is None:
        return LayerFanout(layer)
    return RedisFanout(channel_of=channel_of, decode=layer.deserialize, connect=_redis_connector())


_fanouts: PerLoop[Fanout] = PerLoop(_make_fanout)


def fanout() -> Fanout:
    """This event loop's fan-out."""
    return _fanouts.get()
