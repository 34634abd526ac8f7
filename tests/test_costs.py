"""What replies cost: the price table, each provider's usage fields priced at their own rates (OpenAI
Chat Completions and Responses count cached tokens within the input, Anthropic apart), the price of
the moment a reply was sent, partial and estimated replies flagged, titles costed, the seed file."""

import json
from datetime import timedelta
from decimal import Decimal
from importlib import import_module

import pytest
from channels.db import database_sync_to_async
from django.apps import apps as django_apps
from django.core.management import call_command
from django.utils import timezone

from chat import costs, events, services
from chat.models import DailyUsage, Message, ModelPrice
from chat.providers import registry
from chat.providers.base import StreamResult
from tests.engine_fixtures import PLANTED_KEY, TEST_MODEL
from tests.fake_upstream import Scenario

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]

MILLION = 1_000_000


@pytest.fixture
def user(make_user):
    return make_user()


def price(model: str, *, since: timedelta = timedelta(days=1), **rates: str) -> ModelPrice:
    """A price for `model` in force since `since` ago: input 1, output 2, cached read 0.5, cache write 4,
    reasoning 3 per million tokens unless given."""
    values = {"input": "1", "output": "2", "cached_read": "0.5", "cache_write": "4", "reasoning": "3", **rates}
    return ModelPrice.objects.create(
        model=model,
        effective_from=timezone.now() - since,
        **{f"{name}_per_million": Decimal(value) for name, value in values.items() if value is not None},
    )


@pytest.fixture
def all_providers(engine, upstream):
    """OpenAI (a Chat Completions and a Responses model) and Anthropic, on the fake upstream."""
    engine.OPENAI_MODELS = ["gpt-test", "o-test"]
    engine.OPENAI_RESPONSES_MODELS = ["o-test"]
    engine.ANTHROPIC_API_KEY = PLANTED_KEY
    engine.ANTHROPIC_BASE_URL = upstream.base_url_anthropic
    engine.ANTHROPIC_MODELS = ["claude-test"]
    registry.reset()
    yield
    registry.reset()


async def reply_through(connect, user, model: str) -> Message:
    conversation = await database_sync_to_async(services.conversation_create)(owner=user, model=model)
    async with connect(user) as ws:
        accepted = await ws.send_message(conversation.pk, "hello")
        _, done = await ws.reply_text(accepted["message"]["id"])
    reply = await database_sync_to_async(Message.objects.get)(pk=accepted["message"]["id"])
    return reply, done


# --- each provider's usage fields ---------------------------------------------------------------


@pytest.mark.usefixtures("all_providers")
async def test_an_openai_chat_reply_costs_its_uncached_input_cached_input_and_output(connect, user, upstream):
    await database_sync_to_async(price)(TEST_MODEL)
    upstream.script(Scenario.reply("a", "b", "c", input_tokens=1000, cached_tokens=400))
    reply, done = await reply_through(connect, user, TEST_MODEL)
    # prompt_tokens (1000) include the 400 cached: 600 at 1, 400 at 0.5, 3 output tokens at 2.
    assert reply.cost == Decimal(600 * 1 + 400 * 0.5 + 3 * 2) / MILLION
    assert done["message"]["cost"] == {
        "amount": str(reply.cost),
        "currency": "USD",
        "estimated": False,
        "partial": False,
    }


@pytest.mark.usefixtures("all_providers")
async def test_an_openai_responses_reply_prices_reasoning_tokens_at_the_reasoning_rate(connect, user, upstream):
    await database_sync_to_async(price)("openai:o-test")
    scenario = Scenario.with_reasoning("think hard", "ok", input_tokens=100, cached_tokens=10)
    upstream.script(scenario)
    reply, _ = await reply_through(connect, user, "openai:o-test")
    assert reply.reasoning_tokens and reply.output_tokens > reply.reasoning_tokens
    answer = reply.output_tokens - reply.reasoning_tokens
    expected = 90 * 1 + 10 * 0.5 + answer * 2 + reply.reasoning_tokens * 3
    assert reply.cost == Decimal(expected) / MILLION


@pytest.mark.usefixtures("all_providers")
async def test_an_anthropic_reply_prices_cache_reads_and_writes_beside_its_uncached_input(connect, user, upstream):
    await database_sync_to_async(price)("anthropic:claude-test")
    upstream.script(Scenario.reply("a", "b", input_tokens=50, cached_tokens=2000, cache_write_tokens=300))
    reply, _ = await reply_through(connect, user, "anthropic:claude-test")
    # Anthropic's input_tokens are the uncached ones only: nothing is taken off them.
    assert (reply.input_tokens, reply.cached_input_tokens, reply.cache_write_tokens) == (50, 2000, 300)
    assert reply.cost == Decimal(50 * 1 + 2000 * 0.5 + 300 * 4 + 2 * 2) / MILLION


def test_anthropic_thinking_tokens_are_priced_at_the_reasoning_rate_within_the_output():
    rate = ModelPrice(input_per_million=Decimal(1), output_per_million=Decimal(10), reasoning_per_million=Decimal(20))
    usage = costs.Usage(input_tokens=0, output_tokens=100, reasoning_tokens=60)
    assert costs.cost_of(usage=usage, price=rate, provider="anthropic") == Decimal(40 * 10 + 60 * 20) / MILLION


def test_rates_left_empty_fall_back_to_the_input_and_output_prices():
    rate = ModelPrice(input_per_million=Decimal(2), output_per_million=Decimal(8))
    usage = costs.Usage(input_tokens=1000, output_tokens=100, cached_input_tokens=500, reasoning_tokens=50)
    assert costs.cost_of(usage=usage, price=rate, provider="openai") == Decimal(1000 * 2 + 100 * 8) / MILLION


# --- the price of the moment ---------------------------------------------------------------------


def test_a_reply_keeps_the_price_of_the_moment_it_was_sent(user):
    price(TEST_MODEL, since=timedelta(days=10), output="1")
    conversation = services.conversation_create(owner=user, model=TEST_MODEL)
    reply = Message.objects.create(
        conversation=conversation, role="assistant", status="streaming", lease_holder="w/1", model=TEST_MODEL
    )
    Message.objects.filter(pk=reply.pk).update(created_at=timezone.now() - timedelta(days=5))
    price(TEST_MODEL, since=timedelta(days=1), output="100")  # a new price, after the reply was sent
    result = services.generation_finish(
        message_id=reply.pk,
        parts=[("text", "hi")],
        seq=1,
        status="complete",
        result=StreamResult(finish_reason="stop", input_tokens=0, output_tokens=MILLION),
        lease_holder="w/1",
    )
    assert result.cost == Decimal(1)
    assert DailyUsage.objects.get(user=user).cost == Decimal(1)


def test_the_price_at_a_moment_is_the_latest_that_took_effect_by_then_to_the_microsecond():
    moment = timezone.now()

    def price(model: str, effective_from, rate: int) -> ModelPrice:
        return ModelPrice.objects.create(
            model=model, effective_from=effective_from, input_per_million=rate, output_per_million=rate
        )

    old, new = (price("x:y", moment - timedelta(days=days), days) for days in (9, 1))
    price("x:y", moment + timedelta(microseconds=1), 0)
    price("x:other", moment, 5)
    assert costs.price_at(model_ref="x:y", moment=moment).pk == new.pk
    assert costs.price_at(model_ref="x:y", moment=moment - timedelta(days=5)).pk == old.pk
    assert costs.price_at(model_ref="x:y", moment=moment - timedelta(days=10)) is None
    assert costs.price_at(model_ref="x:y", moment=moment - timedelta(days=1)).input_per_million == Decimal(1)


def test_a_model_without_a_price_has_no_cost_and_spends_nothing(user, upstream):
    assert costs.reply_cost(model_ref=TEST_MODEL, usage=costs.Usage(input_tokens=10)) is None


# --- partial and estimated replies ---------------------------------------------------------------


async def test_a_stopped_reply_is_costed_from_its_estimated_tokens_and_flagged_partial(connect, user, upstream):
    await database_sync_to_async(price)(TEST_MODEL)
    upstream.script(Scenario.slow(200, delay=0.02, hold_after=5))
    conversation = await database_sync_to_async(services.conversation_create)(owner=user, model=TEST_MODEL)
    async with connect(user) as ws:
        accepted = await ws.send_message(conversation.pk, "hello")
        first = await ws.receive_type("delta")
        await ws.send({"type": "cancel", "conversation": conversation.pk})
        upstream.release()
        _, done = await ws.reply_text(accepted["message"]["id"], text=first["text"])
    reply = await database_sync_to_async(Message.objects.get)(pk=accepted["message"]["id"])
    assert reply.status == "cancelled" and reply.tokens_estimated and reply.cost_estimated
    assert reply.cost > 0
    assert done["message"]["cost"]["estimated"] is True and done["message"]["cost"]["partial"] is True


def test_the_message_payload_has_no_cost_when_none_is_known(user):
    conversation = services.conversation_create(owner=user, model=TEST_MODEL)
    reply = Message.objects.create(conversation=conversation, role="assistant", content="ok")
    assert events.message_payload(reply)["cost"] is None


# --- titles --------------------------------------------------------------------------------------


def test_a_title_request_is_costed_at_the_title_models_price_and_spent_by_the_owner(user, settings):
    settings.CHAT_TITLE_MODEL = TEST_MODEL
    price(TEST_MODEL, input="10", output="10")
    conversation = services.conversation_create(owner=user, model=TEST_MODEL)
    usage = costs.Usage(input_tokens=MILLION, output_tokens=MILLION)
    services.conversation_title_by_model(
        conversation_id=conversation.pk, title="A title", tokens=2 * MILLION, usage=usage
    )
    ledger = DailyUsage.objects.get(user=user)
    assert (ledger.tokens, ledger.cost) == (2 * MILLION, Decimal(20))


# --- the seed file -------------------------------------------------------------------------------


def test_the_migration_seeds_the_price_file_and_load_prices_again_adds_nothing():
    ModelPrice.objects.all().delete()  # a test database may have been flushed since it was migrated
    import_module("chat.migrations.0013_teams").seed_prices(django_apps, None)
    entries = json.loads(costs.PRICES_FILE.read_text())
    assert ModelPrice.objects.count() == len(entries) > 0
    sonnet = ModelPrice.objects.get(model="anthropic:claude-sonnet-4-5")
    assert (sonnet.input_per_million, sonnet.cache_write_per_million) == (Decimal("3"), Decimal("3.75"))
    call_command("load_prices")
    assert ModelPrice.objects.count() == len(entries)
