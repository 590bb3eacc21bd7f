/**
 * A WatchTasks stream that survives network losses: it reconnects with backoff from the last revision seen, so
 * no change is missed or applied twice, and starts over from a snapshot when the server no longer keeps that
 * revision (OUT_OF_RANGE).
 */
import { Code, ConnectError } from "@connectrpc/connect";

import { errorMessage, tasks } from "./api";
import { WatchEventType, type Task } from "./gen/simplane/v1/task_pb";
import { Backoff, retryable, sleep } from "./reconnect";

/** "live": snapshot received and the stream open; "failed": stopped for good, with the reason. */
export type Connection = "connecting" | "live" | "reconnecting" | "failed";

export interface WatchFilter {
  taskIds?: string[];
  project?: string;
  machineGroup?: string;
  snapshotEndedLimit?: number;
}

export interface WatchHandlers {
  /** The complete set of matching tasks, at the start and again after a fresh snapshot. */
  snapshot(tasks: Task[]): void;
  change(task: Task): void;
  connection(state: Connection, error: string): void;
}

/** Runs until `signal` aborts or the server refuses for good. */
export async function watchTasks(filter: WatchFilter, handlers: WatchHandlers, signal: AbortSignal): Promise<void> {
  const backoff = new Backoff();
  let revision = 0n;
  let error = "";
  handlers.connection("connecting", "");
  while (!signal.aborted) {
    const snapshot: Task[] = [];
    try {
      const stream = tasks.watchTasks(
        {
          taskIds: filter.taskIds ?? [],
          project: filter.project ?? "",
          machineGroup: filter.machineGroup ?? "",
          snapshotEndedLimit: filter.snapshotEndedLimit ?? 0,
          sinceRevision: revision,
        },
        {
          signal,
          // A resumed stream has no snapshot to wait for: it is live once the server answered.
          onHeader: () => revision > 0n && handlers.connection("live", ""),
        },
      );
      for await (const event of stream) {
        switch (event.type) {
          case WatchEventType.SNAPSHOT:
            if (event.task) snapshot.push(event.task);
            break;
          case WatchEventType.SNAPSHOT_END:
            revision = event.revision;
            handlers.snapshot(snapshot);
            handlers.connection("live", "");
            backoff.reset();
            break;
          case WatchEventType.CHANGE:
            revision = event.revision;
            if (event.task) handlers.change(event.task);
            backoff.reset();
            break;
        }
      }
      error = "the server closed the stream";
    } catch (e) {
      if (signal.aborted) return;
      const code = ConnectError.from(e).code;
      if (code === Code.OutOfRange) {
        revision = 0n;
        continue;
      }
      if (!retryable(e)) {
        handlers.connection("failed", errorMessage(e));
        return;
      }
      error = errorMessage(e);
    }
    if (signal.aborted) return;
    handlers.connection("reconnecting", error);
    await sleep(backoff.next(), signal);
  }
}

/** The small "live / reconnecting" indicator of a watch. */
export function ConnectionState({ state, error }: { state: Connection; error: string }) {
  const label = { connecting: "connecting", live: "live", reconnecting: "reconnecting", failed: "stopped" }[state];
  return (
    <span class={`conn ${state}`} title={error} data-testid="connection-state" data-state={state}>
      {label}
      {error && state !== "live" ? `: ${error}` : ""}
    </span>
  );
}
