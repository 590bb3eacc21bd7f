"""The web console's speed in a real Chromium, as JSON: `python bench/console.py [--quick]`.

Starts `simplane up` (SQLite, one local agent) and measures what a browser user feels: the bundle's size,
the first load of the tasks page over loopback, how long a status change takes to reach the open table,
whether the log viewer keeps up with a task printing 10,000 lines/s, whether the table stays smooth while
10,000 tasks run, and whether the viewer stays responsive holding a million lines. Targets are in
docs/benchmarks.md.
Needs Chromium (`apt-get install -y chromium`) and Playwright for Python (in the dev extras).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import Up, percentile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import launch
from programs import python

import simplane

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

# Records the gaps between animation frames, to tell a smooth page from a frozen one, and the page's own long
# tasks (over 50 ms of script, layout or paint), to tell a busy page from a machine too busy to draw it.
WATCH_FRAMES = """() => {
  window.__gaps = [];
  window.__long = [];
  let last = performance.now();
  const tick = (now) => { window.__gaps.push(now - last); last = now; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__long.push(e.duration); })
    .observe({type: 'longtask'});
}"""


# Types a task ID into the search box and resolves with the ms until the table shows that task's row alone.
SEARCH = """id => new Promise((resolve) => {
  const input = document.querySelector('[data-testid=task-search]');
  const found = () => document.querySelector(`[data-testid="task-row-${id}"]`)
    && document.querySelectorAll('[data-testid^="task-row-"]').length === 1;
  const start = performance.now();
  new MutationObserver((_, observer) => {
    if (found()) { observer.disconnect(); resolve(performance.now() - start); }
  }).observe(document.body, {subtree: true, childList: true});
  input.value = id;
  input.dispatchEvent(new Event('input', {bubbles: true}));
})"""


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
            created = task.info().create_time
            assert created is not None  # every submitted task has one
            created_ms = created.timestamp() * 1000
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
    gaps = frame_gaps(page)
    context.close()
    return {
        "lines_printed": lines,
        "lines_shown": shown,
        "last_line_shown": last_line,
        "caught_up_after_end_ms": round(caught_up * 1000, 1),
        **gaps,
    }


def frame_gaps(page) -> dict:
    """The gaps between animation frames since WATCH_FRAMES ran: a smooth page draws one every 16.7 ms."""
    gaps, long = page.evaluate("[window.__gaps, window.__long]")
    return {
        "frame_gap_p50_ms": round(percentile(gaps, 0.5), 1),
        "frame_gap_p99_ms": round(percentile(gaps, 0.99), 1),
        "frame_gap_max_ms": round(max(gaps), 1),
        "long_tasks": len(long),
        "long_task_max_ms": round(max(long, default=0), 1),
    }


def renderer_cpu(trace: bytes, seconds: float) -> dict:
    """The page's main-thread CPU time from a Chromium trace: the share of a core it used, and its longest task.

    On this 2-core machine the server, the agent, the tasks and the browser share the CPU, so a frame can wait
    for a core even when the page has nothing to do; CPU time tells the page's own cost apart from that wait.
    """
    events = json.loads(trace)
    events = events["traceEvents"] if isinstance(events, dict) else events
    main = {
        (e["pid"], e["tid"])
        for e in events
        if e.get("ph") == "M" and e.get("name") == "thread_name" and e["args"].get("name") == "CrRendererMain"
    }
    tasks = [e.get("tdur", 0) / 1000 for e in events if e.get("name") == "RunTask" and (e["pid"], e["tid"]) in main]
    return {
        "page_main_thread_cpu_percent": round(sum(tasks) / 10 / seconds, 1),
        "page_longest_task_cpu_ms": round(max(tasks, default=0), 1),
    }


async def _submit_trivial(up: Up, count: int, project: str) -> list[str]:
    async with up.async_client() as client:
        limit = asyncio.Semaphore(100)

        async def one(i: int) -> str:
            async with limit:
                return (await client.tasks.submit(["true"], name=f"{project} {i}", project=project)).id

        return await asyncio.gather(*(one(i) for i in range(count)))


def table_under_load(browser, up: Up, state: dict, count: int) -> dict:
    """The open tasks table while `count` trivial tasks are submitted and run, then a search for the oldest."""
    project = "table-load"
    context = browser.new_context(storage_state=state)
    page = context.new_page()
    page.goto(up.console_url + "tasks")
    page.get_by_test_id("tasks-table").wait_for()
    page.evaluate(WATCH_FRAMES)
    submitter = threading.Thread(target=lambda: asyncio.run(_submit_trivial(up, count, project)))
    browser.start_tracing(page=page, categories=["devtools.timeline", "disabled-by-default-devtools.timeline"])
    started = time.monotonic()
    with up.client() as client:
        submitter.start()
        ended: set[str] = set()
        for event in client.tasks.watch(project=project):
            if event.task is not None and event.task.status.is_terminal:
                ended.add(event.task.id)
                if len(ended) == count:
                    break
        all_ended = time.monotonic()
        submitter.join()
        newest = next(iter(client.tasks.list(project=project, limit=1))).id
        # The newest task is on view and every row shows its task's end: the table has caught up.
        page.wait_for_function(
            """newest => {
              const cells = [...document.querySelectorAll('[data-testid^="task-status-"]')];
              return document.querySelector(`[data-testid="task-row-${newest}"]`) !== null
                && cells.every(c => c.textContent.trim().toLowerCase() === 'succeeded');
            }""",
            arg=newest,
            timeout=60_000,
        )
        settled = time.monotonic()
        cpu = renderer_cpu(browser.stop_tracing(), settled - started)
        gaps = frame_gaps(page)
        *_, oldest = (task.id for task in client.tasks.list(project=project))
        search_ms = page.evaluate(SEARCH, oldest)
    context.close()
    return {
        "tasks": count,
        "all_ended_seconds": round(all_ended - started, 1),
        "table_caught_up_after_end_ms": round((settled - all_ended) * 1000, 1),
        **gaps,
        **cpu,
        "search_oldest_ms_incl_300ms_debounce": round(search_ms, 1),
    }


MILLION_LINES = python(
    "import sys\n"
    "write = sys.stdout.write\n"
    "for start in range(0, 1_000_000, 10_000):\n"
    "    write(''.join(f'line {i} of the solver output\\n' for i in range(start, start + 10_000)))\n"
)


def log_viewer_million_lines(browser, up: Up, state: dict) -> dict:
    """A task writes a million lines at once; its page follows them all, then scrolls to the top and the middle."""
    lines = 1_000_000
    context = browser.new_context(storage_state=state)
    page = context.new_page()
    with up.client() as client:
        started = time.monotonic()
        task = client.tasks.submit(MILLION_LINES)
        page.goto(f"{up.console_url}tasks/{task.id}")
        page.get_by_test_id("log-view").wait_for()
        page.evaluate(WATCH_FRAMES)
        browser.start_tracing(page=page, categories=["devtools.timeline", "disabled-by-default-devtools.timeline"])
        page.wait_for_function(
            "n => parseInt(document.querySelector('[data-testid=log-count]').textContent.replace(/\\D/g, '')) >= n",
            arg=lines,
            timeout=120_000,
        )
        all_shown = time.monotonic() - started
        cpu = renderer_cpu(browser.stop_tracing(), all_shown)
        assert task.wait(timeout=60) == simplane.TaskStatus.SUCCEEDED
    gaps = frame_gaps(page)
    scrolls = {}
    for name, line in (("top", 0), ("middle", lines // 2), ("bottom", lines - 1)):
        began = time.monotonic()
        page.evaluate(
            "line => { const v = document.querySelector('[data-testid=log-view]'); v.scrollTop = line * 16; }", line
        )
        page.locator('[data-testid="log-line"]', has_text=f"line {line} of the solver output").first.wait_for()
        scrolls[f"scroll_to_{name}_ms"] = round((time.monotonic() - began) * 1000, 1)
    heap = page.evaluate("performance.memory.usedJSHeapSize")
    rendered = page.get_by_test_id("log-line").count()
    context.close()
    return {
        "lines": lines,
        "submit_to_all_shown_seconds": round(all_shown, 2),
        **gaps,
        **cpu,
        **scrolls,
        "line_elements_in_dom": rendered,
        "js_heap_mib": round(heap / 2**20, 1),
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
            results["table_under_load"] = table_under_load(browser, up, state, 500 if quick else 10_000)
            results["log_viewer_million_lines"] = log_viewer_million_lines(browser, up, state)
        finally:
            up.stop()
            browser.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
