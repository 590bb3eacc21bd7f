/**
 * Launch: start a task from the browser. Input files are hashed and uploaded one message each (UploadFile, since
 * browsers cannot stream requests over gRPC-web), then the task is submitted and the console opens its page.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { ComponentChildren, JSX } from "preact";
import { useEffect, useState } from "preact/hooks";

import { errorMessage, machineGroups, storage, tasks } from "../api";
import { formatBytes } from "../format";
import { MachineGroupState } from "../gen/simplane/v1/machine_group_pb";
import { navigate } from "../router";

/** The most UploadFile takes in one message; bigger inputs need the streaming upload of the CLI. */
const MAX_BROWSER_FILE = 32 * 1024 * 1024;

type Field = "command" | "name" | "project" | "machine_group" | "cpus" | "time_to_live" | "env" | "inputs";
type FieldErrors = Partial<Record<Field, string>>;

type UploadState = "waiting" | "hashing" | "uploading" | "done" | "failed" | "too big";

interface InputFile {
  file: File;
  /** Where the file lands in the task's working directory. */
  path: string;
  state: UploadState;
  problem: string;
}

/** Inputs already uploaded for the current selection, so a retry after a rejected submit skips the upload. */
interface Uploaded {
  prefix: string;
  files: InputFile[];
}

export function LaunchPage() {
  const [command, setCommand] = useState("");
  const [name, setName] = useState("");
  const [project, setProject] = useState("");
  const [group, setGroup] = useState("local");
  const [groups, setGroups] = useState<string[]>(["local"]);
  const [groupsError, setGroupsError] = useState("");
  const [cpus, setCpus] = useState("1");
  const [ttl, setTtl] = useState("");
  const [env, setEnv] = useState("");
  const [files, setFiles] = useState<InputFile[]>([]);
  const [uploaded, setUploaded] = useState<Uploaded | null>(null);
  const [fieldErrors, setFieldErrors] = useState<FieldErrors>({});
  const [error, setError] = useState("");
  const [busy, setBusy] = useState("");

  useEffect(() => {
    let stopped = false;
    machineGroups.listMachineGroups({}).then(
      (response) => {
        if (stopped) return;
        const usable = response.machineGroups
          .filter((g) => g.state !== MachineGroupState.TERMINATING && g.state !== MachineGroupState.TERMINATED)
          .map((g) => g.name);
        setGroups(usable.includes("local") ? usable : ["local", ...usable]);
      },
      (e) => stopped || setGroupsError(`cannot list machine groups: ${errorMessage(e)}`),
    );
    return () => {
      stopped = true;
    };
  }, []);

  function addFiles(list: FileList | null, fromFolder: boolean) {
    if (!list || list.length === 0) return;
    const added = Array.from(list, (file): InputFile => {
      const path = fromFolder ? withoutTopFolder(file.webkitRelativePath || file.name) : file.name;
      const tooBig = file.size > MAX_BROWSER_FILE;
      return {
        file,
        path,
        state: tooBig ? "too big" : "waiting",
        problem: tooBig ? `over ${formatBytes(MAX_BROWSER_FILE)}` : "",
      };
    });
    const byPath = new Map(files.map((f) => [f.path, f]));
    for (const f of added) byPath.set(f.path, f);
    setFiles([...byPath.values()].sort((a, b) => a.path.localeCompare(b.path)));
    setUploaded(null);
  }

  function removeFile(path: string) {
    setFiles(files.filter((f) => f.path !== path));
    setUploaded(null);
  }

  /** Uploads every file under a fresh prefix, updating each file's state as it goes. */
  async function upload(selection: InputFile[]): Promise<string> {
    const prefix = `inputs/${randomHex(16)}/`;
    let current = selection.map((f) => ({ ...f, state: "waiting" as UploadState, problem: "" }));
    const update = (index: number, change: Partial<InputFile>) => {
      current = current.map((f, i) => (i === index ? { ...f, ...change } : f));
      setFiles(current);
    };
    setFiles(current);
    for (let i = 0; i < current.length; i++) {
      const { file, path } = current[i];
      try {
        update(i, { state: "hashing" });
        const buffer = await file.arrayBuffer();
        const data = new Uint8Array(buffer);
        const sha256 = await sha256Hex(buffer);
        update(i, { state: "uploading" });
        await storage.uploadFile({ prefix, chunk: { path, offset: 0n, data, sha256, mode: 0o644 } });
        update(i, { state: "done" });
      } catch (e) {
        update(i, { state: "failed", problem: errorMessage(e) });
        throw new Error(`uploading ${path} failed: ${errorMessage(e)}`);
      }
    }
    setUploaded({ prefix, files: selection });
    return prefix;
  }

  async function submit(event: JSX.TargetedEvent<HTMLFormElement>) {
    event.preventDefault();
    setError("");
    const problems: FieldErrors = {};
    const argv = check(problems, "command", () => {
      const words = splitCommand(command);
      if (words.length === 0) throw new Error("name a program to run");
      return words;
    });
    const cpuCount = check(problems, "cpus", () => {
      const n = Number(cpus.trim() || "1");
      if (!Number.isInteger(n) || n < 1) throw new Error("a whole number of at least 1");
      return n;
    });
    const timeToLive = check(problems, "time_to_live", () => (ttl.trim() ? parseDuration(ttl) : undefined));
    const variables = check(problems, "env", () => parseEnv(env));
    const tooBig = files.filter((f) => f.state === "too big");
    if (tooBig.length > 0) {
      problems.inputs =
        `${tooBig.map((f) => f.path).join(", ")}: the browser uploads files up to ${formatBytes(MAX_BROWSER_FILE)}; ` +
        "submit tasks with bigger inputs from the CLI: simplane run --inputs PATH -- COMMAND";
    }
    setFieldErrors(problems);
    if (Object.keys(problems).length > 0) {
      setError("Correct the marked fields.");
      return;
    }
    try {
      let inputs = "";
      if (files.length > 0) {
        const selection = files.map((f) => ({ ...f }));
        if (uploaded && sameFiles(uploaded.files, selection)) {
          inputs = uploaded.prefix;
        } else {
          setBusy(`Uploading ${files.length} file${files.length === 1 ? "" : "s"}…`);
          inputs = await upload(selection);
        }
      }
      setBusy("Submitting…");
      const response = await tasks.submitTask({
        command: argv,
        name: name.trim(),
        project: project.trim(),
        machineGroup: group,
        cpus: cpuCount,
        env: variables,
        inputs,
        timeToLive,
      });
      const id = response.task?.id;
      if (!id) throw new Error("the server accepted the task but did not return its ID");
      navigate(`/tasks/${encodeURIComponent(id)}`);
    } catch (e) {
      const field = invalidField(e);
      if (field) setFieldErrors({ [field.name]: field.problem });
      setError(errorMessage(e));
    } finally {
      setBusy("");
    }
  }

  const uploadedBytes = files.filter((f) => f.state === "done").reduce((sum, f) => sum + f.file.size, 0);
  const totalBytes = files.reduce((sum, f) => sum + f.file.size, 0);
  const uploading = files.some((f) => f.state === "hashing" || f.state === "uploading");

  return (
    <section class="page launch-page" data-testid="launch-page">
      <h1>Launch a task</h1>
      <form class="launch-form" onSubmit={submit} noValidate>
        <Row
          label="Command"
          field="command"
          errors={fieldErrors}
          hint="Run without a shell; quote arguments as in a shell."
        >
          <input
            type="text"
            class="mono"
            data-testid="launch-command"
            placeholder={`python solve.py --mesh "fine grid"`}
            value={command}
            onInput={(e) => setCommand(e.currentTarget.value)}
            autoFocus
            spellcheck={false}
          />
        </Row>
        <Row label="Name" field="name" errors={fieldErrors}>
          <input
            type="text"
            data-testid="launch-name"
            value={name}
            onInput={(e) => setName(e.currentTarget.value)}
            maxLength={256}
          />
        </Row>
        <Row label="Project" field="project" errors={fieldErrors}>
          <input
            type="text"
            data-testid="launch-project"
            value={project}
            onInput={(e) => setProject(e.currentTarget.value)}
            maxLength={128}
          />
        </Row>
        <Row label="Machine group" field="machine_group" errors={fieldErrors} hint={groupsError}>
          <select data-testid="launch-machine-group" value={group} onChange={(e) => setGroup(e.currentTarget.value)}>
            {groups.map((g) => (
              <option key={g} value={g}>
                {g}
              </option>
            ))}
          </select>
        </Row>
        <Row label="CPUs" field="cpus" errors={fieldErrors}>
          <input
            type="number"
            data-testid="launch-cpus"
            min={1}
            step={1}
            value={cpus}
            onInput={(e) => setCpus(e.currentTarget.value)}
          />
        </Row>
        <Row label="Time to live" field="time_to_live" errors={fieldErrors} hint="Optional, e.g. 90s, 10m, 1h30m.">
          <input
            type="text"
            data-testid="launch-ttl"
            placeholder="no limit"
            value={ttl}
            onInput={(e) => setTtl(e.currentTarget.value)}
          />
        </Row>
        <Row label="Environment" field="env" errors={fieldErrors} hint="One KEY=VALUE a line.">
          <textarea
            class="mono"
            data-testid="launch-env"
            rows={3}
            value={env}
            onInput={(e) => setEnv(e.currentTarget.value)}
            spellcheck={false}
          />
        </Row>
        <Row
          label="Input files"
          field="inputs"
          errors={fieldErrors}
          hint={`Staged into the task's working directory; up to ${formatBytes(MAX_BROWSER_FILE)} a file.`}
        >
          <div class="launch-pickers">
            <label class="button">
              Add files
              <input
                type="file"
                multiple
                hidden
                data-testid="launch-files"
                onChange={(e) => {
                  addFiles(e.currentTarget.files, false);
                  e.currentTarget.value = "";
                }}
              />
            </label>
            <label class="button">
              Add a folder
              <input
                type="file"
                hidden
                data-testid="launch-folder"
                {...{ webkitdirectory: true }}
                onChange={(e) => {
                  addFiles(e.currentTarget.files, true);
                  e.currentTarget.value = "";
                }}
              />
            </label>
            {files.length > 0 && (
              <span class="muted">
                {files.length} file{files.length === 1 ? "" : "s"}, {formatBytes(totalBytes)}
              </span>
            )}
          </div>
          {files.length > 0 && (
            <table class="launch-file-list" data-testid="launch-file-list">
              <tbody>
                {files.map((f) => (
                  <tr key={f.path} class={`upload-${f.state.replace(" ", "-")}`} data-testid={`launch-file-${f.path}`}>
                    <td class="mono">{f.path}</td>
                    <td class="num">{formatBytes(f.file.size)}</td>
                    <td>
                      {f.state === "uploading" || f.state === "hashing" ? (
                        <progress />
                      ) : (
                        <span class={f.problem ? "error" : "muted"}>{f.problem || f.state}</span>
                      )}
                    </td>
                    <td>
                      <button type="button" class="quiet" disabled={!!busy} onClick={() => removeFile(f.path)}>
                        Remove
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {uploading && (
            <progress class="launch-upload-progress" max={totalBytes || 1} value={uploadedBytes} />
          )}
        </Row>
        <div class="launch-actions">
          <button type="submit" class="primary" data-testid="launch-submit" disabled={!!busy}>
            {busy || "Launch"}
          </button>
          {error && (
            <p class="error" data-testid="launch-error" role="alert">
              {error}
            </p>
          )}
        </div>
      </form>
    </section>
  );
}

function Row(props: { label: string; field: Field; errors: FieldErrors; hint?: string; children: ComponentChildren }) {
  const problem = props.errors[props.field];
  return (
    <div class={`form-row${problem ? " invalid" : ""}`} data-field={props.field}>
      <label>{props.label}</label>
      <div class="form-control">
        {props.children}
        {problem ? (
          <div class="error field-error" data-testid={`launch-error-${props.field}`}>
            {problem}
          </div>
        ) : (
          props.hint && <div class="muted hint">{props.hint}</div>
        )}
      </div>
    </div>
  );
}

/** Runs one field's parser, recording its problem under the field instead of throwing. */
function check<T>(problems: FieldErrors, field: Field, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    problems[field] = e instanceof Error ? e.message : String(e);
    return undefined as T;
  }
}

/** The field an INVALID_ARGUMENT names ("cpus: must not be negative"), when it is one of the form's. */
function invalidField(e: unknown): { name: Field; problem: string } | null {
  if (!(e instanceof ConnectError) || e.code !== Code.InvalidArgument) return null;
  const match = /^([a-z_]+)(?:\.[a-z_.]+)?: (.*)$/s.exec(e.rawMessage);
  if (!match) return null;
  const known: Record<string, Field> = {
    command: "command",
    name: "name",
    project: "project",
    machine_group: "machine_group",
    cpus: "cpus",
    time_to_live: "time_to_live",
    env: "env",
    inputs: "inputs",
    chunk: "inputs",
    prefix: "inputs",
  };
  const name = known[match[1]];
  return name ? { name, problem: match[2] } : null;
}

/**
 * Splits a command line into words the way a POSIX shell would, without expansions: whitespace separates words,
 * single quotes keep everything literally, double quotes keep everything but \\ \" \$ \` escapes, and a backslash
 * outside quotes escapes the next character.
 */
export function splitCommand(line: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let i = 0;
  while (i < line.length) {
    const c = line[i];
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error("a single quote is not closed");
      word += line.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      i++;
      for (;;) {
        if (i >= line.length) throw new Error("a double quote is not closed");
        const d = line[i];
        if (d === '"') break;
        if (d === "\\" && i + 1 < line.length && '\\"$`\n'.includes(line[i + 1])) {
          if (line[i + 1] !== "\n") word += line[i + 1];
          i += 2;
        } else {
          word += d;
          i++;
        }
      }
      inWord = true;
      i++;
    } else if (c === "\\") {
      if (i + 1 >= line.length) throw new Error("the command ends with a lone backslash");
      if (line[i + 1] !== "\n") {
        word += line[i + 1];
        inWord = true;
      }
      i += 2;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
      i++;
    } else {
      word += c;
      inWord = true;
      i++;
    }
  }
  if (inWord) words.push(word);
  return words;
}

const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** "90s", "10m", "1h30m", "1.5h" or plain seconds ("600") as a Duration. */
export function parseDuration(text: string): { seconds: bigint; nanos: number } {
  const compact = text.trim().replace(/\s+/g, "");
  let total = 0;
  if (/^\d+(\.\d+)?$/.test(compact)) {
    total = Number(compact);
  } else {
    const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
    let matched = 0;
    for (let m = part.exec(compact); m; m = part.exec(compact)) {
      total += Number(m[1]) * UNIT_SECONDS[m[2]];
      matched = part.lastIndex;
    }
    if (matched === 0 || matched !== compact.length) {
      throw new Error(`${JSON.stringify(text.trim())} is not a duration such as 90s, 10m or 1h30m`);
    }
  }
  if (total <= 0) throw new Error("must be above zero; leave it empty for no limit");
  const whole = Math.floor(total);
  return { seconds: BigInt(whole), nanos: Math.round((total - whole) * 1e9) };
}

/** KEY=VALUE lines; blank lines and lines starting with # are skipped. */
function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  text.split(/\r?\n/).forEach((line, index) => {
    if (!line.trim() || line.trimStart().startsWith("#")) return;
    const eq = line.indexOf("=");
    const key = eq < 0 ? "" : line.slice(0, eq).trim();
    if (!key) throw new Error(`line ${index + 1}: expected KEY=VALUE`);
    env[key] = line.slice(eq + 1);
  });
  return env;
}

/** A folder's file path without the folder itself: "case/mesh/a.msh" → "mesh/a.msh". */
function withoutTopFolder(path: string): string {
  const slash = path.indexOf("/");
  return slash < 0 ? path : path.slice(slash + 1);
}

function sameFiles(a: InputFile[], b: InputFile[]): boolean {
  return a.length === b.length && a.every((f, i) => f.path === b[i].path && f.file === b[i].file);
}

function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Lowercase hex SHA-256; WebCrypto exists only in secure contexts, so plain-HTTP origins use sha256Bytes. */
async function sha256Hex(buffer: ArrayBuffer): Promise<string> {
  const digest = globalThis.crypto?.subtle
    ? new Uint8Array(await crypto.subtle.digest("SHA-256", buffer))
    : sha256Bytes(new Uint8Array(buffer));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

const SHA256_K = Uint32Array.from(primes(64), (p) => Math.floor(frac(Math.cbrt(p)) * 2 ** 32));

function primes(count: number): number[] {
  const found: number[] = [];
  for (let n = 2; found.length < count; n++) if (found.every((p) => n % p !== 0)) found.push(n);
  return found;
}

function frac(x: number): number {
  return x - Math.floor(x);
}

/** FIPS 180-4 SHA-256 for browsers without WebCrypto (the console served over plain HTTP to another host). */
function sha256Bytes(data: Uint8Array): Uint8Array {
  const h = Uint32Array.from(primes(8), (p) => Math.floor(frac(Math.sqrt(p)) * 2 ** 32));
  const padded = new Uint8Array((((data.length + 9 + 63) >> 6) << 6));
  padded.set(data);
  padded[data.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(data.length / 2 ** 29));
  view.setUint32(padded.length - 4, (data.length << 3) >>> 0);
  const w = new Uint32Array(64);
  const rotr = (x: number, n: number) => (x >>> n) | (x << (32 - n));
  for (let block = 0; block < padded.length; block += 64) {
    for (let t = 0; t < 16; t++) w[t] = view.getUint32(block + t * 4);
    for (let t = 16; t < 64; t++) {
      const s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >>> 3);
      const s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >>> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let t = 0; t < 64; t++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + SHA256_K[t] + w[t]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      [hh, g, f, e, d, c, b, a] = [g, f, e, (d + t1) >>> 0, c, b, a, (t1 + t2) >>> 0];
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  h.forEach((word, i) => outView.setUint32(i * 4, word));
  return out;
}
