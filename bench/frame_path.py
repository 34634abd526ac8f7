"""The worker's CPU per live frame in Redis mode: K concurrent fake replies fed tokens through
FrameCoalescer (chat.engine.frames) into RedisLiveLog (chat.live: the append-then-publish script,
batched), against the real Redis of REDIS_URL, with no provider, database or consumer in the way.

    python bench/frame_path.py                                  # 200 replies x 200 tokens, 4 a frame, 3 rounds
    python bench/frame_path.py --replies 50 --tokens 400 --per-frame 1 --repeat 5

The token feed is controlled, not timed: each reply's coalescer runs on a clock that moves only
when the feeder says so, so every `--per-frame` tokens make exactly one frame, whatever the
machine's speed. The replies feed concurrently on one uvloop loop (as in the worker), so their
frames share the live log's batched round trips as they do under load.

CPU is this process's time.process_time() (user + system) over a round's feed, per 1,000 frames and
per 1,000 tokens, after one round that is not counted (first use loads the script, imports modules).
Each round runs on a new event loop, connections included.
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("CHAT_REDIS_PREFIX", "bench-frame-path")


class StepClock:
    """A clock that moves only on step(): a coalescer's window has always passed after a step, never
    before it, so frames are cut exactly where the feeder steps. Timers never fire (add flushes)."""

    class _Timer:
        def cancel(self) -> None:
            pass

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def call_at(self, when, callback, /):
        return self._Timer()

    def step(self) -> None:
        self.now += 3600.0


async def one_round(replies: int, tokens: int, per_frame: int, first_id: int) -> tuple[float, int, int]:
    from chat.engine.frames import FrameCoalescer
    from chat.live import live_log

    log = live_log()
    ids = range(first_id, first_id + replies)
    for message_id in ids:
        await log.begin(message_id)

    async def feed(message_id: int) -> FrameCoalescer:
        clock = StepClock()
        frames = FrameCoalescer(conversation_id=message_id, message_id=message_id, clock=clock)
        for i in range(tokens):
            await frames.add("tok ")
            if (i + 1) % per_frame == 0:
                clock.step()
            await asyncio.sleep(0)  # let the other replies feed: their frames share round trips
        await frames.close()
        return frames

    began = time.process_time()
    done = await asyncio.gather(*(feed(message_id) for message_id in ids))
    cpu = time.process_time() - began
    frames_sent = sum(frames.seq for frames in done)
    for message_id, frames in zip(ids, done, strict=True):
        state = await log.state(message_id)
        assert state is not None and state.seq == frames.seq, (message_id, state, frames.seq)
        assert state.content == frames.content
        await log.end(message_id)
    return cpu, frames_sent, replies * tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=200, help="tokens a reply")
    parser.add_argument("--per-frame", type=int, default=4, help="tokens a frame")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import django
    import uvloop

    django.setup()
    from redis.utils import HIREDIS_AVAILABLE

    print(f"hiredis: {HIREDIS_AVAILABLE}; {args.replies} replies x {args.tokens} tokens, {args.per_frame} a frame")
    per_frame_ms, per_token_ms = [], []
    for round_ in range(args.repeat + 1):
        cpu, frames, tokens = uvloop.run(
            one_round(args.replies, args.tokens, args.per_frame, 10_000_000 + round_ * 100_000)
        )
        if round_ == 0:
            continue  # warm-up
        per_frame_ms.append(cpu * 1000 / frames * 1000)
        per_token_ms.append(cpu * 1000 / tokens * 1000)
        print(
            f"round {round_}: {frames} frames, CPU {cpu:.2f} s: {per_frame_ms[-1]:.0f} ms / 1k frames, {per_token_ms[-1]:.0f} ms / 1k tokens"
        )
    print(
        f"median: {statistics.median(per_frame_ms):.0f} ms / 1k frames, {statistics.median(per_token_ms):.0f} ms / 1k tokens"
    )


if __name__ == "__main__":
    main()
