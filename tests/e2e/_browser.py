"""A browser for the e2e tier: Debian's headless Chromium driven by Playwright, one session per
user, logged in through the simple auth manager's login page (fixtures in ``conftest.py``)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e._airflow import ROOT, AirflowStack

CHROMIUM = "/usr/bin/chromium"
# As root, without a display, on a machine with no internet: no sandbox, no GPU, no background
# connections (each would be refused, slowly).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1440, "height": 1000}
TIMEOUT_MS = 30_000
OUTPUT = ROOT / "tests" / "output" / "ui"


class Session:
    """One user's browser session: a page, and where its screenshots go."""

    def __init__(self, stack: AirflowStack, browser, user: str, shots: Path) -> None:
        self.stack, self.user, self.shots = stack, user, shots
        self.context = browser.new_context(viewport=VIEWPORT)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()

    def login(self) -> None:
        page = self.page
        page.goto(f"{self.stack.url}/")
        page.wait_for_url(re.compile(r"/auth/login"))
        page.fill("input[name=username]", self.user)
        page.fill("input[name=password]", self.stack.passwords[self.user])
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/auth/login" not in url)

    def open(self, path: str):
        self.page.goto(f"{self.stack.url}/{path}")
        return self.page

    def frame(self, title: str):
        """The plugin view the Airflow UI embeds (its iframe is titled with the view's name)."""
        return self.page.frame_locator(f'iframe[title="{title}"]')

    def shot(self, name: str) -> None:
        self.shots.mkdir(parents=True, exist_ok=True)
        self.page.wait_for_timeout(300)  # let the UI settle its layout
        self.page.screenshot(path=str(self.shots / f"{name}.png"))

    def close(self) -> None:
        self.context.close()
