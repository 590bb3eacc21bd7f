/**
 * The launch form's input files: picked one by one or as a folder, listed with their upload state, and checked
 * against what the browser can upload in one message.
 */
import { formatBytes } from "../../format";

/** The most UploadFile takes in one message; bigger inputs need the streaming upload of the CLI. */
export const MAX_BROWSER_FILE = 32 * 1024 * 1024;

export type UploadState = "waiting" | "hashing" | "uploading" | "done" | "failed" | "too big";

export interface InputFile {
  file: File;
  /** Where the file lands in the task's working directory. */
  path: string;
  state: UploadState;
  problem: string;
}

/** `files` with those of a picker added (a file picked again replaces the earlier one), sorted by path. */
export function withPicked(files: InputFile[], list: FileList, fromFolder: boolean): InputFile[] {
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
  return [...byPath.values()].sort((a, b) => a.path.localeCompare(b.path));
}

/** The problem with a selection holding files the browser cannot upload, or "" if there is none. */
export function tooBigProblem(files: InputFile[]): string {
  const tooBig = files.filter((f) => f.state === "too big");
  if (tooBig.length === 0) return "";
  return (
    `${tooBig.map((f) => f.path).join(", ")}: the browser uploads files up to ${formatBytes(MAX_BROWSER_FILE)}; ` +
    "submit tasks with bigger inputs from the CLI: simplane run --inputs PATH -- COMMAND"
  );
}

export function sameFiles(a: InputFile[], b: InputFile[]): boolean {
  return a.length === b.length && a.every((f, i) => f.path === b[i].path && f.file === b[i].file);
}

/** The pickers, the list of picked files with each one's upload state, and the upload's progress. */
export function InputFiles(props: {
  files: InputFile[];
  busy: boolean;
  onPick: (list: FileList | null, fromFolder: boolean) => void;
  onRemove: (path: string) => void;
}) {
  const { files, busy } = props;
  const uploadedBytes = files.filter((f) => f.state === "done").reduce((sum, f) => sum + f.file.size, 0);
  const totalBytes = files.reduce((sum, f) => sum + f.file.size, 0);
  const uploading = files.some((f) => f.state === "hashing" || f.state === "uploading");
  return (
    <>
      <div class="launch-pickers">
        <label class="button">
          Add files
          <input
            type="file"
            multiple
            hidden
            data-testid="launch-files"
            onChange={(e) => {
              props.onPick(e.currentTarget.files, false);
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
              props.onPick(e.currentTarget.files, true);
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
                  <button type="button" class="quiet" disabled={busy} onClick={() => props.onRemove(f.path)}>
                    Remove
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {uploading && <progress class="launch-upload-progress" max={totalBytes || 1} value={uploadedBytes} />}
    </>
  );
}

/** A folder's file path without the folder itself: "case/mesh/a.msh" → "mesh/a.msh". */
function withoutTopFolder(path: string): string {
  const slash = path.indexOf("/");
  return slash < 0 ? path : path.slice(slash + 1);
}
