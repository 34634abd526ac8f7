"""Scale-out and fault tolerance, end to end: real Daphne and `runworker` processes on PostgreSQL and
Redis, real WebSocket clients, and a fault injected in the middle of a reply (kill -9, SIGTERM, a
Redis restart, a database cut, dropped frames). Each test starts its own processes on its own Redis
prefix (so no other worker takes its jobs) and stops them, whatever happens, in the fixture teardown.

The checks are the same everywhere: what the clients assembled equals what the database saved, no
character is duplicated, nothing is lost beyond the last checkpoint, and no reply is left running.
The processes, the proxy and the client are in tests/harness/.
"""

import asyncio
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from chat.models import Conversation, Message
from tests.cluster_fixtures import cluster_env, stop_session_worker
from tests.engine_fixtures import TEST_MODEL, session_cookie_for
from tests.fake_upstream import FakeUpstream, Scenario
from tests.harness.follower import Follower
from tests.harness.proxy import TcpProxy
from tests.harness.servers import Cluster, RedisServer, Server
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.cluster_only, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

# Short bounds, so each fault resolves in seconds (production: 10 s lease, 20 s grace; docs/deployment.md).
LEASE_SECONDS = 3
MAINTENANCE_SECONDS = 2  # ChatWorker.maintenance_interval
GRACE_SECONDS = 2


def expected_slow(count: int) -> str:
    return "".join(Scenario.slow(count).tokens)


# --- Processes ------------------------------------------------------------------------------------


@pytest.fixture
def cluster(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """`cluster(**env)` makes a Cluster on its own Redis prefix with the short bounds above; every process
    it started is killed at the end of the test."""
    made: list[Cluster] = []
    stop_session_worker()  # it shares the database: its reaper would take up this cluster's replies

    def make(**overrides: str) -> Cluster:
        defaults = {
            "CHAT_REDIS_PREFIX": f"faults-{uuid.uuid4().hex[:8]}",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CHAT_LEASE_SECONDS": str(LEASE_SECONDS),
            "CHAT_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
            "CHAT_WORKER_HEARTBEAT_TTL_SECONDS": "3",
        }
        made.append(Cluster(cluster_env(upstream.base_url_openai, **{**defaults, **overrides}), tmp_path))
        return made[-1]

    yield make
    for one in made:
        one.stop_all()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def db_proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(int(settings.DATABASES["default"]["PORT"] or 5432)).start()
    yield proxy
    proxy.stop()


def through(proxy: TcpProxy) -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}"


# --- Clients (tests/harness/follower.py keeps the documented client rules) --------------------------


async def ask_for_a_long_reply(server: Server, upstream: FakeUpstream, tokens: int) -> tuple[Any, int, Follower, int]:
    """A new user's conversation on `server`, a client following it, and a slow reply it asked for:
    returns (user, conversation, client, reply id)."""
    user, conversation = await new_conversation()
    client = await follower(server.port, user, conversation)
    upstream.script(Scenario.slow(tokens, delay=0.03))
    reply_id = (await client.ask("send", content="long story"))["message"]["id"]
    return user, conversation, client, reply_id


async def follower(port: int, user: Any, conversation: int) -> Follower:
    client = await Follower(port, await session_cookie_for(user), conversation).connect()
    await client.subscribe()
    await client.next_matching(lambda f: f["type"] == "snapshot")
    return client


# --- Database helpers -----------------------------------------------------------------------------


@sync_to_async
def new_conversation(username: str = "") -> tuple[Any, int]:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=username or f"f-{uuid.uuid4().hex[:8]}", password="pw")
    return user, Conversation.objects.create(owner=user, model=TEST_MODEL).pk


@sync_to_async
def reply_of(message_id: int) -> Message:
    return Message.objects.get(pk=message_id)


@sync_to_async
def active_replies() -> list[Message]:
    return list(Message.objects.filter(status__in=Message.ACTIVE_STATUSES))


async def streaming_with_checkpoint(message_id: int) -> bool:
    reply = await reply_of(message_id)
    return reply.status == "streaming" and len(reply.content) > 0


def assert_saved_prefix(client_text: str, saved: str, full: str) -> None:
    """Nothing duplicated (both are prefixes of the full reply), nothing lost before the checkpoint."""
    assert full.startswith(client_text), "the client assembled text the model never sent"
    assert full.startswith(saved), "the database holds text the model never sent"
    assert saved, "no checkpoint was saved"


# --- 1. Two servers, two workers ------------------------------------------------------------------


async def test_clients_on_two_servers_follow_one_reply_and_two_workers_share_the_load(cluster, upstream):
    # The held reply below must not time out however long the quick ones take on a busy machine.
    one = cluster(CHAT_TIMEOUT_IDLE="600", CHAT_TIMEOUT_TOTAL="900")
    workers = [one.worker(), one.worker()]
    server_a, server_b = one.server(), one.server()
    user, conversation = await new_conversation()
    on_a = await follower(server_a.port, user, conversation)
    on_b = await follower(server_b.port, user, conversation)

    upstream.script(Scenario.slow(40, delay=0.02))
    accepted = await on_a.ask("send", content="hello")
    assert accepted["type"] == "accepted"
    text_a, status_a = await on_a.follow()
    text_b, status_b = await on_b.follow()
    saved = await reply_of(accepted["message"]["id"])
    assert status_a == status_b == saved.status == "complete"
    assert text_a == text_b == saved.content == expected_slow(40)

    # One slow upstream does not hold up the others, and both workers take jobs: the slow reply is held
    # mid-stream until the test releases it, after the six quick ones finished (whatever the machine's speed).
    upstream.script(Scenario.slow(20, hold_after=5), *[Scenario.text("quick reply") for _ in range(6)])
    slow_user, slow_conversation = await new_conversation()
    slow = await follower(server_a.port, slow_user, slow_conversation)
    slow_reply = (await slow.ask("send", content="take your time"))["message"]["id"]
    assert await upstream.wait_held_async(1, within=60), "the slow reply never started streaming"
    quick = []
    for index in range(6):
        quick_user, quick_conversation = await new_conversation()
        client = await follower((server_a, server_b)[index % 2].port, quick_user, quick_conversation)
        assert (await client.ask("send", content="quick"))["type"] == "accepted"
        quick.append(client)
    for client in quick:
        assert await client.follow(timeout=60) == ("quick reply", "complete")
    assert (await reply_of(slow_reply)).status == "streaming", "the slow reply ended before its release"
    taken = [worker.output().count(" claimed by ") for worker in workers]
    assert all(taken), f"one worker took every job: {taken}"
    upstream.release()
    assert await slow.follow(timeout=60) == (expected_slow(20), "complete")
    for client in (on_a, on_b, slow, *quick):
        await client.close()


# --- 2. kill -9 a worker mid-reply ----------------------------------------------------------------


async def test_killed_worker_reply_is_interrupted_within_the_lease_and_can_be_continued(cluster, upstream):
    one = cluster()
    doomed = one.worker()
    server = one.server()
    user, conversation, client, reply_id = await ask_for_a_long_reply(server, upstream, 400)
    await wait_for(lambda: streaming_with_checkpoint(reply_id))
    one.worker()  # a survivor, to notice the lease run out
    await client.wait_text(60)

    doomed.popen.kill()
    killed_at = time.monotonic()
    text, status = await client.follow(quiet=10)
    noticed_after = time.monotonic() - killed_at
    saved = await reply_of(reply_id)
    assert status == saved.status == "interrupted"
    # The bound is 15 s; with the test's 3 s lease it is usually ~4 s, more on a loaded machine.
    assert noticed_after <= 15, f"took {noticed_after:.1f}s"
    assert text == saved.content, "the client ends with the saved reply"
    assert_saved_prefix(client.seen, saved.content, expected_slow(400))
    assert client.seen.startswith(saved.content), "the checkpoint holds text the client never saw"
    lost = len(client.seen) - len(saved.content)
    assert lost <= 300, f"{lost} chars lost: more than a checkpoint interval's worth"
    print(f"kill -9 noticed after {noticed_after:.1f}s; kept {len(saved.content)} of {len(client.seen)} chars seen")

    # The user continues: the partial reply stays, a new one picks up after it.
    upstream.script(Scenario.text(" and that is the end."))
    accepted = await client.ask("continue")
    assert accepted["type"] == "accepted", accepted
    assert await client.follow() == (" and that is the end.", "complete")
    assert (await reply_of(reply_id)).content == saved.content
    sent = upstream.requests[-1].body["messages"]
    assert sent[-1] == {"role": "assistant", "content": saved.content}
    assert not await active_replies()
    await client.close()


async def reasoning_checkpointed(message_id: int) -> bool:
    reply = await reply_of(message_id)
    return reply.status == "streaming" and bool(reply.reasoning) and not reply.content


async def test_a_worker_killed_mid_reasoning_leaves_the_reasoning_of_its_last_checkpoint(cluster, upstream):
    one = cluster()
    doomed = one.worker()
    server = one.server()
    user, conversation = await new_conversation()
    client = await follower(server.port, user, conversation)
    reasoning = "".join(f" step{i}" for i in range(400))
    upstream.script(Scenario.with_reasoning(reasoning, "The answer.", delay=0.03))
    reply_id = (await client.ask("send", content="think long"))["message"]["id"]
    await wait_for(lambda: reasoning_checkpointed(reply_id))
    one.worker()  # a survivor, to notice the lease run out

    doomed.popen.kill()
    _, status = await client.follow(quiet=10)
    saved = await reply_of(reply_id)
    assert status == saved.status == "interrupted"
    assert saved.content == "" and saved.reasoning and reasoning.startswith(saved.reasoning)
    assert [part["kind"] for part in saved.part_list()] == ["reasoning"]
    assert not await active_replies()
    await client.close()


async def response_id_saved(message_id: int) -> bool:
    return bool((await reply_of(message_id)).upstream_response_id)


@pytest.mark.parametrize("stop", ["kill -9", "SIGTERM"])
async def test_a_background_reply_whose_worker_stops_completes_on_the_other_worker_with_every_character_once(
    cluster, upstream, stop
):
    """The Responses API in background mode: the survivor reattaches to the response OpenAI kept, after
    the last event the stopped worker published, and goes on with the same seq and offsets. Killed, the
    worker's lease runs out and the reaper hands the reply over; stopped, the worker hands it over itself
    once the grace period is over."""
    one = cluster(OPENAI_RESPONSES_MODELS="gpt-test", OPENAI_BACKGROUND_MODELS="gpt-test")
    doomed = one.worker()
    server = one.server()
    user, conversation = await new_conversation()
    client = await follower(server.port, user, conversation)
    scenario = Scenario.slow(300, delay=0.01, hold_after=150)
    full, before_hold = "".join(scenario.tokens), "".join(scenario.tokens[:150])
    upstream.script(scenario)
    reply_id = (await client.ask("send", content="long story"))["message"]["id"]
    assert await upstream.wait_held_async(within=60)
    await wait_for(lambda: response_id_saved(reply_id))
    await client.wait_text(len(before_hold), timeout=60)
    survivor = one.worker()

    if stop == "SIGTERM":
        doomed.popen.send_signal(signal.SIGTERM)
    else:
        doomed.popen.kill()
    (kept,) = upstream.responses.values()
    assert await asyncio.to_thread(upstream.wait_request_to, f"/v1/responses/{kept.response_id}", 60)
    upstream.release()
    text, status = await client.follow(timeout=90, quiet=30)

    saved = await reply_of(reply_id)
    assert status == saved.status == "complete"
    how = f"gaps {client.gaps}, resyncs {client.resyncs}, reconnects {client.reconnects}; lengths: text {len(text)}, "
    how += f"seen {len(client.seen)}, saved {len(saved.content)}, full {len(full)}"
    after = [(f["type"], f.get("seq"), f.get("offset")) for f in client.frames if f["type"] != "delta"][-8:]
    how += f"; last frames but deltas: {after}; deltas: {sum(f['type'] == 'delta' for f in client.frames)}"
    assert text == client.seen == saved.content == full, f"no character lost, none repeated ({how})"
    assert saved.resumes == 1 and " taken up again " in survivor.output()
    if stop == "SIGTERM":
        assert "this one is shutting down" in doomed.output()
        assert not upstream.requests_to(f"/v1/responses/{kept.response_id}/cancel"), "a reply handed over goes on"
    deltas = [frame for frame in client.frames if frame["type"] == "delta" and frame["message"] == reply_id]
    assert [frame["seq"] for frame in deltas] == list(range(1, len(deltas) + 1)), "seq goes on across the take-up"
    assert all(a["offset"] + len(a["text"]) == b["offset"] for a, b in zip(deltas, deltas[1:], strict=False))
    assert (client.gaps, [f["type"] for f in client.frames].count("start")) == (0, 1)
    (retrieve,) = upstream.requests_to(f"/v1/responses/{kept.response_id}", "GET")
    last_published = [event.payload["sequence_number"] for event in kept.planned if event.delta][149]
    assert retrieve.query["starting_after"] == str(last_published), "on from the event after the last one published"
    assert not await active_replies()
    await client.close()


async def test_no_reply_stays_streaming_after_every_process_is_killed_and_restarted(cluster, upstream):
    one = cluster(CHAT_PENDING_EXPIRY_SECONDS="4")
    worker = one.worker()
    server = one.server()
    user, conversation, client, reply_id = await ask_for_a_long_reply(server, upstream, 400)
    await wait_for(lambda: streaming_with_checkpoint(reply_id))
    # A reply whose job was lost with Redis' list (never taken by any worker).
    _, orphan_conversation = await new_conversation()
    orphan = await sync_to_async(Message.objects.create)(
        conversation_id=orphan_conversation, role="assistant", status="pending", model=TEST_MODEL
    )
    for process in (worker, server.process):
        process.popen.kill()
    await client.close()

    restarted_at = time.monotonic()
    one.worker()
    server = one.server()
    await wait_for(lambda: _settled(reply_id, orphan.pk), timeout=20)
    print(f"after a full restart, both replies settled in {time.monotonic() - restarted_at:.1f}s")
    saved = await reply_of(reply_id)
    assert saved.status == "interrupted" and saved.content
    assert expected_slow(400).startswith(saved.content)
    assert (await reply_of(orphan.pk)).status == "interrupted"
    again = await follower(server.port, user, conversation)
    snapshot = next(f for f in again.frames if f["type"] == "snapshot")
    assert snapshot["message"]["status"] == "interrupted"
    assert snapshot["message"]["content"] == saved.content
    assert not await active_replies()
    await again.close()


async def _settled(*message_ids: int) -> bool:
    return all([(await reply_of(pk)).status == "interrupted" for pk in message_ids])


# --- 3. SIGTERM -----------------------------------------------------------------------------------


async def test_sigterm_stops_taking_jobs_finishes_short_replies_and_saves_long_ones_as_interrupted(cluster, upstream):
    one = cluster()
    worker = one.worker()
    server = one.server()
    clients = []
    for _ in range(3):
        user, conversation = await new_conversation()
        clients.append(await follower(server.port, user, conversation))
    short, long, late = clients
    upstream.script(Scenario.slow(20, delay=0.05), Scenario.slow(600, delay=0.05))
    short_id = (await short.ask("send", content="short"))["message"]["id"]
    assert await asyncio.to_thread(upstream.wait_requests, 1)
    long_id = (await long.ask("send", content="long"))["message"]["id"]
    await wait_for(lambda: streaming_with_checkpoint(long_id))

    worker.popen.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    await asyncio.sleep(0.3)
    late_id = (await late.ask("send", content="after the signal"))["message"]["id"]
    await asyncio.to_thread(worker.popen.wait, GRACE_SECONDS + 10)
    exited_after = time.monotonic() - stopped_at
    print(f"SIGTERM: the worker exited after {exited_after:.1f}s (grace {GRACE_SECONDS}s)")
    # The grace, then saving and announcing the interrupted reply (slack for a loaded CI machine).
    assert exited_after <= GRACE_SECONDS + 6

    assert await short.follow() == (expected_slow(20), "complete")
    long_text, long_status = await long.follow()
    saved = await reply_of(long_id)
    assert long_status == saved.status == "interrupted"
    assert long_text == saved.content, "a graceful stop saves everything the clients saw"
    assert expected_slow(600).startswith(saved.content) and saved.content
    assert (await reply_of(short_id)).content == expected_slow(20)
    assert (await reply_of(late_id)).status == "pending", "a stopping worker took a new job"

    upstream.script(Scenario.text("taken by the next worker"))
    one.worker()
    assert await late.follow() == ("taken by the next worker", "complete")
    assert not await active_replies()
    for client in clients:
        await client.close()


# --- 4. Redis restarted mid-reply -----------------------------------------------------------------


async def test_redis_restart_mid_reply_resyncs_clients_and_saves_the_whole_reply(cluster, upstream, own_redis):
    one = cluster(REDIS_URL=own_redis.url)
    worker = one.worker()
    server = one.server()
    user, conversation, client, reply_id = await ask_for_a_long_reply(server, upstream, 300)
    await client.wait_text(100)

    own_redis.kill()
    await asyncio.sleep(1.0)
    own_redis.start()
    text, status = await client.follow(timeout=60)
    saved = await reply_of(reply_id)
    assert status == saved.status == "complete"
    assert text == saved.content == expected_slow(300), "lost or duplicated characters"
    print(f"Redis restart: {client.gaps} gaps, {client.resyncs} resyncs, {client.reconnects} reconnects")

    # Every process reconnected by itself: the next reply streams through the restarted Redis.
    upstream.script(Scenario.text("after the restart"))
    assert (await client.ask("send", content="again"))["type"] == "accepted"
    assert await client.follow(timeout=30) == ("after the restart", "complete")
    assert worker.popen.poll() is None and server.process.popen.poll() is None
    assert not await active_replies()
    await client.close()


# --- 5. PostgreSQL away for a few seconds ---------------------------------------------------------


OUTAGE_LEASE_SECONDS = 60


async def test_database_outage_gives_clear_errors_and_every_reply_recovers_without_a_restart(
    cluster, upstream, db_proxy
):
    # The outage must stay shorter than the lease (docs/deployment.md). It lasts the refused send (the
    # pool timeout) and the failed probe: about 8 s, far more on a loaded machine; hence a long lease.
    one = cluster(DATABASE_URL=through(db_proxy), CHAT_LEASE_SECONDS=str(OUTAGE_LEASE_SECONDS))
    worker = one.worker()
    server = one.server()
    user, conversation, client, reply_id = await ask_for_a_long_reply(server, upstream, 250)
    _, other_conversation = await new_conversation()
    await client.wait_text(60)
    # A job that arrives while the database is away: its claim must wait, not be dropped.
    waiting = await sync_to_async(Message.objects.create)(
        conversation_id=other_conversation, role="assistant", status="pending", model=TEST_MODEL
    )

    db_proxy.cut()
    cut_at = time.monotonic()
    await _submit_job(one.env, waiting.pk, other_conversation)
    refused = await client.ask("send", content="while the database is away")
    assert refused["type"] == "error" and refused["code"] == "unavailable", refused
    status, body = await asyncio.to_thread(server.get, "/readyz")
    assert status == 503 and body["checks"]["database"] == "failed"
    await asyncio.sleep(max(0.0, 4 - (time.monotonic() - cut_at)))
    db_proxy.restore()
    outage = time.monotonic() - cut_at
    assert outage < OUTAGE_LEASE_SECONDS, f"the outage ({outage:.0f} s) outlasted the lease: not this test's case"

    upstream.script(Scenario.text("claimed after the outage"))
    text, final = await client.follow(timeout=60)
    saved = await reply_of(reply_id)
    assert final == saved.status == "complete"
    assert text == saved.content == expected_slow(250)
    await wait_for(lambda: _status_is(waiting.pk, "complete"), timeout=30)
    assert (await reply_of(waiting.pk)).content == "claimed after the outage"
    assert worker.popen.poll() is None and server.process.popen.poll() is None, "a process died"

    upstream.script(Scenario.text("all good"))
    assert (await client.ask("send", content="and now?"))["type"] == "accepted"
    assert await client.follow() == ("all good", "complete")
    assert (await asyncio.to_thread(server.get, "/readyz"))[0] == 200
    assert not await active_replies()
    await client.close()


async def _status_is(message_id: int, status: str) -> bool:
    return (await reply_of(message_id)).status == status


async def _submit_job(env: dict[str, str], message_id: int, conversation_id: int) -> None:
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[env["REDIS_URL"]], prefix=env["CHAT_REDIS_PREFIX"] + "-jobs", expiry=600)
    job = {"type": "generation.start", "message": message_id, "conversation": conversation_id}
    await layer.send(settings.CHAT_WORKER_CHANNEL, job)
    await layer.flush()


# --- 6. Dropped frames ----------------------------------------------------------------------------


async def test_dropped_frames_are_noticed_by_offset_and_recovered_from_the_snapshot(cluster, upstream):
    one = cluster(CHAT_FRAME_LAYER="core", CHAT_FRAME_LAYER_CAPACITY="1", CHAT_FRAME_WINDOW_MS="0")
    one.worker()
    server = one.server()
    user, conversation = await new_conversation()
    clients = [await follower(server.port, user, conversation) for _ in range(3)]
    upstream.script(Scenario.slow(1500, delay=0.0005))
    reply_id = (await clients[0].ask("send", content="a flood"))["message"]["id"]
    results = await asyncio.gather(*(client.follow(timeout=60, quiet=1.0) for client in clients))
    saved = await reply_of(reply_id)
    assert saved.status == "complete" and saved.content == expected_slow(1500)
    assert all(result == (saved.content, "complete") for result in results)
    gaps = sum(client.gaps for client in clients)
    print(f"capacity 1: {gaps} gaps noticed, {sum(c.resyncs for c in clients)} resyncs")
    assert gaps, "no frame was dropped: the test did not test anything"
    for client in clients:
        await client.close()


# --- 7. Worker slots, the queued state and queue_full ----------------------------------------------


async def test_jobs_beyond_the_worker_slots_wait_queued_and_a_full_queue_is_refused(cluster, upstream):
    one = cluster(CHAT_WORKER_CONCURRENCY="1", CHAT_MAX_QUEUED_PER_USER="1")
    one.worker()
    server = one.server()
    busy_user, busy_conversation = await new_conversation()
    busy = await follower(server.port, busy_user, busy_conversation)
    upstream.script(Scenario.slow(60, delay=0.05), Scenario.text("your turn"))
    busy_id = (await busy.ask("send", content="occupy the slot"))["message"]["id"]
    await wait_for(lambda: _status_is(busy_id, "streaming"))

    user, conversation = await new_conversation()
    waiting = await follower(server.port, user, conversation)
    waiting_id = (await waiting.ask("send", content="me next"))["message"]["id"]
    queued = await waiting.next_matching(lambda f: f["type"] == "queued", timeout=5)
    assert queued["message"] == waiting_id and queued["ahead"] == 0
    assert (await reply_of(waiting_id)).status == "pending"

    from django.contrib.auth import get_user_model

    second = await sync_to_async(Conversation.objects.create)(
        owner=await sync_to_async(get_user_model().objects.get)(pk=user.pk), model=TEST_MODEL
    )
    other_tab = await follower(server.port, user, second.pk)
    refused = await other_tab.ask("send", content="and me")
    assert refused["type"] == "error" and refused["code"] == "queue_full", refused

    assert await busy.follow() == (expected_slow(60), "complete")
    assert await waiting.follow() == ("your turn", "complete")
    first, then = await reply_of(busy_id), await reply_of(waiting_id)
    assert then.started_at >= first.finished_at, "the worker ran more replies than its slots"
    for client in (busy, waiting, other_tab):
        await client.close()


# --- 8. Health ------------------------------------------------------------------------------------


async def test_readiness_names_the_failed_check_and_liveness_stays_up(cluster, own_redis, db_proxy):
    one = cluster(REDIS_URL=own_redis.url, DATABASE_URL=through(db_proxy))
    worker = one.worker()
    server = one.server()

    async def ready() -> tuple[int, dict[str, Any]]:
        return await asyncio.to_thread(server.get, "/readyz")

    async def failing(check: str) -> bool:
        status, body = await ready()
        return status == 503 and body["checks"][check] == "failed"

    await wait_for(lambda: _ready(server), timeout=10)
    worker.popen.kill()
    gone_after = await wait_for(lambda: failing("workers"), timeout=10)
    print(f"readyz noticed the killed worker after {gone_after:.1f}s")
    one.worker()
    await wait_for(lambda: _ready(server), timeout=10)

    db_proxy.cut()
    await wait_for(lambda: failing("database"), timeout=10)
    assert (await asyncio.to_thread(server.get, "/healthz"))[0] == 200
    db_proxy.restore()
    await wait_for(lambda: _ready(server), timeout=10)

    own_redis.kill()
    await wait_for(lambda: failing("channel_layer"), timeout=10)
    assert (await asyncio.to_thread(server.get, "/healthz"))[0] == 200
    own_redis.start()
    await wait_for(lambda: _ready(server), timeout=15)


async def _ready(server: Server) -> bool:
    return (await asyncio.to_thread(server.get, "/readyz"))[0] == 200
