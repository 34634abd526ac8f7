"""A long reply in a real browser: the main thread's long tasks while it streams.

    python bench/browser_bench.py [--tokens 3000] [--rate 500] [--runs 3]

Serves the app as the browser tests do (Daphne, SQLite, the fake upstream; tests/browser_fixtures.py),
opens the chat in headless Chromium (1280x800), sends one message whose reply is --tokens tokens of
mixed markdown (headings, paragraphs, lists, code, math) at --rate tokens a second, and records every
main-thread task over 50 ms (PerformanceObserver, `longtask`) from the send to the reply's end, final
render included. Prints a Markdown table for docs/benchmarks.md, with the machine's load average.
"""

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect  # noqa: E402

from tests.browser_fixtures import CHROMIUM, CHROMIUM_ARGS, app_server, log_in, wait_connected  # noqa: E402
from tests.fake_upstream import FakeUpstream, Scenario, split_text  # noqa: E402

RECORD_LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longTasks.push(Math.round(entry.duration));
}).observe({ type: "longtask" });  // from now on: the page load is not measured
"""

SECTION = (
    "## Part {n}\n\n"
    "This paragraph explains step {n} in plain words, with **bold**, *italic* and `inline code`, "
    "and a formula $a_{n} = a_{{n-1}} + {n}$ so the math path is measured too. It goes on for a while "
    "so that it reads like a real answer rather than a list of words.\n\n"
    "- first point of step {n}, short\n- second point, with a [link](https://example.com/{n})\n"
    "- third point, a little longer than the others\n\n"
    "```python\ndef step_{n}(values: list[int]) -> int:\n    total = 0\n    for value in values:\n"
    "        total += value * {n}\n    return total\n```\n\n"
)


def reply_text(tokens: int) -> str:
    """Markdown of about `tokens` tokens (as the fake upstream splits text)."""
    text, n = "", 0
    while len(split_text(text)) < tokens:
        text += SECTION.format(n=n)
        n += 1
    pieces = split_text(text)[:tokens]
    return "".join(pieces)


def run_once(browser: object, url: str, text: str, rate: float, upstream: FakeUpstream) -> list[int]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(120_000)
    log_in(page, url)
    wait_connected(page)
    page.evaluate(RECORD_LONG_TASKS)
    upstream.script(Scenario.text(text, delay=1 / rate))
    box = page.get_by_role("textbox", name="Message")
    box.fill("Write a long answer")
    box.press("Enter")
    page.locator("article.msg.assistant").last.wait_for()
    expect(page.locator("article.msg.assistant").last).to_have_attribute("data-status", "complete", timeout=120_000)
    page.wait_for_timeout(500)  # the final render and its highlighting land in the record
    tasks = page.evaluate("window.__longTasks")
    context.close()
    return tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    text = reply_text(args.tokens)
    upstream = FakeUpstream().start()
    load_before = os.getloadavg()
    rows = []
    try:
        with (
            tempfile.TemporaryDirectory() as folder,
            app_server(upstream, Path(folder)) as url,
            sync_playwright() as pw,
        ):
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for run in range(1, args.runs + 1):
                tasks = run_once(browser, url, text, args.rate, upstream)
                rows.append((run, len(tasks), max(tasks, default=0), sum(tasks)))
            browser.close()
    finally:
        upstream.stop()
    load_after = os.getloadavg()
    print(f"Reply: {args.tokens} tokens ({len(text)} characters) at {args.rate:g} tokens/s; Chromium 1280x800.")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after.\n"
    )
    print("| Run | Tasks over 50 ms | Longest (ms) | Total in long tasks (ms) |")
    print("|---|---|---|---|")
    for run, count, longest, total in rows:
        print(f"| {run} | {count} | {longest} | {total} |")


if __name__ == "__main__":
    main()
