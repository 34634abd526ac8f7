"""The chat page's first history of a running reply (issue 19): its live text and the server's timing."""

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from chat import events
from chat.live import LiveFrame, live_log
from chat.models import Conversation, Message
from tests.test_pages import models_configured, page_data  # noqa: F401 - the fixture is used by name

pytestmark = pytest.mark.django_db


def running_reply(owner, *, checkpointed: str, started_seconds_ago: float) -> Message:
    conversation = Conversation.objects.create(owner=owner, title="Counting", model="openai:gpt-test")
    question = Message.objects.create(conversation=conversation, role="user", content="Count")
    return Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        status=Message.Status.STREAMING,
        content=checkpointed,
        started_at=timezone.now() - timedelta(seconds=started_seconds_ago),
    )


def test_a_reloaded_page_starts_with_the_live_text_not_the_older_checkpoint(client, django_user_model) -> None:
    user = django_user_model.objects.create_user(username="alice", password="pw-alice-1234")
    reply = running_reply(user, checkpointed="one two", started_seconds_ago=4)
    async_to_sync(live_log().begin)(reply.pk)
    for end, text in ((8, "one two "), (13, "three"), (19, " four.")):
        async_to_sync(live_log().append)(reply.pk, LiveFrame(part=0, kind="text", text=text, end=end))
    client.force_login(user)

    shown = page_data(client.get(f"/c/{reply.conversation_id}/"))["messages"][-1]

    assert shown["content"] == "one two three four."
    assert [(part["kind"], part["text"]) for part in shown["parts"]] == [("text", "one two three four.")]
    assert shown["seq"] == 3
    assert 4000 <= shown["elapsed_ms"] < 60_000
    async_to_sync(live_log().end)(reply.pk)


def test_only_a_streaming_reply_says_how_long_it_has_streamed(django_user_model) -> None:
    user = django_user_model.objects.create_user(username="bob", password="pw-bob-1234")
    reply = running_reply(user, checkpointed="Done.", started_seconds_ago=2)
    assert "elapsed_ms" in events.message_payload(reply)
    reply.status = Message.Status.COMPLETE
    assert "elapsed_ms" not in events.message_payload(reply)
