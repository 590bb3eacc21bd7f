"""Screenshots of every console page for the docs: `python scripts/screenshots.py` writes docs/screenshots/*.png.

Starts `simplane up` on temporary directories, runs a few tasks so the pages have something to show, and
photographs each page in Debian's Chromium (apt-get install chromium), driven by Playwright.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]

from browser import launch  # noqa: E402

from bench import Up  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
# Each page, and what shows once its data has loaded.
PAGES = {
    "machines": '[data-testid^="machine-row-"]',
    "analytics": '[data-testid="chart-over-time"]',
    "account": '[data-testid^="api-key-row-"]',
    "launch": '[data-testid="launch-submit"]',
}


def seed(up: Up) -> str:
    """Tasks in every state, in two projects; returns the ID of a running one with output."""
    with up.client() as client:
        for i in range(4):
            client.tasks.submit(["seq", "50"], name=f"cavity-re{100 * (i + 1)}", project="cavity").wait()
        client.tasks.submit(
            ["sh", "-c", "echo 'diverged at step 412' >&2; exit 3"],
            name="pipe-flow-coarse",
            project="pipe",
        ).wait()
        killed = client.tasks.submit(["sleep", "60"], name="pipe-flow-fine", project="pipe")
        killed.kill(grace_period=0)
        killed.wait()
        running = client.tasks.submit(
            ["sh", "-c", 'i=0; while true; do echo "time step $i"; i=$((i+1)); sleep 0.05; done'],
            name="dam-break-3d",
            project="multiphase",
        )
        for line in running.logs(follow=True):
            if line.text == "time step 40":
                break
        return running.id


def main() -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as root, sync_playwright() as playwright:
        browser = launch(playwright)
        up = Up(Path(root))
        try:
            running = seed(up)
            page = browser.new_context(viewport={"width": 1280, "height": 760}).new_page()
            page.goto(up.console_url)
            page.screenshot(path=OUT / "signin.png")
            page.get_by_test_id("api-key").fill(up.api_key)
            page.get_by_test_id("sign-in").click()
            page.get_by_test_id(f"task-row-{running}").wait_for()
            page.screenshot(path=OUT / "tasks.png")
            page.goto(f"{up.console_url}tasks/{running}")
            page.get_by_test_id("log-line").first.wait_for()
            page.screenshot(path=OUT / "task.png", full_page=True)
            for name, shown in PAGES.items():
                page.goto(f"{up.console_url}{name}")
                page.locator(shown).first.wait_for()
                page.screenshot(path=OUT / f"{name}.png", full_page=True)
        finally:
            up.stop()
            browser.close()
    print(f"wrote {len(list(OUT.glob('*.png')))} screenshots to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
