/**
 * Account: who the caller is, their API keys (create, with the secret shown once; list; revoke), and the quotas
 * and usage the server reports.
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { JSX } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

import { accounts, errorMessage, signOut } from "../api";
import { formatBytes, formatDuration, formatTime, seconds, timestampMs } from "../format";
import type { ApiKey, GetUsageResponse, Quota, WhoAmIResponse } from "../gen/simplane/v1/account_pb";

/** A value that is loading (undefined), failed (error) or here. */
type Loadable<T> = { value?: T; error?: string };

export function AccountPage() {
  const [me, setMe] = useState<Loadable<WhoAmIResponse>>({});
  const [keys, setKeys] = useState<Loadable<ApiKey[]>>({});
  const [keysVersion, setKeysVersion] = useState(0);
  const [quotas, setQuotas] = useState<Loadable<Quota[]>>({});

  useEffect(() => {
    let stopped = false;
    accounts.whoAmI({}).then(
      (value) => stopped || setMe({ value }),
      (e) => stopped || setMe({ error: errorMessage(e) }),
    );
    accounts.getQuotas({}).then(
      (r) => stopped || setQuotas({ value: r.quotas }),
      (e) => stopped || setQuotas({ error: errorMessage(e) }),
    );
    return () => {
      stopped = true;
    };
  }, []);

  useEffect(() => {
    let stopped = false;
    accounts.listApiKeys({}).then(
      (r) => stopped || setKeys({ value: r.apiKeys }),
      (e) => stopped || setKeys({ error: errorMessage(e) }),
    );
    return () => {
      stopped = true;
    };
  }, [keysVersion]);

  const reloadKeys = () => setKeysVersion((n) => n + 1);
  const user = me.value?.user;

  return (
    <section class="page account-page" data-testid="account-page">
      <h1>Account</h1>
      {me.error && <p class="error">{me.error}</p>}
      {!me.value && !me.error && <p class="muted">Loading…</p>}
      {user && (
        <dl class="kv" data-testid="account-user">
          <dt>User</dt>
          <dd data-testid="account-user-name">{user.name}</dd>
          <dt>Role</dt>
          <dd data-testid="account-user-role">{user.admin ? "admin" : "user"}</dd>
          <dt>Member since</dt>
          <dd>{formatTime(user.createTime)}</dd>
          <dt>Signed in with key</dt>
          <dd class="mono">{me.value?.apiKeyId || "–"}</dd>
        </dl>
      )}

      <h2>API keys</h2>
      <CreateKey onCreated={reloadKeys} />
      {keys.error && <p class="error">{keys.error}</p>}
      {!keys.value && !keys.error && <p class="muted">Loading API keys…</p>}
      {keys.value && (
        <KeyTable keys={keys.value} currentKeyId={me.value?.apiKeyId ?? ""} onRevoked={reloadKeys} />
      )}

      <h2>Quotas</h2>
      {quotas.error && <p class="error">{quotas.error}</p>}
      {!quotas.value && !quotas.error && <p class="muted">Loading quotas…</p>}
      {quotas.value && <QuotaTable quotas={quotas.value} />}

      <h2>Usage</h2>
      <Usage />
    </section>
  );
}

function CreateKey({ onCreated }: { onCreated: () => void }) {
  const [description, setDescription] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [secret, setSecret] = useState("");

  async function create(event: JSX.TargetedEvent<HTMLFormElement>) {
    event.preventDefault();
    setBusy(true);
    setError("");
    try {
      const response = await accounts.createApiKey({ description: description.trim() });
      setSecret(response.secret);
      setDescription("");
      onCreated();
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div class="create-key">
      <form class="toolbar" onSubmit={create}>
        <input
          type="text"
          placeholder="What the key is for, e.g. laptop or CI"
          aria-label="Description of the new key"
          data-testid="create-key-name"
          value={description}
          onInput={(e) => setDescription(e.currentTarget.value)}
          maxLength={200}
          size={36}
        />
        <button type="submit" class="primary" data-testid="create-key" disabled={busy}>
          {busy ? "Creating…" : "Create API key"}
        </button>
      </form>
      {error && (
        <p class="error" data-testid="create-key-error">
          {error}
        </p>
      )}
      {secret && <NewSecret secret={secret} onDone={() => setSecret("")} />}
    </div>
  );
}

/** The new key's secret, shown once: the server keeps only its hash. */
function NewSecret({ secret, onDone }: { secret: string; onDone: () => void }) {
  const code = useRef<HTMLElement>(null);
  const [copied, setCopied] = useState("");

  async function copy() {
    try {
      await navigator.clipboard.writeText(secret);
      setCopied("Copied.");
    } catch {
      // The clipboard API needs a secure context; select the text so that Ctrl+C copies it.
      const node = code.current;
      if (node) getSelection()?.selectAllChildren(node);
      setCopied("Selected: press Ctrl+C (⌘C) to copy.");
    }
  }

  return (
    <div class="secret-box" role="alert">
      <p>
        <strong>Copy this key now.</strong> It is shown only once: the server keeps only its hash, and nobody can show
        it again. Anyone with it can act as you.
      </p>
      <div class="secret-row">
        <code ref={code} class="secret" data-testid="new-key-secret">
          {secret}
        </code>
        <button type="button" data-testid="copy-key-secret" onClick={copy}>
          Copy
        </button>
        <button type="button" class="quiet" data-testid="new-key-done" onClick={onDone}>
          I saved it
        </button>
      </div>
      {copied && <p class="muted">{copied}</p>}
    </div>
  );
}

function KeyTable(props: { keys: ApiKey[]; currentKeyId: string; onRevoked: () => void }) {
  const [confirming, setConfirming] = useState("");
  const [revoking, setRevoking] = useState("");
  const [error, setError] = useState("");

  async function revoke(id: string) {
    setRevoking(id);
    setError("");
    try {
      await accounts.revokeApiKey({ id });
      if (id === props.currentKeyId) {
        signOut("you revoked the API key this browser was signed in with");
        return;
      }
      props.onRevoked();
    } catch (e) {
      setError(`revoking ${id} failed: ${errorMessage(e)}`);
    } finally {
      setRevoking("");
      setConfirming("");
    }
  }

  if (props.keys.length === 0) return <p class="muted">No API keys.</p>;
  const sorted = [...props.keys].sort(
    (a, b) => Number(a.revoked) - Number(b.revoked) || timestampMs(b.createTime) - timestampMs(a.createTime),
  );
  return (
    <>
      {error && (
        <p class="error" data-testid="revoke-error">
          {error}
        </p>
      )}
      <table class="key-table">
        <thead>
          <tr>
            <th>ID</th>
            <th>Description</th>
            <th>Created</th>
            <th>Last used</th>
            <th>State</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {sorted.map((key) => {
            const current = key.id === props.currentKeyId;
            return (
              <tr key={key.id} class={key.revoked ? "muted" : ""} data-testid={`api-key-row-${key.id}`}>
                <td class="mono">{key.id}</td>
                <td class="wrap">{key.description || <span class="muted">–</span>}</td>
                <td>{formatTime(key.createTime)}</td>
                <td>{timestampMs(key.lastUsedTime) ? formatTime(key.lastUsedTime) : "never"}</td>
                <td>
                  {key.revoked ? "revoked" : "active"}
                  {current && <span class="key-current"> · this browser</span>}
                </td>
                <td>
                  {!key.revoked &&
                    (confirming === key.id ? (
                      <span class="confirm">
                        <span>{current ? "Revoke and sign out?" : "Revoke this key?"}</span>{" "}
                        <button
                          type="button"
                          class="danger"
                          data-testid={`revoke-confirm-${key.id}`}
                          disabled={revoking !== ""}
                          onClick={() => revoke(key.id)}
                        >
                          {revoking === key.id ? "Revoking…" : "Revoke"}
                        </button>{" "}
                        <button type="button" disabled={revoking !== ""} onClick={() => setConfirming("")}>
                          Cancel
                        </button>
                      </span>
                    ) : (
                      <button
                        type="button"
                        data-testid={`revoke-${key.id}`}
                        disabled={revoking !== ""}
                        onClick={() => setConfirming(key.id)}
                      >
                        Revoke…
                      </button>
                    ))}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </>
  );
}

function QuotaTable({ quotas }: { quotas: Quota[] }) {
  if (quotas.length === 0) return <p class="muted">The server sets no quotas.</p>;
  return (
    <table class="quota-table">
      <thead>
        <tr>
          <th>Quota</th>
          <th class="num">Used</th>
          <th class="num">Limit</th>
          <th />
        </tr>
      </thead>
      <tbody>
        {quotas.map((q) => (
          <tr key={q.name} data-testid={`quota-${q.name}`}>
            <td>{q.name.replace(/_/g, " ")}</td>
            <td class="num">{quantity(q.used, q.unit)}</td>
            <td class="num">{q.limit > 0 ? quantity(q.limit, q.unit) : "unlimited"}</td>
            <td>{q.limit > 0 && <meter min={0} max={q.limit} value={q.used} high={q.limit * 0.8} optimum={0} />}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

const USAGE_PERIODS: { key: string; label: string; ms: number }[] = [
  { key: "24h", label: "Last 24 hours", ms: 86400_000 },
  { key: "7d", label: "Last 7 days", ms: 7 * 86400_000 },
  { key: "30d", label: "Last 30 days", ms: 30 * 86400_000 },
  { key: "all", label: "All time", ms: 0 },
];

function Usage() {
  const [period, setPeriod] = useState("30d");
  const [usage, setUsage] = useState<Loadable<GetUsageResponse>>({});

  useEffect(() => {
    let stopped = false;
    const ms = USAGE_PERIODS.find((p) => p.key === period)?.ms ?? 0;
    setUsage({});
    accounts.getUsage(ms ? { startTime: timestampFromMs(Date.now() - ms) } : {}).then(
      (value) => stopped || setUsage({ value }),
      (e) => stopped || setUsage({ error: errorMessage(e) }),
    );
    return () => {
      stopped = true;
    };
  }, [period]);

  const u = usage.value;
  return (
    <div data-testid="account-usage">
      <div class="toolbar">
        <select aria-label="Usage period" value={period} onChange={(e) => setPeriod(e.currentTarget.value)}>
          {USAGE_PERIODS.map((p) => (
            <option key={p.key} value={p.key}>
              {p.label}
            </option>
          ))}
        </select>
        <span class="muted">Tasks are counted by when they were created.</span>
      </div>
      {usage.error && <p class="error">{usage.error}</p>}
      {!u && !usage.error && <p class="muted">Loading usage…</p>}
      {u && (
        <table class="usage-table">
          <tbody>
            <tr>
              <th>Tasks</th>
              <td class="num" data-testid="usage-tasks">
                {u.tasks.toLocaleString()}
              </td>
            </tr>
            <tr>
              <th>Computing time</th>
              <td class="num">{formatDuration(seconds(u.computeTime))}</td>
            </tr>
            <tr>
              <th>Storage in use now</th>
              <td class="num">{formatBytes(u.storageBytes)}</td>
            </tr>
            <tr>
              <th>Estimated cost</th>
              <td class="num">{u.cost > 0 ? `$${u.cost.toFixed(2)}` : <span class="muted">–</span>}</td>
            </tr>
          </tbody>
        </table>
      )}
    </div>
  );
}

/** A quota amount in its unit: bytes read as KiB/MiB/…, anything else as a number and its unit. */
function quantity(value: number, unit: string): string {
  if (unit === "bytes") return formatBytes(value);
  return `${value.toLocaleString()}${unit ? ` ${unit}` : ""}`;
}
