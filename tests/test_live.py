import asyncio

import pytest

from chat.live import _EVALSHA_HEAD, _PUBLISH_HEAD, APPEND_PUBLISH_SHA, RedisLiveLog, _pack_args


def test_a_packed_frame_is_byte_for_byte_what_redis_py_would_send():
    from redis.asyncio.connection import Connection

    args = ("p:live:7:text:1", "p:live:7:ends", "p:live:7:kinds", "p:live:7:cursor", "héllo ", b"1:6", 12)
    args += ("p__group__c.3", b"\x85\x00\xff", 3600, 1, "t", "")

    ours = _EVALSHA_HEAD + _pack_args(*args)

    assert ours == b"".join(Connection().pack_command("EVALSHA", APPEND_PUBLISH_SHA, 4, *args))
    assert _PUBLISH_HEAD + _pack_args("c", b"x") == b"".join(Connection().pack_command("PUBLISH", "c", b"x"))


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
