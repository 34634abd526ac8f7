"""One reply through chat.engine.generation on a controlled clock and a scripted provider: how often it
writes to the database follows from the checkpoint rule alone, however busy the machine is."""

import functools
from collections.abc import AsyncIterator

import pytest
from channels.db import database_sync_to_async

from chat import services
from chat.engine.generation import Generation
from chat.models import Message
from chat.providers import registry
from chat.providers.base import GenerationRequest, ModelInfo, Provider, ReplyStream
from tests.engine_helpers import record_worker_writes
from tests.harness.clock import ManualClock

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]


class ScriptedStream(ReplyStream):
    """Tokens on a schedule of the test's clock: `every` seconds apart."""

    def __init__(self, request: GenerationRequest, *, clock: ManualClock, tokens: list[str], every: float) -> None:
        super().__init__(request)
        self.clock, self.tokens, self.every = clock, tokens, every

    async def deltas(self) -> AsyncIterator[str]:
        for token in self.tokens:
            yield token
            await self.clock.advance(self.every)
        self.result.finish_reason = "stop"

    async def aclose(self) -> None:
        pass


class ScriptedProvider(Provider):
    name = "scripted"
    label = "Scripted"

    def __init__(self, **script: object) -> None:
        self.script = script

    def models(self) -> list[ModelInfo]:
        return [ModelInfo.of(self.name, "m", context_tokens=100_000)]

    def stream(self, request: GenerationRequest) -> ReplyStream:
        return ScriptedStream(request, **self.script)


@pytest.fixture
def scripted(monkeypatch):
    def install(**script: object) -> None:
        provider = ScriptedProvider(**script)
        # Cached like the real one, so the engine fixture's registry.reset() works on it too.
        monkeypatch.setattr(registry, "providers", functools.cache(lambda: {"scripted": provider}))

    return install


@pytest.fixture
def database_writes(monkeypatch) -> list[str]:
    return record_worker_writes(monkeypatch)


@database_sync_to_async
def pending_reply(user) -> Message:
    conversation = services.conversation_create(owner=user, model="scripted:m")
    return services.message_send(conversation=conversation, client_id="c1", content="Hi").reply


async def test_a_5000_token_reply_over_three_seconds_writes_once_to_claim_once_a_second_and_once_to_finish(
    make_user, scripted, database_writes, settings
):
    settings.CHAT_CHECKPOINT_SECONDS = 1
    clock = ManualClock()
    tokens = [f" t{i}" for i in range(5000)]
    scripted(clock=clock, tokens=tokens, every=3.0 / 5000)
    reply = await pending_reply(await database_sync_to_async(make_user)())

    await Generation(reply.pk, reply.conversation_id, clock=clock).run()

    saved = await database_sync_to_async(Message.objects.get)(pk=reply.pk)
    assert saved.status == Message.Status.COMPLETE and saved.content == "".join(tokens)
    assert database_writes[0] == "generation_begin" and database_writes[-1] == "generation_finish"
    checkpoints = database_writes.count("generation_checkpoint")
    assert 2 <= checkpoints <= 3, database_writes  # one per second of streaming, never one per token
    assert len(database_writes) == checkpoints + 2


async def test_a_fast_short_reply_is_never_checkpointed(make_user, scripted, database_writes):
    clock = ManualClock()
    scripted(clock=clock, tokens=["a", "b", "c"], every=0.001)
    reply = await pending_reply(await database_sync_to_async(make_user)())

    await Generation(reply.pk, reply.conversation_id, clock=clock).run()

    assert database_writes == ["generation_begin", "generation_finish"]
