/**
 * Saving one file of a task in the browser. TailLogs reads a single file exactly, from the live working directory
 * while the task runs and from its stored outputs once it ended (DownloadFiles only takes directory prefixes, so
 * it would also send the file's neighbours).
 */
import { tasks } from "./api";
import { LogStream } from "./gen/simplane/v1/task_pb";

export async function download(taskId: string, path: string): Promise<void> {
  const parts: Uint8Array<ArrayBuffer>[] = [];
  let expected = 0n;
  const stream = tasks.tailLogs({
    taskId,
    file: path,
    cursors: [{ stream: LogStream.FILE, offset: 0n }],
    follow: false,
  });
  for await (const frame of stream) {
    if (frame.frame.case !== "chunk") continue;
    const chunk = frame.frame.value;
    if (chunk.offset !== expected) throw new Error(`expected bytes from offset ${expected}, got ${chunk.offset}`);
    parts.push(new Uint8Array(chunk.data));
    expected += BigInt(chunk.data.length);
  }
  const url = URL.createObjectURL(new Blob(parts, { type: "application/octet-stream" }));
  const anchor = document.createElement("a");
  anchor.href = url;
  anchor.download = path.split("/").pop() || "download";
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
