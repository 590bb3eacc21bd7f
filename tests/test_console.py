"""The browser console in a real Chromium: live tasks, logs, kill, launch, sign-in, and no script injection."""

from __future__ import annotations

import functools
import re

from browser import sign_in
from playwright.sync_api import expect
from programs import numbered_lines, python
from waiting import eventually

import simplane

TIMEOUT_MS = 15_000


def test_a_task_from_python_appears_live_streams_its_logs_and_is_killed_from_the_console(cluster, page) -> None:
    sign_in(page, cluster.console_url, cluster.api_key)
    client = cluster.client()

    task = client.tasks.submit(numbered_lines(600, every=0.05), name="cavity-flow")
    row = page.get_by_test_id(f"task-row-{task.id}")
    expect(row).to_be_visible(timeout=TIMEOUT_MS)
    expect(row).to_contain_text("cavity-flow")
    expect(page.get_by_test_id(f"task-status-{task.id}")).to_have_text(re.compile("running", re.I), timeout=TIMEOUT_MS)

    row.click()
    expect(page).to_have_url(re.compile(f"/tasks/{task.id}$"))
    # The view follows the end of the log as lines stream in.
    expect(page.get_by_test_id("log-view")).to_contain_text("line 60", timeout=TIMEOUT_MS)

    page.get_by_test_id("kill-button").click()
    page.get_by_test_id("kill-confirm").click()
    expect(page.get_by_test_id(f"task-status-{task.id}")).to_have_text(re.compile("killed", re.I), timeout=TIMEOUT_MS)
    assert task.wait(timeout=30) == simplane.TaskStatus.KILLED
    assert page.errors == []


def test_a_task_launched_from_the_console_with_an_uploaded_file_shows_its_output(cluster, page, tmp_path) -> None:
    sign_in(page, cluster.console_url, cluster.api_key)
    case = tmp_path / "case.txt"
    case.write_text("Reynolds number: 100\n")

    page.get_by_test_id("nav-launch").click()
    page.get_by_test_id("launch-command").fill("cat case.txt")
    page.get_by_test_id("launch-name").fill("from the browser")
    page.get_by_test_id("launch-files").set_input_files(str(case))
    page.get_by_test_id("launch-submit").click()

    expect(page).to_have_url(re.compile(r"/tasks/[^/]+$"), timeout=TIMEOUT_MS)
    task_id = page.url.rsplit("/", 1)[1]
    expect(page.get_by_test_id("log-view")).to_contain_text("Reynolds number: 100", timeout=TIMEOUT_MS)
    task = cluster.client().tasks.get(task_id)
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    assert task.info().name == "from the browser"


def test_the_launch_form_marks_the_fields_the_server_refused(cluster, page) -> None:
    """The server's field violations (status details, not the message) mark the form's fields."""
    sign_in(page, cluster.console_url, cluster.api_key)
    page.get_by_test_id("nav-launch").click()
    page.get_by_test_id("launch-command").fill("true")
    page.get_by_test_id("launch-cpus").fill("5000")
    page.get_by_test_id("launch-submit").click()
    expect(page.get_by_test_id("launch-error-cpus")).to_have_text("must be between 0 and 4096, got 5000")
    expect(page.get_by_test_id("launch-error")).to_have_text(
        "cpus: must be between 0 and 4096, got 5000 (INVALID_ARGUMENT)"
    )

    page.get_by_test_id("launch-cpus").fill("1")
    page.get_by_test_id("launch-ttl").fill("400d")
    page.get_by_test_id("launch-submit").click()
    expect(page.get_by_test_id("launch-error-time_to_live")).to_have_text("must be at most 31622400 s, got 34560000 s")
    expect(page.get_by_test_id("launch-error-cpus")).to_have_count(0)

    # A path into the command ("command[1]") marks the command: the field is read from the details.
    page.get_by_test_id("launch-ttl").fill("")
    page.get_by_test_id("launch-command").fill("echo " + "x" * (128 * 1024 + 1))
    page.get_by_test_id("launch-submit").click()
    expect(page.get_by_test_id("launch-error-command")).to_have_text(
        "holds 131073 characters, more than the 131072 allowed"
    )
    expect(page.get_by_test_id("launch-error-time_to_live")).to_have_count(0)
    assert [task.id for task in cluster.client().tasks.list()] == []
    assert page.errors == []


def test_a_wrong_key_is_refused_and_stays_on_sign_in_with_the_reason(cluster, page) -> None:
    page.goto(cluster.console_url)
    page.get_by_test_id("api-key").fill("sp_nobody_wrong")
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("sign-in-error")).to_contain_text(re.compile("refused|invalid|unauthenticated", re.I))
    expect(page.get_by_test_id("tasks-table")).to_have_count(0)
    assert "/signin" in page.url


def test_markup_printed_or_named_by_a_task_is_shown_as_text_and_never_runs(cluster, page) -> None:
    payload = '<img src=x onerror="window.__pwned = 1"><script>window.__pwned = 2</script>'
    task = cluster.client().tasks.submit(python(f"print({payload!r})"), name=payload)
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    sign_in(page, cluster.console_url, cluster.api_key)

    expect(page.get_by_test_id(f"task-row-{task.id}")).to_contain_text(payload, timeout=TIMEOUT_MS)
    page.get_by_test_id(f"task-row-{task.id}").click()
    expect(page.get_by_test_id("log-line").first).to_have_text(payload, timeout=TIMEOUT_MS)

    assert page.evaluate("window.__pwned") is None
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("body script:not([src])").count() == 0
    assert page.errors == []


def test_ten_tabs_each_following_a_live_log_all_stream_and_an_eleventh_still_opens(cluster, page) -> None:
    """A browser opens at most six HTTP/1.1 connections to a host; streams go over WebSockets, which it counts apart."""
    client = cluster.client()
    printers = [client.tasks.submit(numbered_lines(600, every=0.2), name=f"printer-{i}") for i in range(2)]
    sign_in(page, cluster.console_url, cluster.api_key)
    tabs = [page, *(page.context.new_page() for _ in range(9))]
    for tab in tabs[1:]:
        tab.on("pageerror", lambda error: page.errors.append(str(error)))
    for index, tab in enumerate(tabs):
        tab.goto(f"{cluster.console_url.rstrip('/')}/tasks/{printers[index % 2].id}")
        expect(tab.get_by_test_id("log-line").first).to_have_text(re.compile(r"line \d+"), timeout=TIMEOUT_MS)

    def last_line(tab) -> int:
        return int(tab.get_by_test_id("log-line").last.inner_text().removeprefix("line "))

    # With all ten open, every tab still streams: each shows lines newer than those it showed a moment ago.
    seen = [last_line(tab) for tab in tabs]
    for tab, line in zip(tabs, seen, strict=True):
        eventually(functools.partial(lambda tab, line: last_line(tab) >= line + 3, tab, line), timeout=15)
    eleventh = page.context.new_page()
    eleventh.goto(cluster.console_url)
    expect(eleventh.get_by_test_id(f"task-row-{printers[0].id}")).to_contain_text("printer-0", timeout=TIMEOUT_MS)
    expect(eleventh.get_by_test_id("connection-state")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)
    assert page.errors == []
