import asyncio

import pytest

from chat.live import (
    _CLEAR_HEAD,
    _EVALSHA_HEAD,
    _PUBLISH_HEAD,
    APPEND_PUBLISH_SHA,
    CLEAR_SHA,
    LiveFrame,
    RedisLiveLog,
    _pack_args,
)
from chat.redis_clients import key, log_client


def test_a_packed_frame_is_byte_for_byte_what_redis_py_would_send():
    from redis.asyncio.connection import Connection

    args = ("p:live:7:text:1", "p:live:7:ends", "p:live:7:kinds", "p:live:7:cursor", "héllo ", b"1:6", 12)
    args += ("p__group__c.3", b"\x85\x00\xff", 3600, 1, "t", "")

    ours = _EVALSHA_HEAD + _pack_args(*args)

    assert ours == b"".join(Connection().pack_command("EVALSHA", APPEND_PUBLISH_SHA, 4, *args))
    assert _PUBLISH_HEAD + _pack_args("c", b"x") == b"".join(Connection().pack_command("PUBLISH", "c", b"x"))
    clear = ("p:live:7:kinds", "p:live:7:ends", "p:live:7:cursor", "p:live:7:text:", 3600)
    assert _CLEAR_HEAD + _pack_args(*clear) == b"".join(Connection().pack_command("EVALSHA", CLEAR_SHA, 3, *clear))


@pytest.mark.cluster_only
async def test_a_batch_answers_each_command_with_its_own_reply_an_error_only_its_own():
    batcher = RedisLiveLog()._batcher()
    wrong = b"*2\r\n" + _pack_args("PUBLISH", "hp-perframe-test-c")  # PUBLISH without its message

    replies = await asyncio.gather(
        batcher.run(_PUBLISH_HEAD + _pack_args("hp-perframe-test-a", b"1")),
        batcher.run(wrong),
        batcher.run(_PUBLISH_HEAD + _pack_args("hp-perframe-test-b", b"2")),
        return_exceptions=True,
    )

    from redis.exceptions import ResponseError

    assert replies[0] == 0 and replies[2] == 0
    assert isinstance(replies[1], ResponseError) and "wrong number of arguments" in str(replies[1])


async def live_keys(message_id: int) -> list[bytes]:
    return sorted(await log_client.get().keys(key("live", message_id) + ":*"))


@pytest.mark.cluster_only
async def test_begin_clears_every_part_of_an_earlier_log_and_end_leaves_no_key_even_after_a_script_flush():
    log, message_id = RedisLiveLog(), 990_001
    await log.begin(message_id)
    await log.append(message_id, LiveFrame(part=0, kind="reasoning", text="think", end=5, cursor=3))
    await log.append(message_id, LiveFrame(part=1, kind="text", text="Hi", end=2))
    assert len(await live_keys(message_id)) == 5  # kinds, ends, cursor, two parts' text

    await log.begin(message_id)  # the reply starts again (a worker took it over from scratch)
    assert await live_keys(message_id) == [key("live", message_id, "kinds").encode()]
    assert 0 < await log_client.get().ttl(key("live", message_id, "kinds")) <= 3600
    assert (await log.state(message_id)).parts == []

    await log.append(message_id, LiveFrame(part=0, kind="text", text="Hello", end=5))
    await log_client.get().script_flush()  # as after a Redis restart: the script must be loaded again
    await log.end(message_id)
    assert await live_keys(message_id) == []
