"""Draw the web app icons (static/chat/icons/*.png) from the favicon's design, in headless Chromium.

Run once after changing the design: `python scripts/make_icons.py`. The PNGs are committed; nothing
draws them at runtime. "any" icons have rounded corners; the maskable one fills its square and keeps
the mark inside the central 80 % (the safe zone a launcher's mask never cuts).
"""

from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
ICONS = ROOT / "static" / "chat" / "icons"
BUBBLE = '<path d="M8 10h16v10H14l-6 5z" fill="#fff"/>'
ROUNDED = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="8" fill="#2563eb"/>{BUBBLE}</svg>'
# The mark scaled to 70 % around the centre, on a full square.
MASKABLE = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" fill="#2563eb"/>'
    f'<g transform="translate(16 16) scale(0.7) translate(-16 -16.5)">{BUBBLE}</g></svg>'
)


def draw(page: Any, svg: str, size: int, name: str) -> None:
    page.set_viewport_size({"width": size, "height": size})
    page.set_content(
        f'<body style="margin:0;background:transparent">{svg.replace("<svg ", f"<svg width={size} height={size} ", 1)}</body>'
    )
    page.screenshot(path=str(ICONS / name), omit_background=True)


def main() -> None:
    ICONS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        for size in (192, 512):
            draw(page, ROUNDED, size, f"icon-{size}.png")
        draw(page, MASKABLE, 512, "icon-maskable-512.png")
        draw(page, ROUNDED, 180, "apple-touch-icon.png")
        browser.close()


if __name__ == "__main__":
    main()
