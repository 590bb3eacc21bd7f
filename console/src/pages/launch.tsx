/**
 * Launch: start a task from the browser. Input files are hashed and uploaded one message each (UploadFile, since
 * browsers cannot stream requests over gRPC-web), then the task is submitted and the console opens its page.
 * The form's parts live in launch/: its fields, the values read from them, the input files and their upload.
 */
import type { JSX } from "preact";
import { useEffect, useState } from "preact/hooks";

import { errorMessage, machineGroups, tasks } from "../api";
import { formatBytes } from "../format";
import { MachineGroupState } from "../gen/simplane/v1/machine_group_pb";
import { navigate } from "../router";
import { check, type FieldErrors, Row, serverFieldErrors } from "./launch/fields";
import { parseDuration, parseEnv, splitCommand } from "./launch/form_values";
import {
  type InputFile,
  InputFiles,
  MAX_BROWSER_FILE,
  sameFiles,
  tooBigProblem,
  withPicked,
} from "./launch/input_files";
import { uploadInputs } from "./launch/upload";

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
    setFiles(withPicked(files, list, fromFolder));
    setUploaded(null);
  }

  function removeFile(path: string) {
    setFiles(files.filter((f) => f.path !== path));
    setUploaded(null);
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
    const tooBig = tooBigProblem(files);
    if (tooBig) problems.inputs = tooBig;
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
          inputs = await uploadInputs(selection, setFiles);
          setUploaded({ prefix: inputs, files: selection });
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
      setFieldErrors(serverFieldErrors(e));
      setError(errorMessage(e));
    } finally {
      setBusy("");
    }
  }

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
          <InputFiles files={files} busy={!!busy} onPick={addFiles} onRemove={removeFile} />
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
