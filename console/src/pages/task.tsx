/**
 * One task: its live status (WatchTasks on its ID), kill, the time spent in each status, metrics, details, files
 * and the log viewer.
 */
import { Fragment } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

import { errorMessage, tasks as taskService } from "../api";
import { download } from "../download";
import {
  formatBytes,
  formatDuration,
  formatTime,
  isEnded,
  seconds,
  statusClass,
  statusName,
  timestampMs,
} from "../format";
import type { Task, TaskFile } from "../gen/simplane/v1/task_pb";
import { LogViewer } from "../logs";
import { link } from "../router";
import { taskDuration, useNow } from "../task_clock";
import { ConnectionState, watchTasks, type Connection } from "../task_watch";

export function TaskPage({ taskId }: { taskId: string }) {
  const [task, setTask] = useState<Task | null>(null);
  const [connection, setConnection] = useState<Connection>("connecting");
  const [error, setError] = useState("");

  useEffect(() => {
    const controller = new AbortController();
    const keep = (next: Task) => setTask((old) => (old && old.revision > next.revision ? old : next));
    void watchTasks(
      { taskIds: [taskId] },
      {
        snapshot: (list) => list.forEach(keep),
        change: keep,
        connection: (state, reason) => {
          setConnection(state);
          setError(reason);
        },
      },
      controller.signal,
    );
    return () => controller.abort();
  }, [taskId]);

  if (!task) {
    return (
      <div>
        <p>
          <a {...link("/tasks")}>← Tasks</a>
        </p>
        {connection === "failed" ? (
          <p class="error" data-testid="task-error">
            {error}
          </p>
        ) : (
          <p class="muted">Loading task {taskId}…</p>
        )}
      </div>
    );
  }
  return <TaskView task={task} connection={connection} error={error} />;
}

function TaskView({ task, connection, error }: { task: Task; connection: Connection; error: string }) {
  const ended = isEnded(task.status);
  const now = useNow(!ended);
  const listing = useTaskFiles(task);
  return (
    <div>
      <p>
        <a {...link("/tasks")}>← Tasks</a>
      </p>
      <div class="taskhead">
        <h1 data-testid="task-name">{task.name || task.id}</h1>
        <span class="mono muted" data-testid="task-id">
          {task.id}
        </span>
        <span class={statusClass(task.status)} data-testid={`task-status-${task.id}`}>
          {statusName(task.status)}
        </span>
        <span class="spacer" style="flex:1" />
        <ConnectionState state={connection} error={error} />
        {!ended && <KillButton task={task} />}
      </div>
      {task.error && (
        <p class="error" data-testid="task-error-detail">
          {task.error}
        </p>
      )}
      {!ended && task.warning && (
        <p class="warning" data-testid="task-warning">
          ⚠ {task.warning}
        </p>
      )}
      <Metrics task={task} now={now} />
      <h2>Status timeline</h2>
      <Timeline task={task} now={now} />
      <h2>Details</h2>
      <Details task={task} />
      <h2>Files</h2>
      <Files task={task} listing={listing} />
      <h2>Logs</h2>
      <LogViewer taskId={task.id} files={listing.files.map((f) => f.path)} />
    </div>
  );
}

function KillButton({ task }: { task: Task }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");

  async function kill() {
    setBusy(true);
    setError("");
    try {
      await taskService.killTask({ taskId: task.id });
      dialog.current?.close();
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <>
      <button type="button" class="danger" onClick={() => dialog.current?.showModal()} data-testid="kill-button">
        Kill
      </button>
      <dialog ref={dialog} data-testid="kill-dialog">
        <p>
          Kill task <strong>{task.name || task.id}</strong>? Its process gets SIGTERM, then SIGKILL after the grace
          period; it ends as KILLED.
        </p>
        {error && <p class="error">{error}</p>}
        <div class="dialog-buttons">
          <button type="button" onClick={() => dialog.current?.close()}>
            Cancel
          </button>
          <button type="button" class="danger" disabled={busy} onClick={kill} data-testid="kill-confirm">
            Kill task
          </button>
        </div>
      </dialog>
    </>
  );
}

function Metrics({ task, now }: { task: Task; now: number }) {
  const m = task.metrics;
  const cards: [string, string][] = [
    ["Total", formatDuration(taskDuration(task, now))],
    ["Queued", formatDuration(seconds(m?.queued))],
    ["Preparing", formatDuration(seconds(m?.preparing))],
    ["Computing", formatDuration(seconds(m?.computing))],
    ["Finalizing", formatDuration(seconds(m?.finalizing))],
    ["Inputs", `${formatBytes(m?.inputBytes ?? 0n)} in ${m?.inputFiles ?? 0n} files`],
    ["Outputs", `${formatBytes(m?.outputBytes ?? 0n)} in ${m?.outputFiles ?? 0n} files`],
  ];
  return (
    <div class="cards" data-testid="task-metrics">
      {cards.map(([label, value]) => (
        <div class="card" key={label}>
          <div class="label">{label}</div>
          <div class="value">{value}</div>
        </div>
      ))}
    </div>
  );
}

function Timeline({ task, now }: { task: Task; now: number }) {
  const history = task.history;
  const ended = isEnded(task.status);
  const spans = history.map((step, i) => {
    const start = timestampMs(step.time);
    const last = i === history.length - 1;
    const end = last ? (ended ? start : now) : timestampMs(history[i + 1].time);
    return { step, start, spent: Math.max(0, (end - start) / 1000), last };
  });
  const total = spans.reduce((sum, s) => sum + s.spent, 0) || 1;
  return (
    <div data-testid="task-timeline">
      <div class="timeline">
        {spans
          .filter((s) => s.spent > 0)
          .map((s, i) => (
            <div
              key={i}
              class={`status-bg-${statusName(s.step.status).toLowerCase().replace(/_/g, "-")}`}
              style={{ flexGrow: s.spent / total }}
              title={`${statusName(s.step.status)}: ${formatDuration(s.spent)}`}
            />
          ))}
      </div>
      <table>
        <thead>
          <tr>
            <th>Status</th>
            <th>Since</th>
            <th class="num">Time spent</th>
            <th>Detail</th>
          </tr>
        </thead>
        <tbody>
          {spans.map((s, i) => (
            <tr key={i}>
              <td>
                <span class={statusClass(s.step.status)}>{statusName(s.step.status)}</span>
              </td>
              <td>{formatTime(s.step.time)}</td>
              <td class="num">{s.last && ended ? "–" : formatDuration(s.spent)}</td>
              <td class="wrap">{s.step.detail}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Details({ task }: { task: Task }) {
  const rows: [string, string][] = [
    ["Command", task.command.map(quote).join(" ")],
    ["Project", task.project || "–"],
    ["Machine group", task.machineGroup],
    ["Machine", task.machineId || "–"],
    ["Owner", task.owner],
    ["CPUs", String(task.cpus)],
    ["Attempt", String(task.attempt)],
    ["Exit code", task.exitCode === undefined ? "–" : String(task.exitCode)],
    ["Time to live", seconds(task.timeToLive) ? formatDuration(seconds(task.timeToLive)) : "no limit"],
    ["Environment", Object.keys(task.env).sort().join(", ") || "–"],
    ["Inputs", task.inputs || "–"],
    ["Created", formatTime(task.createTime)],
    ["Updated", formatTime(task.updateTime)],
  ];
  return (
    <dl class="kv" data-testid="task-details">
      {rows.map(([label, value]) => (
        <Fragment key={label}>
          <dt>{label}</dt>
          <dd class={label === "Command" ? "mono command" : ""}>{value}</dd>
        </Fragment>
      ))}
    </dl>
  );
}

/** An argument as a shell would need it, so the command reads unambiguously. */
function quote(arg: string): string {
  if (/^[\w@%+=:,./-]+$/.test(arg)) return arg;
  if (arg.includes("'") && !/["$`\\]/.test(arg)) return `"${arg}"`;
  return `'${arg.replace(/'/g, `'"'"'`)}'`;
}

interface TaskFiles {
  files: TaskFile[];
  /** True once the listing comes from the stored outputs. */
  outputs: boolean;
  error: string;
  refresh(): void;
}

/** ListTaskFiles, asked again when the task ends (its files move to the outputs) and on refresh. */
function useTaskFiles(task: Task): TaskFiles {
  const [listing, setListing] = useState({ files: [] as TaskFile[], outputs: false, error: "" });
  const [reload, setReload] = useState(0);
  const ended = isEnded(task.status);

  useEffect(() => {
    let current = true;
    taskService.listTaskFiles({ taskId: task.id }).then(
      (response) => current && setListing({ files: response.files, outputs: response.outputs, error: "" }),
      (e) => current && setListing((old) => ({ ...old, error: `cannot list files: ${errorMessage(e)}` })),
    );
    return () => {
      current = false;
    };
  }, [task.id, ended, reload]);

  return { ...listing, refresh: () => setReload((n) => n + 1) };
}

function Files({ task, listing }: { task: Task; listing: TaskFiles }) {
  const { files, outputs } = listing;
  const [error, setError] = useState("");
  const [busy, setBusy] = useState("");

  async function save(file: TaskFile) {
    setBusy(file.path);
    setError("");
    try {
      await download(task.id, file.path);
    } catch (e) {
      setError(`cannot download ${file.path}: ${errorMessage(e)}`);
    } finally {
      setBusy("");
    }
  }

  return (
    <div data-testid="task-files">
      <div class="toolbar">
        <span class="muted">{outputs ? "Stored outputs" : "Live working directory"}</span>
        <button type="button" class="quiet" onClick={listing.refresh} data-testid="files-refresh">
          Refresh
        </button>
      </div>
      {(error || listing.error) && <p class="error">{error || listing.error}</p>}
      {files.length === 0 ? (
        <p class="muted">No files.</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th>Path</th>
              <th class="num">Size</th>
              <th>Modified</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {files.map((file) => (
              <tr key={file.path}>
                <td class="mono wrap">{file.path}</td>
                <td class="num">{formatBytes(file.size)}</td>
                <td>{formatTime(file.modifyTime)}</td>
                <td>
                  <button
                    type="button"
                    disabled={busy !== ""}
                    onClick={() => save(file)}
                    data-testid={`download-${file.path}`}
                  >
                    {busy === file.path ? "Downloading…" : "Download"}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
