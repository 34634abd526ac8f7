"""chat/services/parameters.py and each provider's rules: a conversation's generation parameters are
checked against its model, stored, shown, and sent in each provider's own terms."""

import orjson
import pytest
from channels.db import database_sync_to_async
from django.test import Client

from chat import services
from chat.errors import ChatError
from chat.models import Conversation
from chat.providers import registry
from chat.providers.base import ChatTurn, GenerationRequest
from chat.providers.local import _sampling
from chat.providers.openai_responses import reasoning_efforts, request_body
from chat.providers.parameters import GenerationParameters
from chat.services.parameters import parameters_for_request
from tests.engine_fixtures import PLANTED_KEY, TEST_MODEL
from tests.fake_upstream import Scenario

pytestmark = pytest.mark.django_db(transaction=True)

O_SERIES = "openai:o3-mini"
ON_RESPONSES = "openai:gpt-resp"  # a chat model on the Responses API
REASONER_ON_RESPONSES = "openai:o4-mini"
GPT5 = "openai:gpt-5"
CLAUDE = "anthropic:claude-plain"
THINKER = "anthropic:claude-thinker"
ADAPTIVE = "anthropic:claude-adaptive"
OLLAMA = "ollama:llama3"
LOCAL = "local:smollm2-135m-instruct"


@pytest.fixture(autouse=True)
def every_provider(engine, upstream):
    """OpenAI (chat and reasoning models), Anthropic (one thinking model), a compatible server, the local model."""
    engine.OPENAI_MODELS = ["gpt-test", "gpt-other", "o3-mini", "gpt-5", "gpt-5.1", "o4-mini", "gpt-resp"]
    engine.OPENAI_RESPONSES_MODELS = ["o4-mini", "gpt-resp"]
    engine.ANTHROPIC_API_KEY = PLANTED_KEY
    engine.ANTHROPIC_BASE_URL = upstream.base_url_anthropic
    engine.ANTHROPIC_MODELS = ["claude-plain", "claude-thinker", "claude-adaptive"]
    engine.ANTHROPIC_THINKING_BUDGET = 0
    engine.ANTHROPIC_THINKING_MODELS = ["claude-thinker"]
    engine.ANTHROPIC_THINKING_ADAPTIVE_MODELS = ["claude-adaptive"]
    engine.OPENAI_COMPATIBLE_SERVERS = [
        {"name": "ollama", "base_url": upstream.base_url_openai, "api_key": "", "models": ["llama3"]}
    ]
    engine.LOCAL_MODEL_ENABLED = True
    engine.CHAT_MAX_OUTPUT_TOKENS = 4096
    registry.reset()
    yield engine
    registry.reset()


@pytest.fixture
def user(make_user):
    return make_user()


def conversation_on(user, model: str, **parameters) -> Conversation:
    return services.conversation_create(owner=user, model=model, parameters=parameters)


def refused(conversation: Conversation, given: object, *, model: str | None = None) -> ChatError:
    """The update's refusal, after checking that it wrote nothing."""
    before = Conversation.objects.values("model", "parameters").get(pk=conversation.pk)
    with pytest.raises(ChatError) as caught:
        services.conversation_update(conversation=conversation, parameters=given, model=model)
    assert Conversation.objects.values("model", "parameters").get(pk=conversation.pk) == before
    assert caught.value.code == "invalid_parameter", caught.value
    return caught.value


# --- what each model accepts -----------------------------------------------------------------------


def test_a_conversation_stores_only_the_parameters_it_sets(user):
    conversation = conversation_on(user, TEST_MODEL, temperature=0.2, stop=["END"])

    assert Conversation.objects.get(pk=conversation.pk).parameters == {"temperature": 0.2, "stop": ["END"]}


def test_an_update_merges_the_given_parameters_and_null_clears_one(user):
    conversation = conversation_on(user, TEST_MODEL, temperature=0.2, top_p=0.9)

    services.conversation_update(conversation=conversation, parameters={"top_p": None, "max_output_tokens": 300})

    assert Conversation.objects.get(pk=conversation.pk).parameters == {"temperature": 0.2, "max_output_tokens": 300}


@pytest.mark.parametrize(
    ("model", "given", "field", "says"),
    [
        (TEST_MODEL, {"temperature": 2.5}, "temperature", "from 0 to 2"),
        (TEST_MODEL, {"temperature": "hot"}, "temperature", "a number"),
        (TEST_MODEL, {"temperature": True}, "temperature", "a number"),
        (TEST_MODEL, {"top_p": -0.1}, "top_p", "from 0 to 1"),
        (TEST_MODEL, {"max_output_tokens": 0}, "max_output_tokens", "from 1 to 4096"),
        (TEST_MODEL, {"max_output_tokens": 5000}, "max_output_tokens", "from 1 to 4096"),
        (TEST_MODEL, {"max_output_tokens": 10.5}, "max_output_tokens", "whole number"),
        (TEST_MODEL, {"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
        (TEST_MODEL, {"stop": "END"}, "stop", "a list"),
        (TEST_MODEL, {"stop": ["ok", ""]}, "stop", "non-empty"),
        (TEST_MODEL, {"stop": ["x" * 201]}, "stop", "at most 200"),
        (TEST_MODEL, {"stop": ["a\x00b"]}, "stop", "NUL"),
        (TEST_MODEL, {"reasoning_effort": "high"}, "reasoning_effort", "not accepted by openai:gpt-test"),
        (TEST_MODEL, {"frequency_penalty": 1}, "frequency_penalty", "not a generation parameter"),
        (TEST_MODEL, {"repetition_penalty": 1.2}, "repetition_penalty", "not accepted"),
        (O_SERIES, {"temperature": 0.5}, "temperature", "not accepted by openai:o3-mini"),
        (O_SERIES, {"stop": ["END"]}, "stop", "not accepted"),
        (O_SERIES, {"reasoning_effort": "minimal"}, "reasoning_effort", "low, medium, high"),
        (O_SERIES, {"reasoning_effort": "extreme"}, "reasoning_effort", "one of"),
        (ON_RESPONSES, {"stop": ["END"]}, "stop", "not accepted by openai:gpt-resp"),
        (REASONER_ON_RESPONSES, {"top_p": 0.5}, "top_p", "not accepted"),
        (CLAUDE, {"temperature": 0.5}, "temperature", "not accepted by anthropic:claude-plain"),
        (CLAUDE, {"top_p": 0.9}, "top_p", "not accepted"),
        (CLAUDE, {"reasoning_effort": "minimal"}, "reasoning_effort", "low, medium, high, xhigh, max"),
        (CLAUDE, {"thinking_budget": 2048}, "thinking_budget", "not accepted by anthropic:claude-plain"),
        (CLAUDE, {"stop": [str(n) for n in range(9)]}, "stop", "at most 8"),
        (THINKER, {"thinking_budget": 1000}, "thinking_budget", "from 1024 to 4096 (or 0: off)"),
        (THINKER, {"thinking_budget": 4096}, "thinking_budget", "below `max_output_tokens` (4096)"),
        (THINKER, {"thinking_budget": 2048, "max_output_tokens": 2000}, "thinking_budget", "below"),
        (ADAPTIVE, {"thinking_budget": 2048}, "thinking_budget", "not accepted by anthropic:claude-adaptive"),
        (OLLAMA, {"reasoning_effort": "low"}, "reasoning_effort", "not accepted by ollama:llama3"),
        (LOCAL, {"repetition_penalty": 2.5}, "repetition_penalty", "from 1 to 2"),
        (LOCAL, {"thinking_budget": 1024}, "thinking_budget", "not accepted"),
    ],
)
def test_a_parameter_the_model_does_not_accept_is_refused_naming_its_field_and_nothing_is_written(
    user, model, given, field, says
):
    conversation = conversation_on(user, model)

    error = refused(conversation, given)

    assert error.field == field
    assert says in error.message


def test_parameters_that_are_not_an_object_are_refused(user):
    conversation = conversation_on(user, TEST_MODEL)

    assert refused(conversation, ["temperature", 1]).field == "parameters"


def test_a_new_conversation_with_a_refused_parameter_is_not_created(user):
    with pytest.raises(ChatError) as caught:
        conversation_on(user, CLAUDE, temperature=1.8)

    assert caught.value.code == "invalid_parameter"
    assert not Conversation.objects.exists()


@pytest.mark.parametrize(
    ("model", "given"),
    [
        (GPT5, {"reasoning_effort": "minimal", "max_output_tokens": 1000}),
        (O_SERIES, {"reasoning_effort": "high"}),
        (THINKER, {"thinking_budget": 2048, "reasoning_effort": "xhigh"}),
        (THINKER, {"thinking_budget": 0}),
        (GPT5 + ".1", {"reasoning_effort": "none"}),
        (OLLAMA, {"temperature": 1.7, "top_p": 0.5, "stop": ["\n\n"]}),
        (LOCAL, {"repetition_penalty": 1.3, "temperature": 0.0}),
    ],
)
def test_what_each_provider_accepts_is_stored_as_given(user, model, given):
    conversation = conversation_on(user, model)

    services.conversation_update(conversation=conversation, parameters=given)

    assert Conversation.objects.get(pk=conversation.pk).parameters == given


def test_switching_model_keeps_the_parameters_the_new_model_accepts_and_drops_the_rest(user):
    conversation = conversation_on(user, TEST_MODEL, temperature=1.5, max_output_tokens=500, stop=["END"])

    services.conversation_update(conversation=conversation, model=CLAUDE)

    # Anthropic's Messages API takes no temperature.
    assert Conversation.objects.get(pk=conversation.pk).parameters == {"max_output_tokens": 500, "stop": ["END"]}


def test_switching_model_and_setting_parameters_at_once_checks_them_against_the_new_model(user):
    conversation = conversation_on(user, TEST_MODEL, temperature=1.5)

    services.conversation_update(conversation=conversation, model=O_SERIES, parameters={"reasoning_effort": "low"})
    error = refused(conversation, {"temperature": 0.5})

    assert Conversation.objects.get(pk=conversation.pk).parameters == {"reasoning_effort": "low"}
    assert error.field == "temperature"


def test_a_request_gets_only_what_the_replys_model_accepts(user):
    provider, model = registry.resolve(CLAUDE)

    parameters, max_output = parameters_for_request(
        provider=provider, model=model, values={"temperature": 1.5, "reasoning_effort": "extreme", "stop": ["END"]}
    )

    assert parameters == GenerationParameters(stop=("END",))
    assert max_output is None


def test_the_local_model_has_a_repetition_penalty_unless_the_conversation_sets_its_own(engine):
    engine.LOCAL_MODEL_REPEAT_PENALTY = 1.1

    assert _sampling(GenerationParameters()) == {"repeat_penalty": 1.1}
    assert _sampling(GenerationParameters(repetition_penalty=1.0, temperature=0.3, stop=("END",))) == {
        "repeat_penalty": 1.0,
        "temperature": 0.3,
        "stop": ["END"],
    }


# --- what reaches the provider -------------------------------------------------------------------


@database_sync_to_async
def new_conversation(user, model, **parameters):
    return conversation_on(user, model, **parameters)


async def reply_in(connect, conversation, upstream, *scenarios):
    upstream.script(*scenarios or (Scenario.text("Fine."),))
    async with connect(conversation.owner) as ws:
        accepted = await ws.send_message(conversation.pk, "Hi")
        assert accepted["type"] == "accepted", accepted
        await ws.reply_text(accepted["message"]["id"])
    return upstream.requests[-1].body


async def test_openai_gets_the_sampling_parameters_and_the_conversations_output_limit(connect, user, upstream):
    conversation = await new_conversation(user, TEST_MODEL, temperature=0.3, top_p=0.8, stop=["END"])
    await database_sync_to_async(services.conversation_update)(
        conversation=conversation, parameters={"max_output_tokens": 333}
    )

    body = await reply_in(connect, conversation, upstream)

    assert (body["temperature"], body["top_p"], body["stop"]) == (0.3, 0.8, ["END"])
    assert body["max_completion_tokens"] == 333


async def test_a_conversation_without_parameters_sends_none_of_them(connect, user, upstream):
    conversation = await new_conversation(user, TEST_MODEL)

    body = await reply_in(connect, conversation, upstream)

    assert not {"temperature", "top_p", "stop", "reasoning_effort"} & body.keys()
    assert body["max_completion_tokens"] == 4096


async def test_an_openai_reasoning_model_gets_the_reasoning_effort(connect, user, upstream):
    conversation = await new_conversation(user, O_SERIES, reasoning_effort="high")

    body = await reply_in(connect, conversation, upstream)

    assert body["reasoning_effort"] == "high"
    assert "temperature" not in body


@pytest.mark.parametrize(
    ("model", "parameters", "sent"),
    [
        ("gpt-resp", GenerationParameters(temperature=0.3, top_p=0.9), {"temperature": 0.3, "top_p": 0.9}),
        (
            "o4-mini",
            GenerationParameters(reasoning_effort="high"),
            {"reasoning": {"summary": "auto", "effort": "high"}},
        ),
        ("o4-mini", GenerationParameters(), {"reasoning": {"summary": "auto"}}),
    ],
)
def test_the_responses_api_gets_sampling_or_the_reasoning_effort_in_its_own_fields(model, parameters, sent):
    request = GenerationRequest(model, "", [ChatTurn("user", "Hi")], 64, parameters=parameters)

    body = request_body(request, background=False)

    assert {name: body[name] for name in sent} == sent
    assert "stop" not in body and "reasoning_effort" not in body


async def test_anthropic_gets_stop_sequences_an_effort_and_the_conversations_thinking_budget(connect, user, upstream):
    conversation = await new_conversation(user, THINKER, thinking_budget=2048, stop=["END"], reasoning_effort="high")

    body = await reply_in(
        connect, conversation, upstream, Scenario.anthropic_thinking("Let me see.", "Fine.", signature="c2ln")
    )

    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["stop_sequences"] == ["END"]
    assert body["output_config"] == {"effort": "high"}
    assert body["max_tokens"] == 4096


async def test_an_adaptive_model_is_asked_to_think_adaptively_steered_by_the_effort(connect, user, upstream):
    conversation = await new_conversation(user, ADAPTIVE, reasoning_effort="max")

    body = await reply_in(
        connect, conversation, upstream, Scenario.anthropic_thinking("Let me see.", "Fine.", signature="c2ln")
    )

    assert body["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert body["output_config"] == {"effort": "max"}


async def test_a_thinking_budget_of_zero_switches_thinking_off_for_the_conversation(connect, user, upstream, engine):
    engine.ANTHROPIC_THINKING_BUDGET = 1024  # on by default
    registry.reset()
    conversation = await new_conversation(user, THINKER, thinking_budget=0)

    body = await reply_in(connect, conversation, upstream)

    assert "thinking" not in body


# --- through the HTTP API --------------------------------------------------------------------------


@pytest.fixture
def client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def patch(client: Client, conversation: Conversation, body: object):
    return client.patch(
        f"/api/conversations/{conversation.pk}", data=orjson.dumps(body), content_type="application/json"
    )


def test_patch_sets_parameters_and_answers_the_conversation_with_them(client, user):
    conversation = conversation_on(user, TEST_MODEL)

    response = patch(client, conversation, {"parameters": {"temperature": 0.7}})

    assert response.status_code == 200
    assert response.json()["parameters"] == {"temperature": 0.7}


def test_patch_with_a_refused_parameter_answers_400_naming_the_field_and_changes_nothing(client, user):
    conversation = conversation_on(user, TEST_MODEL, temperature=0.7)

    response = patch(client, conversation, {"title": "Renamed", "parameters": {"top_p": 7}})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"
    assert response.json()["error"]["field"] == "top_p"
    stored = Conversation.objects.get(pk=conversation.pk)
    assert (stored.title, stored.parameters) == (conversation.title, {"temperature": 0.7})


def test_the_models_endpoint_lists_each_models_parameters(client):
    models = {model["ref"]: model for model in client.get("/api/models").json()["models"]}

    assert models[TEST_MODEL]["parameters"]["temperature"] == {
        "kind": "number",
        "label": "Temperature",
        "help": "Higher is more varied, lower more focused.",
        "minimum": 0.0,
        "maximum": 2.0,
    }
    assert set(models[O_SERIES]["parameters"]) == {"max_output_tokens", "reasoning_effort"}
    assert models[THINKER]["parameters"]["thinking_budget"]["allow_zero"] is True
    assert models[LOCAL]["parameters"]["repetition_penalty"]["default"] == 1.1


def test_every_reasoning_family_sent_to_the_responses_api_by_default_has_its_efforts(settings):
    assert all(reasoning_efforts(family) for family in settings.OPENAI_REASONING_FAMILIES)
