/**
 * Machine groups: each group with its machines, their state and load. Machines have no watch stream, so the page
 * polls ListMachineGroups and ListMachines while it is open (and the browser tab is visible).
 */
import { useEffect, useState } from "preact/hooks";
import { errorMessage, machineGroups } from "../api";
import { Card } from "../card";
import { formatBytes, formatTime, timestampMs } from "../format";
import {
  MachineGroupState,
  MachineProvider,
  MachineState,
  type Machine,
  type MachineGroup,
} from "../gen/simplane/v1/machine_group_pb";
import { link } from "../router";

const REFRESH_MS = 3000;

interface Snapshot {
  groups: MachineGroup[];
  machines: Machine[];
  at: Date;
}

export function MachinesPage() {
  const [snapshot, setSnapshot] = useState<Snapshot | null>(null);
  const [error, setError] = useState("");
  const [showTerminated, setShowTerminated] = useState(false);
  const [refreshes, setRefreshes] = useState(0);

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      if (!document.hidden) {
        try {
          const [groups, machines] = await Promise.all([
            machineGroups.listMachineGroups({ includeTerminated: showTerminated }),
            machineGroups.listMachines({}),
          ]);
          if (stopped) return;
          setSnapshot({ groups: groups.machineGroups, machines: machines.machines, at: new Date() });
          setError("");
        } catch (e) {
          if (stopped) return;
          setError(errorMessage(e));
        }
      }
      timer = setTimeout(load, REFRESH_MS);
    };
    load();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [showTerminated, refreshes]);

  const byGroup = new Map<string, Machine[]>();
  for (const machine of snapshot?.machines ?? []) {
    const list = byGroup.get(machine.machineGroup) ?? [];
    list.push(machine);
    byGroup.set(machine.machineGroup, list);
  }
  const listed = new Set(snapshot?.groups.map((g) => g.name));
  const unlisted = [...byGroup.keys()].filter((name) => !listed.has(name)).sort();

  return (
    <section class="page machines-page" data-testid="machines-page">
      <div class="toolbar">
        <h1>Machine groups</h1>
        <span class="spacer" />
        <label class="muted">
          <input
            type="checkbox"
            checked={showTerminated}
            onChange={(e) => setShowTerminated(e.currentTarget.checked)}
          />{" "}
          Show terminated groups
        </label>
        {snapshot && <span class="muted">Updated {formatTime(snapshot.at)}</span>}
      </div>
      {error && (
        <p class="error" data-testid="machines-error">
          {error}
        </p>
      )}
      {!snapshot && !error && <p class="muted">Loading machine groups…</p>}
      {snapshot && snapshot.groups.length === 0 && unlisted.length === 0 && (
        <p class="muted">No machine groups.</p>
      )}
      {snapshot?.groups.map((group) => (
        <GroupSection
          key={group.name}
          group={group}
          machines={byGroup.get(group.name) ?? []}
          onChanged={() => setRefreshes((n) => n + 1)}
        />
      ))}
      {unlisted.map((name) => (
        <section key={name} class="machine-group" data-testid={`machine-group-${name}`}>
          <h2>{name}</h2>
          <MachineTable machines={byGroup.get(name) ?? []} />
        </section>
      ))}
    </section>
  );
}

function GroupSection(props: { group: MachineGroup; machines: Machine[]; onChanged: () => void }) {
  const { group, machines } = props;
  const [confirming, setConfirming] = useState(false);
  const [terminating, setTerminating] = useState(false);
  const [error, setError] = useState("");
  const ended = group.state === MachineGroupState.TERMINATING || group.state === MachineGroupState.TERMINATED;
  const usedSlots = machines.reduce((sum, m) => sum + m.usedSlots, 0);
  const slots = machines.reduce((sum, m) => sum + m.slots, 0);

  async function terminate() {
    setTerminating(true);
    setError("");
    try {
      await machineGroups.terminateMachineGroup({ name: group.name });
      props.onChanged();
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setTerminating(false);
      setConfirming(false);
    }
  }

  return (
    <section class="machine-group" data-testid={`machine-group-${group.name}`}>
      <div class="toolbar">
        <h2>{group.name}</h2>
        <span class="group-state" data-testid={`machine-group-state-${group.name}`}>
          {enumName(MachineGroupState, group.state)}
        </span>
        <span class="spacer" />
        {!ended &&
          (confirming ? (
            <span class="confirm" data-testid={`terminate-confirm-${group.name}`}>
              <span>
                Terminate {group.name}? Its machines stop and their running tasks end as KILLED.
              </span>{" "}
              <button
                type="button"
                class="danger"
                disabled={terminating}
                data-testid={`terminate-yes-${group.name}`}
                onClick={terminate}
              >
                {terminating ? "Terminating…" : "Terminate"}
              </button>{" "}
              <button type="button" disabled={terminating} onClick={() => setConfirming(false)}>
                Cancel
              </button>
            </span>
          ) : (
            <button
              type="button"
              data-testid={`terminate-${group.name}`}
              onClick={() => {
                setError("");
                setConfirming(true);
              }}
            >
              Terminate…
            </button>
          ))}
      </div>
      {error && (
        <p class="error" data-testid={`terminate-error-${group.name}`}>
          {error}
        </p>
      )}
      <div class="cards">
        <Card label="Provider" value={enumName(MachineProvider, group.provider)} />
        <Card
          label="Machines connected"
          value={
            group.machines > 0 ? `${group.connectedMachines} of ${group.machines}` : String(group.connectedMachines)
          }
        />
        <Card label="Slots in use" value={`${usedSlots} of ${slots}`} />
        <Card label="Queued tasks" value={String(group.queuedTasks)} />
        {group.machineType && <Card label="Machine type" value={group.machineType} />}
        {group.zone && <Card label="Zone" value={group.zone} />}
        {group.provider === MachineProvider.GCE && <Card label="Spot" value={group.spot ? "yes" : "no"} />}
        {group.diskSizeGb > 0 && <Card label="Disk" value={`${group.diskSizeGb} GB`} />}
        {group.costPerHour > 0 && <Card label="Cost per hour" value={`$${group.costPerHour.toFixed(2)}`} />}
        {group.owner && <Card label="Owner" value={group.owner} />}
        <Card label="Created" value={formatTime(group.createTime)} />
      </div>
      {machines.length === 0 ? (
        <p class="muted">No machines connected.</p>
      ) : (
        <MachineTable machines={machines} />
      )}
    </section>
  );
}

function MachineTable({ machines }: { machines: Machine[] }) {
  const sorted = [...machines].sort((a, b) => a.hostname.localeCompare(b.hostname) || a.id.localeCompare(b.id));
  return (
    <table class="machine-table">
      <thead>
        <tr>
          <th>Machine</th>
          <th>Host</th>
          <th>State</th>
          <th>Slots</th>
          <th>Load (1 min)</th>
          <th>Memory</th>
          <th>Running tasks</th>
          <th>Connected</th>
          <th>Last heartbeat</th>
        </tr>
      </thead>
      <tbody>
        {sorted.map((m) => (
          <tr key={m.id} data-testid={`machine-row-${m.id}`}>
            <td class="mono">{m.id}</td>
            <td>{m.hostname}</td>
            <td>
              <span class={`machine-state machine-state-${enumName(MachineState, m.state).toLowerCase()}`}>
                {enumName(MachineState, m.state)}
              </span>
            </td>
            <td>
              <Gauge used={m.usedSlots} total={m.slots} label={`${m.usedSlots} of ${m.slots}`} />
            </td>
            <td>
              <Gauge used={m.load} total={m.slots} label={m.load.toFixed(2)} />
            </td>
            <td>
              {m.memoryTotalBytes > 0n ? (
                <Gauge
                  used={Number(m.memoryUsedBytes)}
                  total={Number(m.memoryTotalBytes)}
                  label={`${formatBytes(m.memoryUsedBytes)} of ${formatBytes(m.memoryTotalBytes)}`}
                />
              ) : (
                <span class="muted">–</span>
              )}
            </td>
            <td class="wrap">
              {m.runningTaskIds.length === 0 ? (
                <span class="muted">none</span>
              ) : (
                m.runningTaskIds.map((id, i) => (
                  <span key={id}>
                    {i > 0 && ", "}
                    <a class="mono" {...link(`/tasks/${encodeURIComponent(id)}`)}>
                      {id}
                    </a>
                  </span>
                ))
              )}
            </td>
            <td>{formatTime(m.connectTime)}</td>
            <td>
              {timestampMs(m.lastHeartbeatTime) ? formatTime(m.lastHeartbeatTime) : <span class="muted">–</span>}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** A bar with its value as text; the bar turns to a warning colour near and above the total. */
function Gauge({ used, total, label }: { used: number; total: number; label: string }) {
  const ratio = total > 0 ? used / total : 0;
  const level = ratio >= 1 ? "full" : ratio >= 0.8 ? "high" : "ok";
  return (
    <span class="gauge" title={total > 0 ? `${Math.round(ratio * 100)}%` : undefined}>
      <span class={`gauge-bar gauge-${level}`}>
        <span style={{ width: `${Math.min(100, Math.round(ratio * 100))}%` }} />
      </span>
      <span class="gauge-label">{label}</span>
    </span>
  );
}

/** "CONNECTED" for MachineState.CONNECTED; the number itself for a value this console does not know yet. */
function enumName(values: Record<number, string>, value: number): string {
  return values[value] ?? String(value);
}
