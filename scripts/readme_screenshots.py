"""Take the README's screenshots (docs/screenshots/*.png) in headless Chromium.

    python scripts/readme_screenshots.py

Serves the app as the browser tests do (Daphne, a throwaway SQLite file, the fake upstream with
scripted replies; tests/browser_fixtures.py), then shows: the chat on a laptop, on a phone, in dark
mode, a thinking model's reasoning opened, a message with two versions (branches), math, and the
keyboard shortcut list. Nothing here talks to a real provider.
"""

import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect  # noqa: E402

from tests.browser_fixtures import CHROMIUM, CHROMIUM_ARGS, app_server, log_in, wait_connected  # noqa: E402
from tests.fake_upstream import FakeUpstream, Scenario  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
LAPTOP = {"viewport": {"width": 1280, "height": 800}}

CODE_ANSWER = (
    "Here is a small, typed helper:\n\n"
    "```python\n"
    "from datetime import date\n\n\n"
    "def days_until(day: date, *, today: date | None = None) -> int:\n"
    '    """Whole days from today until `day` (negative once it has passed)."""\n'
    "    return (day - (today or date.today())).days\n"
    "```\n\n"
    "Call `days_until(date(2027, 1, 1))`. Want a version that counts working days only?"
)
REASONING = (
    "The user wants the number of days until a date. A subtraction of two `date` objects gives a "
    "`timedelta`; its `.days` is what they need. Keep `today` injectable so it can be tested."
)
MATH_ANSWER = (
    "The roots of $ax^2 + bx + c = 0$ are\n\n"
    "$$\nx = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a}\n$$\n\n"
    "and they are real exactly when the discriminant $\\Delta = b^2 - 4ac \\ge 0$."
)


def open_chat(browser: Any, url: str, **options: Any) -> Any:
    context = browser.new_context(**options)
    page = context.new_page()
    page.set_default_timeout(60_000)
    log_in(page, url)
    wait_connected(page)
    return page


def ask(page: Any, text: str) -> None:
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    if page.viewport_size["width"] < 700:
        page.get_by_role("button", name="Send").click()
    else:
        box.press("Enter")
    expect(page.locator("article.msg.assistant").last).to_have_attribute("data-status", "complete")


def shoot(page: Any, name: str) -> None:
    page.wait_for_timeout(300)  # fonts and highlighting settle
    page.screenshot(path=str(OUT / f"{name}.png"))
    print(f"docs/screenshots/{name}.png")


def take_all(browser: Any, url: str, upstream: FakeUpstream) -> None:
    page = open_chat(browser, url, **LAPTOP, color_scheme="light")
    upstream.script(Scenario.with_reasoning(REASONING, CODE_ANSWER))
    ask(page, "How many days until a date, in Python?")
    shoot(page, "desktop")
    page.locator("details.msg-thinking summary").last.click()
    shoot(page, "thinking")
    upstream.script(Scenario.text("A shorter take: `(day - date.today()).days` is all it takes."))
    page.locator("article.msg.assistant").last.get_by_role("button", name="Regenerate").click()
    expect(page.locator("article.msg.assistant").last).to_have_attribute("data-status", "complete")
    shoot(page, "branches")
    upstream.script(Scenario.text(MATH_ANSWER))
    ask(page, "And the quadratic formula?")
    shoot(page, "math")
    page.locator("#messages").focus()
    page.keyboard.press("?")
    shoot(page, "shortcuts")
    conversation = page.url
    page.context.close()

    dark = open_chat(browser, url, **LAPTOP, color_scheme="dark")
    dark.goto(conversation)
    wait_connected(dark)
    shoot(dark, "dark")
    dark.context.close()

    phone = open_chat(browser, url, **PHONE, color_scheme="light")
    phone.goto(conversation)
    wait_connected(phone)
    shoot(phone, "mobile")
    phone.get_by_role("button", name="Show conversations").click()
    shoot(phone, "mobile-drawer")
    phone.context.close()


def main() -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    upstream = FakeUpstream().start()
    try:
        with (
            tempfile.TemporaryDirectory() as folder,
            app_server(upstream, Path(folder)) as url,
            sync_playwright() as pw,
        ):
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            take_all(browser, url, upstream)
            browser.close()
    finally:
        upstream.stop()


if __name__ == "__main__":
    main()
