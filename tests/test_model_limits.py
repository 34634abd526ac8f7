"""A model's context and reply limit, configured with its name (`llama3.1:8b@131072/8192`), reach the
request the provider receives; bad values stop the server at start with a clear message."""

import runpy
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.exceptions import ImproperlyConfigured

from chat import services
from chat.providers import registry
from tests.fake_upstream import Scenario
from tests.test_settings import run_check

SETTINGS_FILE = Path(__file__).resolve().parent.parent / "config" / "settings.py"
COMPATIBLE_MODELS = "llama3.1:8b@131072/8192,mistral@32768,qwen"


def settings_from(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """The settings config/settings.py builds from this environment (Django's own settings stay as they are)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_FILE))


def test_limits_given_with_a_model_name_are_parsed_for_every_provider(monkeypatch):
    built = settings_from(
        monkeypatch,
        OPENAI_MODELS="gpt-4o@128000/16384,gpt-4.1",
        ANTHROPIC_MODELS="claude-sonnet-4-5@200000/64000",
        OPENAI_COMPATIBLE_SERVERS="ollama",
        OPENAI_COMPATIBLE_OLLAMA_MODELS=COMPATIBLE_MODELS,
    )
    assert built["OPENAI_MODELS"] == ["gpt-4o", "gpt-4.1"]
    assert built["ANTHROPIC_MODELS"] == ["claude-sonnet-4-5"]
    assert built["OPENAI_COMPATIBLE_SERVERS"][0]["models"] == ["llama3.1:8b", "mistral", "qwen"]
    assert built["MODEL_LIMITS"] == {
        "openai:gpt-4o": {"context_tokens": 128000, "max_output_tokens": 16384},
        "anthropic:claude-sonnet-4-5": {"context_tokens": 200000, "max_output_tokens": 64000},
        "ollama:llama3.1:8b": {"context_tokens": 131072, "max_output_tokens": 8192},
        "ollama:mistral": {"context_tokens": 32768},
    }


@pytest.mark.parametrize(
    "entry",
    [
        "llama@",  # no context
        "llama@128k",  # not a whole number
        "llama@131072/",  # no max output after the slash
        "llama@131072/8192/1",
        "llama@131072/0",  # a reply of no tokens
        "llama@8192/8192",  # more than half the context: no room left for the prompt
        "llama@1",  # a context with no room for a reply
        "@131072/8192",  # no model name
        "me@host@4096",  # an @ in the name
    ],
)
def test_a_bad_model_entry_is_refused_with_a_message_that_names_it(monkeypatch, entry):
    with pytest.raises(ImproperlyConfigured) as refused:
        settings_from(monkeypatch, OPENAI_COMPATIBLE_SERVERS="ollama", OPENAI_COMPATIBLE_OLLAMA_MODELS=f"qwen,{entry}")
    assert str(refused.value).startswith(f"OPENAI_COMPATIBLE_OLLAMA_MODELS: {entry!r} must be MODEL, MODEL@CONTEXT")


def test_the_server_does_not_start_with_a_bad_model_entry():
    result = run_check(OPENAI_MODELS="gpt-4o@lots")
    assert result.returncode != 0
    assert "OPENAI_MODELS: 'gpt-4o@lots' must be MODEL, MODEL@CONTEXT or MODEL@CONTEXT/MAX_OUTPUT" in result.stderr


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("model", "server_budget", "sent"),
    [
        ("llama3.1:8b", 4096, 8192),  # its own limit, above the server's budget
        ("mistral", 16000, 16000),  # a context of its own: the server's budget fits in half of it
        ("qwen", 16000, 4096),  # nothing configured: half the assumed 8,192-token context
    ],
)
async def test_a_compatible_model_gets_the_reply_limit_configured_with_it(
    engine, monkeypatch, connect, make_user, upstream, model, server_budget, sent
):
    built = settings_from(
        monkeypatch,
        OPENAI_COMPATIBLE_SERVERS="ollama",
        OPENAI_COMPATIBLE_OLLAMA_BASE_URL=upstream.base_url_openai,
        OPENAI_COMPATIBLE_OLLAMA_MODELS=COMPATIBLE_MODELS,
    )
    engine.OPENAI_COMPATIBLE_SERVERS = built["OPENAI_COMPATIBLE_SERVERS"]
    engine.MODEL_LIMITS = built["MODEL_LIMITS"]
    engine.CHAT_MAX_OUTPUT_TOKENS = server_budget
    registry.reset()
    user = await database_sync_to_async(make_user)()
    conversation = await database_sync_to_async(services.conversation_create)(owner=user, model=f"ollama:{model}")
    upstream.script(Scenario.text("Plenty of room."))
    async with connect(user) as ws:
        accepted = await ws.send_message(conversation.pk, "Write at length.")
        assert accepted["type"] == "accepted", accepted
        text, done = await ws.reply_text(accepted["message"]["id"])
    assert (text, done["message"]["status"]) == ("Plenty of room.", "complete")
    (request,) = upstream.requests
    assert request.body["model"] == model
    assert request.body["max_tokens"] == sent
