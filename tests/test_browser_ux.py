"""End to end in headless Chromium, on a laptop (1280x800) and a phone (390x844): the chat UI a person
uses all day (issue 19): scrolling, focus, the phone layout, shortcuts, contrast, math, the manifest,
and an axe-core scan in light and dark mode.

Every test ends with the page checked for script errors, CSP violations and dialogs.
"""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser_fixtures import (
    RECORD_VIOLATIONS,
    TIMEOUT_MS,
    PageProblems,
    assert_page_healthy,
    wait_connected,
)
from tests.fake_upstream import FakeUpstream, Scenario
from tests.test_browser import CONTRAST, composer, last_reply, reply_text, send

DEVICES = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "mobile": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}
AXE = Path(__file__).resolve().parent.parent / "static" / "vendor" / "axe" / "axe.min.js"

LINES = "\n\n".join(f"Line {i} of a long answer that fills the screen." for i in range(60))
CODE_REPLY = (
    "Some code:\n\n"
    "```python\n"
    "import os  # a comment\n"
    "@decorator\n"
    "def greet(name: str = 'x', count=3) -> None:\n"
    '    """Say hello."""\n'
    "    print(f'Hello {name}', len(os.environ), True, None)\n"
    "class Greeter(object):\n"
    "    pass\n"
    "```\n\n"
    "And a very long line of shell:\n\n"
    "```bash\n"
    "echo " + "0123456789" * 30 + "\n"
    "```\n"
)


def open_page(browser: Any, login_state: dict, url: str, problems: PageProblems, device: str, **options: Any) -> Any:
    context = browser.new_context(storage_state=login_state, **DEVICES[device], **options)
    context.add_init_script(RECORD_VIOLATIONS)
    page = problems.watch(context.new_page())
    page.goto(url)
    wait_connected(page)
    return page


@pytest.fixture(params=list(DEVICES))
def device(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def ux_page(
    browser: Any, login_state: dict, live_server_url: str, upstream: FakeUpstream, problems: PageProblems, device: str
) -> Iterator[Any]:
    """A new chat, open and connected, on the device of the test's parameter; checked after the test."""
    page = open_page(browser, login_state, f"{live_server_url}/", problems, device)
    yield page
    assert_page_healthy(page, problems)
    page.context.close()


def press_send(page: Any, text: str) -> None:
    """Send as the device does: Enter on a laptop, the Send button on a phone (Enter adds a line)."""
    composer(page).fill(text)
    if page.viewport_size["width"] < 700:
        page.get_by_role("button", name="Send").click()
    else:
        composer(page).press("Enter")


def distance_from_bottom(page: Any) -> float:
    return page.evaluate(
        "(() => { const m = document.getElementById('messages'); return m.scrollHeight - m.scrollTop - m.clientHeight; })()"
    )


def focused_id(page: Any) -> str:
    return page.evaluate("document.activeElement && document.activeElement.id")


# --- 1. Scrolling -------------------------------------------------------------------------------


def test_a_follow_up_question_and_its_reply_stay_in_view_and_jump_to_latest_counts_new_lines(
    ux_page: Any, upstream: FakeUpstream, device: str
) -> None:
    page = ux_page
    upstream.script(Scenario.text(LINES), Scenario.text(LINES, delay=0.01))
    press_send(page, "Write a long answer")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")

    press_send(page, "And another one")

    question = page.locator("article.msg.user").last
    expect(question).to_have_text(re.compile("And another one"))
    expect(question).to_be_in_viewport()
    expect(reply_text(page)).to_contain_text("Line 5 of")
    assert distance_from_bottom(page) < 48, "the view does not follow the reply"
    jump = page.locator("#jump-latest")
    expect(jump).to_be_hidden()

    page.locator("#messages").evaluate("(m) => { m.scrollTop = 0; }")  # the reader scrolls up
    expect(jump).to_be_visible()
    expect(jump).to_have_text(re.compile(r"Jump to latest \(\d+ new lines\)"), timeout=TIMEOUT_MS)
    anchor = page.locator("article.msg.user").first.bounding_box()["y"]
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=TIMEOUT_MS)
    assert page.locator("#messages").evaluate("(m) => m.scrollTop") == 0, "the view moved while the reader read"
    assert page.locator("article.msg.user").first.bounding_box()["y"] == anchor, "the page jumped when the reply ended"
    assert int(jump.get_attribute("data-new-lines")) > 5

    jump.click()
    expect(jump).to_be_hidden()
    assert distance_from_bottom(page) < 48
    assert focused_id(page) == ("composer-input" if device == "desktop" else "messages")


def test_a_long_conversation_opens_at_its_latest_message(ux_page: Any, upstream: FakeUpstream) -> None:
    page = ux_page
    upstream.script(Scenario.text(LINES))
    press_send(page, "Write a long answer")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")

    page.reload()
    wait_connected(page)

    expect(last_reply(page).locator(".msg-actions")).to_be_in_viewport()
    assert distance_from_bottom(page) < 48
    expect(page.locator("#jump-latest")).to_be_hidden()


# --- 2. and 4. A reload or a second tab mid-reply ---------------------------------------------


def shown_rate(page: Any) -> float:
    tps = last_reply(page).locator(".msg-meta [data-metric=tps]")
    expect(tps).to_be_visible(timeout=TIMEOUT_MS)
    return float(re.search(r"([\d.]+) tok/s", tps.inner_text()).group(1))


def test_the_live_speed_after_a_reload_or_in_a_second_tab_is_the_servers_and_the_text_never_shrinks(
    ux_page: Any, browser: Any, login_state: dict, upstream: FakeUpstream, problems: PageProblems, device: str
) -> None:
    page = ux_page
    # About 12 tokens a second (each " tN" is about one token of four characters): a joined tab that
    # timed the reply from its own joining would show hundreds.
    upstream.script(Scenario.slow(400, delay=0.08))
    press_send(page, "Count slowly")
    expect(reply_text(page)).to_contain_text("t30", timeout=TIMEOUT_MS)
    shown = len(reply_text(page).inner_text())

    page.reload()

    history = page.evaluate("JSON.parse(document.getElementById('page-data').textContent).messages.at(-1)")
    assert history["status"] == "streaming"
    assert len(history["content"]) >= shown, "the reloaded page starts with less text than it showed"
    assert "elapsed_ms" in history
    wait_connected(page)
    assert shown_rate(page) < 40
    second = open_page(browser, login_state, page.url, problems, device)
    assert shown_rate(second) < 40
    page.get_by_role("button", name="Stop").click()
    expect(last_reply(second)).to_have_attribute("data-status", "cancelled")
    assert_page_healthy(second, problems)


def test_the_reloaded_page_first_paints_all_the_text_it_showed(ux_page: Any, upstream: FakeUpstream) -> None:
    page = ux_page
    upstream.script(Scenario.slow(300, delay=0.05))
    press_send(page, "Count")
    expect(reply_text(page)).to_contain_text("t40", timeout=TIMEOUT_MS)
    page.add_init_script(
        "document.addEventListener('DOMContentLoaded', () => requestAnimationFrame(() => {"
        " const b = [...document.querySelectorAll('article.msg.assistant .msg-body')].at(-1);"
        " window.__firstPaint = b ? b.textContent.length : 0; }));"
    )
    shown = len(reply_text(page).inner_text())
    page.reload()
    page.wait_for_function("window.__firstPaint !== undefined")
    assert page.evaluate("window.__firstPaint") >= shown
    page.get_by_role("button", name="Stop").click()
    expect(last_reply(page)).to_have_attribute("data-status", "cancelled")


# --- 3. Focus -------------------------------------------------------------------------------------


def test_the_composer_has_the_focus_on_load_and_after_stop_continue_and_regenerate(
    ux_page: Any, upstream: FakeUpstream, device: str
) -> None:
    page = ux_page
    # A keyboard starts in the message box; a phone keeps its keyboard down until the reader taps.
    kept = "composer-input" if device == "desktop" else "messages"
    assert focused_id(page) == ("composer-input" if device == "desktop" else "")
    upstream.script(
        Scenario.slow(400, delay=0.05, hold_after=5),
        Scenario.slow(400, delay=0.05, hold_after=5),
        Scenario.text("Fresh."),
    )
    press_send(page, "Count slowly")
    assert upstream.wait_held()

    page.get_by_role("button", name="Stop").click()
    expect(last_reply(page)).to_have_attribute("data-status", "cancelled")
    assert focused_id(page) == kept

    page.get_by_role("button", name="Continue").click()
    assert upstream.wait_held(2)
    assert focused_id(page) == kept
    page.get_by_role("button", name="Stop").click()
    expect(last_reply(page)).to_have_attribute("data-status", "cancelled")

    last_reply(page).get_by_role("button", name="Regenerate").click()
    expect(reply_text(page)).to_have_text("Fresh.")
    assert focused_id(page) == kept


# --- 5. The phone ---------------------------------------------------------------------------------

PLACEHOLDER_FITS = """
(input) => {
  const style = getComputedStyle(input);
  const context = document.createElement("canvas").getContext("2d");
  context.font = `${style.fontSize} ${style.fontFamily}`;
  const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return context.measureText(input.placeholder).width <= room;
}
"""


def test_the_placeholder_fits_and_copy_never_covers_code(ux_page: Any, upstream: FakeUpstream) -> None:
    page = ux_page
    assert composer(page).evaluate(PLACEHOLDER_FITS), "the composer's placeholder is clipped"
    upstream.script(Scenario.text(CODE_REPLY))
    press_send(page, "Show me code")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    blocks = last_reply(page).locator(".code-block")
    expect(blocks).to_have_count(2)
    for index in range(2):
        button = blocks.nth(index).locator(".copy-code").bounding_box()
        code = blocks.nth(index).locator("pre").bounding_box()
        assert button["y"] + button["height"] <= code["y"], "the Copy button covers the code"


def test_on_a_phone_enter_adds_a_line_and_a_tap_beside_the_drawer_closes_it(
    browser: Any, login_state: dict, live_server_url: str, upstream: FakeUpstream, problems: PageProblems
) -> None:
    page = open_page(browser, login_state, f"{live_server_url}/", problems, "mobile")
    upstream.script(Scenario.text("Two lines received."))
    composer(page).fill("First line")
    composer(page).press("Enter")
    composer(page).press_sequentially("second line")
    expect(composer(page)).to_have_value("First line\nsecond line")
    expect(page.locator("article.msg")).to_have_count(0)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("article.msg.user .msg-body")).to_have_text("First line\nsecond line")
    expect(reply_text(page)).to_have_text("Two lines received.")

    page.get_by_role("button", name="Show conversations").click()
    backdrop = page.locator("#sidebar-backdrop")
    expect(backdrop).to_be_visible()
    page.mouse.click(370, 420)  # beside the drawer, on the dimmed chat
    expect(page.locator("#sidebar")).not_to_be_in_viewport()
    expect(backdrop).to_be_hidden()
    assert_page_healthy(page, problems)
    page.context.close()


# --- 6. No silent refusals ------------------------------------------------------------------------


def test_enter_while_a_reply_runs_says_why_and_escape_stops_it(ux_page: Any, upstream: FakeUpstream) -> None:
    page = ux_page
    upstream.script(Scenario.slow(400, delay=0.05, hold_after=5))
    press_send(page, "Count slowly")
    assert upstream.wait_held()
    composer(page).fill("Another question")
    if page.viewport_size["width"] >= 700:
        composer(page).press("Enter")
    else:  # a phone's Enter adds a line; the form's submit is the same refusal
        page.locator("#composer").evaluate("(form) => form.requestSubmit()")
    expect(page.locator("#composer-status")).to_have_text(re.compile("A reply is being written.*Esc"))
    expect(composer(page)).to_have_value(re.compile("Another question"))

    page.keyboard.press("Escape")

    expect(last_reply(page)).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#composer-status")).to_be_empty()


# --- 7. Contrast ----------------------------------------------------------------------------------


def test_the_stop_button_and_every_code_colour_pass_wcag_aa_in_light_and_dark_mode(
    browser: Any, login_state: dict, live_server_url: str, upstream: FakeUpstream, problems: PageProblems, device: str
) -> None:
    for scheme in ("light", "dark"):
        page = open_page(browser, login_state, f"{live_server_url}/", problems, device, color_scheme=scheme)
        upstream.script(Scenario.text(CODE_REPLY), Scenario.slow(400, delay=0.05, hold_after=3))
        press_send(page, "Show me code")
        expect(last_reply(page)).to_have_attribute("data-status", "complete")
        tokens = last_reply(page).locator("pre code.hljs span")
        assert tokens.count() > 8
        failing = [(span.inner_text(), ratio) for span in tokens.all() if (ratio := span.evaluate(CONTRAST)) < 4.5]
        assert failing == [], f"{scheme}: code colours under 4.5:1: {failing}"
        press_send(page, "Count slowly")
        assert upstream.wait_held()
        stop = page.get_by_role("button", name="Stop")
        assert stop.evaluate(CONTRAST) >= 4.5, f"{scheme}: the Stop button"
        stop.click()
        expect(last_reply(page)).to_have_attribute("data-status", "cancelled")
        upstream.reset()
        assert_page_healthy(page, problems)
        page.context.close()


# --- Keyboard -------------------------------------------------------------------------------------


def test_question_mark_lists_the_shortcuts_and_they_work(
    browser: Any, login_state: dict, live_server_url: str, upstream: FakeUpstream, problems: PageProblems
) -> None:
    page = open_page(browser, login_state, f"{live_server_url}/", problems, "desktop")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server_url)
    upstream.script(Scenario.text("First answer."), Scenario.text("Second answer."), Scenario.text("Edited answer."))
    send(page, "First question")
    expect(reply_text(page)).to_have_text("First answer.")

    page.locator("#messages").focus()
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    for action in ("New chat", "Stop the reply being written", "Regenerate the last reply", "Copy the last reply"):
        expect(dialog).to_contain_text(action)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    page.keyboard.press("Alt+R")
    expect(reply_text(page)).to_have_text("Second answer.")
    expect(last_reply(page).locator(".branch-position")).to_have_text("2/2")

    page.keyboard.press("Alt+C")
    expect(page.locator("#announcer")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == "Second answer."

    composer(page).focus()
    page.keyboard.press("ArrowUp")
    editor = page.get_by_label("Edit your message")
    expect(editor).to_be_focused()
    editor.fill("Edited question")
    editor.press("Enter")
    expect(reply_text(page)).to_have_text("Edited answer.")

    page.locator("#messages").focus()
    page.keyboard.press("Shift+Escape")
    assert focused_id(page) == "composer-input"
    conversation = page.url
    page.keyboard.press("Control+Shift+O")
    expect(page).to_have_url(f"{live_server_url}/")
    wait_connected(page)
    page.keyboard.press("Alt+ArrowDown")  # the first conversation in the list: the newest
    expect(page).to_have_url(conversation)
    assert_page_healthy(page, problems)
    page.context.close()


def test_the_shortcut_list_opens_on_a_phone_too(ux_page: Any, device: str) -> None:
    page = ux_page
    page.locator("#messages").focus()
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    box = dialog.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"]
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()


# --- Accessibility scan -----------------------------------------------------------------------------


def axe_violations(page: Any) -> list[dict]:
    page.add_script_tag(url="/static/vendor/axe/axe.min.js")
    return page.evaluate(
        """async () => {
          const result = await axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21aa"]}});
          return result.violations.map((v) => ({id: v.id, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5)}));
        }"""
    )


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_violation_on_the_chat_page(
    browser: Any,
    login_state: dict,
    live_server_url: str,
    upstream: FakeUpstream,
    problems: PageProblems,
    device: str,
    scheme: str,
) -> None:
    page = open_page(browser, login_state, f"{live_server_url}/", problems, device, color_scheme=scheme)
    upstream.script(Scenario.with_reasoning("Thinking it over.", CODE_REPLY + "\n\nMath: $e^{i\\pi} + 1 = 0$"))
    press_send(page, "Show me code")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    assert axe_violations(page) == []
    page.locator("#messages").focus()
    page.keyboard.press("?")
    assert axe_violations(page) == []
    assert_page_healthy(page, problems)
    page.context.close()


# --- Math -------------------------------------------------------------------------------------------

MATH_REPLY = (
    "Euler: $e^{i\\pi} + 1 = 0$ and \\(a^2 + b^2 = c^2\\); it costs $5 and $10.\n\n"
    "$$\n\\int_0^1 x^2 \\, dx = \\frac{1}{3}\n$$\n\n"
    "\\[\n\\sum_{n=1}^{\\infty} \\frac{1}{n^2} = \\frac{\\pi^2}{6}\n\\]\n\n"
    "In code it stays code: `$x$` and\n\n```latex\n$$ \\frac{a}{b} $$\n```\n\n"
    "Unsafe: $\\href{javascript:alert(1)}{click}$ and $<img src=x onerror=alert(1)>$"
)


def test_latex_math_renders_as_sanitised_mathml_and_never_inside_code(ux_page: Any, upstream: FakeUpstream) -> None:
    page = ux_page
    upstream.script(Scenario.text(MATH_REPLY, delay=0.01))
    press_send(page, "Some math")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    body = reply_text(page)
    expect(body.locator("math")).to_have_count(6)  # two inline, two display, the two unsafe ones as inert text
    expect(body.locator(".math-block math[display=block]")).to_have_count(2)
    expect(body.locator("annotation").first).to_have_text("e^{i\\pi} + 1 = 0")
    expect(body).to_contain_text("it costs $5 and $10.")
    expect(body.locator("code").first).to_have_text("$x$")
    expect(body.locator("pre code")).to_contain_text("$$ \\frac{a}{b} $$")
    assert body.locator("a[href^=javascript], img, [onerror], [style]").count() == 0
    assert page.evaluate("window.__xss") is None


# --- Installable ------------------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_the_chat_can_be_added_to_a_home_screen_and_caches_no_conversation_offline(ux_page: Any) -> None:
    page = ux_page
    href = page.locator("link[rel=manifest]").get_attribute("href")
    anonymous = page.context.browser.new_context()  # browsers fetch the manifest without cookies
    response = anonymous.request.get(page.url.split("/c/")[0].rstrip("/") + href)
    assert response.ok and response.headers["content-type"].startswith("application/manifest+json")
    manifest = response.json()
    assert manifest["display"] == "standalone" and manifest["start_url"] == "/"
    sizes = {(icon["sizes"], icon["purpose"]) for icon in manifest["icons"]}
    assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= sizes
    for icon in manifest["icons"]:
        image = anonymous.request.get(page.url.split("/c/")[0].rstrip("/") + icon["src"])
        assert image.ok
        assert "x".join(map(str, png_size(image.body()))) == icon["sizes"]
    anonymous.close()
    assert page.evaluate("navigator.serviceWorker.getRegistrations().then((found) => found.length)") == 0
