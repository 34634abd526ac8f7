"""The send path on Daphne: CPU and SQL statements one `send` costs, from the frame to its `accepted` answer.

    python bench/send_path.py [--sends 200] [--limits on|off] [--burst 200] [--database-url postgres://...]

Embedded settings (a temporary SQLite file, or the PostgreSQL database given; the in-memory channel
layer), the real ASGI application
driven by channels' WebsocketCommunicator. No worker runs: the job a send hands over is dropped, and the
reply is marked done between sends (outside what is measured), so every send is a real one. Prints, for
the first send in a new conversation and for a follow-up send, the CPU milliseconds per send
(time.process_time of the whole process, the database thread included) and the SQL statements per send
(every statement of the database thread, counted by an execute wrapper), and how much of that CPU was the
database thread's own (its thread CPU clock). A ping's round trip shows what the test communicator
itself costs (a `mock.patch` per receive, JSON both ways), in every row: a send on Daphne costs the
row's figure less about that. With --burst C, also C users'
sockets send at the same instant, each a first send: CPU and statements per send, and the time from
the burst to each `accepted` (wall time: noisy on a shared machine, for the shape only).
"""

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=200, help="sends of each kind measured (default 200)")
    parser.add_argument("--limits", choices=("on", "off"), default="on", help="the limits checked, or none")
    parser.add_argument("--burst", type=int, default=0, help="also C sockets sending at once (default: none)")
    parser.add_argument("--database-url", default="", help="PostgreSQL (created if missing); default a SQLite file")
    return parser.parse_args()


def _setup(args: argparse.Namespace) -> None:
    from run import LIMITS_OFF, ensure_database

    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    if args.database_url:
        ensure_database(args.database_url)
        os.environ["DATABASE_URL"] = args.database_url
    else:
        os.environ["SQLITE_PATH"] = str(Path(tempfile.mkdtemp(prefix="send-path-")) / "db.sqlite3")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_DEBUG", "false")  # no per-query logging: measure what production runs
    os.environ.setdefault("CHAT_WORKER_IN_PROCESS", "false")
    os.environ.setdefault("LOCAL_MODEL_ENABLED", "false")
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    os.environ.setdefault("OPENAI_MODELS", "gpt-bench")
    os.environ.setdefault("CHAT_DEFAULT_MODEL", "openai:gpt-bench")
    os.environ.setdefault("CHAT_MAX_QUEUED_PER_USER", "100000")
    os.environ.setdefault("CHAT_WS_FRAMES_PER_SECOND", "0")  # one socket sends them all
    # Limits on: every check runs, at figures these sends never reach.
    os.environ.setdefault("CHAT_MESSAGES_PER_MINUTE", "100000")
    if args.limits == "off":  # bench/run.py's, NAME=0 each: the peers' rows run with no limits either
        os.environ.update(item.split("=", 1) for item in LIMITS_OFF)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


class StatementCount:
    """Every statement the database thread runs, whichever connection it opens there."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):  # noqa: ANN001, ANN204 (Django's wrapper protocol)
        self.count += 1
        return execute(sql, params, many, context)


async def _run(args: argparse.Namespace) -> None:
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from chat import actions, services
    from chat.models import Message
    from config.asgi import application

    async def dropped(**_: object) -> None:  # no worker: the job is not queued
        return None

    actions.jobs.submit = dropped
    counter = StatementCount()
    await database_sync_to_async(lambda: connection.execute_wrappers.append(counter))()

    def login() -> tuple[object, bytes]:
        user = get_user_model().objects.create_user(username=f"bench-{uuid.uuid4().hex[:8]}", password="pw")
        client = Client()
        client.force_login(user)
        return user, f"sessionid={client.cookies['sessionid'].value}".encode()

    async def open_socket() -> tuple[object, WebsocketCommunicator]:
        user, cookie = await database_sync_to_async(login)()
        headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie)]
        socket = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
        connected, _ = await socket.connect(timeout=10)
        assert connected, "the socket was refused"
        await socket.receive_json_from()  # hello
        return user, socket

    user, socket = await open_socket()
    new_conversation = database_sync_to_async(lambda owner=user: services.conversation_create(owner=owner).pk)
    finish = database_sync_to_async(
        lambda pk: Message.objects.filter(pk=pk).update(status=Message.Status.COMPLETE, content="Fine, thanks.")
    )

    database_thread = time.pthread_getcpuclockid(await database_sync_to_async(threading.get_ident)())

    async def send(conversation_id: int) -> tuple[float, float, int]:
        frame = {"type": "send", "conversation": conversation_id, "client_id": uuid.uuid4().hex, "content": "Hello?"}
        statements, cpu = counter.count, time.process_time()
        on_database_thread = time.clock_gettime(database_thread)
        await socket.send_json_to(frame)
        while True:
            answer = await socket.receive_json_from(timeout=10)
            if answer["type"] in ("accepted", "error"):
                break
        cpu, statements = time.process_time() - cpu, counter.count - statements
        on_database_thread = time.clock_gettime(database_thread) - on_database_thread
        assert answer["type"] == "accepted", answer
        await finish(answer["message"]["id"])
        # The frames the send published (message, message, conversation) are not part of its answer.
        while not await socket.receive_nothing(timeout=0.01):
            await socket.receive_output()
        return cpu, on_database_thread, statements

    async def ping() -> float:
        cpu = time.process_time()
        await socket.send_json_to({"type": "ping"})
        assert (await socket.receive_json_from(timeout=10))["type"] == "pong"
        return time.process_time() - cpu

    pings = [await ping() for _ in range(args.sends + 5)][5:]
    kinds = {"first send in a new conversation": [], "follow-up send": []}
    for index in range(args.sends + 5):  # 5 warm-up rounds, not counted
        conversation_id = await new_conversation()
        first = await send(conversation_id)
        follow_up = await send(conversation_id)
        if index >= 5:
            kinds["first send in a new conversation"].append(first)
            kinds["follow-up send"].append(follow_up)
    await socket.disconnect()
    if args.burst:
        await _burst(args.burst, open_socket, new_conversation, counter)

    database = "PostgreSQL" if args.database_url else "SQLite"
    print(f"{args.sends} sends of each kind, limits {args.limits}, {database}, in-memory layer, no worker\n")
    print("| Send | CPU ms per send | of which on the database thread | SQL statements per send |")
    print("|---|---:|---:|---:|")
    for name, samples in kinds.items():
        cpu, on_database_thread, statements = (sum(column) / len(samples) for column in zip(*samples, strict=True))
        print(f"| {name} | {cpu * 1000:.2f} | {on_database_thread * 1000:.2f} | {statements:.1f} |")
    print(
        f"| a ping's round trip (the test communicator's own cost, in every row) | {sum(pings) / len(pings) * 1000:.2f}"
        " | 0 | 0 |"
    )


async def _burst(size: int, open_socket, new_conversation, counter: StatementCount) -> None:  # noqa: ANN001
    """`size` users' sockets send at the same instant; each waits for its `accepted`."""
    sockets = [await open_socket() for _ in range(size)]
    conversations = [await new_conversation(user) for user, _ in sockets]

    async def send(socket, conversation_id: int, started: float) -> float:  # noqa: ANN001
        frame = {"type": "send", "conversation": conversation_id, "client_id": uuid.uuid4().hex, "content": "Hello?"}
        await socket.send_json_to(frame)
        while (answer := await socket.receive_json_from(timeout=120))["type"] not in ("accepted", "error"):
            pass
        assert answer["type"] == "accepted", answer
        return time.perf_counter() - started

    statements, cpu, started = counter.count, time.process_time(), time.perf_counter()
    waits = sorted(
        await asyncio.gather(*(send(s, c, started) for (_, s), c in zip(sockets, conversations, strict=True)))
    )
    cpu, statements = time.process_time() - cpu, counter.count - statements
    for _, socket in sockets:
        await socket.disconnect()
    print(
        f"Burst of {size} first sends at once: {cpu / size * 1000:.2f} CPU ms and {statements / size:.1f} statements"
        f" per send; accepted after {waits[len(waits) // 2] * 1000:.0f} ms (median), {waits[-1] * 1000:.0f} ms (last)\n"
    )


def main() -> None:
    args = _arguments()
    _setup(args)
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
