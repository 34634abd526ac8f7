"""The OpenAI-compatible API, driven by the official openai SDK (sync and async, streamed and not) over
loopback against the real server, with the fake upstream as the provider behind it."""

import asyncio
import json
import socket

import httpx2 as httpx
import openai
import pytest
from channels.db import database_sync_to_async
from django.db import OperationalError
from django.utils import timezone

from chat import services
from chat.errors import ChatError
from chat.models import Conversation, Message
from chat.v1 import follow
from tests.engine_fixtures import TEST_MODEL
from tests.fake_upstream import Scenario
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]

HI = [{"role": "user", "content": "Hi"}]


def text_of(chunks) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


# --- Answers ---------------------------------------------------------------------------------------


@pytest.mark.cluster
def test_a_call_answers_with_the_reply_text_usage_and_finish_reason(sdk, make_key, upstream):
    upstream.script(Scenario.text("Hello from the gateway."))
    completion = sdk(make_key()).chat.completions.create(model=TEST_MODEL, messages=HI)
    assert completion.object == "chat.completion"
    assert completion.model == TEST_MODEL
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello from the gateway."
    assert completion.choices[0].finish_reason == "stop"
    output = len(Scenario.text("Hello from the gateway.").tokens)
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, output)
    assert completion.usage.total_tokens == 12 + output
    reply = Message.objects.get(role="assistant")
    assert completion.id == f"chatcmpl-{reply.pk}"
    assert (reply.status, reply.content) == ("complete", "Hello from the gateway.")


@pytest.mark.cluster
def test_a_streamed_call_sends_chunks_then_the_finish_chunk_the_usage_chunk_and_done(sdk, make_key, upstream):
    upstream.script(Scenario.text("Streaming through the gateway works.", delay=0.01))
    stream = sdk(make_key()).chat.completions.create(
        model=TEST_MODEL, messages=HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert text_of(chunks) == "Streaming through the gateway works."
    with_choices = [chunk for chunk in chunks if chunk.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert [chunk.choices[0].finish_reason for chunk in with_choices][-1] == "stop"
    assert all(chunk.choices[0].finish_reason is None for chunk in with_choices[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 12
    assert Message.objects.get(role="assistant").status == "complete"


def test_without_include_usage_a_stream_has_no_usage_chunk(sdk, make_key, upstream):
    upstream.script(Scenario.text("No usage here."))
    chunks = list(sdk(make_key()).chat.completions.create(model=TEST_MODEL, messages=HI, stream=True))
    assert text_of(chunks) == "No usage here."
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)


@pytest.mark.cluster
async def test_the_async_client_gets_the_same_answers_streamed_and_not(async_sdk, make_key, upstream):
    upstream.script(Scenario.text("Async and whole."), Scenario.text("Async and streamed.", delay=0.01))
    client = async_sdk(await database_sync_to_async(make_key)())
    whole = await client.chat.completions.create(model=TEST_MODEL, messages=HI)
    assert whole.choices[0].message.content == "Async and whole."
    stream = await client.chat.completions.create(
        model=TEST_MODEL, messages=[{"role": "user", "content": "Again"}], stream=True
    )
    assert text_of([chunk async for chunk in stream]) == "Async and streamed."
    await client.close()


@pytest.mark.cluster
def test_a_reply_cut_by_its_budget_finishes_with_length(sdk, make_key, upstream):
    upstream.script(Scenario.text("Cut short", finish_reason="length"), Scenario.text("Cut", finish_reason="length"))
    client = sdk(make_key())
    assert client.chat.completions.create(model=TEST_MODEL, messages=HI).choices[0].finish_reason == "length"
    chunks = list(client.chat.completions.create(model=TEST_MODEL, messages=HI, stream=True))
    assert [chunk.choices[0].finish_reason for chunk in chunks][-1] == "length"


@pytest.mark.cluster
def test_reasoning_streams_as_reasoning_content_deltas_and_comes_apart_from_the_answer(sdk, make_key, upstream):
    upstream.script(
        Scenario.with_reasoning("First, think.", "Then answer."),
        Scenario.with_reasoning("Think again.", "Answer again."),
    )
    client = sdk(make_key())
    chunks = list(client.chat.completions.create(model=TEST_MODEL, messages=HI, stream=True))
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks)
    assert (reasoning, text_of(chunks)) == ("First, think.", "Then answer.")
    whole = client.chat.completions.create(model=TEST_MODEL, messages=[{"role": "user", "content": "More"}])
    message = whole.choices[0].message
    assert (message.model_extra["reasoning_content"], message.content) == ("Think again.", "Answer again.")


@pytest.mark.cluster
def test_the_models_are_listed_by_the_chats_names(sdk, make_key):
    client = sdk(make_key())
    assert [model.id for model in client.models.list()] == ["openai:gpt-test", "openai:gpt-other"]
    assert client.models.retrieve("openai:gpt-other").owned_by == "openai"


# --- What is sent upstream ----------------------------------------------------------------------


@pytest.mark.cluster
def test_the_system_prompt_history_and_parameters_reach_the_provider(sdk, make_key, upstream):
    upstream.script(Scenario.text("Fine."))
    sdk(make_key()).chat.completions.create(
        model=TEST_MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "One"},
            {"role": "assistant", "content": "Two"},
            {"role": "user", "content": [{"type": "text", "text": "Thr"}, {"type": "text", "text": "ee"}]},
        ],
        temperature=0.3,
        top_p=0.9,
        max_tokens=50,
        stop="END",
    )
    body = upstream.requests[-1].body
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("system", "Be brief."),
        ("user", "One"),
        ("assistant", "Two"),
        ("user", "Three"),
    ]
    assert (body["temperature"], body["top_p"], body["max_completion_tokens"], body["stop"]) == (0.3, 0.9, 50, ["END"])
    conversation = Conversation.objects.get()
    assert conversation.system_prompt == "Be brief."
    assert conversation.parameters == {"temperature": 0.3, "top_p": 0.9, "max_output_tokens": 50, "stop": ["END"]}


# --- Errors -------------------------------------------------------------------------------------


def error_of(excinfo) -> dict:
    return excinfo.value.body


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "unsupported_parameter"),
        ({"frobnicate": 1}, "frobnicate", "unknown_parameter"),
        ({"temperature": 7}, "temperature", "invalid_parameter"),
        ({"max_completion_tokens": 0}, "max_completion_tokens", "invalid_parameter"),
        ({"n": 2}, "n", "unsupported_parameter"),
        ({"messages": [{"role": "assistant", "content": "I go last"}]}, "messages", "invalid"),
        ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages[0].tool_call_id", "invalid"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]", "invalid"),
    ],
)
def test_an_unknown_or_unsupported_field_is_a_400_naming_it_and_nothing_is_stored(
    sdk, make_key, upstream, fields, param, code
):
    messages = fields.get("messages", HI)
    extra = {name: value for name, value in fields.items() if name != "messages"}
    with pytest.raises(openai.BadRequestError) as excinfo:
        sdk(make_key()).chat.completions.create(model=TEST_MODEL, messages=messages, extra_body=extra or None)
    error = error_of(excinfo)
    assert excinfo.value.status_code == 400
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert not Conversation.objects.exists() and not upstream.requests


@pytest.mark.cluster
def test_a_wrong_key_is_a_401(sdk):
    with pytest.raises(openai.AuthenticationError) as excinfo:
        sdk("sc-not-a-real-key").chat.completions.create(model=TEST_MODEL, messages=HI)
    assert error_of(excinfo)["code"] == "invalid_api_key"
    assert excinfo.value.response.headers["www-authenticate"] == "Bearer"


@pytest.mark.cluster
def test_a_model_not_offered_is_a_404_and_one_the_key_may_not_use_a_403(sdk, make_key):
    client = sdk(make_key(allowed_models=["openai:gpt-test"]))
    with pytest.raises(openai.NotFoundError) as excinfo:
        client.chat.completions.create(model="openai:gpt-nope", messages=HI)
    assert (error_of(excinfo)["code"], error_of(excinfo)["param"]) == ("model_not_found", None)
    with pytest.raises(openai.PermissionDeniedError) as excinfo:
        client.chat.completions.create(model="openai:gpt-other", messages=HI)
    assert (error_of(excinfo)["code"], error_of(excinfo)["param"]) == ("model_not_allowed", "model")
    assert not Conversation.objects.exists()


@pytest.mark.cluster
def test_a_message_over_the_size_limit_is_a_413(sdk, make_key, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 100
    with pytest.raises(openai.APIStatusError) as excinfo:
        sdk(make_key()).chat.completions.create(model=TEST_MODEL, messages=[{"role": "user", "content": "x" * 101}])
    assert excinfo.value.status_code == 413
    assert (error_of(excinfo)["code"], error_of(excinfo)["param"]) == ("message_too_long", "messages[0].content")


@pytest.mark.cluster
def test_a_body_over_the_api_limit_is_a_413(sdk, make_key, settings):
    settings.CHAT_API_MAX_BODY_BYTES = 1000
    with pytest.raises(openai.APIStatusError) as excinfo:
        sdk(make_key()).chat.completions.create(model=TEST_MODEL, messages=[{"role": "user", "content": "x" * 2000}])
    assert (excinfo.value.status_code, error_of(excinfo)["code"]) == (413, "request_too_large")


@pytest.mark.cluster
def test_the_chats_rate_limit_answers_429_with_retry_after(sdk, make_key, upstream, settings):
    settings.CHAT_MESSAGES_PER_MINUTE = 1
    upstream.script(Scenario.text("One."))
    client = sdk(make_key())
    client.chat.completions.create(model=TEST_MODEL, messages=HI)
    with pytest.raises(openai.RateLimitError) as excinfo:
        client.chat.completions.create(model=TEST_MODEL, messages=[{"role": "user", "content": "Two"}])
    assert error_of(excinfo)["code"] == "rate_limited"
    assert 1 <= int(excinfo.value.response.headers["retry-after"]) <= 60
    assert Message.objects.count() == 2, "the refused call stored nothing"


@pytest.mark.cluster
def test_the_daily_budget_is_shared_with_the_chat(sdk, make_key, make_user, settings):
    settings.CHAT_DAILY_TOKEN_BUDGET = 100
    user = make_user()
    services.usage_add(user_id=user.pk, tokens=100, day=timezone.now().date())
    with pytest.raises(openai.RateLimitError) as excinfo:
        sdk(make_key(user)).chat.completions.create(model=TEST_MODEL, messages=HI)
    assert (error_of(excinfo)["code"], error_of(excinfo)["type"]) == ("budget_exhausted", "insufficient_quota")


@pytest.mark.cluster
def test_a_provider_failure_is_a_503_when_not_streamed(sdk, make_key, upstream):
    # The first try and the engine's two retries before the first token (CHAT_RETRY_ATTEMPTS) all fail.
    upstream.script(*[Scenario.http_error(503)] * 3)
    with pytest.raises(openai.InternalServerError) as excinfo:
        sdk(make_key()).chat.completions.create(model=TEST_MODEL, messages=HI)
    assert (excinfo.value.status_code, error_of(excinfo)["code"]) == (503, "overloaded")
    assert Message.objects.get(role="assistant").status == "failed"


@pytest.mark.cluster
def test_a_provider_failure_mid_stream_is_an_error_event_then_the_stream_ends(sdk, make_key, upstream):
    upstream.script(Scenario.error_mid_stream(after=3, tokens=("Half", " a", " reply", " lost")))
    stream = sdk(make_key()).chat.completions.create(model=TEST_MODEL, messages=HI, stream=True)
    received = []
    with pytest.raises(openai.APIError) as excinfo:
        for chunk in stream:
            received.append(chunk)
    assert text_of(received) == "Half a reply"
    assert "overloaded" in excinfo.value.message
    assert excinfo.value.body["code"] == "overloaded"
    assert Message.objects.get(role="assistant").status == "failed"


def test_a_stream_whose_reply_cannot_be_followed_ends_with_an_unavailable_error_event(
    sdk, make_key, upstream, monkeypatch
):
    class Unconfirmed:  # as chat.fanout when Redis does not confirm the subscription
        async def follow(self, group, inbox):
            raise ChatError("unavailable")

        async def unfollow(self, group, inbox):
            pass

    monkeypatch.setattr(follow, "fanout", Unconfirmed)
    upstream.script(Scenario.text("never followed"))
    stream = sdk(make_key()).chat.completions.create(model=TEST_MODEL, messages=HI, stream=True)
    with pytest.raises(openai.APIError) as excinfo:
        list(stream)
    assert excinfo.value.body["code"] == "unavailable"


def test_a_get_on_completions_and_an_unknown_path_answer_in_openais_shape(v1_url, make_key):
    headers = {"Authorization": f"Bearer {make_key()}"}
    wrong_method = httpx.get(f"{v1_url}/chat/completions", headers=headers)
    assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (405, "method_not_allowed")
    unknown = httpx.get(f"{v1_url}/embeddings", headers=headers)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not_found")
    bad_json = httpx.post(f"{v1_url}/chat/completions", headers=headers, content=b"{nope")
    assert (bad_json.status_code, bad_json.json()["error"]["code"]) == (400, "bad_json")


# --- Stopping -----------------------------------------------------------------------------------


@pytest.mark.cluster
def test_closing_the_stream_stops_the_upstream_and_keeps_the_partial_reply_as_cancelled(sdk, make_key, upstream):
    upstream.script(Scenario.slow(400, delay=0.02))
    stream = sdk(make_key()).chat.completions.create(model=TEST_MODEL, messages=HI, stream=True)
    received = ""
    for chunk in stream:
        received += chunk.choices[0].delta.content or ""
        if len(received) > 20:
            break
    stream.close()
    assert upstream.wait_closed(within=15), "the provider's connection was left open"
    reply = asyncio.run(saved_reply(Message.Status.CANCELLED))
    assert reply.content.startswith(received)
    assert reply.finish_reason == "cancelled"


async def saved_reply(status: str) -> Message:
    """The reply, once saved with `status`. Embedded, the test database is SQLite in memory with a shared
    cache, whose table locks are not waited for: a read racing the worker's save is tried again."""

    @database_sync_to_async
    def saved() -> bool:
        try:
            return Message.objects.filter(role="assistant", status=status).exists()
        except OperationalError:
            return False

    await wait_for(saved)
    return await database_sync_to_async(Message.objects.get)(role="assistant")


@pytest.mark.cluster
async def test_an_async_client_that_goes_away_mid_stream_stops_the_upstream(async_sdk, make_key, upstream):
    upstream.script(Scenario.slow(400, delay=0.02))
    client = async_sdk(await database_sync_to_async(make_key)())
    stream = await client.chat.completions.create(model=TEST_MODEL, messages=HI, stream=True)
    async for chunk in stream:
        if chunk.choices[0].delta.content:
            break
    await stream.close()
    assert await upstream.wait_closed_async(within=15)
    await saved_reply(Message.Status.CANCELLED)
    await client.close()


@pytest.mark.cluster
def test_a_client_that_goes_away_before_its_whole_answer_stops_the_upstream(v1_url, make_key, upstream):
    upstream.script(Scenario.slow(400, delay=0.02))
    body = json.dumps({"model": TEST_MODEL, "messages": HI}).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {make_key()}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    port = int(v1_url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head.encode() + body)
        assert upstream.wait_requests(1), "the reply never reached the provider"
    assert upstream.wait_closed(within=15), "the provider's connection was left open"
    asyncio.run(saved_reply(Message.Status.CANCELLED))


def test_a_parameter_out_of_range_says_so_in_the_message(sdk, make_key):
    with pytest.raises(openai.BadRequestError) as excinfo:
        sdk(make_key()).chat.completions.create(model=TEST_MODEL, messages=HI, temperature=7)
    assert excinfo.value.body["message"] == "`temperature` must be from 0 to 2."


@pytest.mark.cluster
def test_a_reply_stopped_from_the_chat_ends_the_stream_as_an_answer(sdk, make_key, upstream):
    upstream.script(Scenario.slow(400, delay=0.02))
    stream = sdk(make_key()).chat.completions.create(model=TEST_MODEL, messages=HI, stream=True)
    chunks = [next(stream), next(stream)]
    conversation = Conversation.objects.get()
    asyncio.run(wait_for(lambda: _cancelled(conversation)))  # the owner's Stop button, as the chat sends it
    chunks += list(stream)
    assert chunks[-1].choices[0].finish_reason == "stop"
    reply = Message.objects.get(role="assistant")
    assert reply.status == "cancelled" and reply.content == text_of(chunks)


@database_sync_to_async
def _cancelled(conversation: Conversation) -> bool:
    try:
        services.generation_cancel(conversation=conversation)
    except OperationalError:  # embedded: the shared-cache SQLite's table lock, while the worker writes
        return False
    return True
