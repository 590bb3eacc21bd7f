/**
 * The upload of a task's input files from the browser: each file hashed, then sent in one UploadFile message
 * (browsers cannot stream requests over gRPC-web), all under a fresh prefix the task then names as its inputs.
 */
import { errorMessage, storage } from "../../api";
import type { InputFile, UploadState } from "./input_files";
import { sha256Hex } from "./sha256";

/** Uploads every file under a fresh prefix, which it returns; `show` gets the files each time a state changes. */
export async function uploadInputs(selection: InputFile[], show: (files: InputFile[]) => void): Promise<string> {
  const prefix = `inputs/${randomHex(16)}/`;
  let current = selection.map((f) => ({ ...f, state: "waiting" as UploadState, problem: "" }));
  const update = (index: number, change: Partial<InputFile>) => {
    current = current.map((f, i) => (i === index ? { ...f, ...change } : f));
    show(current);
  };
  show(current);
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
  return prefix;
}

function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");
}
