/** The colours of the charts: one per task status, stacked in a fixed order, and one per duration phase. */
import { TaskStatus } from "../../gen/simplane/v1/task_pb";

/** Bottom to top in stacked bars: ended tasks first, then the active ones in the order they progress. */
export const STACK_ORDER = [
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

export const STATUS_COLOR: Record<number, string> = {
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

export const QUEUED_COLOR = "#9aa3b5";
export const COMPUTING_COLOR = "#4d7ce6";
