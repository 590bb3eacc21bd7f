/**
 * Tasks: a live table. WatchTasks keeps every active task (and the newest ended ones) in a Map by ID; ListTasks
 * finds what the snapshot leaves out (searches, older pages). Only one page of rows is rendered, at most once per
 * animation frame, so thousands of tasks changing stay smooth.
 */
import { useEffect, useMemo, useRef, useState } from "preact/hooks";

import { errorMessage, tasks as taskService } from "../api";
import { formatDuration, formatTime, isEnded, statusClass, statusName } from "../format";
import { TaskStatus, type Task } from "../gen/simplane/v1/task_pb";
import { link, navigate } from "../router";
import { taskDuration, useNow } from "../task_clock";
import { ConnectionState, watchTasks, type Connection } from "../task_watch";

const PAGE_SIZE = 50;
const SNAPSHOT_ENDED_LIMIT = 200;

/** "" is every status, "active" every status that has not ended. */
type StatusFilter = "" | "active" | `${TaskStatus}`;

interface Filters {
  status: StatusFilter;
  project: string;
  machineGroup: string;
  query: string;
}

/** One page of ListTasks: the rows it gave, and the token of the page after it. */
interface ListedPage {
  rows: Task[];
  next: string;
}

const STATUSES = Object.values(TaskStatus).filter(
  (v): v is TaskStatus => typeof v === "number" && v !== TaskStatus.UNSPECIFIED,
);

export function TasksPage() {
  const [filters, setFilters] = useState<Filters>({ status: "", project: "", machineGroup: "", query: "" });
  const debounced = useDebounced(filters, 300);
  const live = useLiveTasks(debounced.project, debounced.machineGroup);
  const paging = useListedPages(debounced);
  const now = useNow(true);

  const rows = useMemo(() => {
    if (paging.index > 0) return paging.page.rows.map((t) => newer(live.tasks.get(t.id), t));
    const top = new NewestTasks(PAGE_SIZE);
    for (const task of paging.page.rows) if (!live.tasks.has(task.id)) top.offer(task);
    // The map holds tasks about in the order they were created, so offering them from its end lets all but the
    // first few offers stop at one comparison: thousands of tasks cost one pass per frame.
    const match = matcher(debounced);
    const all = [...live.tasks.values()];
    for (let i = all.length - 1; i >= 0; i--) if (match(all[i])) top.offer(all[i]);
    return top.tasks;
  }, [live.version, paging, debounced]);

  const update = (change: Partial<Filters>) => setFilters((old) => ({ ...old, ...change }));

  return (
    <div>
      <div class="toolbar">
        <h1 style="margin:0 12px 0 0">Tasks</h1>
        <input
          type="search"
          placeholder="Search name or ID"
          value={filters.query}
          onInput={(e) => update({ query: e.currentTarget.value })}
          data-testid="task-search"
        />
        <select
          value={filters.status}
          onChange={(e) => update({ status: e.currentTarget.value as StatusFilter })}
          data-testid="status-filter"
        >
          <option value="">All statuses</option>
          <option value="active">Active</option>
          {STATUSES.map((s) => (
            <option key={s} value={String(s)}>
              {statusName(s)}
            </option>
          ))}
        </select>
        <input
          placeholder="Project"
          value={filters.project}
          onInput={(e) => update({ project: e.currentTarget.value })}
          data-testid="project-filter"
        />
        <input
          placeholder="Machine group"
          value={filters.machineGroup}
          onInput={(e) => update({ machineGroup: e.currentTarget.value })}
          data-testid="machine-group-filter"
        />
        <span class="spacer" />
        <ConnectionState state={live.connection} error={live.error} />
      </div>
      {paging.error && <p class="error">{paging.error}</p>}
      <table data-testid="tasks-table">
        <thead>
          <tr>
            <th>ID</th>
            <th>Name</th>
            <th>Status</th>
            <th>Project</th>
            <th>Machine group</th>
            <th>Created</th>
            <th class="num">Duration</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((task) => (
            <TaskRow key={task.id} task={task} now={now} />
          ))}
        </tbody>
      </table>
      {rows.length === 0 && (
        <p class="muted" data-testid="tasks-empty">
          {live.connection === "connecting" ? "Loading…" : "No tasks match."}
        </p>
      )}
      <div class="toolbar" style="margin-top:12px">
        <button type="button" disabled={paging.index === 0} onClick={paging.newer} data-testid="newer-page">
          ← Newer
        </button>
        <button type="button" disabled={!paging.page.next} onClick={paging.older} data-testid="older-page">
          Older →
        </button>
        <span class="muted">{paging.index === 0 ? "Newest tasks, live" : `Page ${paging.index + 1}`}</span>
      </div>
    </div>
  );
}

function TaskRow({ task, now }: { task: Task; now: number }) {
  const path = `/tasks/${task.id}`;
  return (
    <tr class="clickable" onClick={() => navigate(path)} data-testid={`task-row-${task.id}`}>
      <td class="mono">
        <a {...link(path)}>{task.id}</a>
      </td>
      <td class="wrap">{task.name}</td>
      <td>
        <span class={statusClass(task.status)} data-testid={`task-status-${task.id}`}>
          {statusName(task.status)}
        </span>
      </td>
      <td>{task.project}</td>
      <td>{task.machineGroup}</td>
      <td>{formatTime(task.createTime)}</td>
      <td class="num">{formatDuration(taskDuration(task, now))}</td>
    </tr>
  );
}

function matcher(filters: Filters): (task: Task) => boolean {
  const query = filters.query.trim().toLowerCase();
  return (task) => {
    if (filters.status === "active" && isEnded(task.status)) return false;
    if (filters.status !== "" && filters.status !== "active" && task.status !== Number(filters.status)) return false;
    return !query || task.id.toLowerCase().startsWith(query) || task.name.toLowerCase().includes(query);
  };
}

/** The `size` newest of the tasks offered (IDs sort by creation time), without sorting them all. */
class NewestTasks {
  readonly tasks: Task[] = [];

  constructor(private readonly size: number) {}

  offer(task: Task): void {
    const rows = this.tasks;
    if (rows.length === this.size && task.id <= rows[rows.length - 1].id) return;
    let at = rows.length;
    while (at > 0 && rows[at - 1].id < task.id) at--;
    rows.splice(at, 0, task);
    if (rows.length > this.size) rows.pop();
  }
}

function newer(a: Task | undefined, b: Task): Task;
function newer(a: Task, b: Task | undefined): Task;
function newer(a: Task | undefined, b: Task | undefined): Task {
  if (!a) return b!;
  if (!b) return a;
  return a.revision >= b.revision ? a : b;
}

/** The watched tasks, with a version that changes at most once per animation frame. */
function useLiveTasks(project: string, machineGroup: string) {
  const store = useRef(new Map<string, Task>());
  const [version, setVersion] = useState(0);
  const [connection, setConnection] = useState<Connection>("connecting");
  const [error, setError] = useState("");

  useEffect(() => {
    const controller = new AbortController();
    let frame = 0;
    const redraw = () => {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        setVersion((v) => v + 1);
      });
    };
    store.current = new Map();
    redraw();
    void watchTasks(
      { project, machineGroup, snapshotEndedLimit: SNAPSHOT_ENDED_LIMIT },
      {
        snapshot(list) {
          const fresh = new Map<string, Task>();
          for (const task of list) fresh.set(task.id, task);
          store.current = fresh;
          redraw();
        },
        change(task) {
          store.current.set(task.id, newer(store.current.get(task.id), task));
          redraw();
        },
        connection(state, reason) {
          setConnection(state);
          setError(reason);
        },
      },
      controller.signal,
    );
    return () => {
      controller.abort();
      cancelAnimationFrame(frame);
    };
  }, [project, machineGroup]);

  return { tasks: store.current, version, connection, error };
}

/** Keyset pages of ListTasks for the filters; page 0 is refreshed when the filters change. */
function useListedPages(filters: Filters) {
  const [pages, setPages] = useState<{ tokens: string[]; page: ListedPage }>({
    tokens: [""],
    page: { rows: [], next: "" },
  });
  const [error, setError] = useState("");
  const request = useRef(0);

  async function load(tokens: string[]) {
    const id = ++request.current;
    try {
      const response = await taskService.listTasks({
        statuses: statusesOf(filters.status),
        project: filters.project,
        machineGroup: filters.machineGroup,
        query: filters.query.trim(),
        pageSize: PAGE_SIZE,
        pageToken: tokens[tokens.length - 1],
      });
      if (id !== request.current) return;
      setError("");
      setPages({ tokens, page: { rows: response.tasks, next: response.nextPageToken } });
    } catch (e) {
      if (id === request.current) setError(`cannot list tasks: ${errorMessage(e)}`);
    }
  }

  useEffect(() => {
    void load([""]);
  }, [filters]);

  return {
    index: pages.tokens.length - 1,
    page: pages.page,
    error,
    older: () => void load([...pages.tokens, pages.page.next]),
    newer: () => void load(pages.tokens.slice(0, -1)),
  };
}

function statusesOf(filter: StatusFilter): TaskStatus[] {
  if (filter === "") return [];
  if (filter === "active") return STATUSES.filter((s) => !isEnded(s));
  return [Number(filter) as TaskStatus];
}

function useDebounced<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return settled;
}
