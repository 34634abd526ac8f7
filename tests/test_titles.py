"""Titles by a model (CHAT_TITLE_MODEL): written after the first reply, counted in the budget; a
failure keeps the derived title, and a rename by the owner always wins."""

import pytest
from channels.db import database_sync_to_async

from chat import services
from chat.engine.titles import title_after_reply
from chat.limits import tokens_used_today
from chat.models import Conversation, Message
from chat.providers.base import StreamResult
from tests.engine_fixtures import TEST_MODEL
from tests.engine_helpers import finished_reply
from tests.fake_upstream import Scenario

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]


@pytest.fixture
def titled(settings):
    settings.CHAT_TITLE_MODEL = TEST_MODEL


def first_reply(owner, question: str = "my sourdough starter smells of acetone, help") -> Message:
    conversation = services.conversation_create(owner=owner, model=TEST_MODEL)
    return finished_reply(
        conversation, question, [("text", "Feed it more often.")], StreamResult(input_tokens=10, output_tokens=5)
    )


def title_of(reply: Message) -> str:
    return Conversation.objects.get(pk=reply.conversation_id).title


async def test_the_model_writes_the_title_after_the_first_reply_and_its_tokens_count(make_user, upstream, titled):
    user = await database_sync_to_async(make_user)()
    reply = await database_sync_to_async(first_reply)(user)
    before = await database_sync_to_async(tokens_used_today)(user_id=user.pk)
    upstream.script(Scenario.reply('"Reviving', " a", " Sourdough", ' Starter."', input_tokens=40))

    await title_after_reply(reply)

    assert await database_sync_to_async(title_of)(reply) == "Reviving a Sourdough Starter"
    assert await database_sync_to_async(tokens_used_today)(user_id=user.pk) == before + 44
    request = upstream.requests[-1]
    assert "sourdough starter smells of acetone" in str(request.body)


async def test_no_title_is_asked_when_the_setting_is_off(make_user, upstream):
    user = await database_sync_to_async(make_user)()
    reply = await database_sync_to_async(first_reply)(user)

    await title_after_reply(reply)

    assert upstream.requests == []
    assert await database_sync_to_async(title_of)(reply) == "my sourdough starter smells of acetone, help"


async def test_a_failed_title_request_keeps_the_derived_title(make_user, upstream, titled):
    user = await database_sync_to_async(make_user)()
    reply = await database_sync_to_async(first_reply)(user)
    upstream.script(Scenario.http_error(500), Scenario.http_error(500), Scenario.http_error(500))

    await title_after_reply(reply)

    assert await database_sync_to_async(title_of)(reply) == "my sourdough starter smells of acetone, help"


async def test_a_rename_wins_before_and_after_the_model_answers(make_user, upstream, titled):
    user = await database_sync_to_async(make_user)()
    reply = await database_sync_to_async(first_reply)(user)
    conversation = await database_sync_to_async(Conversation.objects.get)(pk=reply.conversation_id)
    await database_sync_to_async(services.conversation_update)(conversation=conversation, title="My bread")
    upstream.script(Scenario.text("Model title"))

    await title_after_reply(reply)

    assert upstream.requests == []  # not even asked
    assert await database_sync_to_async(title_of)(reply) == "My bread"
    assert (
        await database_sync_to_async(services.conversation_title_by_model)(
            conversation_id=conversation.pk, title="Late model title", tokens=3
        )
        is None
    )
    assert await database_sync_to_async(title_of)(reply) == "My bread"


async def test_only_the_first_reply_gets_a_title(make_user, upstream, titled):
    user = await database_sync_to_async(make_user)()
    reply = await database_sync_to_async(first_reply)(user)
    regenerated = await database_sync_to_async(services.reply_regenerate)(
        conversation=reply.conversation, client_id="r1", message=reply.pk
    )

    await title_after_reply(
        await database_sync_to_async(Message.objects.select_related("conversation").get)(pk=regenerated.reply.pk)
    )

    assert upstream.requests == []
