"""In a real headless Chromium, as a superuser: the admin transcript shows a reply as rendered,
sanitised Markdown with its raw text behind a toggle, the model by a readable name, the last activity
without microseconds, and a long title that wraps instead of running under the History button."""

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser_fixtures import RECORD_VIOLATIONS, ROOT, TIMEOUT_MS, PageProblems, assert_page_healthy
from tests.fake_upstream import FakeUpstream, Scenario

ROOT_USER, ROOT_PASSWORD = "transcript-root", "transcript-root-pass-1234"
LONG_TITLE = "A very long conversation title that keeps going " * 5


def _live_server_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    databases = {path.resolve() for path in tmp_path_factory.getbasetemp().glob("browser-server*/db.sqlite3")}
    assert len(databases) == 1, databases
    return databases.pop()


@pytest.fixture(scope="module")
def superuser_state(browser: Any, live_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    create = (
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_superuser({ROOT_USER!r}, password={ROOT_PASSWORD!r})"
    )
    env = {"SQLITE_PATH": str(_live_server_database(tmp_path_factory)), "DJANGO_SETTINGS_MODULE": "config.settings"}
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", create],
        env={**os.environ, **env},
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live_server_url}/admin/login/")
    page.get_by_label("Username").fill(ROOT_USER)
    page.get_by_label("Password").fill(ROOT_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server_url}/admin/")
    state = context.storage_state()
    context.close()
    return state


def api(page: Any, method: str, url: str, body: dict | None = None) -> Any:
    return page.evaluate(
        """async ([method, url, body]) => {
            const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
            const response = await fetch(url, {method, headers: {"X-CSRFToken": token, "Content-Type": "application/json"},
                                               body: JSON.stringify(body)});
            return {status: response.status, body: await response.json()};
        }""",
        [method, url, body],
    )


def test_the_transcript_renders_markdown_with_a_raw_toggle_and_a_long_title_clears_the_history_button(
    chat_page: Any,
    upstream: FakeUpstream,
    browser: Any,
    superuser_state: dict[str, Any],
    live_server_url: str,
    problems: PageProblems,
) -> None:
    upstream.script(Scenario.text("**Bold** and `code`"))
    conversation = api(chat_page, "POST", "/api/conversations", {"title": LONG_TITLE.strip()})["body"]["id"]
    sent = api(
        chat_page,
        "POST",
        f"/api/conversations/{conversation}/messages",
        {"client_id": uuid.uuid4().hex, "content": "Hi"},
    )
    assert sent["status"] == 202, sent
    chat_page.goto(f"{live_server_url}/c/{conversation}/")
    expect(chat_page.locator("article.msg.assistant").last).to_have_attribute(
        "data-status", "complete", timeout=TIMEOUT_MS
    )

    context = browser.new_context(storage_state=superuser_state, viewport={"width": 1280, "height": 800})
    context.add_init_script(RECORD_VIOLATIONS)
    admin = problems.watch(context.new_page())
    admin.goto(f"{live_server_url}/admin/chat/conversation/{conversation}/change/")

    reply = admin.locator(".transcript-assistant")
    expect(reply.locator(".transcript-rendered strong")).to_have_text("Bold")
    expect(reply.locator(".transcript-rendered code")).to_have_text("code")
    raw = reply.locator(".transcript-raw .transcript-content")
    expect(raw).to_be_hidden()
    reply.get_by_text("Raw text").click()
    expect(raw).to_have_text("**Bold** and `code`")
    expect(reply.locator(".transcript-model")).to_have_text("gpt-test (OpenAI)")
    last_activity = admin.locator(".field-last_activity .readonly").inner_text()
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", last_activity) and "+00:00" not in last_activity

    # Every line of the title's text, against the History button's box.
    overlapping = admin.evaluate(
        """() => {
            const button = document.querySelector(".object-tools").getBoundingClientRect();
            const range = document.createRange();
            range.selectNodeContents(document.querySelector("#content > h2"));
            return [...range.getClientRects()].filter((line) => line.right > button.left && line.left < button.right
                && line.bottom > button.top && line.top < button.bottom).length;
        }"""
    )
    assert overlapping == 0
    assert_page_healthy(admin, problems)
    context.close()
