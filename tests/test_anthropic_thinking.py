"""Anthropic extended thinking through the whole engine: the reasoning streams as its own part, the
signatures and redacted blocks are stored with the reply (never sent to clients) and go back to
Anthropic on the next turn exactly as they came; a refusal ends the reply with a reason."""

import json

import pytest
from channels.db import database_sync_to_async

from chat import services
from chat.models import Message
from chat.providers import registry
from tests.engine_fixtures import PLANTED_KEY
from tests.fake_upstream import Scenario

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]

MODEL = "anthropic:claude-thinker"
REASONING = "The user greets me. A greeting deserves a short, warm answer."
ANSWER = "Hello! What shall we work on today?"
# As the API sends them: opaque, base64 with padding and '+' and '/', to be returned byte for byte.
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds+4u/QoKx8Ufs=="
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB5URj2pabc"


@pytest.fixture(autouse=True)
def anthropic_settings(engine, upstream):
    """The fake upstream as Anthropic, with one thinking model."""
    engine.ANTHROPIC_API_KEY = PLANTED_KEY
    engine.ANTHROPIC_BASE_URL = upstream.base_url_anthropic
    engine.ANTHROPIC_MODELS = ["claude-thinker"]
    engine.ANTHROPIC_THINKING_BUDGET = 1024
    engine.ANTHROPIC_THINKING_MODELS = ["claude-thinker"]
    registry.reset()
    yield engine
    registry.reset()


@database_sync_to_async
def new_conversation(make_user):
    return services.conversation_create(owner=make_user(), model=MODEL)


@pytest.fixture
async def conversation(make_user):
    return await new_conversation(make_user)


@database_sync_to_async
def saved(pk):
    return Message.objects.get(pk=pk)


async def reply_to(ws, conversation, content):
    accepted = await ws.send_message(conversation.pk, content)
    assert accepted["type"] == "accepted", accepted
    return await ws.reply_parts(accepted["message"]["id"])


async def test_thinking_streams_first_and_its_signed_and_redacted_blocks_are_stored_but_never_sent_to_clients(
    connect, conversation, upstream
):
    upstream.script(Scenario.anthropic_thinking(REASONING, ANSWER, signature=SIGNATURE, redacted=(REDACTED,)))
    async with connect(conversation.owner, protocol=2) as ws:
        parts, done = await reply_to(ws, conversation, "Hi")

    assert upstream.requests[0].body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert parts == [("reasoning", REASONING), ("text", ANSWER)]
    assert [(part["kind"], part["length"]) for part in done["message"]["parts"]] == [
        ("reasoning", len(REASONING)),
        ("text", len(ANSWER)),
    ]
    seen = json.dumps(ws.received)
    assert SIGNATURE not in seen and REDACTED not in seen and "signature" not in seen
    reply = await saved(done["message"]["id"])
    assert reply.status == "complete" and reply.content == ANSWER and reply.finish_reason == "end_turn"
    assert [{key: part[key] for key in part if key != "duration_ms"} for part in reply.parts] == [
        {"kind": "reasoning", "text": REASONING, "signature": SIGNATURE},
        {"kind": "reasoning", "text": "", "redacted": REDACTED},
        {"kind": "text", "text": ANSWER},
    ]
    assert [part["kind"] for part in reply.part_list()] == ["reasoning", "text"]


async def test_the_next_turn_sends_the_thinking_blocks_back_byte_for_byte(connect, conversation, upstream):
    upstream.script(
        Scenario.anthropic_thinking(REASONING, ANSWER, signature=SIGNATURE, redacted=(REDACTED,)),
        Scenario.text("Sure."),
    )
    async with connect(conversation.owner, protocol=2) as ws:
        await reply_to(ws, conversation, "Hi")
        await reply_to(ws, conversation, "Plan my day.")

    first, second = upstream.requests
    assert first.body["messages"] == [{"role": "user", "content": "Hi"}]
    assert second.body["messages"] == [
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": REASONING, "signature": SIGNATURE},
                {"type": "redacted_thinking", "data": REDACTED},
                {"type": "text", "text": ANSWER},
            ],
        },
        {"role": "user", "content": "Plan my day."},
    ]


async def test_omitted_thinking_keeps_only_its_signature_and_goes_back_as_an_empty_thinking_block(
    connect, conversation, upstream
):
    upstream.script(Scenario.anthropic_thinking("", ANSWER, signature=SIGNATURE), Scenario.text("Sure."))
    async with connect(conversation.owner, protocol=2) as ws:
        parts, done = await reply_to(ws, conversation, "Hi")
        await reply_to(ws, conversation, "Go on.")

    assert parts == [("text", ANSWER)]
    assert [part["kind"] for part in done["message"]["parts"]] == ["text"]
    assert upstream.requests[1].body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "", "signature": SIGNATURE},
        {"type": "text", "text": ANSWER},
    ]


async def test_a_refusal_fails_the_reply_with_a_reason_and_keeps_what_it_streamed(connect, conversation, upstream):
    upstream.script(Scenario.anthropic_thinking(REASONING, "I can't", signature=SIGNATURE, finish_reason="refusal"))
    async with connect(conversation.owner, protocol=2) as ws:
        parts, done = await reply_to(ws, conversation, "Something bad")

    message = done["message"]
    assert message["status"] == "failed" and message["finish_reason"] == "refusal"
    assert message["error"]["code"] == "refused" and "declined" in message["error"]["message"]
    assert parts == [("reasoning", REASONING), ("text", "I can't")]
    assert len(upstream.requests) == 1, "a refusal is not retried"
    reply = await saved(message["id"])
    assert reply.parts[0]["signature"] == SIGNATURE
