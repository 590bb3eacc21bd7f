/**
 * The figures the analytics charts show, computed once from the tasks read: counts by bucket, status and
 * project, and the durations of the phases tasks have left (TaskMetrics.queued, .preparing, .computing, .total).
 */
import { isEnded, seconds, timestampMs } from "../../format";
import { TaskStatus, type Task } from "../../gen/simplane/v1/task_pb";
import { bucketIndex, nextBucket, type Range } from "./time_buckets";

export interface Loaded {
  tasks: Task[];
  /** The first bucket's start and the time the range ends, in ms since the epoch. */
  start: number;
  end: number;
  done: boolean;
  capped: boolean;
}

export interface Bucket {
  start: number;
  end: number;
  counts: Map<TaskStatus, number>;
  total: number;
  /** Sorted seconds. */
  queued: number[];
  computing: number[];
}

export interface Summary {
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

export function summarize(loaded: Loaded, range: Range): Summary {
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

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
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
