/**
 * Analytics: the caller's tasks created in a chosen range, read page by page with ListTasks and charted as
 * hand-drawn SVG (no chart library, to keep the bundle small): tasks over time by status, tasks by project, and
 * the time tasks spent queued and computing (TaskMetrics.queued and .computing). This file reads the tasks; the
 * figures and the charts live in analytics/.
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { useEffect, useState } from "preact/hooks";

import { errorMessage, tasks as taskService } from "../api";
import type { Task } from "../gen/simplane/v1/task_pb";
import { Charts } from "./analytics/charts";
import type { Loaded } from "./analytics/summary";
import { alignToBucket, RANGES } from "./analytics/time_buckets";

const PAGE_SIZE = 1000;
/** Beyond this many tasks the page stops reading: charts stay quick and the note says the range was cut. */
const MAX_TASKS = 20_000;

export function AnalyticsPage() {
  const [rangeKey, setRangeKey] = useState("24h");
  const [reloads, setReloads] = useState(0);
  const [loaded, setLoaded] = useState<Loaded | null>(null);
  const [error, setError] = useState("");
  const range = RANGES.find((r) => r.key === rangeKey) ?? RANGES[1];

  useEffect(() => {
    const abort = new AbortController();
    const end = Date.now();
    const start = alignToBucket(end - range.span, range.bucket);
    setLoaded({ tasks: [], start, end, done: false, capped: false });
    setError("");
    (async () => {
      const found: Task[] = [];
      let pageToken = "";
      do {
        const page = await taskService.listTasks(
          { createdAfter: timestampFromMs(start), pageSize: PAGE_SIZE, pageToken },
          { signal: abort.signal },
        );
        if (abort.signal.aborted) return;
        found.push(...page.tasks);
        pageToken = page.nextPageToken;
        const capped = found.length >= MAX_TASKS && pageToken !== "";
        const done = pageToken === "" || capped;
        setLoaded({ tasks: found.slice(0, MAX_TASKS), start, end, done, capped });
        if (done) break;
      } while (!abort.signal.aborted);
    })().catch((e) => {
      if (abort.signal.aborted || (e instanceof ConnectError && e.code === Code.Canceled)) return;
      setError(errorMessage(e));
      setLoaded((old) => old && { ...old, done: true });
    });
    return () => abort.abort();
  }, [range, reloads]);

  return (
    <section class="page analytics-page" data-testid="analytics-page">
      <div class="toolbar">
        <h1>Analytics</h1>
        <span class="spacer" />
        <select
          data-testid="analytics-range"
          value={range.key}
          onChange={(e) => setRangeKey(e.currentTarget.value)}
          aria-label="Range"
        >
          {RANGES.map((r) => (
            <option key={r.key} value={r.key}>
              {r.label}
            </option>
          ))}
        </select>
        <button type="button" disabled={!loaded?.done} onClick={() => setReloads((n) => n + 1)}>
          Refresh
        </button>
      </div>
      {error && (
        <p class="error" data-testid="analytics-error">
          {error}
        </p>
      )}
      {loaded && !loaded.done && (
        <p class="muted" data-testid="analytics-loading">
          Loading tasks… {loaded.tasks.length.toLocaleString()} so far
        </p>
      )}
      {loaded?.capped && (
        <p class="muted" data-testid="analytics-capped">
          Showing the newest {MAX_TASKS.toLocaleString()} tasks of this range; older ones are left out, so the first
          buckets count fewer tasks than ran.
        </p>
      )}
      {loaded && (loaded.done || loaded.tasks.length > 0) && <Charts loaded={loaded} range={range} />}
      <p class="muted" data-testid="analytics-costs">
        Costs appear here when the API serves them.
      </p>
    </section>
  );
}
