"""Fixtures for browser tests: the real server (Daphne, in a subprocess) wired to the fake upstream,
and a headless Chromium driven by Playwright that records script errors and CSP violations.

Playwright's sync API cannot run inside an asyncio loop, so every browser test is a plain sync test.
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fake_upstream import FakeUpstream
from tests.harness.servers import start_daphne

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "tests" / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
USERNAME = "browser-user"
PASSWORD = "browser-pass-1234"
TIMEOUT_MS = 30_000

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Runs in every page before its own scripts: records CSP violations for the test to read.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push({directive: e.violatedDirective, blocked: e.blockedURI, source: e.sourceFile, sample: e.sample});
});
"""


@pytest.fixture(scope="session")
def live_server_url(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app under Daphne with its own SQLite file, the fake upstream as its only provider, one user."""
    with app_server(fake_upstream, tmp_path_factory.mktemp("browser-server")) as url:
        yield url


@contextmanager
def app_server(fake_upstream: FakeUpstream, folder: Path) -> Iterator[str]:
    """Serve the app (Daphne, SQLite in `folder`) against the fake upstream; yields its URL.
    bench/browser_bench.py serves it the same way."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: scripts/test.sh installs Debian's chromium")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SQLITE_PATH": str(folder / "db.sqlite3"),
        "OPENAI_API_KEY": "sk-test-browser",
        "OPENAI_BASE_URL": fake_upstream.base_url_openai,
        "OPENAI_MODELS": "gpt-test",
        "CHAT_DEFAULT_MODEL": "openai:gpt-test",
        "LOCAL_MODEL_ENABLED": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CHAT_RETRY_ATTEMPTS": "0",  # a scripted provider failure fails at once
        "CHAT_SIGNUP_ENABLED": "true",
        # Every browser test chats as one user: the per-minute rate (tests/test_limits.py) must not
        # depend on how many of them ran within the last minute.
        "CHAT_MESSAGES_PER_MINUTE": "1000",
        # Attachments: the test model sees images; files go under the server's own folder.
        "CHAT_VISION_MODELS": "openai:gpt-test",
        "CHAT_ATTACHMENTS_DIR": str(folder / "attachments"),
    }
    for name in ("DATABASE_URL", "REDIS_URL", "ANTHROPIC_API_KEY", "OPENAI_COMPATIBLE_SERVERS"):
        env.pop(name, None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, cwd=ROOT, check=True, timeout=180)
    # The Spanish catalog, as scripts/bootstrap.sh compiles it (up to date: nothing to do).
    compile_messages = [
        *manage,
        "compilemessages",
        "--ignore=.venv",
        "--ignore=bench",
        "--ignore=staticfiles",
        "-v",
        "0",
    ]
    subprocess.run(compile_messages, env=env, cwd=ROOT, check=True, timeout=180)
    create_user = (
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r})"
    )
    subprocess.run([*manage, "shell", "-c", create_user], env=env, cwd=ROOT, check=True, timeout=120)
    server = start_daphne(env, folder)
    try:
        yield server.url
    finally:
        server.process.stop(grace=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@dataclass
class PageProblems:
    """What went wrong in the pages of one test: uncaught errors, console errors, dialogs."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> Any:
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("console", lambda message: message.type == "error" and self.errors.append(f"console: {message.text}"))

        def dismiss(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", dismiss)
        return page


@pytest.fixture
def problems() -> PageProblems:
    return PageProblems()


@pytest.fixture(scope="module")
def login_state(browser: Any, live_server_url: str) -> dict[str, Any]:
    """Cookies of a logged-in session, so most tests skip the login form."""
    context = browser.new_context()
    page = context.new_page()
    log_in(page, live_server_url)
    state = context.storage_state()
    context.close()
    return state


def log_in(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/")


@pytest.fixture
def context(browser: Any, login_state: dict[str, Any], problems: PageProblems) -> Iterator[Any]:
    """A logged-in browser context (light mode, laptop-sized) whose pages are watched for problems."""
    context = browser.new_context(storage_state=login_state, viewport={"width": 1280, "height": 800})
    context.add_init_script(RECORD_VIOLATIONS)
    yield context
    context.close()


@pytest.fixture
def chat_page(context: Any, live_server_url: str, upstream: FakeUpstream, problems: PageProblems) -> Iterator[Any]:
    """A new chat, open and connected. After the test: no script error, no CSP violation, no dialog."""
    page = problems.watch(context.new_page())
    page.goto(f"{live_server_url}/")
    wait_connected(page)
    yield page
    assert_page_healthy(page, problems)


def wait_connected(page: Any) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#connection")).to_have_attribute("data-state", "online", timeout=TIMEOUT_MS)


def assert_page_healthy(page: Any, problems: PageProblems) -> None:
    violations = [] if page.is_closed() else page.evaluate("window.__cspViolations || []")
    assert violations == [], f"CSP violations: {violations}"
    assert problems.errors == [], f"errors in the page: {problems.errors}"
    assert problems.dialogs == [], f"dialogs opened: {problems.dialogs}"


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def publish_screenshot(path: Path) -> None:
    """The README shows docs/screenshot.png."""
    target = ROOT / "docs" / "screenshot.png"
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(path, target)
