"""chat/memory_layer.py: embedded mode's channel layer delivers like channels' in-memory layer, and sweeps
for expired messages once a sweep interval instead of on every frame."""

import pytest
from channels.layers import InMemoryChannelLayer
from django.conf import settings

from chat import memory_layer
from chat.memory_layer import EmbeddedChannelLayer


class Clocks:
    """time.time (channels' expiry) and time.monotonic (the sweep interval), moved by the test."""

    def __init__(self, monkeypatch) -> None:
        self.now = 1_000_000.0
        monkeypatch.setattr(memory_layer.time, "monotonic", lambda: self.now)
        monkeypatch.setattr("channels.layers.time.time", lambda: self.now)


@pytest.fixture
def sweeps(monkeypatch) -> list[float]:
    """Every real sweep of channels' own layer."""
    swept: list[float] = []
    original = InMemoryChannelLayer._clean_expired

    def counting(layer) -> None:
        swept.append(1.0)
        original(layer)

    monkeypatch.setattr(InMemoryChannelLayer, "_clean_expired", counting)
    return swept


async def test_a_group_send_reaches_every_member_and_a_full_one_misses_it_alone():
    layer = EmbeddedChannelLayer(capacity=1)
    full, free = await layer.new_channel(), await layer.new_channel()
    for channel in (full, free):
        await layer.group_add("conversation-1", channel)
    await layer.send(full, {"type": "earlier"})

    await layer.group_send("conversation-1", {"type": "frame"})

    assert await layer.receive(free) == {"type": "frame"}
    assert await layer.receive(full) == {"type": "earlier"}


async def test_a_thousand_frames_within_a_second_sweep_once(monkeypatch, sweeps):
    clocks = Clocks(monkeypatch)
    layer = EmbeddedChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("conversation-1", channel)

    for _ in range(1000):
        await layer.group_send("conversation-1", {"type": "frame"})
        await layer.receive(channel)
    clocks.now += layer.sweep_interval
    await layer.group_send("conversation-1", {"type": "frame"})

    assert len(sweeps) == 2


async def test_a_member_whose_message_expired_leaves_its_groups_at_the_next_sweep(monkeypatch):
    clocks = Clocks(monkeypatch)
    layer = EmbeddedChannelLayer(expiry=60)
    gone, reading = await layer.new_channel(), await layer.new_channel()
    for channel in (gone, reading):
        await layer.group_add("conversation-1", channel)
    await layer.send(gone, {"type": "never read"})

    clocks.now += 61
    await layer.group_send("conversation-1", {"type": "frame"})

    assert list(layer.groups["conversation-1"]) == [reading]


def test_embedded_jobs_wait_as_long_and_as_many_as_in_redis_mode():
    if settings.REDIS_URL:
        pytest.skip("embedded mode's layers")
    jobs = settings.CHANNEL_LAYERS["jobs"]

    assert jobs["BACKEND"] == "chat.memory_layer.EmbeddedChannelLayer"
    assert jobs["CONFIG"] == {"capacity": 1000, "expiry": 600}
