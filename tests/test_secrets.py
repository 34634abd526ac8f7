"""A provider key planted in the environment never leaves process memory: not into the database,
logs, frames, error messages, pages, the API, SSE or admin exports, even when the upstream echoes it
back in its error body (as OpenAI does on a 401) or in a mid-stream error."""

import logging

import pytest
from channels.db import database_sync_to_async
from django.apps import apps
from django.test import AsyncClient, Client

from chat import services
from chat.models import Message
from tests.engine_fixtures import PLANTED_KEY, TEST_MODEL
from tests.fake_upstream import Scenario

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("engine")]

# The upstream puts the key in every error it can: the 401 body echoes it; the others carry it by script.
LEAKY_FAILURES = {
    "auth": Scenario.http_error(401),
    "bad_request": Scenario.http_error(
        400, body={"error": {"message": f"invalid request for key {PLANTED_KEY}", "type": "invalid_request_error"}}
    ),
    "overloaded": Scenario.error_mid_stream(after=2, error_message=f"Overloaded (key {PLANTED_KEY})"),
}


def every_row_of_every_table() -> str:
    """All rows of every model in the project (chat, auth, sessions, admin log...), as text."""
    return "\n".join(repr(list(model.objects.values())) for model in apps.get_models())


def planted_key_fragments() -> list[str]:
    """The key, and pieces of it long enough to identify it (a partial mask would still leak)."""
    secret = PLANTED_KEY.removeprefix("sk-test-")
    return [PLANTED_KEY, secret, secret[:12], secret[-12:]]


def assert_no_key(where: str, text: str) -> None:
    for fragment in planted_key_fragments():
        assert fragment not in text, f"the planted key (or {fragment!r}) leaked into {where}"


@pytest.fixture
async def failed_conversations(connect, make_user, upstream, caplog, request, settings):
    """One conversation per leaky failure, driven over the WebSocket; returns (user, staff, frames, logs)."""
    caplog.set_level(logging.DEBUG)
    user = await database_sync_to_async(make_user)()
    conversations = []
    frames: list = []
    async with connect(user) as ws:
        for code, scenario in LEAKY_FAILURES.items():
            upstream.script(scenario)
            conversation = await database_sync_to_async(services.conversation_create)(owner=user, model=TEST_MODEL)
            accepted = await ws.send_message(conversation.pk, f"provoke {code}")
            _, done = await ws.reply_text(accepted["message"]["id"])
            assert done["message"]["error"]["code"] == code, done
            conversations.append(conversation)
        frames = list(ws.received)
    assert len(upstream.requests) >= len(LEAKY_FAILURES)
    assert any(PLANTED_KEY in r.headers.get("authorization", "") for r in upstream.requests), "the key was sent"
    logs = caplog.text
    if settings.REDIS_URL:
        logs += request.getfixturevalue("cluster_worker").output()
    return user, conversations, frames, logs


@pytest.mark.cluster
async def test_provider_errors_carrying_the_key_reach_users_scrubbed(failed_conversations):
    _, conversations, frames, _ = failed_conversations
    assert_no_key("WebSocket frames", repr(frames))
    replies = await database_sync_to_async(list)(Message.objects.filter(role="assistant").order_by("id"))
    assert [r.error_code for r in replies] == list(LEAKY_FAILURES)
    for reply in replies:
        assert reply.error_message and "provider" in reply.error_message.lower()
        assert_no_key("an error message", reply.error_message)


@pytest.mark.cluster
async def test_the_key_is_in_no_database_row_and_no_log(failed_conversations):
    *_, logs = failed_conversations
    assert_no_key("the database", await database_sync_to_async(every_row_of_every_table)())
    assert_no_key("the logs", logs)


@pytest.mark.cluster
async def test_the_key_is_in_no_page_api_answer_or_sse_stream(failed_conversations):
    user, conversations, *_ = failed_conversations
    client = AsyncClient()
    await client.aforce_login(user)
    for url in ["/", "/api/conversations"]:
        assert_no_key(url, (await client.get(url)).content.decode())
    for conversation in conversations:
        for url in [f"/c/{conversation.pk}/", f"/api/conversations/{conversation.pk}"]:
            assert_no_key(url, (await client.get(url)).content.decode())
        response = await client.get(f"/api/conversations/{conversation.pk}/events")
        first = await anext(response.streaming_content)
        await response.streaming_content.aclose()
        assert b"snapshot" in first
        assert_no_key("the SSE stream", first.decode())


@pytest.mark.cluster
async def test_the_key_is_in_no_admin_page_or_export(failed_conversations, django_user_model):
    _, conversations, *_ = failed_conversations

    @database_sync_to_async
    def admin_texts() -> dict[str, str]:
        superuser = django_user_model.objects.create_superuser("root-reviewer", password="pw")
        client = Client()
        client.force_login(superuser)
        ids = [c.pk for c in conversations]
        texts = {
            "conversation list": client.get("/admin/chat/conversation/").content,
            "message list": client.get("/admin/chat/message/").content,
            "usage summary": client.get("/admin/chat/conversation/usage/").content,
        }
        for pk in ids:
            texts[f"transcript {pk}"] = client.get(f"/admin/chat/conversation/{pk}/change/").content
        for message in Message.objects.all():
            texts[f"message {message.pk}"] = client.get(f"/admin/chat/message/{message.pk}/change/").content
        for action in ("export_json", "export_markdown"):
            response = client.post("/admin/chat/conversation/", {"action": action, "_selected_action": ids})
            assert response.status_code == 200
            texts[action] = response.content
        return {name: body.decode() for name, body in texts.items()}

    for name, text in (await admin_texts()).items():
        assert_no_key(name, text)


def test_provider_keys_come_only_from_the_environment():
    """No model stores a key; settings read keys from env only (the project reads env in config/env.py)."""
    # The chat's own API keys are stored as a SHA-256 only (chat.services.api_keys); these fields name
    # them, they hold no key.
    own_api_keys = {"session_key", "api_key", "api_key_name", "api_keys"}
    for model in apps.get_models():
        for field in model._meta.get_fields():
            assert "key" not in field.name.lower() or field.name in own_api_keys, (model, field.name)
