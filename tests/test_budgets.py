"""Money budgets, per day and per month, of a user and of a group: checked before a reply starts
(`budget_exceeded`, nothing written) on every transport, and at the checkpoints of a reply that streams,
which stops once the budget is crossed, its text kept."""

import asyncio
import functools
import math
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import openai
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from chat import limits, services
from chat.engine.generation import Generation
from chat.errors import ChatError
from chat.models import Conversation, GroupPolicy, Message, ModelPrice
from chat.providers import registry
from chat.providers.base import GenerationRequest, ModelInfo, Provider, ReplyStream
from tests.engine_fixtures import TEST_MODEL
from tests.harness.clock import ManualClock

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]


@pytest.fixture
def user(make_user):
    return make_user()


def spend(user, amount: str, *, days_ago: int = 0) -> None:
    """What a finished reply does: its cost goes to the day's ledger."""
    day = (timezone.now() - timedelta(days=days_ago)).date()
    services.usage_add(user_id=user.pk, tokens=1, cost=Decimal(amount), day=day)


def http_send(user, conversation):
    client = Client()
    client.force_login(user)
    body = {"client_id": uuid.uuid4().hex, "content": "hello"}
    return client.post(f"/api/conversations/{conversation.pk}/messages", body, content_type="application/json")


def group_of(*users, **policy) -> Group:
    group = Group.objects.create(name=f"g-{uuid.uuid4().hex[:8]}")
    GroupPolicy.objects.create(group=group, **policy)
    for member in users:
        member.groups.add(group)
    return group


# --- before a reply starts -----------------------------------------------------------------------


@pytest.mark.cluster
async def test_a_spent_daily_money_budget_refuses_over_the_websocket_writing_nothing(connect, user, settings):
    settings.CHAT_DAILY_COST_BUDGET = Decimal("1.00")
    await database_sync_to_async(spend)(user, "1.00")
    conversation = await database_sync_to_async(services.conversation_create)(owner=user, model=TEST_MODEL)
    async with connect(user) as ws:
        refused = await ws.send_message(conversation.pk, "hello")
    assert refused["code"] == "budget_exceeded" and "1 USD for today" in refused["message"]
    assert refused["retry_after"] > 0
    assert not await database_sync_to_async(Message.objects.filter(conversation=conversation).exists)()


def test_a_spent_monthly_money_budget_refuses_over_http_until_the_first(user, settings):
    settings.CHAT_MONTHLY_COST_BUDGET = Decimal("5")
    today = timezone.now().date()
    spend(user, "3", days_ago=0)
    spend(user, "2", days_ago=1 if today.day > 1 else 0)
    conversation = services.conversation_create(owner=user, model=TEST_MODEL)
    response = http_send(user, conversation)
    assert response.status_code == 429 and response.json()["error"]["code"] == "budget_exceeded"
    assert "this month" in response.json()["error"]["message"]
    assert not Message.objects.filter(conversation=conversation).exists()


def test_last_months_spend_does_not_count(user, settings):
    settings.CHAT_MONTHLY_COST_BUDGET = Decimal("5")
    spend(user, "50", days_ago=timezone.now().day + 1)
    limits.reply_start_check(user_id=user.pk)


@pytest.mark.cluster
def test_a_v1_call_over_the_budget_is_refused_as_insufficient_quota(sdk, make_key, make_user, settings):
    settings.CHAT_DAILY_COST_BUDGET = Decimal("0.5")
    owner = make_user()
    spend(owner, "0.5")
    with pytest.raises(openai.RateLimitError) as excinfo:
        sdk(make_key(owner)).chat.completions.create(model=TEST_MODEL, messages=[{"role": "user", "content": "hi"}])
    assert excinfo.value.body["code"] == "budget_exceeded" and excinfo.value.body["type"] == "insufficient_quota"
    assert not Conversation.objects.exists()


def test_a_groups_budget_for_each_member_is_more_generous_than_the_default(user, settings):
    settings.CHAT_DAILY_COST_BUDGET = Decimal("1")
    spend(user, "2")
    with pytest.raises(ChatError):
        limits.reply_start_check(user_id=user.pk)
    group_of(user, daily_cost_budget=Decimal("10"))
    limits.reply_start_check(user_id=user.pk)


def test_a_groups_shared_budget_is_spent_by_all_its_members_together(user, make_user):
    colleague = make_user()
    group_of(user, colleague, group_daily_cost_budget=Decimal("3"))
    spend(user, "1")
    limits.reply_start_check(user_id=user.pk)
    spend(colleague, "2")
    with pytest.raises(ChatError) as refused:
        limits.reply_start_check(user_id=user.pk)
    assert refused.value.code == "budget_exceeded" and "Your group's budget" in refused.value.message


def test_a_member_of_another_group_without_a_shared_budget_is_not_held_by_the_spent_one(user, make_user):
    colleague = make_user()
    group_of(user, colleague, group_daily_cost_budget=Decimal("1"))
    spend(colleague, "5")
    group_of(user)
    limits.reply_start_check(user_id=user.pk)


# --- while a reply streams -----------------------------------------------------------------------


class PacedStream(ReplyStream):
    """Tokens on the test's clock, `every` seconds apart; a checkpoint in flight is waited for, so the
    reply's checks land where the checkpoint rule puts them, however busy the machine is."""

    def __init__(self, request: GenerationRequest, *, clock: ManualClock, tokens: list[str], every: float, runs):
        super().__init__(request)
        self.clock, self.tokens, self.every, self.runs = clock, tokens, every, runs

    async def deltas(self) -> AsyncIterator[str]:
        for token in self.tokens:
            yield token
            await self.clock.advance(self.every)
            checkpoint = self.runs[0]._checkpointing
            if checkpoint is not None and not checkpoint.done():
                await asyncio.shield(checkpoint)
        self.result.finish_reason = "stop"

    async def aclose(self) -> None:
        pass


class PacedProvider(Provider):
    name = "paced"
    label = "Paced"

    def __init__(self, **script: object) -> None:
        self.script = script

    def models(self) -> list[ModelInfo]:
        return [ModelInfo.of(self.name, "m", context_tokens=100_000)]

    def stream(self, request: GenerationRequest) -> ReplyStream:
        return PacedStream(request, **self.script)


async def test_a_reply_that_crosses_the_budget_stops_within_a_checkpoint_interval_with_its_text_kept(
    make_user, monkeypatch, settings
):
    settings.CHAT_CHECKPOINT_SECONDS = 1
    settings.CHAT_DAILY_COST_BUDGET = Decimal("100")
    clock, runs = ManualClock(), []
    tokens = [f" w{i:03d}" for i in range(1000)]  # 5 characters each
    every = 0.01  # 100 tokens a checkpoint interval
    provider = PacedProvider(clock=clock, tokens=tokens, every=every, runs=runs)
    monkeypatch.setattr(registry, "providers", functools.cache(lambda: {"paced": provider}))
    # One unit of money an output token (estimated at four characters a token while it streams).
    await database_sync_to_async(ModelPrice.objects.create)(
        model="paced:m",
        effective_from=timezone.now() - timedelta(days=1),
        input_per_million=Decimal(0),
        output_per_million=Decimal(1_000_000),
    )
    user = await database_sync_to_async(make_user)()
    await database_sync_to_async(spend)(user, "40")  # 60 left: crossed at 60 estimated tokens, 240 characters

    conversation = await database_sync_to_async(services.conversation_create)(owner=user, model="paced:m")
    reply = (
        await database_sync_to_async(services.message_send)(conversation=conversation, client_id="c", content="Hi")
    ).reply
    runs.append(Generation(reply.pk, reply.conversation_id, clock=clock))
    await runs[0].run()

    saved = await database_sync_to_async(Message.objects.get)(pk=reply.pk)
    assert saved.status == Message.Status.CANCELLED and saved.error_code == "budget_exceeded"
    assert "budget" in saved.error_message
    assert "".join(tokens).startswith(saved.content), "the text kept is what the model sent"
    crossed_at = math.ceil(60 * 4 / 5)  # tokens streamed when the budget was crossed
    per_interval = round(settings.CHAT_CHECKPOINT_SECONDS / every)
    assert crossed_at <= len(saved.content) // 5 <= crossed_at + per_interval + 1
    assert saved.cost is not None and saved.cost_estimated


# --- across Daphne processes ---------------------------------------------------------------------


@pytest.fixture
def two_servers(upstream, tmp_path):
    """Two Daphne servers and a worker on their own Redis prefix, with a daily budget of 60 (USD)."""
    from tests.cluster_fixtures import cluster_env, stop_session_worker
    from tests.harness.servers import Cluster

    stop_session_worker()  # it shares the database: its reaper must not take this cluster's replies
    env = cluster_env(
        upstream.base_url_openai,
        CHAT_REDIS_PREFIX=f"budget-{uuid.uuid4().hex[:8]}",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        CHAT_CHECKPOINT_SECONDS="1",
        CHAT_DAILY_COST_BUDGET="60",
    )
    cluster = Cluster(env, tmp_path)
    cluster.worker()
    yield cluster.server(), cluster.server()
    cluster.stop_all()


@pytest.mark.cluster_only
@pytest.mark.timeout(120)
async def test_a_budget_crossed_mid_stream_stops_the_reply_on_any_server_and_the_next_send_is_refused(
    two_servers, upstream, make_user
):
    from tests.engine_fixtures import session_cookie_for
    from tests.fake_upstream import Scenario
    from tests.harness.follower import Follower

    server_a, server_b = two_servers
    await database_sync_to_async(ModelPrice.objects.create)(
        model=TEST_MODEL,
        effective_from=timezone.now() - timedelta(days=1),
        input_per_million=Decimal(0),
        output_per_million=Decimal(1_000_000),  # one unit a token
    )
    user = await database_sync_to_async(make_user)()
    cookie = await session_cookie_for(user)

    async def follower(server, conversation) -> Follower:
        client = await Follower(server.port, cookie, conversation.pk).connect()
        await client.subscribe()
        await client.next_matching(lambda f: f["type"] == "snapshot")
        return client

    create = database_sync_to_async(services.conversation_create)
    first = await follower(server_a, await create(owner=user, model=TEST_MODEL))
    upstream.script(Scenario.reply("one", " two", " three"))
    assert (await first.ask("send", content="hi"))["type"] == "accepted"
    assert await first.follow() == ("one two three", "complete")  # 3 output tokens: 3 spent, 57 left

    tokens = Scenario.slow(600, delay=0.03).tokens
    upstream.script(Scenario.slow(600, delay=0.03))
    second = await follower(server_b, await create(owner=user, model=TEST_MODEL))
    accepted = await second.ask("send", content="a long story")
    assert accepted["type"] == "accepted"
    text, status = await second.follow(timeout=60)
    saved = await database_sync_to_async(Message.objects.get)(pk=accepted["message"]["id"])
    assert (status, saved.status, saved.error_code) == ("cancelled", "cancelled", "budget_exceeded")
    assert text == saved.content and "".join(tokens).startswith(saved.content), "the text is kept, as sent"
    # Crossed once 57 estimated tokens (four characters each) were written: after 59 of the model's tokens.
    written = [len("".join(tokens[:count])) for count in range(len(tokens) + 1)]
    crossed = next(count for count, chars in enumerate(written) if math.ceil(chars / 4) >= 57)
    streamed = written.index(len(saved.content))
    per_interval = math.ceil(1 / 0.03)
    assert crossed <= streamed <= crossed + 3 * per_interval, (crossed, streamed)

    third = await follower(server_a, await create(owner=user, model=TEST_MODEL))
    refused = await third.ask("send", content="more")
    assert refused["type"] == "error" and refused["code"] == "budget_exceeded"
    for client in (first, second, third):
        await client.close()


# --- what users see ------------------------------------------------------------------------------


def test_users_see_their_spend_and_what_is_left_in_the_sidebar_and_over_the_api(user, settings):
    settings.CHAT_DAILY_COST_BUDGET = Decimal("2")
    spend(user, "0.5")
    group_of(user, monthly_cost_budget=Decimal("10"))
    client = Client()
    client.force_login(user)
    page = client.get("/").content.decode()
    assert "Spent today: 0.50 USD" in page and "1.50 left of 2.00" in page and "9.50 left of 10.00" in page
    assert client.get("/api/usage").json() == {
        "currency": "USD",
        "spent_today": "0.5000",
        "spent_month": "0.5000",
        "daily_budget": "2.0000",
        "monthly_budget": "10.0000",
        "left_today": "1.5000",
        "left_month": "9.5000",
    }


@pytest.mark.cluster
def test_a_v1_stream_stopped_by_the_budget_ends_with_a_budget_exceeded_error_event(sdk, make_key, make_user, upstream):
    from tests.fake_upstream import Scenario

    ModelPrice.objects.create(
        model=TEST_MODEL,
        effective_from=timezone.now() - timedelta(days=1),
        input_per_million=Decimal(0),
        output_per_million=Decimal(1_000_000),
    )
    owner = make_user()
    group_of(owner, daily_cost_budget=Decimal("10"))  # in the database: a worker process reads it too
    upstream.script(Scenario.slow(400, delay=0.01))
    stream = sdk(make_key(owner)).chat.completions.create(
        model=TEST_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as excinfo:
        for chunk in stream:
            received.extend(choice.delta.content or "" for choice in chunk.choices)
    assert excinfo.value.body["code"] == "budget_exceeded"
    saved = Message.objects.get(role="assistant")
    assert (saved.status, saved.error_code) == ("cancelled", "budget_exceeded")
    assert "".join(received) == saved.content and 0 < len(saved.content) < len("".join(Scenario.slow(400).tokens))
