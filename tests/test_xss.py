"""Rendering: every payload of tests/xss_payloads.py, sent as model output, user message, conversation
title and system prompt, stays inert text in the chat UI and in the admin (a real headless Chromium
under the strict CSP), and is stored as the raw text it was, never as markup a later renderer runs."""

import json
import subprocess
import sys
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from playwright.sync_api import expect

from chat import services
from chat.models import Message
from tests.browser_fixtures import ROOT, TIMEOUT_MS, PageProblems, assert_page_healthy, wait_connected
from tests.engine_fixtures import TEST_MODEL
from tests.fake_upstream import FakeUpstream, Scenario
from tests.review_helpers import join_groups, make_reviewer
from tests.xss_payloads import PAYLOADS, all_payloads

STAFF, STAFF_PASSWORD = "xss-staff", "xss-staff-pass-1234"

# Every way markup could have come alive anywhere in the document.
FIND_LIVE_MARKUP = """
() => {
  const bad = [];
  const urlAttributes = ["href", "src", "action", "formaction", "data", "xlink:href", "srcdoc", "background"];
  for (const el of document.querySelectorAll("*")) {
    for (const a of el.attributes) {
      if (a.name.startsWith("on")) bad.push(`${el.tagName} ${a.name}`);
      if (urlAttributes.includes(a.name) && /^\\s*(javascript|data|vbscript):/i.test(a.value)) bad.push(`${el.tagName} ${a.name}`);
    }
    if (["IFRAME", "OBJECT", "EMBED", "BASE", "FRAME"].includes(el.tagName)) bad.push(el.tagName);
    if (el.tagName === "META" && el.hasAttribute("http-equiv")) bad.push("META refresh");
    if (el.closest("#messages, #conversation-list, #conversation-title, .transcript")
        && ["SCRIPT", "STYLE", "IMG", "SVG", "FORM", "INPUT", "MATH", "X"].includes(el.tagName.toUpperCase())
        && !el.closest(".conv-rename, .conv-delete, .code-block > button")) bad.push(`${el.tagName} in content`);
  }
  for (const s of document.scripts) {
    const path = new URL(s.src || "x:", location.href).pathname;
    if (!(path.startsWith("/static/") || path === "/admin/jsi18n/" || path === "/jsi18n/" || s.type === "application/json")) {
      bad.push("script " + s.outerHTML.slice(0, 80));
    }
  }
  return bad;
}
"""


def assert_inert(page: Any, problems: PageProblems, where: str) -> None:
    assert page.evaluate("window.__xss") is None, where
    assert page.evaluate("FIND = " + FIND_LIVE_MARKUP + "; FIND()") == [], where
    assert_page_healthy(page, problems)


def api(page: Any, method: str, url: str, body: dict | None = None) -> Any:
    """A JSON API call from inside the page, with its session and CSRF token, as the chat script does."""
    return page.evaluate(
        """async ([method, url, body]) => {
            const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
            const init = {method, headers: {"X-CSRFToken": token, "Content-Type": "application/json"}};
            if (body) init.body = JSON.stringify(body);
            const response = await fetch(url, init);
            return {status: response.status, body: response.status === 204 ? null : await response.json()};
        }""",
        [method, url, body],
    )


def composer(page: Any) -> Any:
    return page.get_by_role("textbox", name="Message")


def last_reply(page: Any) -> Any:
    return page.locator("article.msg.assistant").last


# --- in the chat UI --------------------------------------------------------------------------------


def test_hostile_model_output_renders_inert_live_and_after_reload(
    chat_page: Any, upstream: FakeUpstream, problems: PageProblems
) -> None:
    page = chat_page
    upstream.script(Scenario.text(all_payloads(), delay=0.002))
    composer(page).fill("Repeat the payloads")
    composer(page).press("Enter")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=TIMEOUT_MS)
    for attempt in ("live", "reloaded"):
        body = last_reply(page).locator(".msg-body")
        expect(body).to_contain_text("<script>window.__xss=1</script>")
        expect(body).to_contain_text("markdown js link")
        page.locator("#messages").hover()
        assert_inert(page, problems, attempt)
        if attempt == "live":
            page.reload()
            wait_connected(page)


def test_hostile_user_messages_render_inert_live_and_after_reload(
    chat_page: Any, upstream: FakeUpstream, problems: PageProblems
) -> None:
    page = chat_page
    composer(page).fill(all_payloads())
    composer(page).press("Enter")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=TIMEOUT_MS)
    for attempt in ("live", "reloaded"):
        user_message = page.locator("article.msg.user .msg-body").last
        for _, payload in PAYLOADS[:8]:
            expect(user_message).to_contain_text(payload.strip())
        assert_inert(page, problems, attempt)
        if attempt == "live":
            page.reload()
            wait_connected(page)


def test_hostile_titles_and_system_prompts_render_inert_in_the_sidebar_header_and_settings(
    chat_page: Any, live_server_url: str, problems: PageProblems
) -> None:
    page = chat_page
    created = []
    for _, payload in PAYLOADS:
        answer = api(page, "POST", "/api/conversations", {"title": payload[:200], "system_prompt": all_payloads()})
        assert answer["status"] == 201, answer
        created.append(answer["body"])
    titles = page.locator("#conversation-list li .conv-title")
    expect(titles.get_by_text(PAYLOADS[0][1], exact=True).first).to_be_visible()
    assert_inert(page, problems, "sidebar, live")

    page.goto(f"{live_server_url}/c/{created[0]['id']}/")
    wait_connected(page)
    expect(page.locator("#conversation-title")).to_have_text(created[0]["title"])
    assert page.title().startswith(created[0]["title"])
    expect(page.locator("#system-prompt")).to_have_value(all_payloads())
    assert_inert(page, problems, "conversation page")

    for _, payload in PAYLOADS[:6]:
        renamed = api(page, "PATCH", f"/api/conversations/{created[0]['id']}", {"title": payload})
        assert renamed["status"] == 200, renamed
        expect(page.locator("#conversation-title")).to_have_text(" ".join(payload.split()))
        assert_inert(page, problems, f"renamed live to {payload!r}")


# --- in the admin ----------------------------------------------------------------------------------


def _live_server_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    databases = {path.resolve() for path in tmp_path_factory.getbasetemp().glob("browser-server*/db.sqlite3")}
    assert len(databases) == 1, databases
    return databases.pop()


@pytest.fixture(scope="module")
def staff_state(browser: Any, live_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A superuser of the live server (who reviews everyone), logged in through the admin's own login form."""
    create = (
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_superuser({STAFF!r}, password={STAFF_PASSWORD!r})"
    )
    env = {"SQLITE_PATH": str(_live_server_database(tmp_path_factory)), "DJANGO_SETTINGS_MODULE": "config.settings"}
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", create],
        env={**__import__("os").environ, **env},
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live_server_url}/admin/login/")
    page.get_by_label("Username").fill(STAFF)
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server_url}/admin/")
    state = context.storage_state()
    context.close()
    return state


def test_hostile_content_renders_inert_in_the_admin_lists_and_transcripts(
    chat_page: Any,
    upstream: FakeUpstream,
    browser: Any,
    staff_state: dict[str, Any],
    live_server_url: str,
    problems: PageProblems,
) -> None:
    page = chat_page
    upstream.script(Scenario.text(all_payloads()))
    created = api(page, "POST", "/api/conversations", {"title": PAYLOADS[0][1], "system_prompt": all_payloads()})
    conversation = created["body"]["id"]
    sent = api(
        page,
        "POST",
        f"/api/conversations/{conversation}/messages",
        {"client_id": uuid.uuid4().hex, "content": all_payloads()},
    )
    assert sent["status"] == 202, sent
    page.goto(f"{live_server_url}/c/{conversation}/")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=TIMEOUT_MS)

    context = browser.new_context(storage_state=staff_state)
    from tests.browser_fixtures import RECORD_VIOLATIONS

    context.add_init_script(RECORD_VIOLATIONS)
    admin = problems.watch(context.new_page())
    message_ids = [sent["body"]["user_message"]["id"], sent["body"]["message"]["id"]]
    urls = [
        "/admin/chat/conversation/",
        "/admin/chat/conversation/?q=script",
        f"/admin/chat/conversation/{conversation}/change/",
        "/admin/chat/message/",
        *[f"/admin/chat/message/{pk}/change/" for pk in message_ids],
    ]
    for url in urls:
        admin.goto(f"{live_server_url}{url}")
        if url == f"/admin/chat/conversation/{conversation}/change/":  # not a message whose id is the same
            transcript = admin.locator(".transcript")
            expect(transcript).to_contain_text("<script>window.__xss=1</script>")
            expect(transcript.locator(".transcript-system")).to_contain_text("markdown js link")
        assert_inert(admin, problems, url)
    context.close()


# --- stored forms, server side ---------------------------------------------------------------------


class _Markup(HTMLParser):
    """Collects the tags and attributes a piece of HTML would create."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(name, value or "") for name, value in attrs]


def markup_of(html: str) -> _Markup:
    parser = _Markup()
    parser.feed(html)
    return parser


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("engine")
def test_payloads_are_stored_as_the_raw_text_sent_not_as_markup(make_user, settings) -> None:
    settings.CHAT_MAX_QUEUED_PER_USER = len(PAYLOADS)  # the replies stay pending: no worker is asked
    settings.CHAT_MAX_CONCURRENT_PER_USER = 0  # nor do the abuse limits apply to this storage check
    settings.CHAT_MESSAGES_PER_MINUTE = 0
    user = make_user()
    for name, payload in PAYLOADS:
        conversation = services.conversation_create(owner=user, model=TEST_MODEL, system_prompt=payload)
        result = services.message_send(conversation=conversation, client_id=name, content=payload)
        stored = Message.objects.get(pk=result.user_message.pk)
        assert stored.content == payload
        conversation.refresh_from_db()
        assert conversation.system_prompt == payload
        assert conversation.title == services.title_from(payload)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("engine")
def test_server_rendered_pages_escape_every_payload(make_user) -> None:
    user = make_user()
    conversation = services.conversation_create(
        owner=user, model=TEST_MODEL, title=PAYLOADS[0][1], system_prompt=all_payloads()
    )
    question = Message.objects.create(conversation=conversation, role="user", content=all_payloads())
    Message.objects.create(conversation=conversation, parent=question, role="assistant", content=all_payloads())
    client = Client()
    client.force_login(user)
    page = client.get(f"/c/{conversation.pk}/").content.decode()
    tags = markup_of(page)
    assert "x" not in tags.tags and "iframe" not in tags.tags and "img" not in tags.tags
    assert [name for name, _ in tags.attributes if name.startswith("on")] == []
    scripts = page.count("<script")
    assert scripts == 7, (
        "page data plus the six static scripts (the translation catalog, marked, DOMPurify, highlight.js, KaTeX,"
        " app), nothing more"
    )
    data = page.split('id="page-data" type="application/json">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data, "json_script escapes every < so nothing closes the data block"
    assert json.loads(data)["messages"][0]["content"] == all_payloads()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("engine")
def test_the_markdown_export_stays_inert_even_under_a_renderer_that_allows_raw_html(make_user, django_user_model):
    import markdown_it

    user = make_user()
    conversation = services.conversation_create(owner=user, model=TEST_MODEL, title=PAYLOADS[0][1])
    question = Message.objects.create(conversation=conversation, role="user", content=all_payloads())
    Message.objects.create(conversation=conversation, parent=question, role="assistant", content=all_payloads())
    staff = make_reviewer(django_user_model.objects.create_user("exporter", password="pw"), ["Exported"])
    join_groups(user, ["Exported"])
    client = Client()
    client.force_login(staff)
    data = {"action": "export_markdown", "_selected_action": [conversation.pk]}
    exported = client.post("/admin/chat/conversation/", data).content.decode()
    html = markdown_it.MarkdownIt("commonmark", {"html": True}).render(exported)
    markup = markup_of(html)
    allowed = {"p", "h1", "h2", "h3", "h4", "ul", "ol", "li", "pre", "code", "hr", "em", "strong", "blockquote", "br"}
    assert set(markup.tags) <= allowed, set(markup.tags) - allowed
    assert markup.attributes == [] or all(name == "class" for name, _ in markup.attributes), markup.attributes


def test_the_checks_catch_markup_that_did_come_alive(context: Any, live_server_url: str) -> None:
    """A control: the checks flag a payload put into the page the unsafe way, and the CSP blocks it."""
    page = context.new_page()
    page.goto(f"{live_server_url}/")
    page.evaluate("""document.getElementById("messages").innerHTML = '<img src=x onerror="window.__xss=1">'""")
    assert "IMG onerror" in page.evaluate("FIND = " + FIND_LIVE_MARKUP + "; FIND()")
    # ...and the CSP, the second line of defence, refused to run the inline handler.
    page.wait_for_function("window.__cspViolations.some(v => v.directive.startsWith('script-src'))")
    assert page.evaluate("window.__xss") is None
