"""Daphne's relay cost per frame and follower, in process CPU time: K local followers of one group, M
frames published to it, read either as channels_redis' pub/sub layer delivers them (a receive and a
msgpack decode per consumer per frame) or through chat.fanout (one decode per frame, an inbox each).

    REDIS_URL=redis://127.0.0.1:6379/0 CHAT_REDIS_PREFIX=bench-fanout python bench/fanout_cpu.py layer 50 2000
    REDIS_URL=redis://127.0.0.1:6379/0 CHAT_REDIS_PREFIX=bench-fanout python bench/fanout_cpu.py fanout 50 2000

The publishing (one pipeline, from this process) is counted in both, so the difference is the relay's.
"""

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from channels.layers import get_channel_layer  # noqa: E402
from django.conf import settings  # noqa: E402

from chat import events  # noqa: E402
from chat.fanout import Inbox, fanout  # noqa: E402

GROUP = events.conversation_group(999_999_999)


def delta_event(seq: int) -> dict:
    frame = events.delta_frame(
        conversation_id=999_999_999, message_id=1, seq=seq, part=0, kind="text", offset=seq, text="hello "
    )
    return events._layer_event(frame, message_id=1, seq=seq)


async def followers(mode: str, count: int) -> list:
    """`count` callables, each awaiting its follower's next event."""
    layer = get_channel_layer()
    if mode == "layer":
        names = [await layer.new_channel() for _ in range(count)]
        for name in names:
            await layer.group_add(GROUP, name)
        return [lambda name=name: layer.receive(name) for name in names]
    inboxes = [Inbox(capacity=10**7) for _ in range(count)]
    for inbox in inboxes:
        await fanout().follow(GROUP, inbox)
    return [inbox.get for inbox in inboxes]


async def main(mode: str, count: int, frames: int) -> None:
    import redis.asyncio as redis

    layer = get_channel_layer()
    nexts = await followers(mode, count)

    async def read(next_event) -> None:
        for _ in range(frames):
            await next_event()

    readers = [asyncio.create_task(read(next_event)) for next_event in nexts]
    client = redis.Redis.from_url(settings.REDIS_URL)
    channel = events.pubsub_channel_of(layer)(GROUP)
    pipe = client.pipeline(transaction=False)
    for seq in range(1, frames + 1):
        pipe.publish(channel, layer.serialize(delta_event(seq)))
    await asyncio.sleep(0.5)  # every subscription live
    cpu = time.process_time()
    await pipe.execute()
    await asyncio.wait_for(asyncio.gather(*readers), 300)
    cpu = time.process_time() - cpu
    print(
        f"{mode}: {count} followers, {frames} frames: {cpu:.3f} s CPU, {cpu / (count * frames) * 1e6:.2f} µs per frame and follower"
    )
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
