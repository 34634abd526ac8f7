"""Attachments end to end in headless Chromium: a file dropped on the composer and an image pasted into
it upload with a progress bar, show in the tray (after a reload too), go with the message to the model,
and show on the message as a thumbnail that opens a lightbox, with the reply below."""

import base64
import re
from typing import Any

from playwright.sync_api import expect

from tests.attachment_files import png
from tests.browser_fixtures import TIMEOUT_MS, PageProblems, wait_connected
from tests.fake_upstream import FakeUpstream, Scenario

# Counts the progress bars the tray shows, and the highest value each reached.
RECORD_PROGRESS = """
window.__progress = [];
new MutationObserver(() => {
  for (const bar of document.querySelectorAll("#composer-files progress")) {
    window.__progress.push(bar.value);
  }
}).observe(document.getElementById("composer"), {subtree: true, childList: true, attributes: true});
"""

DROP = """
([name, type, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type }));
  const target = document.getElementById("composer-input");
  for (const kind of ["dragover", "drop"]) {
    target.dispatchEvent(new DragEvent(kind, { dataTransfer: data, bubbles: true, cancelable: true }));
  }
}
"""

PASTE = """
([name, type, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type }));
  const target = document.getElementById("composer-input");
  target.focus();
  target.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
}
"""


def encoded(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_drop_and_paste_upload_with_progress_and_the_image_goes_to_the_model(
    chat_page: Any, upstream: FakeUpstream
) -> None:
    page = chat_page
    page.evaluate(RECORD_PROGRESS)
    upstream.script(Scenario.text("It is a red square."))
    tray = page.locator("#composer-files")

    page.evaluate(DROP, ["notes.md", "text/markdown", encoded(b"# Notes\n\nBuy milk.")])
    expect(tray.locator(".file-chip:not(.file-uploading)")).to_have_count(1, timeout=TIMEOUT_MS)
    page.evaluate(PASTE, ["image.png", "image/png", encoded(png((120, 90), "red"))])
    expect(tray.locator(".file-chip:not(.file-uploading)")).to_have_count(2, timeout=TIMEOUT_MS)
    expect(tray.locator(".file-thumbnail img")).to_have_count(1)
    assert page.evaluate("window.__progress.length") > 0, "a progress bar showed while uploading"

    page.reload()
    wait_connected(page)
    expect(tray.locator(".file-chip")).to_have_count(2), "the tray survives a reload"

    page.locator("#composer-input").fill("What is in the picture?")
    page.locator("#composer-input").press("Enter")

    sent = page.locator("article.msg.user").last
    expect(sent.locator(".msg-files .file-chip")).to_have_count(2)
    expect(sent.locator(".msg-files .file-thumbnail img")).to_have_count(1)
    expect(page.locator("article.msg.assistant").last).to_have_attribute("data-status", "complete", timeout=TIMEOUT_MS)
    expect(page.locator("article.msg.assistant .msg-body").last).to_contain_text("It is a red square.")
    expect(tray.locator(".file-chip")).to_have_count(0)
    body = upstream.requests[-1].body["messages"][-1]["content"]
    assert (
        body[0]["type"] == "text" and "Buy milk." in body[0]["text"] and "[Attached file: notes.md" in body[0]["text"]
    )
    assert body[1]["type"] == "image_url" and body[1]["image_url"]["url"].startswith("data:image/png;base64,")

    sent.locator(".file-thumbnail").click()
    lightbox = page.locator("dialog.lightbox")
    expect(lightbox).to_be_visible()
    expect(lightbox.locator("img")).to_have_attribute("src", re.compile(r"/file\?inline=1$"))
    lightbox.get_by_role("button", name="Close").click()
    expect(lightbox).to_be_hidden()

    page.reload()
    wait_connected(page)
    expect(page.locator("article.msg.user").last.locator(".msg-files .file-chip")).to_have_count(2)


def test_a_refused_file_says_why_and_leaves_the_tray_empty(
    chat_page: Any, upstream: FakeUpstream, problems: PageProblems
) -> None:
    page = chat_page

    page.evaluate(DROP, ["cat.png", "image/png", encoded(b"<!doctype html><script>alert(1)</script>")])

    expect(page.locator("#composer-error")).to_contain_text("cannot be attached", timeout=TIMEOUT_MS)
    expect(page.locator("#composer-files .file-chip")).to_have_count(0)
    # The browser logs the refused upload's 415 itself; that one line is expected, nothing else.
    assert problems.errors == [
        "console: Failed to load resource: the server responded with a status of 415 (Unsupported Media Type)"
    ]
    problems.errors.clear()
