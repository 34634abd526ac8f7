"""Abuse limits on every transport: replies running at once, replies per minute, a daily token budget
(counted in the database, so every server process sees them) and the frame rate of one socket."""

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, timedelta

import orjson
import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import limits, services, teams
from chat.models import Conversation, Message
from chat.providers.base import StreamResult
from tests.engine_fixtures import TEST_MODEL

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]


@pytest.fixture
def user(make_user):
    return make_user()


def conversation_of(user, **fields) -> Conversation:
    return services.conversation_create(owner=user, model=TEST_MODEL, **fields)


def past_reply(user, *, ago: timedelta = timedelta(0), status: str = "complete", tokens: tuple = (None, None)):
    """A reply of `user`, created `ago` (its conversation was last touched then too)."""
    conversation = conversation_of(user)
    when = timezone.now() - ago
    reply = Message.objects.create(
        conversation=conversation,
        role="assistant",
        status=status,
        content="ok",
        input_tokens=tokens[0],
        output_tokens=tokens[1],
    )
    Message.objects.filter(pk=reply.pk).update(created_at=when)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=when)
    # What generation_finish does when a reply ends: its tokens go to the day's ledger.
    services.usage_add(user_id=user.pk, tokens=sum(t or 0 for t in tokens), day=when.astimezone(UTC).date())
    return reply


def api_send(user, conversation, client_id: str = ""):
    client = Client()
    client.force_login(user)
    body = {"client_id": client_id or uuid.uuid4().hex, "content": "hello"}
    return client.post(f"/api/conversations/{conversation.pk}/messages", body, content_type="application/json")


def assert_refused_over_http(response, code: str) -> float:
    assert response.status_code == 429, response.content
    error = response.json()["error"]
    assert error["code"] == code
    retry_after = int(response["Retry-After"])
    assert retry_after >= 1
    return retry_after


async def ws_send(connect, user, conversation) -> dict:
    async with connect(user) as ws:
        return await ws.send_message(conversation.pk, "hello")


# --- concurrent generations ----------------------------------------------------------------------


@pytest.mark.cluster
async def test_one_more_reply_than_may_run_at_once_is_refused_over_the_websocket(connect, user, settings):
    settings.CHAT_MAX_CONCURRENT_PER_USER = 2
    await database_sync_to_async(past_reply)(user, status="pending")
    await database_sync_to_async(past_reply)(user, status="streaming")
    conversation = await database_sync_to_async(conversation_of)(user)
    refused = await ws_send(connect, user, conversation)
    assert refused["type"] == "error" and refused["code"] == "too_many_running"
    assert refused["retry_after"] > 0 and "2 of your replies are already running" in refused["message"]
    assert await database_sync_to_async(Message.objects.filter(conversation=conversation).count)() == 0


def test_one_more_reply_than_may_run_at_once_is_refused_over_http(user, settings):
    settings.CHAT_MAX_CONCURRENT_PER_USER = 1
    past_reply(user, status="streaming")
    assert_refused_over_http(api_send(user, conversation_of(user)), "too_many_running")


def test_finished_replies_and_other_users_replies_do_not_count_as_running(user, make_user, settings):
    settings.CHAT_MAX_CONCURRENT_PER_USER = 1
    past_reply(user, status="complete")
    past_reply(make_user(), status="streaming")
    assert api_send(user, conversation_of(user)).status_code == 202


# --- replies per minute --------------------------------------------------------------------------


@pytest.mark.cluster
async def test_starting_replies_faster_than_allowed_is_refused_with_the_wait_over_the_websocket(
    connect, user, settings
):
    settings.CHAT_MESSAGES_PER_MINUTE = 2
    await database_sync_to_async(past_reply)(user, ago=timedelta(seconds=50))
    await database_sync_to_async(past_reply)(user, ago=timedelta(seconds=10))
    conversation = await database_sync_to_async(conversation_of)(user)
    refused = await ws_send(connect, user, conversation)
    assert refused["code"] == "rate_limited"
    assert 5 <= refused["retry_after"] <= 11, refused  # the older of the two leaves the window in ~10 s
    assert f"Try again in {refused['retry_after']} s" in refused["message"]


def test_starting_replies_faster_than_allowed_is_refused_over_http_with_retry_after(user, settings):
    settings.CHAT_MESSAGES_PER_MINUTE = 1
    past_reply(user, ago=timedelta(seconds=30))
    retry_after = assert_refused_over_http(api_send(user, conversation_of(user)), "rate_limited")
    assert 25 <= retry_after <= 31


def test_replies_older_than_a_minute_do_not_count_against_the_rate(user, settings):
    settings.CHAT_MESSAGES_PER_MINUTE = 1
    past_reply(user, ago=timedelta(seconds=61))
    assert api_send(user, conversation_of(user)).status_code == 202


def test_regenerate_counts_as_starting_a_reply(user, settings):
    settings.CHAT_MESSAGES_PER_MINUTE = 1
    conversation = conversation_of(user)
    Message.objects.create(conversation=conversation, role="user", content="hi")
    past = Message.objects.create(conversation=conversation, role="assistant", content="ok", status="complete")
    Message.objects.filter(pk=past.pk).update(created_at=timezone.now() - timedelta(seconds=5))
    client = Client()
    client.force_login(user)
    response = client.post(
        f"/api/conversations/{conversation.pk}/regenerate", {"client_id": "r1"}, content_type="application/json"
    )
    assert_refused_over_http(response, "rate_limited")


def test_a_resent_request_is_answered_as_before_even_at_the_limit(user, settings):
    conversation = conversation_of(user)
    first = api_send(user, conversation, client_id="same")
    assert first.status_code == 202
    settings.CHAT_MESSAGES_PER_MINUTE = 1
    settings.CHAT_MAX_CONCURRENT_PER_USER = 1
    again = api_send(user, conversation, client_id="same")
    assert again.status_code == 200 and again.json()["duplicate"] is True


# --- daily token budget --------------------------------------------------------------------------


@pytest.mark.cluster
async def test_a_spent_daily_budget_refuses_new_replies_until_midnight_utc(connect, user, settings):
    settings.CHAT_DAILY_TOKEN_BUDGET = 100
    await database_sync_to_async(past_reply)(user, tokens=(60, 40))
    conversation = await database_sync_to_async(conversation_of)(user)
    refused = await ws_send(connect, user, conversation)
    assert refused["code"] == "budget_exhausted"
    now = timezone.now()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    assert abs(refused["retry_after"] - (midnight - now).total_seconds()) < 5
    assert "midnight UTC" in refused["message"]


def test_a_spent_daily_budget_is_refused_over_http(user, settings):
    settings.CHAT_DAILY_TOKEN_BUDGET = 100
    past_reply(user, tokens=(99, 1))
    assert_refused_over_http(api_send(user, conversation_of(user)), "budget_exhausted")


def test_yesterdays_tokens_and_other_users_tokens_do_not_count(user, make_user, settings):
    settings.CHAT_DAILY_TOKEN_BUDGET = 100
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    past_reply(user, ago=timezone.now() - midnight + timedelta(seconds=1), tokens=(500, 500))
    past_reply(make_user(), tokens=(500, 500))
    past_reply(user, tokens=(50, None))
    assert limits.tokens_used_today(user_id=user.pk) == 50
    assert api_send(user, conversation_of(user)).status_code == 202


def test_superseded_replies_still_count_against_the_budget(user, settings):
    settings.CHAT_DAILY_TOKEN_BUDGET = 100
    reply = past_reply(user, tokens=(80, 30))
    Message.objects.filter(pk=reply.pk).update(superseded_at=timezone.now())
    assert_refused_over_http(api_send(user, conversation_of(user)), "budget_exhausted")


def test_deleting_conversations_does_not_give_the_budget_back(user, settings):
    settings.CHAT_DAILY_TOKEN_BUDGET = 100
    reply = past_reply(user, tokens=(80, 30))
    services.conversation_delete(conversation=reply.conversation)
    assert limits.tokens_used_today(user_id=user.pk) == 110
    assert_refused_over_http(api_send(user, conversation_of(user)), "budget_exhausted")


def test_a_finished_reply_adds_its_tokens_to_the_days_ledger(user):
    conversation = conversation_of(user)
    reply = Message.objects.create(conversation=conversation, role="assistant", status="streaming", lease_holder="w/1")
    result = StreamResult(finish_reason="stop", input_tokens=7, output_tokens=5)
    services.generation_finish(
        message_id=reply.pk, parts=[("text", "hi")], seq=1, status="complete", result=result, lease_holder="w/1"
    )
    assert limits.tokens_used_today(user_id=user.pk) == 12


def test_a_zero_setting_switches_a_limit_off(user, settings):
    settings.CHAT_MAX_CONCURRENT_PER_USER = 0
    settings.CHAT_MESSAGES_PER_MINUTE = 0
    settings.CHAT_DAILY_TOKEN_BUDGET = 0
    for _ in range(3):
        past_reply(user, status="streaming", tokens=(10**6, 10**6))
    assert api_send(user, conversation_of(user)).status_code == 202


# --- cost of the checks --------------------------------------------------------------------------


def test_the_checks_are_one_indexed_statement_once_the_users_group_policies_are_cached(user, make_user):
    for other in [make_user() for _ in range(3)]:
        for _ in range(5):
            past_reply(other, tokens=(10, 10))
    conversation = past_reply(user, tokens=(10, 10)).conversation
    teams.policies_forget()
    with CaptureQueriesContext(connection) as first:
        limits.reply_start_check(user_id=user.pk, conversation_id=conversation.pk, client_id="c1")
    with CaptureQueriesContext(connection) as queries:
        limits.reply_start_check(user_id=user.pk, conversation_id=conversation.pk, client_id="c2")
    assert (len(first), len(queries)) == (2, 1)  # the group policies, then the figures
    with connection.cursor() as cursor:
        for query in queries.captured_queries:
            cursor.execute(f"EXPLAIN QUERY PLAN {query['sql']}")
            plan = [row[-1] for row in cursor.fetchall()]
            scans = [step for step in plan if step.startswith("SCAN chat_")]
            assert scans == [], (query["sql"], plan)


# --- several server processes --------------------------------------------------------------------

CHECK_IN_ANOTHER_PROCESS = """
import django, json, sys
django.setup()
from chat import limits
from chat.errors import ChatError
try:
    limits.reply_start_check(user_id=int(sys.argv[1]))
    print(json.dumps(None))
except ChatError as error:
    print(json.dumps(error.code))
"""


@pytest.mark.cluster_only
async def test_limits_hold_across_processes_because_they_live_in_the_database(connect, user, upstream):
    """Two replies started through this process's WebSocket are seen by a separate process's check."""
    from tests.cluster_fixtures import cluster_env
    from tests.fake_upstream import Scenario

    upstream.script(Scenario.text("one"), Scenario.text("two"))
    async with connect(user) as ws:
        for _ in range(2):
            conversation = await database_sync_to_async(conversation_of)(user)
            accepted = await ws.send_message(conversation.pk, "hello")
            assert accepted["type"] == "accepted"
    env = cluster_env(upstream.base_url_openai, CHAT_MESSAGES_PER_MINUTE="2", DJANGO_SETTINGS_MODULE="config.settings")
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CHECK_IN_ANOTHER_PROCESS, str(user.pk)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == "rate_limited"


# --- frame rate of one socket --------------------------------------------------------------------


@pytest.mark.cluster
async def test_a_burst_of_frames_beyond_the_rate_is_refused_then_allowed_after_the_wait(connect, user, settings):
    settings.CHAT_WS_FRAMES_PER_SECOND = 5  # bursts of 10
    async with connect(user) as ws:
        for _ in range(11):
            await ws.send({"type": "ping"})
        answers = [await ws.receive() for _ in range(11)]
        assert [a["type"] for a in answers] == ["pong"] * 10 + ["error"]
        refused = answers[-1]
        assert refused["code"] == "too_many_frames" and 0 < refused["retry_after"] <= 0.2
        await asyncio.sleep(refused["retry_after"] + 0.05)
        await ws.send({"type": "ping"})
        assert (await ws.receive())["type"] == "pong"


async def test_a_socket_that_keeps_flooding_is_closed(user, settings):
    from channels.testing import WebsocketCommunicator

    from config.asgi import application
    from tests.engine_fixtures import session_cookie_for

    settings.CHAT_WS_FRAMES_PER_SECOND = 2  # bursts of 4; closed after 4 more refusals
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", await session_cookie_for(user))]
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    assert (await communicator.connect(timeout=10))[0]
    await communicator.receive_json_from()  # hello
    for _ in range(12):
        await communicator.send_to(text_data=orjson.dumps({"type": "ping"}).decode())
    closed = None
    for _ in range(12):
        output = await communicator.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            closed = output
            break
    assert closed is not None and closed["code"] == 4429
    await communicator.disconnect()
