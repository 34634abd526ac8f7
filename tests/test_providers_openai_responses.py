"""OpenAI's Responses API through the real SDK against the fake upstream: what is sent, how the typed
events become text and reasoning deltas with their cursors, how a response ends (completed, incomplete,
failed, an error event), and background mode: the response id, reattaching after a cursor, cancelling."""

import pytest

from chat.providers.base import ChatTurn, Delta, GenerationRequest, ProviderError
from chat.providers.openai import OpenAIProvider
from tests.fake_upstream import Scenario, split_text

API_KEY = "sk-test-planted-secret-0123456789"
REQUEST = GenerationRequest(
    model="o4-mini",
    system="You are brief.",
    turns=[ChatTurn("user", "What is two and two?"), ChatTurn("assistant", "Four."), ChatTurn("user", "Sure?")],
    max_output_tokens=64,
)
SUMMARIES = ("The user doubts the sum.", "Two and two is four, surely.")
ANSWER = "Yes, four."


@pytest.fixture
def provider(upstream):
    return OpenAIProvider(
        name="openai",
        label="OpenAI",
        api_key=API_KEY,
        base_url=upstream.base_url_openai,
        model_names=["o4-mini", "gpt-4.1", "o3"],
        responses_models=["o4-mini", "gpt-4.1", "o3"],
        background_models=["o3"],
    )


def background(request: GenerationRequest = REQUEST) -> GenerationRequest:
    return GenerationRequest("o3", request.system, request.turns, request.max_output_tokens)


async def deltas_of(stream) -> list[Delta]:
    async with stream:
        return [delta async for delta in stream]


def texts(deltas: list[Delta], kind: str) -> str:
    return "".join(delta.text for delta in deltas if delta.kind == kind)


async def test_a_responses_model_is_asked_with_instructions_input_turns_its_budget_and_reasoning_summaries(
    provider, upstream, read_reply
):
    await read_reply(provider.stream(REQUEST))

    (request,) = upstream.requests
    assert (request.method, request.path) == ("POST", "/v1/responses")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.body == {
        "model": "o4-mini",
        "instructions": "You are brief.",
        "input": [
            {"role": "user", "content": "What is two and two?"},
            {"role": "assistant", "content": "Four."},
            {"role": "user", "content": "Sure?"},
        ],
        "max_output_tokens": 64,
        "reasoning": {"summary": "auto"},
        "stream": True,
        "store": False,
    }


async def test_a_model_outside_the_reasoning_families_is_asked_for_no_reasoning_and_no_instructions_if_none(
    provider, upstream, read_reply
):
    await read_reply(provider.stream(GenerationRequest("gpt-4.1", "", [ChatTurn("user", "Hi")], 64)))

    body = upstream.requests[0].body
    assert "reasoning" not in body and "instructions" not in body


async def test_a_model_not_on_the_responses_api_stays_on_chat_completions(upstream, read_reply):
    provider = OpenAIProvider(
        name="openai", label="OpenAI", api_key=API_KEY, base_url=upstream.base_url_openai, model_names=["gpt-4o"]
    )

    await read_reply(provider.stream(GenerationRequest("gpt-4o", "", [ChatTurn("user", "Hi")], 64)))

    assert upstream.requests[0].path == "/v1/chat/completions"


async def test_reasoning_summaries_stream_as_one_reasoning_part_with_a_paragraph_each_then_the_text(provider, upstream):
    upstream.script(Scenario.with_summaries(SUMMARIES, ANSWER))
    stream = provider.stream(REQUEST)

    deltas = await deltas_of(stream)

    assert [delta.text for delta in deltas] == [
        *split_text(SUMMARIES[0]),
        "\n\n",
        *split_text(SUMMARIES[1]),
        *split_text(ANSWER),
    ]
    assert texts(deltas, "reasoning") == "\n\n".join(SUMMARIES)
    assert texts(deltas, "text") == ANSWER
    assert stream.result.finish_reason == "stop"


async def test_each_delta_carries_the_sequence_number_of_its_event_increasing(provider, upstream):
    upstream.script(Scenario.with_summaries(SUMMARIES, ANSWER))

    cursors = [delta.cursor for delta in await deltas_of(provider.stream(REQUEST))]

    assert all(isinstance(cursor, int) for cursor in cursors)
    assert cursors == sorted(set(cursors)), "one event, one delta, in order"


async def test_raw_reasoning_text_streams_as_reasoning_too(provider, upstream, read_reply):
    upstream.script(Scenario.with_summaries(["Two and two."], ANSWER, reasoning_kind="text"))
    reasoning: list[str] = []

    assert await read_reply(provider.stream(REQUEST), None, reasoning) == ANSWER
    assert "".join(reasoning) == "Two and two."


async def test_usage_is_kept_as_reported_cached_inside_input_reasoning_inside_output(provider, upstream):
    upstream.script(Scenario.with_summaries(SUMMARIES, ANSWER, input_tokens=321, cached_tokens=200))
    stream = provider.stream(REQUEST)
    await deltas_of(stream)

    result = stream.result
    reasoning = sum(len(split_text(summary)) for summary in SUMMARIES)
    assert (result.input_tokens, result.cached_input_tokens) == (321, 200)
    assert (result.output_tokens, result.reasoning_tokens) == (reasoning + len(split_text(ANSWER)), reasoning)
    assert not result.tokens_estimated


async def test_events_cut_across_network_chunks_parse_as_whole_events(provider, upstream, read_reply):
    upstream.script(Scenario.with_summaries(SUMMARIES, ANSWER, split_at=17))
    reasoning: list[str] = []

    assert await read_reply(provider.stream(REQUEST), None, reasoning) == ANSWER
    assert "".join(reasoning) == "\n\n".join(SUMMARIES)


async def test_incomplete_for_the_output_budget_is_the_length_finish_of_chat_completions(provider, upstream):
    upstream.script(Scenario.text(ANSWER, finish_reason="length"))
    stream = provider.stream(REQUEST)

    assert texts(await deltas_of(stream), "text") == ANSWER
    assert stream.result.finish_reason == "length"
    assert stream.result.output_tokens == len(split_text(ANSWER))


async def test_incomplete_for_the_content_filter_is_a_refusal_keeping_the_text_so_far(provider, upstream, read_reply):
    upstream.script(Scenario.text(ANSWER, finish_reason="content_filter"))
    received: list[str] = []

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST), received)

    assert caught.value.code == "refused"
    assert "".join(received) == ANSWER


@pytest.mark.parametrize(
    ("scenario", "code"),
    [
        (Scenario.failed(after=2, error_type="server_error"), "upstream_error"),
        (Scenario.failed(after=2, error_type="rate_limit_exceeded"), "rate_limited"),
        (Scenario.failed(after=2, error_type="invalid_prompt"), "upstream_error"),
        (Scenario.error_mid_stream(after=2, error_code="rate_limit_exceeded"), "rate_limited"),
        (Scenario.error_mid_stream(after=2, error_code="context_length_exceeded"), "bad_request"),
    ],
    ids=["failed-server", "failed-rate-limit", "failed-other", "error-rate-limit", "error-context"],
)
async def test_a_failed_response_or_an_error_event_is_a_provider_error_keeping_the_text_so_far(
    provider, upstream, read_reply, scenario, code
):
    upstream.script(scenario)
    received: list[str] = []

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST), received)

    assert caught.value.code == code
    assert "".join(received) == "Hello,"


@pytest.mark.parametrize(
    ("scenario", "code"),
    [(Scenario.cut(after=2), "connection"), (Scenario.no_finish(after=2), "truncated")],
    ids=["cut", "no-terminal-event"],
)
async def test_a_stream_that_ends_without_its_terminal_event_failed(provider, upstream, read_reply, scenario, code):
    upstream.script(scenario)

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST))

    assert caught.value.code == code


async def test_an_http_error_maps_as_for_chat_completions(provider, upstream, read_reply):
    upstream.script(Scenario.http_error(429))

    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.stream(REQUEST))

    assert caught.value.code == "rate_limited"


# --- Background mode --------------------------------------------------------------------------------


async def test_a_background_model_is_created_in_background_stored_and_its_response_id_known(
    provider, upstream, read_reply
):
    stream = provider.stream(background())

    assert await read_reply(stream) == "Hello, world!"
    body = upstream.requests[0].body
    assert (body["background"], body["store"]) == (True, True)
    assert stream.response_id in upstream.responses


async def test_a_foreground_response_has_no_id_to_reattach_to(provider, upstream, read_reply):
    stream = provider.stream(REQUEST)
    await read_reply(stream)

    assert stream.response_id == ""


async def test_reattaching_after_a_cursor_streams_the_rest_of_the_same_response_exactly(provider, upstream):
    upstream.script(Scenario.with_summaries(SUMMARIES, ANSWER))
    first = provider.stream(background())
    deltas = await deltas_of(first)
    cut = 9

    again = provider.reattach(background(), response_id=first.response_id, after=deltas[cut - 1].cursor)
    rest = await deltas_of(again)

    assert rest == deltas[cut:]
    assert again.result.finish_reason == "stop" and again.result.output_tokens == first.result.output_tokens
    retrieve = upstream.requests[-1]
    assert (retrieve.method, retrieve.path) == ("GET", f"/v1/responses/{first.response_id}")
    assert retrieve.query == {"stream": "true", "starting_after": str(deltas[cut - 1].cursor)}


async def test_reattaching_with_no_cursor_streams_the_response_from_its_start(provider, upstream):
    first = provider.stream(background())
    deltas = await deltas_of(first)

    assert await deltas_of(provider.reattach(background(), response_id=first.response_id, after=None)) == deltas
    assert "starting_after" not in upstream.requests[-1].query


async def test_a_background_response_goes_on_without_its_reader_and_is_read_again_live(provider, upstream):
    upstream.script(Scenario.text(ANSWER, hold_after=2))
    first = provider.stream(background())
    received: list[Delta] = []
    async with first:
        async for delta in first:
            received.append(delta)
            if len(received) == 2:
                break  # the reader goes away; the response stays
    assert await upstream.wait_held_async()

    again = provider.reattach(background(), response_id=first.response_id, after=received[-1].cursor)
    upstream.release()

    assert "".join(delta.text for delta in received + await deltas_of(again)) == ANSWER


async def test_reattaching_to_a_response_the_provider_no_longer_has_is_a_bad_request(provider, upstream, read_reply):
    with pytest.raises(ProviderError) as caught:
        await read_reply(provider.reattach(background(), response_id="resp_gone", after=3))

    assert caught.value.code == "bad_request"


async def test_cancel_stops_a_background_response_upstream(provider, upstream):
    upstream.script(Scenario.text(ANSWER, hold_after=1))
    stream = provider.stream(background())
    async with stream:
        async for _ in stream:
            break
    assert await upstream.wait_held_async()

    await provider.cancel(stream.response_id)

    (cancel,) = upstream.requests_to(f"/v1/responses/{stream.response_id}/cancel")
    assert cancel.method == "POST"
    assert upstream.responses[stream.response_id].cancelled
