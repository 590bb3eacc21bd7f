/** Durations of tasks that are still running, which grow with the clock rather than with changes. */
import { useEffect, useState } from "preact/hooks";

import { isEnded, seconds, timestampMs } from "./format";
import type { Task } from "./gen/simplane/v1/task_pb";

/** Seconds from submission to the end, or to `now` while the task is active. */
export function taskDuration(task: Task, now: number): number {
  if (isEnded(task.status)) return seconds(task.metrics?.total);
  return Math.max(0, (now - timestampMs(task.createTime)) / 1000);
}

/** The current time in milliseconds, ticking each second while `active`. */
export function useNow(active: boolean): number {
  const [now, setNow] = useState(Date.now);
  useEffect(() => {
    if (!active) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [active]);
  return now;
}
