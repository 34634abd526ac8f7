"""Sending files: a `send` or `edit` (WebSocket or HTTP) names uploaded attachments; the model gets them
in its provider's format; ids of another user, of another message or unknown are refused, and so is a
file the model cannot take, before any provider call. Deleting a conversation or an account removes
the stored files."""

import io
import uuid

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from chat import services
from chat.models import Attachment, Message
from chat.services.attachments import attachment_create
from tests.attachment_files import png, stored_files
from tests.engine_fixtures import TEST_MODEL
from tests.engine_helpers import read_row
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]


@database_sync_to_async
def uploaded(conversation, name: str = "chart.png", data: bytes | None = None) -> Attachment:
    data = png() if data is None else data
    return attachment_create(
        owner=conversation.owner, conversation=conversation, upload=io.BytesIO(data), name=name, size=len(data)
    )


async def logged_in(user) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def post(client: AsyncClient, conversation, path: str, **body):
    body.setdefault("client_id", uuid.uuid4().hex)
    return await client.post(f"/api/conversations/{conversation.pk}/{path}", body, content_type="application/json")


async def finished(reply_id: int) -> Message:
    async def done() -> bool:
        return (await read_row(reply_id)).status not in Message.ACTIVE_STATUSES

    await wait_for(done)
    return await read_row(reply_id)


@pytest.mark.cluster
async def test_an_image_sent_over_http_reaches_the_model_and_shows_on_the_message(
    files_chat, attachments_root, upstream, vision
):
    attachment = await uploaded(files_chat)
    client = await logged_in(files_chat.owner)

    answer = await post(client, files_chat, "messages", content="What is this?", attachments=[attachment.pk])

    assert answer.status_code == 202, answer.content
    assert [a["id"] for a in answer.json()["user_message"]["attachments"]] == [attachment.pk]
    reply = await finished(answer.json()["message"]["id"])
    assert reply.status == "complete"
    content = upstream.requests[-1].body["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What is this?"}
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    shown = (await client.get(f"/api/conversations/{files_chat.pk}")).json()["messages"][0]
    assert [a["name"] for a in shown["attachments"]] == ["chart.png"], "after a reload too"


async def test_a_message_may_be_files_alone(files_chat, attachments_root, upstream, vision):
    attachment = await uploaded(files_chat)
    client = await logged_in(files_chat.owner)

    answer = await post(client, files_chat, "messages", content="", attachments=[attachment.pk])

    assert answer.status_code == 202, answer.content
    await finished(answer.json()["message"]["id"])
    assert (
        await database_sync_to_async(lambda: files_chat.__class__.objects.get(pk=files_chat.pk).title)()
    ) == "chart.png"


@pytest.mark.cluster
async def test_a_websocket_send_names_its_attachments(connect, files_chat, attachments_root, upstream, vision):
    attachment = await uploaded(files_chat)
    async with connect(files_chat.owner) as ws:
        frame = {"type": "send", "conversation": files_chat.pk, "client_id": "w1", "content": "See?"}
        await ws.send({**frame, "attachments": [attachment.pk]})
        accepted = await ws.receive_until(lambda f: f["type"] in {"accepted", "error"})
        assert accepted["type"] == "accepted", accepted
        await ws.reply_text(accepted["message"]["id"])

    assert upstream.requests[-1].body["messages"][-1]["content"][1]["type"] == "image_url"
    assert (await database_sync_to_async(Attachment.objects.get)(pk=attachment.pk)).message_id is not None


async def test_a_model_that_does_not_see_images_refuses_before_any_provider_call(
    files_chat, attachments_root, upstream, vision
):
    attachment = await uploaded(files_chat)
    client = await logged_in(files_chat.owner)
    await client.patch(f"/api/conversations/{files_chat.pk}", {"model": "openai:gpt-other"}, "application/json")

    answer = await post(client, files_chat, "messages", content="What is this?", attachments=[attachment.pk])

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "unsupported_attachment" and "gpt-other" in error["message"]
    assert upstream.requests == []
    assert await database_sync_to_async(Message.objects.count)() == 0
    assert (await database_sync_to_async(Attachment.objects.get)(pk=attachment.pk)).message_id is None


async def test_regenerating_with_a_model_that_cannot_see_the_image_is_refused(
    files_chat, attachments_root, upstream, vision
):
    attachment = await uploaded(files_chat)
    client = await logged_in(files_chat.owner)
    answer = await post(client, files_chat, "messages", content="What is this?", attachments=[attachment.pk])
    await finished(answer.json()["message"]["id"])

    refused = await post(client, files_chat, "regenerate", model="openai:gpt-other")

    assert refused.json()["error"]["code"] == "unsupported_attachment"
    assert len(upstream.requests) == 1


async def test_unknown_foreign_and_used_ids_are_refused(files_chat, attachments_root, upstream, vision, make_user):
    client = await logged_in(files_chat.owner)
    other = await database_sync_to_async(make_user)("mallory")
    theirs = await database_sync_to_async(services.conversation_create)(owner=other, model=TEST_MODEL)
    foreign = await uploaded(theirs)
    mine = await uploaded(files_chat)
    sent = await post(client, files_chat, "messages", content="first", attachments=[mine.pk])
    await finished(sent.json()["message"]["id"])

    for ids, code in (
        ([987654], "attachment_not_found"),
        ([foreign.pk], "attachment_not_found"),
        ([mine.pk], "attachment_used"),
        ("1", "invalid"),
    ):
        answer = await post(client, files_chat, "messages", content="again", attachments=ids)
        assert answer.json()["error"]["code"] == code, ids
    assert (await database_sync_to_async(Attachment.objects.get)(pk=foreign.pk)).message_id is None
    assert await database_sync_to_async(Message.objects.count)() == 2


async def test_too_many_files_for_one_message_are_refused(files_chat, attachments_root, upstream, vision, settings):
    first, second = await uploaded(files_chat), await uploaded(files_chat, "b.png")
    settings.CHAT_ATTACHMENTS_PER_MESSAGE = 1
    client = await logged_in(files_chat.owner)

    answer = await post(client, files_chat, "messages", content="both", attachments=[first.pk, second.pk])

    assert answer.json()["error"]["code"] == "too_many_files"


async def test_an_edit_keeps_the_files_of_the_message_it_edits(files_chat, attachments_root, upstream, vision):
    attachment = await uploaded(files_chat)
    client = await logged_in(files_chat.owner)
    sent = await post(client, files_chat, "messages", content="What is this?", attachments=[attachment.pk])
    await finished(sent.json()["message"]["id"])

    edited = await post(client, files_chat, "edit", content="And now?")

    assert edited.status_code == 202, edited.content
    assert [a["name"] for a in edited.json()["user_message"]["attachments"]] == ["chart.png"]
    await finished(edited.json()["message"]["id"])
    assert upstream.requests[-1].body["messages"][-1]["content"][1]["type"] == "image_url"


async def test_an_edit_may_name_new_files_instead(files_chat, attachments_root, upstream, vision):
    old = await uploaded(files_chat)
    client = await logged_in(files_chat.owner)
    sent = await post(client, files_chat, "messages", content="What is this?", attachments=[old.pk])
    await finished(sent.json()["message"]["id"])
    new = await uploaded(files_chat, "notes.txt", b"remember the milk")

    edited = await post(client, files_chat, "edit", content="Read this", attachments=[new.pk])

    await finished(edited.json()["message"]["id"])
    assert "remember the milk" in upstream.requests[-1].body["messages"][-1]["content"]


async def test_deleting_the_conversation_removes_its_files(files_chat, attachments_root, upstream, vision):
    attachment = await uploaded(files_chat)
    await uploaded(files_chat, "pending.txt", b"never sent")
    client = await logged_in(files_chat.owner)
    sent = await post(client, files_chat, "messages", content="x", attachments=[attachment.pk])
    await finished(sent.json()["message"]["id"])
    await post(client, files_chat, "edit", content="y")  # a copy that shares the stored image
    await wait_for(
        lambda: database_sync_to_async(
            lambda: not Message.objects.filter(status__in=Message.ACTIVE_STATUSES).exists()
        )()
    )
    assert len(stored_files(attachments_root)) == 3

    assert (await client.delete(f"/api/conversations/{files_chat.pk}")).status_code == 204

    assert stored_files(attachments_root) == []
    assert await database_sync_to_async(Attachment.objects.count)() == 0


async def test_deleting_an_account_removes_its_files(files_chat, attachments_root):
    await uploaded(files_chat)

    await database_sync_to_async(files_chat.owner.delete)()

    assert stored_files(attachments_root) == []


async def test_a_file_gone_from_storage_fails_the_reply_without_a_provider_call(
    files_chat, attachments_root, upstream, vision
):
    attachment = await uploaded(files_chat)
    (attachments_root / attachment.storage_name).unlink()
    client = await logged_in(files_chat.owner)

    answer = await post(client, files_chat, "messages", content="What is this?", attachments=[attachment.pk])

    reply = await finished(answer.json()["message"]["id"])
    assert (reply.status, reply.error_code) == ("failed", "attachment_unavailable")
    assert upstream.requests == []
