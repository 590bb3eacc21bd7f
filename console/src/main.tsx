/** The console's shell: sign-in gate, navigation, who am I, sign-out, and the page of the current route. */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";

import { accounts, errorMessage, getKey, signInPath, signOut } from "./api";
import { AccountPage } from "./pages/account";
import { AnalyticsPage } from "./pages/analytics";
import { LaunchPage } from "./pages/launch";
import { MachinesPage } from "./pages/machines";
import { SignInPage } from "./pages/signin";
import { TaskPage } from "./pages/task";
import { TasksPage } from "./pages/tasks";
import { link, navigate, useRoute, type Page } from "./router";
import "./style.css";

const NAV: [Page, string, string][] = [
  ["tasks", "/tasks", "Tasks"],
  ["machines", "/machines", "Machine groups"],
  ["analytics", "/analytics", "Analytics"],
  ["account", "/account", "Account"],
  ["launch", "/launch", "Launch"],
];

function App() {
  const route = useRoute();
  const signedIn = getKey() !== "";
  useEffect(() => {
    if (!signedIn && route.page !== "signin") navigate(signInPath(), { replace: true });
    else if (route.path !== location.pathname) navigate(route.path, { replace: true });
  }, [signedIn, route]);
  if (route.page === "signin" || !signedIn) return <SignInPage />;
  const active = route.page === "task" ? "tasks" : route.page;
  return (
    <div class="shell">
      <header class="topbar">
        <a class="brand" {...link("/tasks")}>
          simplane
        </a>
        <nav>
          {NAV.map(([page, path, label]) => (
            <a key={page} {...link(path)} class={page === active ? "active" : ""} data-testid={`nav-${page}`}>
              {label}
            </a>
          ))}
        </nav>
        <WhoAmI />
        <button type="button" class="quiet" data-testid="sign-out" onClick={() => signOut()}>
          Sign out
        </button>
      </header>
      <main>
        <PageOf page={route.page} taskId={route.taskId} />
      </main>
    </div>
  );
}

function PageOf({ page, taskId }: { page: Page; taskId: string }) {
  switch (page) {
    case "task":
      return <TaskPage key={taskId} taskId={taskId} />;
    case "machines":
      return <MachinesPage />;
    case "analytics":
      return <AnalyticsPage />;
    case "account":
      return <AccountPage />;
    case "launch":
      return <LaunchPage />;
    default:
      return <TasksPage />;
  }
}

function WhoAmI() {
  const [who, setWho] = useState("");
  useEffect(() => {
    accounts.whoAmI({}).then(
      (me) => setWho(me.user ? `${me.user.name}${me.user.admin ? " (admin)" : ""}` : ""),
      (e) => setWho(`? ${errorMessage(e)}`),
    );
  }, []);
  return (
    <span class="who" data-testid="who-am-i">
      {who}
    </span>
  );
}

render(<App />, document.getElementById("app")!);
