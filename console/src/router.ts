/**
 * Client-side routes over the history API; the server answers every unknown GET path with index.html.
 *
 * Contract for the pages (stable):
 * - `navigate(path)`: go to a path (pushes a history entry; `replace` swaps the current one).
 * - `useRoute()`: the current route, re-rendering the caller when it changes.
 *   Paths: /signin, /tasks, /tasks/:id, /machines, /analytics, /account, /launch; / and unknown paths go to /tasks.
 * - `link(path)`: props for an <a> that navigates without reloading, e.g. <a {...link(`/tasks/${id}`)}>.
 */
import { useEffect, useState } from "preact/hooks";

export type Page = "signin" | "tasks" | "task" | "machines" | "analytics" | "account" | "launch";

export interface Route {
  page: Page;
  path: string;
  /** The task ID of /tasks/:id, otherwise "". */
  taskId: string;
}

const listeners = new Set<() => void>();

export function parseRoute(path: string): Route {
  const simple: Record<string, Page> = {
    "/signin": "signin",
    "/tasks": "tasks",
    "/machines": "machines",
    "/analytics": "analytics",
    "/account": "account",
    "/launch": "launch",
  };
  const trimmed = path.length > 1 ? path.replace(/\/+$/, "") : path;
  const page = simple[trimmed];
  if (page) return { page, path: trimmed, taskId: "" };
  const task = /^\/tasks\/([^/]+)$/.exec(trimmed);
  if (task) return { page: "task", path: trimmed, taskId: decodeURIComponent(task[1]) };
  return { page: "tasks", path: "/tasks", taskId: "" };
}

export function currentRoute(): Route {
  return parseRoute(location.pathname);
}

export function navigate(path: string, { replace = false } = {}): void {
  if (path !== location.pathname + location.search) {
    if (replace) history.replaceState(null, "", path);
    else history.pushState(null, "", path);
  }
  for (const listener of listeners) listener();
}

export function useRoute(): Route {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const update = () => setRoute((old) => (old.path === location.pathname ? old : currentRoute()));
    listeners.add(update);
    addEventListener("popstate", update);
    update();
    return () => {
      listeners.delete(update);
      removeEventListener("popstate", update);
    };
  }, []);
  return route;
}

export function link(path: string): { href: string; onClick: (event: MouseEvent) => void } {
  return {
    href: path,
    onClick: (event: MouseEvent) => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      navigate(path);
    },
  };
}
