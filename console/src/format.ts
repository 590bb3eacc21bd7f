/**
 * How values read in the console: statuses, durations, times and sizes. Every page formats through here.
 *
 * Contract for the pages (stable): statusName, statusClass, isEnded, formatDuration(seconds), seconds(Duration),
 * formatTime(Timestamp | Date), timestampMs(Timestamp), formatBytes(n).
 */
import { timestampMs as wktTimestampMs, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";

import { TaskStatus } from "./gen/simplane/v1/task_pb";

const ENDED = new Set([
  TaskStatus.SUCCEEDED,
  TaskStatus.FAILED,
  TaskStatus.KILLED,
  TaskStatus.TIMED_OUT,
  TaskStatus.LOST,
]);

/** The status as the API names it, without the prefix: "RUNNING", "TIMED_OUT". */
export function statusName(status: TaskStatus): string {
  return TaskStatus[status] ?? `STATUS_${status}`;
}

/** CSS classes of a status badge: "status status-running". */
export function statusClass(status: TaskStatus): string {
  return `status status-${statusName(status).toLowerCase().replace(/_/g, "-")}`;
}

export function isEnded(status: TaskStatus): boolean {
  return ENDED.has(status);
}

export function seconds(duration: Duration | undefined): number {
  if (!duration) return 0;
  return Number(duration.seconds) + duration.nanos / 1e9;
}

/** "850 ms", "12.4 s", "3m 05s", "2h 07m", "3d 04h". */
export function formatDuration(totalSeconds: number): string {
  if (!Number.isFinite(totalSeconds) || totalSeconds < 0) return "–";
  if (totalSeconds < 1) return `${Math.round(totalSeconds * 1000)} ms`;
  if (totalSeconds < 60) return `${totalSeconds.toFixed(1)} s`;
  const whole = Math.floor(totalSeconds);
  const pad = (n: number) => String(n).padStart(2, "0");
  if (whole < 3600) return `${Math.floor(whole / 60)}m ${pad(whole % 60)}s`;
  if (whole < 86400) return `${Math.floor(whole / 3600)}h ${pad(Math.floor(whole / 60) % 60)}m`;
  return `${Math.floor(whole / 86400)}d ${pad(Math.floor(whole / 3600) % 24)}h`;
}

export function timestampMs(time: Timestamp | undefined): number {
  return time ? wktTimestampMs(time) : 0;
}

/** Local date and time to the second, "2025-03-04 15:06:07"; "–" when unset. */
export function formatTime(time: Timestamp | Date | undefined): string {
  if (!time) return "–";
  const date = time instanceof Date ? time : new Date(wktTimestampMs(time));
  if (date.getTime() === 0) return "–";
  const pad = (n: number) => String(n).padStart(2, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

/** "512 B", "1.5 KiB", "3.2 GiB". */
export function formatBytes(n: number | bigint): string {
  let value = Number(n);
  if (value < 1024) return `${value} B`;
  for (const unit of ["KiB", "MiB", "GiB", "TiB"]) {
    value /= 1024;
    if (value < 1024 || unit === "TiB") return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${unit}`;
  }
  return `${value} B`;
}
