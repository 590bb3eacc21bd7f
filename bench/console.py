"""The web console's speed in a real Chromium, as JSON: `python bench/console.py [--quick]`.

Starts `simplane up` (SQLite, one local agent) and measures what a browser user feels: the bundle's size,
the first load of the tasks page over loopback, how long a status change takes to reach the open table,
and whether the log viewer keeps up with a task printing 10,000 lines/s. Targets are in docs/benchmarks.md.
Needs Chromium (`apt-get install -y chromium`) and Playwright for Python (in the dev extras).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench import Up, percentile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import launch
from programs import python

BUNDLE = Path(__file__).resolve().parent.parent / "server" / "console_bundle"

# Records when each task's status cell first shows each status, in the page's wall clock (ms since the epoch).
WATCH_STATUS_CELLS = """() => {
  window.__seen = {};
  const note = () => {
    for (const cell of document.querySelectorAll('[data-testid^="task-status-"]')) {
      const key = cell.dataset.testid.slice('task-status-'.length) + ' ' + cell.textContent.trim().toLowerCase();
      if (!(key in window.__seen)) window.__seen[key] = Date.now();
    }
  };
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true, characterData: true});
  note();
}"""

# Records the gaps between animation frames, to tell a smooth page from a frozen one.
WATCH_FRAMES = """() => {
  window.__gaps = [];
  let last = performance.now();
  const tick = (now) => { window.__gaps.push(now - last); last = now; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""


def bundle_size() -> dict:
    """What a first load fetches: index.html and the assets it names, raw and gzipped."""
    files = [BUNDLE / "index.html", *sorted(p for p in (BUNDLE / "assets").iterdir() if not p.name.endswith(".gz"))]
    raw = sum(p.stat().st_size for p in files)
    packed = sum(len(gzip.compress(p.read_bytes(), 9)) for p in files)
    return {"files": len(files), "raw_kb": round(raw / 1024, 1), "gzip_kb": round(packed / 1024, 1)}


def signed_in_state(browser, up: Up) -> dict:
    """The browser storage of a signed-in user, to open cold pages that skip the sign-in form."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(up.console_url)
    page.get_by_test_id("api-key").fill(up.api_key)
    page.get_by_test_id("sign-in").click()
    page.get_by_test_id("tasks-table").wait_for()
    state = context.storage_state()
    context.close()
    return state


def first_load(browser, up: Up, state: dict, runs: int) -> dict:
    """From navigation start to the tasks table showing its rows, in a fresh context (empty cache) each time."""
    times = []
    for _ in range(runs):
        context = browser.new_context(storage_state=state)
        page = context.new_page()
        page.goto(up.console_url + "tasks")
        page.wait_for_selector('[data-testid^="task-row-"]')
        times.append(page.evaluate("performance.now()"))
        context.close()
    return {"runs": runs, "p50_ms": round(percentile(times, 0.5), 1), "max_ms": round(max(times), 1)}


def status_latency(browser, up: Up, state: dict, count: int) -> dict:
    """From the server's commit of a new task (its create_time) to its row in the open table showing it."""
    context = browser.new_context(storage_state=state)
    page = context.new_page()
    page.goto(up.console_url + "tasks")
    page.get_by_test_id("tasks-table").wait_for()
    page.evaluate(WATCH_STATUS_CELLS)
    latencies = []
    with up.client() as client:
        for _ in range(count):
            task = client.tasks.submit(["true"])
            created_ms = task.info().create_time.timestamp() * 1000
            page.wait_for_function(
                "id => Object.keys(window.__seen).some(k => k.startsWith(id + ' '))", arg=task.id, timeout=10_000
            )
            seen = page.evaluate(
                "id => Math.min(...Object.entries(window.__seen).filter(([k]) => k.startsWith(id + ' ')).map(e => e[1]))",
                task.id,
            )
            latencies.append(seen - created_ms)
            task.wait(timeout=30)
    context.close()
    return {
        "tasks": count,
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
    }


def log_viewer(browser, up: Up, state: dict, seconds: int) -> dict:
    """A task prints 10,000 lines/s (100 every 10 ms) while its page is open and following."""
    lines = 10_000 * seconds
    program = python(
        "import sys, time\n"
        "start = time.monotonic()\n"
        f"for batch in range({lines // 100}):\n"
        "    sys.stdout.write(''.join(f'line {batch * 100 + i} of the solver output\\n' for i in range(100)))\n"
        "    sys.stdout.flush()\n"
        "    delay = start + (batch + 1) * 0.01 - time.monotonic()\n"
        "    if delay > 0:\n"
        "        time.sleep(delay)\n"
    )
    context = browser.new_context(storage_state=state)
    page = context.new_page()
    with up.client() as client:
        task = client.tasks.submit(program)
        page.goto(f"{up.console_url}tasks/{task.id}")
        page.get_by_test_id("log-view").wait_for()
        page.evaluate(WATCH_FRAMES)
        task.wait(timeout=seconds * 10 + 30)
        ended = time.monotonic()
        page.wait_for_function(
            "n => parseInt(document.querySelector('[data-testid=log-count]').textContent.replace(/\\D/g, '')) >= n",
            arg=lines,
            timeout=60_000,
        )
        caught_up = time.monotonic() - ended
    shown = int("".join(ch for ch in page.get_by_test_id("log-count").inner_text() if ch.isdigit()))
    last_line = page.get_by_test_id("log-line").last.inner_text()
    gaps = page.evaluate("window.__gaps")
    context.close()
    return {
        "lines_printed": lines,
        "lines_shown": shown,
        "last_line_shown": last_line,
        "caught_up_after_end_ms": round(caught_up * 1000, 1),
        "frame_gap_p50_ms": round(percentile(gaps, 0.5), 1),
        "frame_gap_p99_ms": round(percentile(gaps, 0.99), 1),
        "frame_gap_max_ms": round(max(gaps), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    quick = parser.parse_args().quick
    from playwright.sync_api import sync_playwright

    results: dict = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "bundle": bundle_size(),
    }
    with tempfile.TemporaryDirectory() as root, sync_playwright() as playwright:
        browser = launch(playwright)
        up = Up(Path(root))
        try:
            with up.client() as client:
                for i in range(20):
                    client.tasks.submit(["true"], name=f"warm-up {i}")
            state = signed_in_state(browser, up)
            results["first_load"] = first_load(browser, up, state, 3 if quick else 10)
            results["status_to_table"] = status_latency(browser, up, state, 10 if quick else 50)
            results["log_viewer_10k_lines_per_s"] = log_viewer(browser, up, state, 2 if quick else 10)
        finally:
            up.stop()
            browser.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
