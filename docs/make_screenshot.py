"""Take the README's screenshot from a running demo (`patchwork demo`), in Debian's Chromium.

    python docs/make_screenshot.py [http://127.0.0.1:5000]
"""

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5000"
OUT = Path(__file__).parent / "screenshot-customers.png"

with sync_playwright() as playwright:
    browser = playwright.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.goto(BASE + "/login")
    page.get_by_label("Email").fill("demo@patchwork.example")
    page.get_by_label("Password").fill("patchwork-demo")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(BASE + "/")
    page.goto(BASE + "/customers/?sort=spent")
    page.screenshot(path=str(OUT))
    browser.close()
print(f"Wrote {OUT}")
