"""The HTTP transport: the SSE stream of a conversation and the JSON endpoints that drive it."""

import asyncio
import threading
import uuid
import weakref

import orjson
import pytest
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.test import AsyncClient, Client

from chat import events, services
from chat.fanout import resync_event
from chat.models import Message
from chat.sse import next_event
from tests.engine_fixtures import TEST_MODEL, session_cookie_for
from tests.fake_upstream import Scenario

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]


class EventStream:
    """Reads `text/event-stream` bytes into events: dicts with `event`, `id`, `data` (decoded JSON)."""

    def __init__(self, response):
        self.response = response
        self.chunks = response.streaming_content.__aiter__()
        self.buffer = b""
        self.comments: list[str] = []

    async def next(self, timeout=20):
        async with asyncio.timeout(timeout):
            while b"\n\n" not in self.buffer:
                self.buffer += await self.chunks.__anext__()
        block, self.buffer = self.buffer.split(b"\n\n", 1)
        event = {}
        for line in block.decode().split("\n"):
            field, _, value = line.partition(": ") if ": " in line else line.partition(":")
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                return {"comment": line[1:].strip()}
            event[field] = orjson.loads(value) if field == "data" else value
        return event

    async def next_event(self, kind=None, timeout=20):
        while True:
            event = await self.next(timeout)
            if "event" in event and (kind is None or event["event"] == kind):
                return event

    async def reply(self, text="", timeout=30):
        """Read until `done`, applying deltas by offset; returns (text, done event, last id)."""
        last_id = None
        while True:
            event = await self.next_event(timeout=timeout)
            last_id = event.get("id", last_id)
            data = event["data"]
            if event["event"] == "snapshot" and data["message"] is not None:
                text = data["message"]["content"]
                if data["message"]["status"] not in {"pending", "streaming"}:
                    return text, event, last_id
            elif event["event"] == "delta":
                assert data["offset"] == len(text), f"gap or overlap: {data['offset']} != {len(text)}"
                text += data["text"]
            elif event["event"] == "done":
                return text, event, last_id

    async def close(self):
        await self.chunks.aclose()


@pytest.fixture
async def client_and_conversation(make_user):
    user = await database_sync_to_async(make_user)()
    conversation = await database_sync_to_async(services.conversation_create)(owner=user, model=TEST_MODEL)
    client = AsyncClient()
    await client.aforce_login(user)
    return client, conversation


async def open_events(client, conversation, **headers):
    response = await client.get(f"/api/conversations/{conversation.pk}/events", headers=headers)
    assert response.status_code == 200
    return EventStream(response)


async def post(client, url, body):
    return await client.post(url, orjson.dumps(body), content_type="application/json")


async def send(client, conversation, content="Hi", client_id=None):
    body = {"client_id": client_id or uuid.uuid4().hex, "content": content}
    return await post(client, f"/api/conversations/{conversation.pk}/messages", body)


@pytest.mark.cluster
async def test_a_full_reply_streams_over_sse(client_and_conversation, upstream):
    client, conversation = client_and_conversation
    upstream.script(Scenario.text("Streaming over server-sent events works.", delay=0.01))
    stream = await open_events(client, conversation)
    assert stream.response["Content-Type"] == "text/event-stream"
    assert stream.response["Cache-Control"] == "no-cache"
    assert stream.response["X-Accel-Buffering"] == "no"
    first = await stream.next_event("snapshot")
    assert first["data"]["message"] is None
    accepted = await send(client, conversation)
    assert accepted.status_code == 202
    reply_id = accepted.json()["message"]["id"]
    text, done, last_id = await stream.reply()
    await stream.close()
    assert text == "Streaming over server-sent events works."
    assert done["data"]["message"]["status"] == "complete"
    assert last_id == f"{reply_id}:{done['data']['message']['seq']}"


@pytest.mark.cluster
async def test_every_event_about_a_reply_carries_its_message_and_sequence_number(client_and_conversation, upstream):
    client, conversation = client_and_conversation
    upstream.script(Scenario.slow(30, delay=0.01))
    stream = await open_events(client, conversation)
    await stream.next_event("snapshot")
    await send(client, conversation)
    seen = []
    while True:
        event = await stream.next_event()
        if event["event"] in {"start", "delta", "done"}:
            seen.append(event)
        if event["event"] == "done":
            break
    await stream.close()
    reply_id = seen[0]["data"]["message"]
    deltas = [e for e in seen if e["event"] == "delta"]
    assert [e["id"] for e in deltas] == [f"{reply_id}:{e['data']['seq']}" for e in deltas]
    assert [e["data"]["seq"] for e in deltas] == list(range(1, len(deltas) + 1))


@pytest.mark.cluster
async def test_resuming_with_last_event_id_sends_only_what_was_missed(client_and_conversation, upstream):
    client, conversation = client_and_conversation
    upstream.script(Scenario.slow(150, delay=0.01))
    expected = "".join(Scenario.slow(150).tokens)
    stream = await open_events(client, conversation)
    await stream.next_event("snapshot")
    await send(client, conversation)
    have, last_id = "", None
    while len(have) < 20:
        event = await stream.next_event("delta")
        have += event["data"]["text"]
        last_id = event["id"]
    await stream.close()
    resumed = await open_events(client, conversation, last_event_id=last_id)
    first = await resumed.next_event()
    if first["event"] == "delta":
        assert first["data"]["offset"] == len(have), "the resumed stream repeated or skipped text"
        have += first["data"]["text"]
        have, _, _ = await resumed.reply(have)
    else:
        assert first["event"] == "snapshot"
        have = first["data"]["message"]["content"]
        if first["data"]["message"]["status"] == "streaming":
            have, _, _ = await resumed.reply(have)
    await resumed.close()
    assert have == expected


async def test_a_snapshot_with_no_reply_has_the_id_0_0_and_resuming_from_it_sends_a_snapshot(client_and_conversation):
    client, conversation = client_and_conversation
    stream = await open_events(client, conversation)
    first = await stream.next_event("snapshot")
    await stream.close()
    assert first["data"]["message"] is None and first["id"] == "0:0"
    resumed = await open_events(client, conversation, last_event_id=first["id"])
    again = await resumed.next_event()
    await resumed.close()
    assert (again["event"], again["id"], again["data"]["message"]) == ("snapshot", "0:0", None)


@pytest.mark.cluster
async def test_a_stream_the_fanout_tells_to_resync_sends_a_fresh_snapshot(client_and_conversation):
    client, conversation = client_and_conversation
    stream = await open_events(client, conversation)
    await stream.next_event("snapshot")
    group = events.conversation_group(conversation.pk)
    await get_channel_layer().group_send(group, resync_event(group))  # as after a Redis reconnect
    again = await stream.next_event()
    await stream.close()
    assert (again["event"], again["id"], again["data"]["message"]) == ("snapshot", "0:0", None)


async def test_an_idle_stream_sends_a_heartbeat_comment(client_and_conversation, settings):
    settings.CHAT_SSE_HEARTBEAT_SECONDS = 0.2
    client, conversation = client_and_conversation
    stream = await open_events(client, conversation)
    await stream.next_event("snapshot")
    assert await stream.next(timeout=5) == {"comment": "heartbeat"}
    await stream.close()


async def test_a_stream_cancelled_as_its_next_event_arrives_is_cancelled():
    """A client's disconnect is a cancellation of its stream: it must not be lost when it lands in the
    same loop turn as an event (Python 3.11's `asyncio.wait_for` would return the event instead)."""
    arrived = asyncio.get_running_loop().create_future()

    class Inbox:
        async def get(self) -> dict:
            return await asyncio.ensure_future(arrived)  # a task of its own

    waiting = asyncio.create_task(next_event(Inbox()))
    await asyncio.sleep(0)
    arrived.set_result({"type": "chat.frame"})
    await asyncio.sleep(0)  # the receive is done; the stream has not run since
    accepted = waiting.cancel()
    (outcome,) = await asyncio.gather(waiting, return_exceptions=True)
    assert accepted == isinstance(outcome, asyncio.CancelledError)


@pytest.mark.cluster
async def test_cancel_over_http_stops_the_reply_and_the_stream_says_so(client_and_conversation, upstream):
    client, conversation = client_and_conversation
    upstream.script(Scenario.slow(400, delay=0.02))
    stream = await open_events(client, conversation)
    await stream.next_event("snapshot")
    accepted = await send(client, conversation)
    await stream.next_event("delta")
    response = await post(client, f"/api/conversations/{conversation.pk}/cancel", {})
    assert response.status_code == 202
    done = await stream.next_event("done")
    await stream.close()
    assert done["data"]["message"]["status"] == "cancelled"
    reply = await database_sync_to_async(Message.objects.get)(pk=accepted.json()["message"]["id"])
    assert reply.status == Message.Status.CANCELLED


@pytest.mark.cluster
async def test_the_json_api_answers_errors_with_stable_codes(client_and_conversation, upstream, make_user):
    client, conversation = client_and_conversation
    upstream.script(Scenario.slow(400, delay=0.02))
    assert (await send(client, conversation, client_id="same")).status_code == 202
    duplicate = await send(client, conversation, client_id="same")
    assert duplicate.status_code == 200 and duplicate.json()["duplicate"] is True
    busy = await send(client, conversation)
    assert (busy.status_code, busy.json()["error"]["code"]) == (409, "busy")
    empty = await send(client, conversation, content=" ")
    assert empty.json()["error"]["code"] in {"empty_message", "busy"}
    malformed = await client.post(
        f"/api/conversations/{conversation.pk}/messages", b"{nope", content_type="application/json"
    )
    assert (malformed.status_code, malformed.json()["error"]["code"]) == (400, "bad_json")
    await post(client, f"/api/conversations/{conversation.pk}/cancel", {})
    stranger = AsyncClient()
    await stranger.aforce_login(await database_sync_to_async(make_user)())
    for url in ("messages", "cancel", "events"):
        path = f"/api/conversations/{conversation.pk}/{url}"
        if url == "events":
            response = await stranger.get(path)
        else:
            response = await post(stranger, path, {"client_id": "z", "content": "hi"})
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
    anonymous = await AsyncClient().get(f"/api/conversations/{conversation.pk}/events")
    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "unauthenticated")


def test_state_changing_endpoints_require_the_csrf_token(make_user):
    user = make_user()
    conversation = services.conversation_create(owner=user, model=TEST_MODEL)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(
        f"/api/conversations/{conversation.pk}/messages",
        orjson.dumps({"client_id": "x", "content": "hi"}),
        content_type="application/json",
    )
    assert response.status_code == 403
    assert not Message.objects.filter(conversation=conversation).exists()


# --- branches over HTTP: edit, regenerate, continue and switch ------------------------------------


async def until_ended(message_id, timeout=20):
    """The reply once its worker left it (a state the engine reaches, not a time)."""
    async with asyncio.timeout(timeout):
        while (reply := await database_sync_to_async(Message.objects.get)(pk=message_id)).is_active:
            await asyncio.sleep(0.02)
    return reply


async def answered(client, conversation, content):
    accepted = (await send(client, conversation, content)).json()
    await until_ended(accepted["message"]["id"])
    return accepted["user_message"]["id"], accepted["message"]["id"]


async def start(client, conversation, action, **body):
    response = await post(client, f"/api/conversations/{conversation.pk}/{action}", body)
    if response.status_code == 202:
        await until_ended(response.json()["message"]["id"])
    return response


@pytest.mark.cluster
async def test_every_branch_operation_over_http_and_the_path_get_answers(client_and_conversation, upstream):
    client, conversation = client_and_conversation
    q1, a1 = await answered(client, conversation, "Question 1")
    stopped = Message.objects.filter(pk=a1)
    await database_sync_to_async(stopped.update)(status="cancelled", content="A stopped ")  # as a stop leaves it

    continued = await start(client, conversation, "continue", client_id="k-1")
    regenerated = await start(
        client, conversation, "regenerate", client_id="r-1", message=continued.json()["message"]["id"]
    )
    edited = await start(client, conversation, "edit", client_id="e-1", content="Question 1, again", message=q1)
    switched = await post(client, f"/api/conversations/{conversation.pk}/switch", {"message": q1})
    detail = await client.get(f"/api/conversations/{conversation.pk}")

    assert [r.status_code for r in (continued, regenerated, edited, switched)] == [202, 202, 202, 200]
    assert continued.json()["message"]["parent"] == a1
    assert regenerated.json()["message"]["siblings"] == [a1, regenerated.json()["message"]["id"]]
    assert edited.json()["user_message"]["siblings"] == [q1, edited.json()["user_message"]["id"]]
    assert (switched.json()["type"], switched.json()["leaf"]) == ("path", regenerated.json()["message"]["id"])
    path = detail.json()
    assert path["leaf"] == switched.json()["leaf"]
    assert [(m["id"], m["index"], m["count"]) for m in path["messages"]] == [
        (q1, 0, 2),
        (regenerated.json()["message"]["id"], 1, 2),
    ]


@pytest.mark.cluster
async def test_a_repeated_regenerate_over_http_answers_200_with_the_first_reply(client_and_conversation, upstream):
    client, conversation = client_and_conversation
    _, a1 = await answered(client, conversation, "Question")

    first = await start(client, conversation, "regenerate", client_id="r-1", message=a1)
    again = await start(client, conversation, "regenerate", client_id="r-1", message=a1)

    assert (first.status_code, again.status_code, again.json()["duplicate"]) == (202, 200, True)
    assert again.json()["message"]["id"] == first.json()["message"]["id"]


@pytest.mark.cluster
async def test_a_reply_running_on_another_branch_makes_http_starts_busy_but_a_switch_goes_through(
    client_and_conversation, upstream
):
    client, conversation = client_and_conversation
    q1, a1 = await answered(client, conversation, "Question")
    upstream.script(Scenario.stall(after=1))
    running = await post(
        client, f"/api/conversations/{conversation.pk}/regenerate", {"client_id": "r-1", "message": a1}
    )

    switched = await post(client, f"/api/conversations/{conversation.pk}/switch", {"message": a1})
    busy = [
        await post(
            client, f"/api/conversations/{conversation.pk}/edit", {"client_id": "e", "content": "x", "message": q1}
        ),
        await post(client, f"/api/conversations/{conversation.pk}/regenerate", {"client_id": "r-2"}),
    ]
    await post(client, f"/api/conversations/{conversation.pk}/cancel", {})
    await until_ended(running.json()["message"]["id"])

    assert (switched.status_code, switched.json()["leaf"]) == (200, a1)
    assert [(r.status_code, r.json()["error"]["code"]) for r in busy] == [(409, "busy"), (409, "busy")]


@pytest.mark.cluster
@pytest.mark.parametrize("action", ["edit", "regenerate", "switch"])
async def test_a_message_id_of_another_users_conversation_is_not_found_over_http(
    action, client_and_conversation, make_user, upstream
):
    client, conversation = client_and_conversation
    await answered(client, conversation, "Question")
    theirs = await database_sync_to_async(services.conversation_create)(owner=await database_sync_to_async(make_user)())
    foreign = await database_sync_to_async(Message.objects.create)(conversation=theirs, role="user", content="x")
    count = await database_sync_to_async(Message.objects.count)()

    for message_id, code in ((foreign.pk, "not_found"), (foreign.pk + 1000, "not_found"), ("1", "invalid")):
        body = {"client_id": f"x-{message_id}", "content": "x", "message": message_id}
        response = await post(client, f"/api/conversations/{conversation.pk}/{action}", body)
        assert (response.status_code, response.json()["error"]["code"]) == (404 if code == "not_found" else 400, code)

    assert await database_sync_to_async(Message.objects.count)() == count


# --- what an open stream holds: no thread, no database connection ----------------------------------


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    """An HTTP request's ASGI scope, as Daphne makes it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("localhost", 80),
    }


class RawStream:
    """One SSE request straight to config.asgi's application, as Daphne would make it."""

    def __init__(self, application, path: str, cookie: bytes) -> None:
        self.communicator = ApplicationCommunicator(application, http_scope("GET", path, [(b"cookie", cookie)]))

    async def open(self) -> bytes:
        """Send the request; returns the first chunk of the body (the snapshot)."""
        await self.communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
        start = await self.communicator.receive_output(20)
        assert (start["type"], start["status"]) == ("http.response.start", 200), start
        return (await self.communicator.receive_output(20))["body"]

    async def close(self) -> None:
        await self.communicator.send_input({"type": "http.disconnect"})
        await self.communicator.wait(20)


def open_connections(monkeypatch):
    """Every database connection any thread opens from now on; `held()` lists those still open."""
    from django.db.backends.base.base import BaseDatabaseWrapper

    opened = weakref.WeakSet()
    connect = BaseDatabaseWrapper.connect

    def recording_connect(self):
        opened.add(self)
        return connect(self)

    monkeypatch.setattr(BaseDatabaseWrapper, "connect", recording_connect)
    return lambda: [wrapper for wrapper in opened if wrapper.connection is not None]


@pytest.mark.cluster
@pytest.mark.parametrize("handler", ["streaming", "django"])
async def test_open_streams_hold_no_thread_and_no_database_connection(handler, client_and_conversation, monkeypatch):
    """Served by config.asgi's handler, N open streams add no thread; Django's own handler (the
    contrast) keeps a thread per stream for as long as it is open."""
    from django.core.handlers.asgi import ASGIHandler

    from config import asgi

    _, conversation = client_and_conversation
    owner = await database_sync_to_async(lambda: conversation.owner)()
    cookie = await session_cookie_for(owner)
    app = asgi.application if handler == "streaming" else ASGIHandler()
    held = open_connections(monkeypatch)
    path = f"/api/conversations/{conversation.pk}/events"
    streams = [RawStream(app, path, cookie)]
    assert b"event: snapshot" in await streams[0].open()  # starts what a first request starts (worker, pools)
    threads, connections = threading.active_count(), len(held())
    for _ in range(8):
        streams.append(RawStream(app, path, cookie))
        assert b"event: snapshot" in await streams[-1].open()
    added_threads, added_connections = threading.active_count() - threads, len(held()) - connections
    for stream in streams:
        await stream.close()
    if handler == "streaming":
        assert (added_threads, added_connections) == (0, 0)
    else:
        assert added_threads >= 8


# --- a send over HTTP: on the process's one sync thread, as a WebSocket `send` -----------------------

CSRF = "testcsrftoken0123456789abcdefghi"  # any 32 characters: Django compares cookie and header


async def post_raw(application, path: str, cookie: bytes, body: dict) -> tuple[int, dict]:
    """One JSON POST straight to the application, as Daphne would make it; returns the status and body."""
    payload = orjson.dumps(body)
    headers = [
        (b"cookie", cookie + b"; csrftoken=" + CSRF.encode()),
        (b"x-csrftoken", CSRF.encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    scope = http_scope("POST", path, headers)
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": payload, "more_body": False})
    start = await communicator.receive_output(20)
    body = await communicator.receive_output(20)
    await communicator.wait(20)
    return start["status"], orjson.loads(body["body"])


@pytest.mark.cluster
async def test_simultaneous_sends_over_http_run_on_the_one_sync_thread_a_websocket_send_uses(
    make_user, monkeypatch, upstream
):
    from chat import actions
    from config import asgi

    threads = []
    owned_and_started = actions._owned_and_started

    def recorded(*args, **kwargs):
        threads.append(threading.get_ident())
        return owned_and_started(*args, **kwargs)

    monkeypatch.setattr(actions, "_owned_and_started", recorded)
    users = [await database_sync_to_async(make_user)() for _ in range(6)]
    conversations = [
        await database_sync_to_async(services.conversation_create)(owner=user, model=TEST_MODEL) for user in users
    ]
    cookies = [await session_cookie_for(user) for user in users]

    answers = await asyncio.gather(
        *(
            post_raw(
                asgi.application,
                f"/api/conversations/{conversation.pk}/messages",
                cookie,
                {"client_id": uuid.uuid4().hex, "content": "Hi"},
            )
            for conversation, cookie in zip(conversations, cookies, strict=True)
        )
    )

    for _, accepted in answers:  # the replies end before the test does (their worker writes meanwhile)
        await until_ended(accepted["message"]["id"])

    assert [status for status, _ in answers] == [202] * 6
    websocket_thread = await database_sync_to_async(threading.get_ident)()
    assert set(threads) == {websocket_thread}
