/** The words and numbers on the charts: axis ticks, bucket times, task counts by status. */
import { statusName } from "../../format";
import type { TaskStatus } from "../../gen/simplane/v1/task_pb";
import { STACK_ORDER } from "./palette";
import type { Bucket } from "./summary";
import { DAY, type Range } from "./time_buckets";

const TIME = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const DATE = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const DATE_TIME = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});

export function tickTime(ms: number, range: Range): string {
  if (range.span <= DAY) return TIME.format(ms);
  return range.bucket >= DAY ? DATE.format(ms) : DATE_TIME.format(ms);
}

export function bucketLabel(b: Bucket, range: Range): string {
  if (range.bucket >= DAY) return DATE.format(b.start);
  return `${DATE_TIME.format(b.start)} – ${TIME.format(b.end)}`;
}

export function tasksText(n: number): string {
  return `${n.toLocaleString()} task${n === 1 ? "" : "s"}`;
}

export function describeCounts(counts: Map<TaskStatus, number>): string {
  const parts = STACK_ORDER.filter((s) => counts.has(s)).map((s) => `${counts.get(s)} ${statusName(s)}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

export function formatTick(s: number): string {
  if (s === 0) return "0";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${s / 60} min`;
  if (s < 86400) return `${+(s / 3600).toFixed(1)} h`;
  return `${+(s / 86400).toFixed(1)} d`;
}

export function percent(part: number, whole: number): string {
  return whole === 0 ? "–" : `${Math.round((part / whole) * 100)}% of ${whole.toLocaleString()} ended`;
}

export function clip(text: string, length: number): string {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}
