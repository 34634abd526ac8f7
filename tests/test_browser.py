"""End to end, in a real headless Chromium: the chat page against Daphne and the fake upstream.

Every test ends with the page checked for script errors, CSP violations and dialogs (`chat_page`).
"""

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser_fixtures import (
    TIMEOUT_MS,
    PageProblems,
    assert_page_healthy,
    log_in,
    publish_screenshot,
    screenshot,
    wait_connected,
)
from tests.fake_upstream import FakeUpstream, Scenario

# The browser fixtures (live_server_url, browser, context, chat_page, problems ...).

MARKDOWN_REPLY = (
    "Here is a **small** example in Python:\n\n"
    "```python\n"
    "def greet(name: str) -> str:\n"
    '    return f"Hello, {name}!"\n'
    "```\n\n"
    'Call `greet("Ada")` and it returns a greeting. Want a version that *shouts*?'
)

XSS_REPLY = (
    "Attempts follow.\n\n"
    "<script>window.__xss = 'script'; document.title = 'pwned'</script>\n\n"
    "An image: <img src=x onerror=\"window.__xss = 'img'; alert('img')\">\n\n"
    "[a markdown link](javascript:window.__xss='md-link') and "
    "<a href=\"javascript:window.__xss='raw-link'\">a raw link</a> and [data](data:text/html,<b>x</b>)\n\n"
    '<div onmouseover="window.__xss=\'div\'" style="position:fixed;inset:0">a raw HTML block</div>\n\n'
    "<iframe src=\"javascript:window.__xss='iframe'\"></iframe>\n\n"
    "```html\n<script>window.__xss = 'code'</script>\n```\n"
)

REASONING = (
    "The user wants a short line about autumn. Leaves, wind and a cool evening would fit, and "
    "a gentle rhythm matters more than rhyme here. Let me keep it to one sentence before I answer."
)
ANSWER = "Crisp leaves drift down while the wind hums a cooler tune as evening settles in."

XSS_REASONING = (
    "Thinking about markup. <img src=x onerror=\"window.__xss = 'reasoning-img'; alert('img')\">\n\n"
    "<script>window.__xss = 'reasoning-script'; document.title = 'pwned'</script>\n\n"
    "[a thought link](javascript:window.__xss='reasoning-link') and "
    "<b onmouseover=\"window.__xss='reasoning-b'\">a raw bold tag</b>\n\n"
    "```html\n<script>window.__xss = 'reasoning-code'</script>\n```\n"
)

# Records each distinct state of the newest reply's Thinking block: its label, whether it is open,
# and how long its reasoning and the answer below it are, as the page shows them.
RECORD_THOUGHTS = """
window.__thoughts = [];
new MutationObserver(() => {
  const reply = [...document.querySelectorAll("article.msg.assistant")].at(-1);
  const block = reply?.querySelector("details.msg-thinking");
  if (!block || block.hidden) return;
  const state = {
    label: block.querySelector("summary").textContent,
    open: block.open,
    reasoning: block.querySelector(".thinking-body").textContent.length,
    answer: reply.querySelector(".msg-body").textContent.length,
  };
  if (JSON.stringify(state) !== JSON.stringify(window.__thoughts.at(-1))) window.__thoughts.push(state);
}).observe(document.getElementById("messages"),
  {subtree: true, childList: true, characterData: true, attributes: true});
"""

# The WCAG contrast ratio of an element's text on the first opaque background behind it.
CONTRAST = """
(element) => {
  const channels = (color) => color.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => {
    const linear = (v) => ((v /= 255) <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
  };
  let background = [255, 255, 255];
  for (let node = element; node; node = node.parentElement) {
    const color = channels(getComputedStyle(node).backgroundColor);
    if (color.length < 4 || color[3] > 0) { background = color; break; }
  }
  const [light, dark] = [luminance(channels(getComputedStyle(element).color)), luminance(background)]
    .sort((a, b) => b - a);
  return (light + 0.05) / (dark + 0.05);
}
"""

# Records each distinct length the newest reply's text takes, as the page shows it.
RECORD_REPLY_LENGTHS = """
window.__lengths = [];
new MutationObserver(() => {
  const bodies = document.querySelectorAll("article.msg.assistant .msg-body");
  const length = bodies.length ? bodies[bodies.length - 1].textContent.length : 0;
  if (length && length !== window.__lengths.at(-1)) window.__lengths.push(length);
}).observe(document.getElementById("messages"), {subtree: true, childList: true, characterData: true});
"""


def slow_text(count: int) -> str:
    """The text of Scenario.slow(count) as the page renders it (one paragraph)."""
    return " ".join(f"t{i}" for i in range(count))


def composer(page: Any) -> Any:
    return page.get_by_role("textbox", name="Message")


def send(page: Any, text: str) -> None:
    composer(page).fill(text)
    composer(page).press("Enter")


def last_reply(page: Any) -> Any:
    return page.locator("article.msg.assistant").last


def reply_text(page: Any) -> Any:
    return last_reply(page).locator(".msg-body")


def wait_for_reply_text(page: Any, pattern: str) -> None:
    expect(reply_text(page)).to_contain_text(pattern, timeout=TIMEOUT_MS)


def thoughts(page: Any) -> Any:
    """The newest reply's Thinking block (a <details>)."""
    return last_reply(page).locator("details.msg-thinking")


def thoughts_summary(page: Any) -> Any:
    return thoughts(page).locator("summary")


def thoughts_text(page: Any) -> Any:
    return thoughts(page).locator(".thinking-body")


def open_thoughts_with_the_keyboard(page: Any) -> None:
    """Tab to the Thinking block's summary and press Enter. The page may still be settling (a reply's
    last frames, a reload's snapshot): Enter is pressed once the summary really has the focus."""
    summary = thoughts_summary(page)
    expect(summary).to_be_visible()
    summary.focus()
    expect(summary).to_be_focused()
    page.keyboard.press("Enter")
    expect(thoughts(page)).to_have_js_property("open", True)
    expect(thoughts_text(page)).to_be_visible()


def test_user_logs_in_sends_a_message_and_sees_the_reply_grow_then_its_numbers(
    browser: Any, live_server_url: str, upstream: FakeUpstream, problems: PageProblems
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = problems.watch(context.new_page())
    page.goto(f"{live_server_url}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    log_in(page, live_server_url)
    wait_connected(page)
    page.evaluate(RECORD_REPLY_LENGTHS)
    upstream.script(Scenario.text(MARKDOWN_REPLY, delay=0.06))

    composer(page).fill("Show me a greeting function")
    composer(page).press("Shift+Enter")
    composer(page).press_sequentially("in Python")
    composer(page).press("Enter")

    expect(page.locator("article.msg.user .msg-body")).to_have_text("Show me a greeting function\nin Python")
    expect(composer(page)).to_have_value("")
    expect(last_reply(page).locator(".cursor")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(last_reply(page).locator(".msg-meta .live").first).to_be_visible()
    wait_for_reply_text(page, "Hello, ")
    screenshot(page, "streaming")

    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=TIMEOUT_MS)
    lengths = page.evaluate("window.__lengths")
    assert len(lengths) >= 3, lengths
    assert lengths[-1] == max(lengths), lengths
    expect(reply_text(page)).to_contain_text("Want a version that shouts?")
    expect(last_reply(page).locator(".cursor")).to_have_count(0)
    meta = last_reply(page).locator(".msg-meta")
    expect(meta.locator("[data-metric=model]")).to_have_text("openai:gpt-test")
    expect(meta.locator("[data-metric=ttft]")).to_have_text(re.compile(r"first token \d"))
    expect(meta.locator("[data-metric=tps]")).to_have_text(re.compile(r"[\d.]+ tok/s"))
    expect(meta.locator("[data-metric=tokens]")).to_have_text(re.compile(r"12 in · \d+ out tokens"))
    expect(last_reply(page).locator("pre code.hljs .hljs-keyword").first).to_have_text("def")
    expect(last_reply(page).get_by_role("button", name="Copy python code")).to_be_visible()
    expect(page.locator("#conversation-list li[aria-current=page] .conv-title")).to_have_text(
        "Show me a greeting function"
    )
    expect(page.get_by_role("heading", name="Show me a greeting function")).to_be_visible()
    filters = page.get_by_role("navigation", name="Which conversations").bounding_box()
    assert filters and filters["height"] < 48, f"the Chats / API calls filter takes room it does not need: {filters}"
    publish_screenshot(screenshot(page, "reply-complete"))
    assert_page_healthy(page, problems)
    context.close()


def test_stop_keeps_the_partial_reply_marked_stopped_and_regenerate_replaces_it(
    chat_page: Any, upstream: FakeUpstream
) -> None:
    page = chat_page
    upstream.script(Scenario.slow(400, delay=0.05), Scenario.text("A fresh answer."))
    send(page, "Count slowly")
    wait_for_reply_text(page, "t5")
    current = page.locator("#conversation-list li[aria-current=page]")
    expect(current).to_have_class(re.compile(r"\brunning\b"))

    page.get_by_role("button", name="Stop").click()

    expect(last_reply(page)).to_have_attribute("data-status", "cancelled")
    expect(last_reply(page).locator(".msg-state")).to_have_text(re.compile("^Stopped"))
    expect(reply_text(page)).to_contain_text("t0 t1 t2 t3 t4 t5")
    assert "t399" not in reply_text(page).inner_text()
    expect(composer(page)).to_be_enabled()
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(current).not_to_have_class(re.compile(r"\brunning\b"))
    screenshot(page, "stopped")

    page.get_by_role("button", name="Regenerate").click()

    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    expect(reply_text(page)).to_have_text("A fresh answer.")
    expect(page.locator("article.msg.assistant")).to_have_count(1)
    expect(page.locator("article.msg.user")).to_have_count(1)


def test_reload_during_a_reply_continues_it_to_the_end_without_gap_or_duplicate(
    chat_page: Any, upstream: FakeUpstream
) -> None:
    page = chat_page
    upstream.script(Scenario.slow(150, delay=0.04))
    send(page, "Stream for a while")
    wait_for_reply_text(page, "t12")
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))

    page.reload()

    wait_connected(page)
    expect(last_reply(page)).to_have_attribute("data-status", "streaming")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=TIMEOUT_MS)
    expect(reply_text(page)).to_have_text(slow_text(150))


def test_a_dropped_connection_reconnects_and_resumes_the_running_reply(chat_page: Any, upstream: FakeUpstream) -> None:
    page = chat_page
    sockets: list[Any] = []

    def relay(socket: Any) -> None:
        socket.connect_to_server()
        sockets.append(socket)

    page.route_web_socket(re.compile(r"/ws/chat/\?protocol=2$"), relay)  # the page speaks protocol 2
    page.reload()  # the page's socket now goes through `relay`
    wait_connected(page)
    upstream.script(Scenario.slow(150, delay=0.04))
    send(page, "Keep going through a network blip")
    wait_for_reply_text(page, "t10")

    sockets[-1].close(code=1011, reason="network blip")

    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    wait_connected(page)
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=TIMEOUT_MS)
    expect(reply_text(page)).to_have_text(slow_text(150))
    assert len(sockets) == 2


def test_two_pages_on_one_conversation_show_the_same_reply(
    chat_page: Any, context: Any, upstream: FakeUpstream, problems: PageProblems
) -> None:
    first = chat_page
    send(first, "Hello")
    expect(last_reply(first)).to_have_attribute("data-status", "complete")
    second = problems.watch(context.new_page())
    second.goto(first.url)
    wait_connected(second)
    upstream.script(Scenario.slow(80, delay=0.04))

    send(first, "Now count")

    expect(second.locator("article.msg.user").last).to_have_text(re.compile("Now count"))
    expect(last_reply(second)).to_have_attribute("data-status", "streaming")
    for page in (first, second):
        expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=TIMEOUT_MS)
        expect(reply_text(page)).to_have_text(slow_text(80))
        expect(page.locator("article.msg")).to_have_count(4)
    assert_page_healthy(second, problems)


def test_reasoning_streams_in_a_collapsed_thinking_block_above_the_answer_and_survives_a_reload(
    chat_page: Any, context: Any, live_server_url: str, upstream: FakeUpstream, problems: PageProblems
) -> None:
    page = chat_page
    page.evaluate(RECORD_THOUGHTS)
    upstream.script(Scenario.with_reasoning(REASONING, ANSWER, delay=0.08))
    send(page, "Write one line about autumn")

    # While the reasoning streams: collapsed, the answer not begun, the seconds counting.
    expect(thoughts_summary(page)).to_have_text(re.compile(r"^Thinking… \d+ s$"))
    expect(thoughts(page)).to_have_js_property("open", False)
    expect(thoughts_text(page)).to_be_hidden()
    expect(thoughts_summary(page)).to_have_text(re.compile(r"^Thinking… [1-9]\d* s$"))
    open_thoughts_with_the_keyboard(page)
    expect(thoughts_text(page)).to_contain_text("The user wants a short line")
    screenshot(page, "thinking")
    second = problems.watch(context.new_page())  # joins in the middle of the reply
    second.goto(page.url)
    wait_connected(second)

    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=TIMEOUT_MS)
    expect(thoughts_summary(page)).to_have_text(re.compile(r"^Thought for (<1|\d+) s$"))
    expect(thoughts(page)).to_have_js_property("open", True)  # no redraw closed it
    expect(thoughts_text(page)).to_have_text(REASONING)
    expect(reply_text(page)).to_have_text(ANSWER)
    above = thoughts(page).bounding_box()
    below = reply_text(page).bounding_box()
    assert above and below and above["y"] + above["height"] <= below["y"], (above, below)
    states = page.evaluate("window.__thoughts")
    thinking = [state for state in states if state["label"].startswith("Thinking…")]
    assert thinking and not thinking[0]["open"], states  # collapsed until opened
    assert len({state["reasoning"] for state in thinking}) >= 3, states  # it grew as it streamed
    assert all(state["answer"] == 0 for state in thinking), states  # the answer came after
    assert states[-1]["answer"] >= len(ANSWER) and states[-1]["open"], states
    for contrast in thoughts_summary(page).evaluate(CONTRAST), thoughts_text(page).locator("p").evaluate(CONTRAST):
        assert contrast >= 4.5, contrast

    # Another page and a reload show the same parts, once each, and the time the server recorded.
    page.reload()
    wait_connected(page)
    for each in (second, page):
        expect(last_reply(each)).to_have_attribute("data-status", "complete", timeout=TIMEOUT_MS)
        expect(each.locator("article.msg")).to_have_count(2)
        expect(each.locator("details.msg-thinking")).to_have_count(1)
        expect(thoughts_summary(each)).to_have_text(re.compile(r"^Thought for (<1|\d+) s$"))
        expect(thoughts(each)).to_have_js_property("open", False)
        open_thoughts_with_the_keyboard(each)
        expect(thoughts_text(each)).to_have_text(REASONING)
        expect(reply_text(each)).to_have_text(ANSWER)
    assert_page_healthy(second, problems)


def test_a_connection_dropped_while_thinking_resumes_the_reasoning_and_the_answer_once(
    chat_page: Any, upstream: FakeUpstream
) -> None:
    page = chat_page
    sockets: list[Any] = []

    def relay(socket: Any) -> None:
        socket.connect_to_server()
        sockets.append(socket)

    page.route_web_socket(re.compile(r"/ws/chat/\?protocol=2$"), relay)
    page.reload()
    wait_connected(page)
    upstream.script(Scenario.with_reasoning(REASONING, ANSWER, delay=0.08))
    send(page, "Write one line about autumn")
    expect(thoughts_summary(page)).to_have_text(re.compile(r"^Thinking…"))
    expect(thoughts_text(page)).to_contain_text("The user wants")

    sockets[-1].close(code=1011, reason="network blip")

    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    wait_connected(page)
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=TIMEOUT_MS)
    open_thoughts_with_the_keyboard(page)
    expect(thoughts_text(page)).to_have_text(REASONING)
    expect(reply_text(page)).to_have_text(ANSWER)
    # Resumed within the reasoning, it still knows how long it took; from a snapshot, it does not say.
    expect(thoughts_summary(page)).to_have_text(re.compile(r"^(Thought for (<1|\d+) s|Thoughts)$"))
    assert len(sockets) == 2


def test_script_and_raw_html_in_reasoning_render_inert_and_no_script_runs(
    chat_page: Any, upstream: FakeUpstream
) -> None:
    page = chat_page
    upstream.script(Scenario.with_reasoning(XSS_REASONING, "Nothing ran.", delay=0.01))
    send(page, "Think about markup")
    expect(thoughts(page)).to_be_visible()
    expect(last_reply(page)).to_have_attribute("data-status", "complete")

    for attempt in ("live", "reloaded"):
        messages = page.locator("#messages")
        open_thoughts_with_the_keyboard(page)
        expect(thoughts_text(page)).to_contain_text("<img src=x onerror=")
        expect(thoughts_text(page)).to_contain_text("<script>window.__xss = 'reasoning-script'")
        expect(thoughts_text(page).locator("pre code.language-html")).to_have_text(
            "<script>window.__xss = 'reasoning-code'</script>\n"
        )
        expect(reply_text(page)).to_have_text("Nothing ran.")
        expect(messages.locator("script, img, iframe, object, embed, style")).to_have_count(0)
        page.get_by_text("a raw bold tag").hover()
        page.get_by_text("a thought link").click()
        assert_nothing_ran(page, attempt)
        if attempt == "live":
            page.reload()
            wait_connected(page)


def assert_nothing_ran(page: Any, attempt: str) -> None:
    """Every link is http(s) or mailto, no element has a handler or a style, and no injected script ran."""
    messages = page.locator("#messages")
    hrefs = messages.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert all(href is None or href.startswith(("http:", "https:", "mailto:")) for href in hrefs), hrefs
    handlers = messages.evaluate(
        "root => [...root.querySelectorAll('*')].flatMap(el => [...el.attributes].map(a => a.name))"
        ".filter(name => name.startsWith('on') || name === 'style')"
    )
    assert handlers == [], (attempt, handlers)
    assert page.evaluate("window.__xss") is None, attempt
    assert "pwned" not in page.title()


def test_script_and_raw_html_in_model_output_render_inert_and_no_script_runs(
    chat_page: Any, upstream: FakeUpstream
) -> None:
    page = chat_page
    upstream.script(Scenario.text(XSS_REPLY, delay=0.01))
    send(page, "Echo this: <img src=x onerror=\"window.__xss='user'\"> <script>window.__xss='user'</script>")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")

    for attempt in ("live", "reloaded"):
        messages = page.locator("#messages")
        expect(reply_text(page)).to_contain_text("<script>window.__xss = 'script'")
        expect(reply_text(page)).to_contain_text("<img src=x onerror=")
        expect(page.locator("article.msg.user .msg-body")).to_contain_text("<img src=x onerror=")
        expect(messages.locator("script, img, iframe, object, embed, style")).to_have_count(0)
        page.get_by_text("a raw HTML block").hover()
        page.get_by_text("a markdown link").click()
        assert_nothing_ran(page, attempt)
        if attempt == "live":
            page.reload()
            wait_connected(page)
    expect(page.locator("pre code.language-html")).to_have_text("<script>window.__xss = 'code'</script>\n")


def test_provider_failure_shows_the_reason_and_retry_works(chat_page: Any, upstream: FakeUpstream) -> None:
    page = chat_page
    upstream.script(Scenario.http_error(503), Scenario.text("Recovered after a retry."))
    send(page, "This will fail once")

    expect(last_reply(page)).to_have_attribute("data-status", "failed")
    error = last_reply(page).locator(".msg-error")
    expect(error).to_contain_text("Reply failed")
    expect(error).to_contain_text(re.compile(r"\(\w+\)"))
    screenshot(page, "failed")

    error.get_by_role("button", name="Retry").focus()
    page.keyboard.press("Enter")

    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    expect(reply_text(page)).to_have_text("Recovered after a retry.")
    expect(page.locator(".msg-error:visible")).to_have_count(0)
    expect(page.locator("article.msg.assistant")).to_have_count(1)


def test_edit_and_resend_the_last_message_replaces_it_and_its_reply(chat_page: Any, upstream: FakeUpstream) -> None:
    page = chat_page
    upstream.script(Scenario.text("First answer."), Scenario.text("Second answer."))
    send(page, "Frist question")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")

    page.get_by_role("button", name="Edit").click()
    editor = page.get_by_role("textbox", name="Edit your message")
    editor.fill("First question")
    editor.press("Enter")

    expect(page.locator("article.msg.user .msg-body")).to_have_text("First question")
    expect(reply_text(page)).to_have_text("Second answer.")
    expect(page.locator("article.msg")).to_have_count(2)


def versions(message: Any) -> Any:
    """The "‹ 2/3 ›" position under a message."""
    return message.locator(".msg-branches .branch-position")


def test_edit_an_early_message_regenerate_walk_the_versions_both_ways_and_reload_keeps_the_branch(
    chat_page: Any, upstream: FakeUpstream
) -> None:
    page = chat_page
    upstream.script(
        Scenario.text("Answer one."),
        Scenario.text("Answer two."),
        Scenario.text("Edited answer."),
        Scenario.text("Regenerated answer."),
    )
    questions = page.locator("article.msg.user")
    for question, answer in (("Question one", "Answer one."), ("Question two", "Answer two.")):
        send(page, question)
        expect(reply_text(page)).to_have_text(answer)
        expect(last_reply(page)).to_have_attribute("data-status", "complete")

    questions.first.get_by_role("button", name="Edit").click()
    editor = page.get_by_role("textbox", name="Edit your message")
    editor.fill("Question one, edited")
    editor.press("Enter")
    expect(reply_text(page)).to_have_text("Edited answer.")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    expect(page.locator("article.msg")).to_have_count(2)
    expect(versions(questions.first)).to_have_text("2/2")

    last_reply(page).get_by_role("button", name="Regenerate").click()
    expect(reply_text(page)).to_have_text("Regenerated answer.")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    expect(versions(last_reply(page))).to_have_text("2/2")

    last_reply(page).get_by_role("button", name="Previous version").click()
    expect(reply_text(page)).to_have_text("Edited answer.")
    expect(versions(last_reply(page))).to_have_text("1/2")
    last_reply(page).get_by_role("button", name="Next version").click()
    expect(reply_text(page)).to_have_text("Regenerated answer.")
    questions.first.get_by_role("button", name="Previous version").click()
    expect(page.locator("article.msg .msg-body")).to_have_text(
        ["Question one", "Answer one.", "Question two", "Answer two."]
    )
    expect(versions(questions.first)).to_have_text("1/2")

    page.reload()
    wait_connected(page)
    expect(page.locator("article.msg .msg-body")).to_have_text(
        ["Question one", "Answer one.", "Question two", "Answer two."]
    )
    questions.first.get_by_role("button", name="Next version").click()
    expect(page.locator("article.msg .msg-body")).to_have_text(["Question one, edited", "Regenerated answer."])
    page.reload()
    wait_connected(page)
    expect(page.locator("article.msg .msg-body")).to_have_text(["Question one, edited", "Regenerated answer."])
    expect(versions(last_reply(page))).to_have_text("2/2")
    assert len(upstream.requests) == 4


def test_switching_away_from_a_streaming_reply_keeps_it_going_and_stop_still_reaches_it(
    chat_page: Any, upstream: FakeUpstream
) -> None:
    page = chat_page
    upstream.script(
        Scenario.text("First answer."), Scenario.stall(after=3, tokens=("Partial ", "text ", "here", " never"))
    )
    send(page, "Question")
    expect(reply_text(page)).to_have_text("First answer.")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    last_reply(page).get_by_role("button", name="Regenerate").click()
    wait_for_reply_text(page, "Partial text here")

    last_reply(page).get_by_role("button", name="Previous version").click()
    expect(reply_text(page)).to_have_text("First answer.")
    expect(versions(last_reply(page))).to_have_text("1/2")
    expect(last_reply(page).get_by_role("button", name="Regenerate")).to_have_count(0)  # one reply at a time
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_role("button", name="Send")).to_be_visible()

    last_reply(page).get_by_role("button", name="Next version").click()
    expect(last_reply(page)).to_have_attribute("data-status", "cancelled")
    expect(reply_text(page)).to_have_text("Partial text here")
    expect(versions(last_reply(page))).to_have_text("2/2")


def test_sidebar_shows_live_titles_renames_and_deletes_after_confirmation(
    chat_page: Any, upstream: FakeUpstream, live_server_url: str
) -> None:
    page = chat_page
    send(page, "Plan a picnic for Saturday")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    item = page.locator("#conversation-list li[aria-current=page]")
    expect(item.locator(".conv-title")).to_have_text("Plan a picnic for Saturday")
    expect(page.locator("#conversation-list li").first).to_have_attribute("aria-current", "page")

    item.get_by_role("button", name="Rename “Plan a picnic for Saturday”").click()
    page.get_by_role("textbox", name="Title").fill("Picnic")
    page.get_by_role("button", name="Rename", exact=True).click()
    expect(item.locator(".conv-title")).to_have_text("Picnic")
    expect(page.locator("#conversation-title")).to_have_text("Picnic")

    item.get_by_role("button", name="Delete “Picnic”").click()
    dialog = page.get_by_role("dialog", name="Delete conversation?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(item).to_be_visible()
    item.get_by_role("button", name="Delete “Picnic”").click()
    dialog.get_by_role("button", name="Delete").click()

    expect(page).to_have_url(f"{live_server_url}/")
    expect(page.locator("#conversation-list .conv-title", has_text="Picnic")).to_have_count(0)


def test_phone_sized_dark_screen_hides_the_sidebar_behind_a_menu_button(
    browser: Any, login_state: dict[str, Any], live_server_url: str, upstream: FakeUpstream, problems: PageProblems
) -> None:
    context = browser.new_context(
        storage_state=login_state, viewport={"width": 390, "height": 800}, color_scheme="dark", is_mobile=True
    )
    page = problems.watch(context.new_page())
    page.goto(f"{live_server_url}/")
    wait_connected(page)
    upstream.script(Scenario.with_reasoning("Checking the greeting function first.", MARKDOWN_REPLY))
    send(page, "Show me a greeting function")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(21, 24, 29)", background
    open_thoughts_with_the_keyboard(page)
    expect(thoughts_text(page)).to_have_text("Checking the greeting function first.")
    for contrast in thoughts_summary(page).evaluate(CONTRAST), thoughts_text(page).locator("p").evaluate(CONTRAST):
        assert contrast >= 4.5, contrast  # WCAG AA for the reasoning's small text, in dark mode too
    sidebar = page.locator("#sidebar")
    expect(sidebar).not_to_be_in_viewport()
    screenshot(page, "phone-dark")

    menu = page.get_by_role("button", name="Show conversations")
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(sidebar).to_be_in_viewport()
    screenshot(page, "phone-dark-sidebar")
    page.keyboard.press("Escape")
    expect(sidebar).not_to_be_in_viewport()
    assert_page_healthy(page, problems)
    context.close()


def test_signup_and_password_forms_are_usable_in_the_browser(
    browser: Any, live_server_url: str, problems: PageProblems
) -> None:
    context = browser.new_context()
    page = problems.watch(context.new_page())
    page.goto(f"{live_server_url}/accounts/login/")
    page.get_by_role("link", name="Sign up").click()
    page.get_by_label("Username").fill("new-browser-user")
    page.get_by_label("Password", exact=True).fill("a-long-pass-phrase-42")
    page.get_by_label("Password confirmation").fill("a-long-pass-phrase-42")
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(f"{live_server_url}/")
    wait_connected(page)
    expect(page.locator(".sidebar-foot .who")).to_have_text("new-browser-user")
    page.get_by_role("link", name="Change password").click()
    expect(page.get_by_role("heading", name="Change password")).to_be_visible()
    page.goto(f"{live_server_url}/")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    assert_page_healthy(page, problems)
    context.close()


def test_a_refused_message_keeps_the_typed_text_and_says_why(chat_page: Any, upstream: FakeUpstream) -> None:
    page = chat_page
    send(page, "A first message")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    too_long = "x" * 32_001

    send(page, too_long)

    expect(page.locator("#composer-error")).to_be_visible()
    expect(page.locator("#composer-error")).to_contain_text("the limit is 32,000")
    expect(composer(page)).to_have_value(too_long)
    expect(page.locator("article.msg.user")).to_have_count(1)
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


def test_conversation_parameters_are_checked_saved_sent_and_kept_across_a_reload(
    chat_page: Any, upstream: FakeUpstream
) -> None:
    page = chat_page
    upstream.script(Scenario.text("First answer."), Scenario.text("Second answer."))
    send(page, "Hello")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")

    page.get_by_text("Parameters", exact=True).click()
    temperature = page.get_by_label("Temperature")
    temperature.fill("5")
    page.get_by_role("button", name="Save parameters").click()
    expect(page.locator("#parameters-status")).to_have_text("Temperature must be from 0 to 2.")
    expect(temperature).to_have_attribute("aria-invalid", "true")
    expect(temperature).to_be_focused()

    temperature.fill("0.4")
    page.get_by_label("Stop sequences").fill("END\n\nSTOP")
    page.get_by_role("button", name="Save parameters").click()
    expect(page.locator("#parameters-status")).to_have_text("Saved.")
    send(page, "Again")
    expect(reply_text(page)).to_have_text("Second answer.")

    body = upstream.requests[-1].body
    assert (body["temperature"], body["stop"]) == (0.4, ["END", "STOP"])
    page.reload()
    wait_connected(page)
    expect(page.get_by_label("Temperature")).to_have_value("0.4")
    expect(page.get_by_label("Stop sequences")).to_have_value("END\nSTOP")
    page.get_by_role("button", name="Use defaults").click()
    expect(page.locator("#parameters-status")).to_have_text("Saved.")
    expect(page.get_by_label("Temperature")).to_have_value("")


def test_a_reply_stopped_while_thinking_keeps_its_reasoning_and_offers_continue(
    chat_page: Any, upstream: FakeUpstream
) -> None:
    page = chat_page
    upstream.script(Scenario.with_reasoning(REASONING, ANSWER, hold_after=3), Scenario.with_reasoning("Again.", ANSWER))
    send(page, "Write one line about autumn")
    assert upstream.wait_held()
    expect(thoughts_summary(page)).to_have_text(re.compile(r"^Thinking… \d+ s$"))

    page.get_by_role("button", name="Stop").click()
    expect(last_reply(page)).to_have_attribute("data-status", "cancelled")
    open_thoughts_with_the_keyboard(page)
    expect(thoughts_text(page)).not_to_be_empty()
    page.get_by_role("button", name="Continue").click()

    expect(reply_text(page)).to_have_text(ANSWER)
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    expect(page.locator("details.msg-thinking")).to_have_count(2)  # the stopped reasoning is still shown


def test_unsaved_parameters_survive_the_conversation_updates_a_reply_brings(
    chat_page: Any, upstream: FakeUpstream
) -> None:
    page = chat_page
    upstream.script(Scenario.text("First answer."), Scenario.text("Second answer."))
    send(page, "Hello")
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    page.get_by_text("Parameters", exact=True).click()
    page.get_by_label("Temperature").fill("0.7")

    send(page, "Again")  # the reply's start and end each bring a `conversation` frame
    expect(reply_text(page)).to_have_text("Second answer.")

    expect(page.get_by_label("Temperature")).to_have_value("0.7")
