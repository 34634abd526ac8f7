"""In a real headless Chromium: a Spanish browser gets the chat in Spanish, scripts included, and the
user menu's switch turns it to English; a thumbs up with a comment on a reply shows in a second tab
at once, survives a reload, and pressing the thumb again removes it everywhere."""

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser_fixtures import RECORD_VIOLATIONS, PageProblems, assert_page_healthy, wait_connected
from tests.fake_upstream import FakeUpstream, Scenario


@pytest.fixture
def spanish_context(browser: Any, login_state: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(storage_state=login_state, locale="es-ES", viewport={"width": 1280, "height": 800})
    context.add_init_script(RECORD_VIOLATIONS)
    yield context
    context.close()


def test_a_spanish_browser_gets_spanish_pages_and_scripts_and_the_switch_turns_them_english(
    spanish_context: Any, live_server_url: str, upstream: FakeUpstream, problems: PageProblems
) -> None:
    page = problems.watch(spanish_context.new_page())
    page.goto(f"{live_server_url}/")
    wait_connected(page)

    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.get_by_role("link", name="+ Nuevo chat")).to_be_visible()
    expect(page.get_by_role("button", name="Enviar")).to_be_visible()
    expect(page.locator("#connection")).to_have_text("Conectado")  # a script's string, from /jsi18n/

    page.get_by_label("Idioma").select_option("en")
    page.get_by_role("button", name="Cambiar").click()

    expect(page.locator("html")).to_have_attribute("lang", "en")
    wait_connected(page)
    expect(page.get_by_role("link", name="+ New chat")).to_be_visible()
    expect(page.locator("#connection")).to_have_text("Connected")
    assert_page_healthy(page, problems)


def thumbs_up(page: Any) -> Any:
    return page.locator("article.msg.assistant").last.get_by_role("button", name="Good reply")


def test_feedback_on_a_reply_reaches_a_second_tab_survives_a_reload_and_can_be_removed(
    chat_page: Any, context: Any, upstream: FakeUpstream, problems: PageProblems
) -> None:
    upstream.script(Scenario.text("Four."))
    chat_page.get_by_role("textbox", name="Message").fill("2+2?")
    chat_page.get_by_role("textbox", name="Message").press("Enter")
    expect(chat_page.locator("article.msg.assistant").last).to_have_attribute("data-status", "complete")
    second = problems.watch(context.new_page())
    second.goto(chat_page.url)
    wait_connected(second)

    thumbs_up(chat_page).click()
    for page in (chat_page, second):
        expect(thumbs_up(page)).to_have_attribute("aria-pressed", "true")
    chat_page.get_by_label("Comment (optional)").fill("Spot on")
    chat_page.get_by_role("button", name="Save comment").click()
    expect(second.get_by_label("Comment (optional)")).to_have_value("Spot on")

    second.reload()
    wait_connected(second)
    expect(thumbs_up(second)).to_have_attribute("aria-pressed", "true")
    expect(second.get_by_label("Comment (optional)")).to_have_value("Spot on")

    thumbs_up(second).click()
    for page in (chat_page, second):
        expect(thumbs_up(page)).to_have_attribute("aria-pressed", "false")
    assert_page_healthy(second, problems)
