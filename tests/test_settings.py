"""Settings come from the environment, and every variable is documented."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent


def settings_variables() -> set[str]:
    source = (BASE_DIR / "config" / "settings.py").read_text()
    names = set(re.findall(r'env_(?:str|bool|int|float|list|models)\(\s*f?"([A-Z0-9_{}.()]+)"', source))
    return {re.sub(r"\{.*?\}", "<NAME>", name) for name in names}


def test_every_environment_variable_is_in_the_readme_table():
    readme = (BASE_DIR / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z0-9_<>]+)` \|", readme, flags=re.MULTILINE))
    missing = settings_variables() - documented
    assert not missing, f"undocumented in README.md: {sorted(missing)}"


def run_check(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args], cwd=BASE_DIR, env=environment, capture_output=True, text=True
    )


def test_production_mode_refuses_to_start_without_a_secret_key():
    result = run_check(DJANGO_ENV="production", DJANGO_ALLOWED_HOSTS="chat.example.com")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_an_unknown_provider_transport_refuses_to_start():
    result = run_check(CHAT_PROVIDER_TRANSPORT="curl")
    assert result.returncode != 0
    assert "CHAT_PROVIDER_TRANSPORT must be aiohttp or httpx" in result.stderr


def test_check_deploy_is_clean_in_production_mode():
    result = run_check(
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY="q8Zr-w1Lx_0Tb3Mv9PcKe7YnHd2Fa6GsJu5Ri4Wo-NtQlEkXyVmBz",
        DJANGO_ALLOWED_HOSTS="chat.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_a_provider_without_credentials_is_not_offered(settings):
    from chat.providers import registry

    settings.OPENAI_API_KEY = ""
    settings.ANTHROPIC_API_KEY = ""
    settings.OPENAI_COMPATIBLE_SERVERS = [{"name": "ollama", "base_url": "", "api_key": "", "models": ["llama3"]}]
    settings.LOCAL_MODEL_ENABLED = True
    registry.reset()
    try:
        assert [m.ref for m in registry.available_models()] == ["local:smollm2-135m-instruct"]
        assert registry.default_model_ref() == "local:smollm2-135m-instruct"
    finally:
        registry.reset()


def test_named_openai_compatible_servers_are_offered_under_their_names(settings):
    from chat.providers import registry

    settings.LOCAL_MODEL_ENABLED = False
    settings.OPENAI_API_KEY = ""
    settings.ANTHROPIC_API_KEY = "sk-ant-x"
    settings.ANTHROPIC_MODELS = ["claude-x"]
    settings.OPENAI_COMPATIBLE_SERVERS = [
        {"name": "ollama", "base_url": "http://127.0.0.1:11434/v1", "api_key": "", "models": ["llama3", "qwen"]}
    ]
    registry.reset()
    try:
        assert [m.ref for m in registry.available_models()] == ["anthropic:claude-x", "ollama:llama3", "ollama:qwen"]
    finally:
        registry.reset()


def test_an_anthropic_thinking_budget_must_be_at_least_1024_and_fit_each_thinking_models_reply_budget():
    models = "claude-a,claude-b@200000/16000"
    assert run_check(ANTHROPIC_MODELS=models, ANTHROPIC_THINKING_BUDGET="2048").returncode == 0
    too_small = run_check(ANTHROPIC_MODELS=models, ANTHROPIC_THINKING_BUDGET="1000")
    too_big = run_check(ANTHROPIC_MODELS=models, ANTHROPIC_THINKING_BUDGET="8000")  # claude-a replies in 4096
    fits_its_model = run_check(
        ANTHROPIC_MODELS=models, ANTHROPIC_THINKING_BUDGET="8000", ANTHROPIC_THINKING_MODELS="claude-b"
    )
    unknown = run_check(ANTHROPIC_MODELS=models, ANTHROPIC_THINKING_BUDGET="2048", ANTHROPIC_THINKING_MODELS="claude-c")

    assert (
        too_small.returncode != 0 and "ANTHROPIC_THINKING_BUDGET must be 0 (off) or at least 1024" in too_small.stderr
    )
    assert too_big.returncode != 0 and "claude-a replies in 4096 tokens" in too_big.stderr
    assert fits_its_model.returncode == 0, fits_its_model.stderr
    assert unknown.returncode != 0 and "'claude-c' is not in ANTHROPIC_MODELS" in unknown.stderr


def test_adaptive_thinking_models_need_no_budget_and_must_be_anthropic_models():
    models = "claude-a,claude-b"
    # claude-a replies in 4096 tokens: the budget could not fit it, but adaptive models take none.
    adaptive = run_check(
        ANTHROPIC_MODELS=models, ANTHROPIC_THINKING_BUDGET="8000", ANTHROPIC_THINKING_ADAPTIVE_MODELS="claude-a"
    )
    unknown = run_check(ANTHROPIC_MODELS=models, ANTHROPIC_THINKING_ADAPTIVE_MODELS="claude-c")

    assert adaptive.returncode != 0 and "claude-b replies in 4096 tokens" in adaptive.stderr
    assert unknown.returncode != 0 and "ANTHROPIC_THINKING_ADAPTIVE_MODELS: 'claude-c' is not in" in unknown.stderr


def test_responses_models_default_to_the_reasoning_families_and_background_models_must_be_among_them():
    from django.conf import settings

    models = "gpt-4o,o4-mini,gpt-5"
    # gpt-5 is a Responses model by default (its family), so it may run in background mode.
    defaults = run_check(OPENAI_MODELS=models, OPENAI_BACKGROUND_MODELS="gpt-5")
    outside_openai = run_check(OPENAI_MODELS=models, OPENAI_RESPONSES_MODELS="o3")
    outside_responses = run_check(
        OPENAI_MODELS=models, OPENAI_RESPONSES_MODELS="o4-mini", OPENAI_BACKGROUND_MODELS="gpt-5"
    )

    assert defaults.returncode == 0, defaults.stderr
    assert (
        outside_openai.returncode != 0 and "OPENAI_RESPONSES_MODELS: o3 not in OPENAI_MODELS" in outside_openai.stderr
    )
    assert outside_responses.returncode != 0
    assert "OPENAI_BACKGROUND_MODELS: gpt-5 not in OPENAI_RESPONSES_MODELS" in outside_responses.stderr
    assert settings.OPENAI_RESPONSES_MODELS == [], "the default OpenAI models all stay on Chat Completions"


EMBEDDED_DATABASE_PROBE = """
import asyncio, django
from channels.db import database_sync_to_async
from django.db import connection
from django.db.backends.signals import connection_created
django.setup()
opened = []
connection_created.connect(lambda **kwargs: opened.append(1))

def pragmas():
    with connection.cursor() as cursor:
        return [cursor.execute(f"PRAGMA {name}").fetchone()[0] for name in ("journal_mode", "synchronous", "busy_timeout")]

async def main():
    for _ in range(5):
        found = await database_sync_to_async(pragmas)()
    print(found, len(opened))

asyncio.run(main())
"""


def test_the_embedded_database_is_in_wal_mode_waits_for_locks_and_keeps_its_connection(tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    environment.update(SQLITE_PATH=str(tmp_path / "db.sqlite3"), DJANGO_SETTINGS_MODULE="config.settings")

    probe = subprocess.run(
        [sys.executable, "-c", EMBEDDED_DATABASE_PROBE], cwd=BASE_DIR, env=environment, capture_output=True, text=True
    )

    # WAL, synchronous=NORMAL (1), a 20 s busy timeout; five database calls, one connection.
    assert probe.stdout.split() == ["['wal',", "1,", "20000]", "1"], probe.stderr


def test_the_embedded_database_refuses_an_sqlite_older_than_3_35_at_its_first_connection(monkeypatch):
    from django.db import NotSupportedError

    from config.sqlite.base import DatabaseWrapper

    monkeypatch.setattr(DatabaseWrapper, "get_database_version", lambda self: (3, 34, 1))
    settings_dict = {"NAME": ":memory:", "OPTIONS": {}, "TIME_ZONE": None, "CONN_MAX_AGE": 0}
    wrapper = DatabaseWrapper({**settings_dict, "AUTOCOMMIT": True, "CONN_HEALTH_CHECKS": False, "TEST": {}})

    with pytest.raises(NotSupportedError, match=r"SQLite 3\.35 or later is required \(found 3\.34\.1\)"):
        wrapper.check_database_version_supported()
