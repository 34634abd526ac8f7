"""End to end in headless Chromium: the history features (search, share, pin and archive).

Every test ends with the page checked for script errors, CSP violations and dialogs (`chat_page`).
"""

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser_fixtures import (
    PASSWORD,
    RECORD_VIOLATIONS,
    USERNAME,
    PageProblems,
    assert_page_healthy,
    wait_connected,
)
from tests.fake_upstream import FakeUpstream, Scenario
from tests.test_browser import last_reply, reply_text, send, versions
from tests.test_imports import CHATGPT
from tests.test_xss import api, assert_inert
from tests.xss_payloads import PAYLOADS, all_payloads


def test_ctrl_k_searches_and_opens_the_matching_message_on_its_branch(
    chat_page: Any, upstream: FakeUpstream, live_server_url: str
) -> None:
    page = chat_page
    upstream.script(Scenario.text("Aardvarks eat ants and termites."), Scenario.text("Okapis live in forests."))
    send(page, "Tell me about the aardvark")
    expect(reply_text(page)).to_have_text("Aardvarks eat ants and termites.")
    page.locator("article.msg.user").first.get_by_role("button", name="Edit").click()
    editor = page.get_by_role("textbox", name="Edit your message")
    editor.fill("Tell me about the okapi")
    editor.press("Enter")
    expect(reply_text(page)).to_have_text("Okapis live in forests.")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")

    page.goto(f"{live_server_url}/")
    wait_connected(page)
    page.keyboard.press("Control+k")
    expect(page.get_by_role("searchbox", name="Search your conversations")).to_be_focused()
    page.keyboard.type("termites")
    hit = page.locator("#search-results a.search-hit").first
    expect(hit.locator(".hit-snippet mark")).to_have_text("termites")
    page.keyboard.press("Enter")

    found = page.locator("article.msg.found")
    expect(found.locator(".msg-body")).to_have_text("Aardvarks eat ants and termites.")
    expect(page.locator("article.msg.user .msg-body")).to_have_text("Tell me about the aardvark")
    expect(versions(page.locator("article.msg.user").first)).to_have_text("1/2")
    assert "?m=" not in page.url


def test_a_share_link_opens_read_only_in_a_logged_out_browser_and_continues_after_login(
    chat_page: Any, upstream: FakeUpstream, browser: Any, live_server_url: str, problems: PageProblems
) -> None:
    page = chat_page
    upstream.script(Scenario.text("Here is **bold** advice."))
    send(page, "Give me advice")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    page.get_by_role("button", name="Share this conversation").click()
    page.get_by_label("Link works for").select_option("7")
    page.get_by_role("button", name="Create link").click()
    expect(page.get_by_label("Link", exact=True)).to_have_value(re.compile(r"/s/[\w-]{40,}/$"))
    url = page.get_by_label("Link", exact=True).input_value()
    page.get_by_role("button", name="Close").first.click()

    visitor = browser.new_context(viewport={"width": 1280, "height": 800})
    visitor.add_init_script(RECORD_VIOLATIONS)
    shared = problems.watch(visitor.new_page())
    shared.goto(url)
    expect(shared.locator("article.msg.user .msg-body")).to_have_text("Give me advice")
    expect(shared.locator("article.msg.assistant .msg-body strong")).to_have_text("bold")
    expect(shared.locator("#sidebar")).to_have_count(0)
    expect(shared.locator('meta[name="robots"]')).to_have_attribute("content", "noindex, nofollow")
    shared.get_by_role("button", name="Continue in my account").click()
    shared.get_by_label("Username").fill(USERNAME)
    shared.get_by_label("Password").fill(PASSWORD)
    shared.get_by_role("button", name="Log in").click()
    shared.get_by_role("button", name="Continue in my account").click()
    shared.wait_for_url(re.compile(r"/c/\d+/$"))
    expect(shared.locator("article.msg.assistant .msg-body")).to_have_text("Here is bold advice.")
    assert_page_healthy(shared, problems)
    visitor.close()

    page.get_by_role("button", name="Shared links").click()
    page.get_by_role("button", name=re.compile("^Revoke the link")).first.click()
    expect(page.locator("#shares-list li").first).to_contain_text("revoked")
    gone = browser.new_context()
    assert gone.new_page().goto(url).status == 404
    gone.close()


def test_hostile_text_on_a_shared_page_renders_inert(
    chat_page: Any, upstream: FakeUpstream, browser: Any, problems: PageProblems
) -> None:
    page = chat_page
    upstream.script(Scenario.text(all_payloads(), delay=0.001))
    send(page, all_payloads())
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    conversation = int(re.search(r"/c/(\d+)/", page.url).group(1))
    assert api(page, "PATCH", f"/api/conversations/{conversation}", {"title": PAYLOADS[0][1][:200]})["status"] == 200
    link = api(page, "POST", f"/api/conversations/{conversation}/share", {})["body"]
    page.keyboard.press("Control+k")
    page.keyboard.type("xss")
    expect(page.locator("#search-results .hit-snippet mark").first).to_be_visible()
    page.locator("#search-results").hover()
    assert_inert(page, problems, "search results")

    visitor = browser.new_context()
    visitor.add_init_script(RECORD_VIOLATIONS)
    shared = problems.watch(visitor.new_page())
    shared.goto(link["url"])
    expect(shared.locator("article.msg.assistant .msg-body")).to_contain_text("<script>window.__xss=1</script>")
    expect(shared.locator("article.msg.user .msg-body")).to_contain_text(PAYLOADS[0][1].strip())
    expect(shared.locator(".share-title")).to_have_text(PAYLOADS[0][1][:200].strip())
    shared.locator("#messages").hover()
    assert_inert(shared, problems, "shared page")
    visitor.close()


def test_export_then_import_in_the_browser_shows_progress_and_the_imported_conversations(
    chat_page: Any, upstream: FakeUpstream, tmp_path: Any
) -> None:
    page = chat_page
    upstream.script(Scenario.text("Exported reply."))
    send(page, "A conversation to take out")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export my data").click()
    archive = tmp_path / "export.zip"
    download.value.save_as(archive)

    page.get_by_role("button", name="Import…").click()
    page.get_by_label("File").set_input_files(str(CHATGPT))
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-status")).to_have_text("Imported 2 conversations.")
    page.get_by_role("button", name="Close").last.click()
    page.get_by_role("searchbox", name="Search your conversations").fill("hooch")
    expect(page.locator("#search-results .hit-title").first).to_have_text("Sourdough starter help")
    page.get_by_role("button", name="Import…").click()
    page.get_by_label("File").set_input_files(str(archive))
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-status")).to_have_text(
        re.compile(r"^Imported 0 conversations \(\d+ already imported before\)\.$")
    )


def test_pin_and_archive_move_conversations_between_the_groups_and_the_archived_view(
    chat_page: Any, upstream: FakeUpstream, live_server_url: str
) -> None:
    page = chat_page
    upstream.script(Scenario.text("First."), Scenario.text("Second."))
    send(page, "Pin me later please")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    page.goto(f"{live_server_url}/")
    wait_connected(page)
    send(page, "Archive me later please")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    sidebar = page.locator("#conversation-list")
    pin_me = sidebar.locator("li.conv", has_text="Pin me later please")
    archive_me = sidebar.locator("li.conv", has_text="Archive me later please")
    expect(sidebar.locator("li.group-start").first).to_have_attribute("data-group", "Today")

    pin_me.hover()
    pin_me.get_by_role("button", name="Pin “Pin me later please”").click()
    expect(sidebar.locator("li").nth(0)).to_have_attribute("data-group", "Pinned")
    expect(sidebar.locator("li").nth(0)).to_contain_text("Pin me later please")
    expect(sidebar.locator("li").nth(1)).to_have_attribute("data-group", "Today")
    expect(pin_me.get_by_role("button", name="Unpin “Pin me later please”")).to_have_attribute("aria-pressed", "true")

    archive_me.hover()
    archive_me.get_by_role("button", name="Archive “Archive me later please”").click()
    expect(archive_me).to_have_count(0)
    page.reload()
    wait_connected(page)
    expect(sidebar.locator("li").nth(0)).to_have_attribute("data-group", "Pinned")
    expect(sidebar.locator("li.conv", has_text="Archive me later please")).to_have_count(0)

    page.get_by_role("button", name="Archived").click()
    archived = page.locator("#archived-list li.conv", has_text="Archive me later please")
    expect(archived).to_have_count(1)
    archived.hover()
    archived.get_by_role("button", name="Unarchive “Archive me later please”").click()
    expect(archived).to_have_count(0)
    page.get_by_role("button", name="All conversations").click()
    expect(sidebar.locator("li.conv", has_text="Archive me later please")).to_have_count(1)
    pin_me.hover()
    pin_me.get_by_role("button", name="Unpin “Pin me later please”").click()
    expect(sidebar.locator('li[data-group="Pinned"]')).to_have_count(0)


def test_the_sidebar_loads_the_next_page_when_its_end_scrolls_into_view(chat_page: Any, live_server_url: str) -> None:
    page = chat_page
    page.evaluate(
        """async () => {
            const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
            for (let i = 0; i < 55; i++) {
                await fetch("/api/conversations", {method: "POST", headers: {"X-CSRFToken": token,
                    "Content-Type": "application/json"}, body: JSON.stringify({title: `Bulk ${i}`})});
            }
        }"""
    )
    page.goto(f"{live_server_url}/")
    wait_connected(page)
    items = page.locator("#conversation-list li.conv")
    first_page = items.count()
    assert 50 <= first_page < 55 + 50
    expect(page.locator("#list-more")).to_be_visible()

    page.locator("#list-more").scroll_into_view_if_needed()

    expect(items).not_to_have_count(first_page)
    assert items.count() > first_page
    ids = items.evaluate_all("elements => elements.map((element) => element.dataset.id)")
    assert len(ids) == len(set(ids))  # no conversation twice
