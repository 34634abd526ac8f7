"""The worker's database writes, measured per call: statements and CPU of generation_begin, a checkpoint and
generation_finish, and the database thread's time a second at C simulated replies checkpointing once a
second, one transaction each (before) or in one batch (chat.engine.checkpoints.write_batch).

    python bench/db_writes_bench.py                      # SQLite file in WAL mode, as embedded mode runs
    python bench/db_writes_bench.py --database-url postgres://postgres@127.0.0.1:5432/sc_bench_writes

CPU is time.process_time over many repetitions (the machine is shared: wall time is noisy); "thread ms"
is wall time of the one thread the writes run on, what other writes queue behind.
"""

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="", help="PostgreSQL (created if missing); default a SQLite file")
    parser.add_argument("--concurrency", type=int, default=200, help="replies checkpointing at once")
    parser.add_argument("--repeat", type=int, default=200, help="calls measured per operation")
    parser.add_argument("--rounds", type=int, default=10, help="checkpoint rounds measured")
    parser.add_argument("--turns", type=int, default=10, help="earlier exchanges before a claim with history")
    return parser.parse_args()


def setup(args: argparse.Namespace) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["OPENAI_API_KEY"] = "sk-bench"
    os.environ["OPENAI_MODELS"] = "gpt-test"
    os.environ["LOCAL_MODEL_ENABLED"] = "false"
    os.environ.pop("REDIS_URL", None)
    for name in ("CHAT_MAX_CONCURRENT_PER_USER", "CHAT_MESSAGES_PER_MINUTE", "CHAT_DAILY_TOKEN_BUDGET"):
        os.environ[name] = "0"  # limits off: one bench user has every reply
    os.environ["CHAT_MAX_QUEUED_PER_USER"] = "100000"
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
        import psycopg

        base, _, name = args.database_url.rpartition("/")
        with psycopg.connect(base + "/postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
    else:
        os.environ.pop("DATABASE_URL", None)
        os.environ["SQLITE_PATH"] = str(Path(tempfile.mkdtemp(prefix="db-writes-")) / "bench.sqlite3")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def measure(label: str, calls, *, each) -> None:
    """`each(i)` run for every i of `calls`; prints the statements of one call after the first (BEGIN and
    COMMIT included), CPU and wall ms per call of the rest."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    each(calls[0])  # warm: the first call of a day also creates its usage row, the first claim reads the policies
    connection.queries_log.clear()  # a log already at its cap (9,000) would count none of these
    with CaptureQueriesContext(connection) as queries:
        each(calls[1])
    cpu, wall = [], []
    for i in calls[2:]:
        started_cpu, started = time.process_time(), time.perf_counter()
        each(i)
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    print(
        f"{label}: {len(queries)} statements, CPU {statistics.mean(cpu) * 1000:.2f} ms, "
        f"thread {statistics.median(wall) * 1000:.2f} ms (median) per call"
    )


def main() -> None:
    args = parse()
    setup(args)
    from channels.db import database_sync_to_async
    from django.contrib.auth import get_user_model

    from chat import services
    from chat.models import Message
    from chat.providers.base import StreamResult

    try:
        from chat.engine.checkpoints import write_batch
    except ImportError:  # before the checkpoint writer
        write_batch = None

    owner = get_user_model().objects.create_user(username=f"bench-{uuid.uuid4().hex[:8]}", password="pw")

    def pending(turns: int = 0) -> int:
        """A pending reply, after `turns` answered exchanges in its conversation (its history)."""
        conversation = services.conversation_create(owner=owner, model="openai:gpt-test", system_prompt="Be brief.")
        for turn in range(turns + 1):
            send = services.message_send(conversation=conversation, client_id=uuid.uuid4().hex, content=f"Plan {turn}")
            if turn < turns:
                Message.objects.filter(pk=send.reply.pk).update(status="complete", content="An answer. " * 20)
        return send.reply.pk

    replies = [pending() for _ in range(args.repeat + 2)]
    contexts = {}

    def begin(pk: int) -> None:
        contexts[pk] = services.generation_begin(message_id=pk, worker_id="bench")

    measure("generation_begin", replies, each=begin)
    deep = [pending(args.turns) for _ in range(args.repeat + 2)]
    measure(f"generation_begin, {args.turns} exchanges before", deep, each=begin)
    text = "word " * 100

    def checkpoint(pk: int) -> None:
        context = contexts[pk]
        services.generation_checkpoint(message_id=pk, parts=[("text", text)], seq=5, lease_holder=context.lease_holder)

    measure("generation_checkpoint (alone)", replies, each=checkpoint)

    def finish(pk: int) -> None:
        context = contexts[pk]
        result = StreamResult(input_tokens=20, output_tokens=100, finish_reason="stop")
        services.generation_finish(
            message_id=pk,
            parts=[("text", text)],
            seq=9,
            status="complete",
            result=result,
            lease_holder=context.lease_holder,
        )

    measure("generation_finish", replies, each=finish)

    running = [pending() for _ in range(args.concurrency)]
    held = {pk: services.generation_begin(message_id=pk, worker_id="bench").lease_holder for pk in running}
    batch = [
        {"message_id": pk, "parts": [("text", text * 2)], "seq": 7, "lease_holder": holder}
        for pk, holder in held.items()
    ]

    def one_round(write) -> tuple[float, float]:
        started_cpu, started = time.process_time(), time.perf_counter()
        write()
        return time.process_time() - started_cpu, time.perf_counter() - started

    def alone() -> None:
        for progress in batch:
            services.generation_checkpoint(**progress)

    ways = [("one transaction each, in a loop", alone)]
    if write_batch is not None:
        ways.append(("one batch (write_batch), in a loop", lambda: write_batch(batch)))
    for label, write in ways:
        one_round(write)  # warm
        rounds = [one_round(write) for _ in range(args.rounds)]
        cpu = statistics.mean(r[0] for r in rounds) * 1000
        wall = statistics.median(r[1] for r in rounds) * 1000
        print(f"C={args.concurrency} checkpoints a second, {label}: CPU {cpu:.0f} ms, thread {wall:.0f} ms per second")

    # As the worker makes them: each checkpoint its own database_sync_to_async call (before), or one call
    # for the batch. Each call closes old connections around it (CONN_MAX_AGE), so this counts reconnects.
    async def hops() -> None:
        await asyncio.gather(*(database_sync_to_async(services.generation_checkpoint)(**p) for p in batch))

    async def one_hop() -> None:
        await database_sync_to_async(write_batch)(batch)

    async def timed(write) -> tuple[float, float]:
        started_cpu, started = time.process_time(), time.perf_counter()
        await write()
        return time.process_time() - started_cpu, time.perf_counter() - started

    async def from_the_loop() -> None:
        for label, write in [("each on its own hop (before)", hops)] + (
            [("one hop for the batch", one_hop)] if write_batch is not None else []
        ):
            await write()
            rounds = [await timed(write) for _ in range(args.rounds)]
            cpu = statistics.mean(r[0] for r in rounds) * 1000
            wall = statistics.median(r[1] for r in rounds) * 1000
            print(
                f"C={args.concurrency} checkpoints a second from the event loop, {label}: CPU {cpu:.0f} ms, wall {wall:.0f} ms"
            )

    asyncio.run(from_the_loop())

    # C replies checkpointing once a second each, at moments spread over the second, for a few seconds:
    # how many batches (commits) and how much CPU, with the writer or one call each.
    async def replies_streaming(save, seconds: float = 5.0) -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        saved = 0

        async def reply(index: int, progress: dict) -> None:
            nonlocal saved
            await asyncio.sleep(index / len(batch))
            while loop.time() < end:
                await save(progress)
                saved += 1
                await asyncio.sleep(1.0)

        started = time.process_time()
        await asyncio.gather(*(reply(i, p) for i, p in enumerate(batch)))
        return (time.process_time() - started) / seconds, saved

    async def simulate() -> None:
        cpu, saved = await replies_streaming(lambda p: database_sync_to_async(services.generation_checkpoint)(**p))
        print(
            f"C={args.concurrency} streaming 5 s, one call a checkpoint: {saved} checkpoints, CPU {cpu * 1000:.0f} ms/s"
        )
        if write_batch is None:
            return
        from chat.engine.checkpoints import checkpoint_writer

        writer = checkpoint_writer()
        cpu, saved = await replies_streaming(writer.save)
        print(
            f"C={args.concurrency} streaming 5 s, the checkpoint writer: {saved} checkpoints in {writer.batches} "
            f"batches, CPU {cpu * 1000:.0f} ms/s"
        )

    asyncio.run(simulate())


if __name__ == "__main__":
    main()
