/**
 * Analytics: the caller's tasks created in a chosen range, read page by page with ListTasks and charted as
 * hand-drawn SVG (no chart library, to keep the bundle small): tasks over time by status, tasks by project, and
 * the time tasks spent queued and computing (TaskMetrics.queued and .computing).
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { useEffect, useMemo, useState } from "preact/hooks";

import { errorMessage, tasks as taskService } from "../api";
import { formatDuration, isEnded, seconds, statusName, timestampMs } from "../format";
import { TaskStatus, type Task } from "../gen/simplane/v1/task_pb";

const PAGE_SIZE = 1000;
/** Beyond this many tasks the page stops reading: charts stay quick and the note says the range was cut. */
const MAX_TASKS = 20_000;

const HOUR = 3600_000;
const DAY = 24 * HOUR;

interface Range {
  key: string;
  label: string;
  span: number;
  bucket: number;
}

const RANGES: Range[] = [
  { key: "1h", label: "Last hour", span: HOUR, bucket: 5 * 60_000 },
  { key: "24h", label: "Last 24 hours", span: DAY, bucket: HOUR },
  { key: "7d", label: "Last 7 days", span: 7 * DAY, bucket: 6 * HOUR },
  { key: "30d", label: "Last 30 days", span: 30 * DAY, bucket: DAY },
];

/** Bottom to top in stacked bars: ended tasks first, then the active ones in the order they progress. */
const STACK_ORDER = [
  TaskStatus.SUCCEEDED,
  TaskStatus.FAILED,
  TaskStatus.KILLED,
  TaskStatus.TIMED_OUT,
  TaskStatus.LOST,
  TaskStatus.FINALIZING,
  TaskStatus.RUNNING,
  TaskStatus.PREPARING,
  TaskStatus.QUEUED,
  TaskStatus.SUBMITTED,
];

const STATUS_COLOR: Record<number, string> = {
  [TaskStatus.SUBMITTED]: "#c3c9d5",
  [TaskStatus.QUEUED]: "#9aa3b5",
  [TaskStatus.PREPARING]: "#e5b43c",
  [TaskStatus.RUNNING]: "#4d7ce6",
  [TaskStatus.FINALIZING]: "#f0cf7a",
  [TaskStatus.SUCCEEDED]: "#3ab36a",
  [TaskStatus.FAILED]: "#d94c4c",
  [TaskStatus.KILLED]: "#a45bbd",
  [TaskStatus.TIMED_OUT]: "#cf93e0",
  [TaskStatus.LOST]: "#8a2b2b",
};

const QUEUED_COLOR = "#9aa3b5";
const COMPUTING_COLOR = "#4d7ce6";

interface Loaded {
  tasks: Task[];
  /** The first bucket's start and the time the range ends, in ms since the epoch. */
  start: number;
  end: number;
  done: boolean;
  capped: boolean;
}

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

function Charts({ loaded, range }: { loaded: Loaded; range: Range }) {
  const stats = useMemo(() => summarize(loaded, range), [loaded, range]);
  if (loaded.done && loaded.tasks.length === 0) {
    return <p class="muted">No tasks were created in this range.</p>;
  }
  return (
    <div class="analytics-charts">
      <div class="cards">
        <Card label="Tasks" value={loaded.tasks.length.toLocaleString()} />
        <Card label="Succeeded" value={percent(stats.succeeded, stats.ended)} />
        <Card label="Active" value={stats.active.toLocaleString()} />
        <Card label="Computing time" value={formatDuration(stats.computingTotal)} />
      </div>

      <h2>Tasks created, by status</h2>
      <figure class="chart" data-testid="chart-over-time">
        <StackedColumns buckets={stats.buckets} range={range} />
        <Legend counts={stats.statusTotals} />
      </figure>

      <h2>Tasks by project</h2>
      <figure class="chart" data-testid="chart-by-project">
        <ProjectBars projects={stats.projects} />
      </figure>

      <h2>Durations</h2>
      <figure class="chart" data-testid="chart-durations">
        <div class="chart-pair">
          <DurationLines
            title="Time in queue"
            color={QUEUED_COLOR}
            buckets={stats.buckets}
            range={range}
            pick={(b) => b.queued}
          />
          <DurationLines
            title="Computing time"
            color={COMPUTING_COLOR}
            buckets={stats.buckets}
            range={range}
            pick={(b) => b.computing}
          />
        </div>
        <p class="muted chart-note">
          Solid line and dots: median; dashed line and rings: 90th percentile, of the tasks created in each interval
          that have left that phase.
        </p>
        <table class="duration-table">
          <thead>
            <tr>
              <th>Phase</th>
              <th class="num">Tasks</th>
              <th class="num">Median</th>
              <th class="num">90th percentile</th>
              <th class="num">Longest</th>
            </tr>
          </thead>
          <tbody>
            {stats.phases.map((p) => (
              <tr key={p.label} data-testid={`duration-${p.label.toLowerCase()}`}>
                <td>{p.label}</td>
                <td class="num">{p.values.length.toLocaleString()}</td>
                <td class="num">{p.values.length ? formatDuration(percentile(p.values, 0.5)) : "–"}</td>
                <td class="num">{p.values.length ? formatDuration(percentile(p.values, 0.9)) : "–"}</td>
                <td class="num">{p.values.length ? formatDuration(p.values[p.values.length - 1]) : "–"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </figure>
    </div>
  );
}

interface Bucket {
  start: number;
  end: number;
  counts: Map<TaskStatus, number>;
  total: number;
  /** Sorted seconds. */
  queued: number[];
  computing: number[];
}

interface Summary {
  buckets: Bucket[];
  statusTotals: Map<TaskStatus, number>;
  projects: { name: string; counts: Map<TaskStatus, number>; total: number }[];
  phases: { label: string; values: number[] }[];
  succeeded: number;
  ended: number;
  active: number;
  computingTotal: number;
}

const MAX_PROJECTS = 12;

function summarize(loaded: Loaded, range: Range): Summary {
  const buckets: Bucket[] = [];
  for (let t = loaded.start; t < loaded.end; t = nextBucket(t, range.bucket)) {
    const end = nextBucket(t, range.bucket);
    buckets.push({ start: t, end, counts: new Map(), total: 0, queued: [], computing: [] });
  }
  const statusTotals = new Map<TaskStatus, number>();
  const projects = new Map<string, Map<TaskStatus, number>>();
  const phases: Record<string, number[]> = { Queued: [], Preparing: [], Computing: [], Total: [] };
  let computingTotal = 0;
  for (const task of loaded.tasks) {
    const created = timestampMs(task.createTime);
    const bucket = buckets[bucketIndex(buckets, created)];
    const status = task.status;
    increment(statusTotals, status);
    const project = task.project || "(no project)";
    if (!projects.has(project)) projects.set(project, new Map());
    increment(projects.get(project)!, status);
    const metrics = task.metrics;
    const left = leftPhases(task);
    if (bucket) {
      increment(bucket.counts, status);
      bucket.total++;
    }
    if (metrics?.queued && left.queue) {
      phases.Queued.push(seconds(metrics.queued));
      bucket?.queued.push(seconds(metrics.queued));
    }
    if (metrics?.preparing && left.preparing) phases.Preparing.push(seconds(metrics.preparing));
    if (metrics?.computing) {
      computingTotal += seconds(metrics.computing);
      if (left.computing) {
        phases.Computing.push(seconds(metrics.computing));
        bucket?.computing.push(seconds(metrics.computing));
      }
    }
    if (metrics?.total && isEnded(status)) phases.Total.push(seconds(metrics.total));
  }
  for (const b of buckets) {
    b.queued.sort(byNumber);
    b.computing.sort(byNumber);
  }
  const ranked = [...projects].map(([name, counts]) => ({ name, counts, total: sum(counts) }));
  ranked.sort((a, b) => b.total - a.total || a.name.localeCompare(b.name));
  if (ranked.length > MAX_PROJECTS) {
    const rest = ranked.splice(MAX_PROJECTS - 1);
    const counts = new Map<TaskStatus, number>();
    for (const p of rest) for (const [s, n] of p.counts) increment(counts, s, n);
    ranked.push({ name: `${rest.length} other projects`, counts, total: sum(counts) });
  }
  const ended = [...statusTotals].filter(([s]) => isEnded(s)).reduce((n, [, c]) => n + c, 0);
  return {
    buckets,
    statusTotals,
    projects: ranked,
    phases: Object.entries(phases).map(([label, values]) => ({ label, values: values.sort(byNumber) })),
    succeeded: statusTotals.get(TaskStatus.SUCCEEDED) ?? 0,
    ended,
    active: loaded.tasks.length - ended,
    computingTotal,
  };
}

/** Which phases the task has finished, so that a phase still under way does not count as its duration. */
function leftPhases(task: Task): { queue: boolean; preparing: boolean; computing: boolean } {
  const reached = new Set(task.history.map((h) => h.status));
  reached.add(task.status);
  const ended = isEnded(task.status);
  return {
    queue: ended || reached.has(TaskStatus.PREPARING) || reached.has(TaskStatus.RUNNING),
    preparing: ended || reached.has(TaskStatus.RUNNING) || reached.has(TaskStatus.FINALIZING),
    computing: ended || reached.has(TaskStatus.FINALIZING),
  };
}

// ---- charts ----

const WIDTH = 760;
const HEIGHT = 240;
const PAD = { left: 52, right: 12, top: 12, bottom: 30 };

function StackedColumns({ buckets, range }: { buckets: Bucket[]; range: Range }) {
  const max = Math.max(1, ...buckets.map((b) => b.total));
  const ticks = countTicks(max);
  const top = ticks[ticks.length - 1];
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const slot = plotW / Math.max(1, buckets.length);
  const barW = Math.max(1, slot * 0.8);
  const y = (v: number) => PAD.top + plotH - (v / top) * plotH;
  return (
    <svg class="chart-svg" viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label="Tasks created over time">
      <YAxis ticks={ticks} y={y} label={(v) => v.toLocaleString()} right={WIDTH - PAD.right} />
      {buckets.map((b, i) => {
        const x = PAD.left + i * slot + (slot - barW) / 2;
        let base = 0;
        return (
          <g key={b.start}>
            <title>{`${bucketLabel(b, range)}: ${tasksText(b.total)}${describeCounts(b.counts)}`}</title>
            <rect x={x} y={PAD.top} width={barW} height={plotH} fill="transparent" />
            {STACK_ORDER.filter((s) => b.counts.has(s)).map((s) => {
              const n = b.counts.get(s)!;
              const rect = (
                <rect
                  key={s}
                  x={x}
                  y={y(base + n)}
                  width={barW}
                  height={y(base) - y(base + n)}
                  fill={STATUS_COLOR[s]}
                />
              );
              base += n;
              return rect;
            })}
          </g>
        );
      })}
      <XAxis buckets={buckets} range={range} slot={slot} />
    </svg>
  );
}

function ProjectBars({ projects }: { projects: Summary["projects"] }) {
  const rowH = 24;
  const labelW = 180;
  const countW = 60;
  const height = PAD.top + projects.length * rowH + 4;
  const plotW = WIDTH - labelW - countW - PAD.right;
  const max = Math.max(1, ...projects.map((p) => p.total));
  return (
    <svg class="chart-svg" viewBox={`0 0 ${WIDTH} ${height}`} role="img" aria-label="Tasks by project">
      {projects.map((p, i) => {
        const y = PAD.top + i * rowH;
        let base = 0;
        return (
          <g key={p.name}>
            <title>{`${p.name}: ${tasksText(p.total)}${describeCounts(p.counts)}`}</title>
            <text x={labelW - 8} y={y + rowH / 2} text-anchor="end" dominant-baseline="middle" class="chart-label">
              {clip(p.name, 26)}
            </text>
            {STACK_ORDER.filter((s) => p.counts.has(s)).map((s) => {
              const n = p.counts.get(s)!;
              const rect = (
                <rect
                  key={s}
                  x={labelW + (base / max) * plotW}
                  y={y + 3}
                  width={Math.max(1, (n / max) * plotW)}
                  height={rowH - 6}
                  fill={STATUS_COLOR[s]}
                />
              );
              base += n;
              return rect;
            })}
            <text
              x={labelW + (p.total / max) * plotW + 6}
              y={y + rowH / 2}
              dominant-baseline="middle"
              class="chart-value"
            >
              {p.total.toLocaleString()}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

function DurationLines(props: {
  title: string;
  color: string;
  buckets: Bucket[];
  range: Range;
  pick: (b: Bucket) => number[];
}) {
  const { buckets, range } = props;
  const width = WIDTH / 2 + 40;
  const plotW = width - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom - 18;
  const top0 = PAD.top + 18;
  const slot = plotW / Math.max(1, buckets.length);
  const points = buckets
    .map((b, i) => ({ i, b, values: props.pick(b) }))
    .filter((p) => p.values.length > 0)
    .map((p) => ({ ...p, median: percentile(p.values, 0.5), p90: percentile(p.values, 0.9) }));
  const ticks = durationTicks(Math.max(0.001, ...points.map((p) => p.p90)));
  const top = ticks[ticks.length - 1];
  const x = (i: number) => PAD.left + i * slot + slot / 2;
  const y = (v: number) => top0 + plotH - (v / top) * plotH;
  const line = (key: "median" | "p90") => points.map((p) => `${x(p.i).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
  return (
    <svg class="chart-svg" viewBox={`0 0 ${width} ${HEIGHT}`} role="img" aria-label={props.title}>
      <text x={PAD.left} y={PAD.top + 6} class="chart-title">
        {props.title}
      </text>
      <YAxis ticks={ticks} y={y} label={formatTick} right={width - PAD.right} />
      {points.length === 0 ? (
        <text x={PAD.left + plotW / 2} y={top0 + plotH / 2} text-anchor="middle" class="chart-label">
          No tasks have finished this phase yet
        </text>
      ) : (
        <g>
          <polyline points={line("p90")} fill="none" stroke={props.color} stroke-width={1.5} stroke-dasharray="5 4" />
          <polyline points={line("median")} fill="none" stroke={props.color} stroke-width={2} />
          {points.map((p) => (
            <g key={p.i}>
              <title>
                {`${bucketLabel(p.b, range)}: median ${formatDuration(p.median)}, 90th percentile ` +
                  `${formatDuration(p.p90)} (${tasksText(p.values.length)})`}
              </title>
              <circle cx={x(p.i)} cy={y(p.median)} r={3} fill={props.color} />
              <circle cx={x(p.i)} cy={y(p.p90)} r={2.5} fill="#fff" stroke={props.color} stroke-width={1.5} />
              <rect x={x(p.i) - slot / 2} y={top0} width={slot} height={plotH} fill="transparent" />
            </g>
          ))}
        </g>
      )}
      <XAxis buckets={buckets} range={range} slot={slot} maxLabels={4} />
    </svg>
  );
}

function YAxis(props: { ticks: number[]; y: (v: number) => number; label: (v: number) => string; right: number }) {
  const { ticks, y, label } = props;
  return (
    <g class="chart-axis">
      {ticks.map((t) => (
        <g key={t}>
          <line x1={PAD.left} x2={props.right} y1={y(t)} y2={y(t)} class="chart-grid" />
          <text x={PAD.left - 6} y={y(t)} text-anchor="end" dominant-baseline="middle" class="chart-label">
            {label(t)}
          </text>
        </g>
      ))}
    </g>
  );
}

function XAxis(props: { buckets: Bucket[]; range: Range; slot: number; maxLabels?: number }) {
  const { buckets, range, slot, maxLabels = 8 } = props;
  const every = Math.max(1, Math.ceil(buckets.length / maxLabels));
  return (
    <g class="chart-axis">
      {buckets.map((b, i) =>
        i % every === 0 ? (
          <text
            key={b.start}
            x={PAD.left + i * slot + slot / 2}
            y={HEIGHT - PAD.bottom + 16}
            text-anchor="middle"
            class="chart-label"
          >
            {tickTime(b.start, range)}
          </text>
        ) : null,
      )}
    </g>
  );
}

function Legend({ counts }: { counts: Map<TaskStatus, number> }) {
  return (
    <figcaption class="chart-legend">
      {STACK_ORDER.filter((s) => counts.has(s)).map((s) => (
        <span key={s} class="chart-legend-item" data-testid={`legend-${statusName(s).toLowerCase()}`}>
          <span class="chart-swatch" style={{ background: STATUS_COLOR[s] }} />
          {statusName(s)} {(counts.get(s) ?? 0).toLocaleString()}
        </span>
      ))}
    </figcaption>
  );
}

function Card({ label, value }: { label: string; value: string }) {
  return (
    <div class="card">
      <div class="label">{label}</div>
      <div class="value">{value}</div>
    </div>
  );
}

// ---- numbers and times ----

/** The start of the local-time bucket holding `ms`: whole hours, or local midnight for day buckets. */
function alignToBucket(ms: number, bucket: number): number {
  if (bucket >= DAY) {
    const d = new Date(ms);
    d.setHours(0, 0, 0, 0);
    return d.getTime();
  }
  const offset = new Date(ms).getTimezoneOffset() * 60_000;
  return Math.floor((ms - offset) / bucket) * bucket + offset;
}

/** The next bucket's start; day buckets follow the calendar so daylight-saving days stay aligned. */
function nextBucket(start: number, bucket: number): number {
  if (bucket < DAY) return start + bucket;
  const d = new Date(start);
  d.setDate(d.getDate() + bucket / DAY);
  return d.getTime();
}

function bucketIndex(buckets: Bucket[], ms: number): number {
  let lo = 0;
  let hi = buckets.length - 1;
  if (hi < 0 || ms < buckets[0].start) return -1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (buckets[mid].start <= ms) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

const TIME = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const DATE = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const DATE_TIME = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});

function tickTime(ms: number, range: Range): string {
  if (range.span <= DAY) return TIME.format(ms);
  return range.bucket >= DAY ? DATE.format(ms) : DATE_TIME.format(ms);
}

function bucketLabel(b: Bucket, range: Range): string {
  if (range.bucket >= DAY) return DATE.format(b.start);
  return `${DATE_TIME.format(b.start)} – ${TIME.format(b.end)}`;
}

function tasksText(n: number): string {
  return `${n.toLocaleString()} task${n === 1 ? "" : "s"}`;
}

function describeCounts(counts: Map<TaskStatus, number>): string {
  const parts = STACK_ORDER.filter((s) => counts.has(s)).map((s) => `${counts.get(s)} ${statusName(s)}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

/** Evenly spaced ticks from 0 to a round number at or above `max`, with steps of 1, 2 or 5 times a power of 10. */
function countTicks(max: number): number[] {
  const rough = max / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) ?? power * 10);
  const ticks: number[] = [];
  for (let t = 0; t <= max + step - 1e-9 && ticks.length < 12; t += step) {
    ticks.push(t);
    if (t >= max) break;
  }
  return ticks;
}

/** Steps that read well as durations: seconds, minutes, hours, days. */
const DURATION_STEPS = [
  0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800,
  432000, 864000,
];

function durationTicks(max: number): number[] {
  const step = DURATION_STEPS.find((s) => s >= max / 4) ?? Math.ceil(max / 4 / 86400) * 86400;
  const ticks: number[] = [];
  for (let t = 0; ticks.length < 12; t += step) {
    ticks.push(t);
    if (t >= max) break;
  }
  return ticks;
}

function formatTick(s: number): string {
  if (s === 0) return "0";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${s / 60} min`;
  if (s < 86400) return `${+(s / 3600).toFixed(1)} h`;
  return `${+(s / 86400).toFixed(1)} d`;
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

function percent(part: number, whole: number): string {
  return whole === 0 ? "–" : `${Math.round((part / whole) * 100)}% of ${whole.toLocaleString()} ended`;
}

function increment<K>(map: Map<K, number>, key: K, by = 1): void {
  map.set(key, (map.get(key) ?? 0) + by);
}

function sum(counts: Map<TaskStatus, number>): number {
  let total = 0;
  for (const n of counts.values()) total += n;
  return total;
}

function byNumber(a: number, b: number): number {
  return a - b;
}

function clip(text: string, length: number): string {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}
