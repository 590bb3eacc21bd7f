"""A real Chromium (Debian's package) driven by Playwright, signed in to a cluster's console."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("Chromium is not installed: apt-get install -y chromium")
    return path


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


def sign_in(page: Any, console_url: str, api_key: str) -> None:
    """Opens the console and signs in with `api_key`; returns once the tasks table shows."""
    page.goto(console_url)
    page.get_by_test_id("api-key").fill(api_key)
    page.get_by_test_id("sign-in").click()
    page.get_by_test_id("tasks-table").wait_for()
