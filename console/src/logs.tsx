/**
 * The log viewer: stdout, stderr, both, or one file of a task, followed live with TailLogs.
 *
 * Lines live in arrays (blocks of 16,384), never in the DOM: the view renders only the lines on screen plus an
 * overscan, at a fixed line height, and new lines are shown at most once per animation frame. Each stream keeps
 * the byte offset just after its last complete line; after a network loss the tail reopens from those offsets, so
 * no line is lost or shown twice.
 */
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

import { errorMessage, tasks } from "./api";
import { statusName } from "./format";
import { LogStream, type TaskEnd } from "./gen/simplane/v1/task_pb";
import { Backoff, retryable, sleep } from "./reconnect";

/** Must match .logline's height in style.css. */
const LINE_HEIGHT = 16;
const OVERSCAN = 40;
const BLOCK_BITS = 14;
const BLOCK = 1 << BLOCK_BITS;
const NEWLINE = 10;

type Source = "stdout" | "stderr" | "both" | `file:${string}`;
type TailState = "connecting" | "live" | "reconnecting" | "ended" | "failed";

/** Lines and the stream each came from, in fixed-size blocks so that a million lines cost no copying. */
class LineStore {
  private texts: string[][] = [];
  private streams: Uint8Array[] = [];
  length = 0;

  push(text: string, stream: LogStream): void {
    const slot = this.length & (BLOCK - 1);
    if (slot === 0) {
      this.texts.push([]);
      this.streams.push(new Uint8Array(BLOCK));
    }
    const block = this.length >> BLOCK_BITS;
    this.texts[block].push(text);
    this.streams[block][slot] = stream;
    this.length++;
  }

  text(index: number): string {
    return this.texts[index >> BLOCK_BITS][index & (BLOCK - 1)];
  }

  stream(index: number): LogStream {
    return this.streams[index >> BLOCK_BITS][index & (BLOCK - 1)];
  }
}

/**
 * One stream's bytes cut into complete lines. Lines are decoded only once their newline arrived, and a newline
 * byte never occurs inside a UTF-8 sequence, so chunks may split lines and characters anywhere.
 */
class StreamLines {
  /** The byte offset just after the last complete line: where a reconnect resumes. */
  complete = 0n;
  private received = 0n;
  private pending: Uint8Array[] = [];
  private partialText: string | null = null;
  private readonly decoder = new TextDecoder();

  constructor(readonly stream: LogStream) {}

  /** The complete lines that `data`, found at `offset` of the stream, finishes. */
  take(offset: bigint, data: Uint8Array): string[] {
    if (offset < this.received) data = data.subarray(Number(this.received - offset));
    if (data.length === 0) return [];
    this.received = (offset > this.received ? offset : this.received) + BigInt(data.length);
    this.partialText = null;
    const last = data.lastIndexOf(NEWLINE);
    if (last < 0) {
      this.pending.push(data);
      return [];
    }
    const head = concat([...this.pending, data.subarray(0, last)]);
    this.pending = last + 1 < data.length ? [data.slice(last + 1)] : [];
    this.complete = this.received - BigInt(data.length - last - 1);
    return this.decoder.decode(head).split("\n").map(withoutReturn);
  }

  /** The unfinished last line as far as it decodes (an incomplete character waits), or null when there is none. */
  partial(): string | null {
    if (this.pending.length === 0) return null;
    this.partialText ??= withoutReturn(new TextDecoder().decode(concat(this.pending), { stream: true }));
    return this.partialText;
  }

  /** At the stream's end, its unfinished last line becomes a line. */
  finish(): string | null {
    const rest = this.pending.length ? withoutReturn(this.decoder.decode(concat(this.pending))) : null;
    this.pending = [];
    this.partialText = null;
    this.complete = this.received;
    return rest;
  }

  /** Drops the unfinished line, which the reopened tail sends again, and tells where to read from. */
  resume(): bigint {
    this.pending = [];
    this.partialText = null;
    this.received = this.complete;
    return this.complete;
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function withoutReturn(line: string): string {
  return line.endsWith("\r") ? line.slice(0, -1) : line;
}

function streamsOf(source: Source): LogStream[] {
  if (source === "stdout") return [LogStream.STDOUT];
  if (source === "stderr") return [LogStream.STDERR];
  if (source === "both") return [LogStream.STDOUT, LogStream.STDERR];
  return [LogStream.FILE];
}

interface Tail {
  store: LineStore;
  streams: StreamLines[];
  version: number;
  state: TailState;
  error: string;
  end: TaskEnd | null;
}

/** Follows `source` of the task until it ends, reopening from the kept offsets after failures. */
function useTail(taskId: string, source: Source): Tail {
  const [tail, setTail] = useState<Tail>(() => freshTail(source));

  useEffect(() => {
    const controller = new AbortController();
    const { signal } = controller;
    const current = freshTail(source);
    const byStream = new Map(current.streams.map((s) => [s.stream, s]));
    let frame = 0;
    const publish = (change: Partial<Tail> = {}) => {
      Object.assign(current, change);
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        setTail({ ...current, version: current.version + 1 });
        current.version++;
      });
    };
    setTail({ ...current });

    async function follow() {
      const backoff = new Backoff();
      while (!signal.aborted) {
        let error = "the stream closed before the task's end";
        try {
          const frames = tasks.tailLogs(
            {
              taskId,
              file: source.startsWith("file:") ? source.slice(5) : "",
              cursors: current.streams.map((s) => ({ stream: s.stream, offset: s.resume() })),
              follow: true,
            },
            { signal, onHeader: () => publish({ state: "live", error: "" }) },
          );
          for await (const { frame } of frames) {
            if (frame.case === "chunk") {
              const lines = byStream.get(frame.value.stream);
              if (!lines) continue;
              for (const text of lines.take(frame.value.offset, frame.value.data)) {
                current.store.push(text, lines.stream);
              }
              backoff.reset();
              publish({ state: "live" });
            } else if (frame.case === "end") {
              for (const lines of current.streams) {
                const rest = lines.finish();
                if (rest !== null) current.store.push(rest, lines.stream);
              }
              publish({ state: "ended", end: frame.value, error: "" });
              return;
            }
          }
        } catch (e) {
          if (signal.aborted) return;
          if (!retryable(e)) {
            publish({ state: "failed", error: errorMessage(e) });
            return;
          }
          error = errorMessage(e);
        }
        if (signal.aborted) return;
        publish({ state: "reconnecting", error });
        await sleep(backoff.next(), signal);
      }
    }

    void follow();
    return () => {
      controller.abort();
      cancelAnimationFrame(frame);
    };
  }, [taskId, source]);

  return tail;
}

function freshTail(source: Source): Tail {
  return {
    store: new LineStore(),
    streams: streamsOf(source).map((s) => new StreamLines(s)),
    version: 0,
    state: "connecting",
    error: "",
    end: null,
  };
}

export function LogViewer({ taskId, files }: { taskId: string; files: string[] }) {
  const [source, setSource] = useState<Source>("both");
  const [follow, setFollow] = useState(true);
  const tail = useTail(taskId, source);
  const view = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(480);

  const partials = tail.streams
    .map((s) => ({ text: s.partial(), stream: s.stream }))
    .filter((p): p is { text: string; stream: LogStream } => p.text !== null);
  const total = tail.store.length + partials.length;

  useLayoutEffect(() => {
    const element = view.current;
    if (!element) return;
    if (element.clientHeight !== height) setHeight(element.clientHeight);
    if (follow) element.scrollTop = element.scrollHeight;
  });

  // While following, the view is drawn at the bottom it is about to be scrolled to, so no frame shows a gap.
  const top = follow ? Math.max(0, total * LINE_HEIGHT - height) : scrollTop;
  const first = Math.max(0, Math.floor(top / LINE_HEIGHT) - OVERSCAN);
  const last = Math.min(total, Math.ceil((top + height) / LINE_HEIGHT) + OVERSCAN);
  const rows = [];
  for (let i = first; i < last; i++) {
    const partial = i >= tail.store.length ? partials[i - tail.store.length] : null;
    const text = partial ? partial.text : tail.store.text(i);
    const stream = partial ? partial.stream : tail.store.stream(i);
    rows.push(
      <div
        key={i}
        class={stream === LogStream.STDERR ? "logline stderr" : "logline"}
        style={{ top: i * LINE_HEIGHT }}
        data-testid="log-line"
      >
        {text}
      </div>,
    );
  }

  function onScroll() {
    const element = view.current!;
    setScrollTop(element.scrollTop);
    const atBottom = element.scrollTop + element.clientHeight >= element.scrollHeight - LINE_HEIGHT;
    if (follow && !atBottom) setFollow(false);
    else if (!follow && atBottom && element.scrollTop > 0) setFollow(true);
  }

  return (
    <div class="logs">
      <div class="toolbar">
        {(["both", "stdout", "stderr"] as const).map((s) => (
          <button
            key={s}
            type="button"
            class={source === s ? "active" : ""}
            onClick={() => setSource(s)}
            data-testid={`log-source-${s}`}
          >
            {s === "both" ? "stdout + stderr" : s}
          </button>
        ))}
        <select
          value={source.startsWith("file:") ? source : ""}
          onChange={(e) => e.currentTarget.value && setSource(e.currentTarget.value as Source)}
          data-testid="log-source-file"
        >
          <option value="">File…</option>
          {files.map((f) => (
            <option key={f} value={`file:${f}`}>
              {f}
            </option>
          ))}
        </select>
        <span class="spacer" />
        <span class="muted" data-testid="log-count">
          {tail.store.length.toLocaleString()} lines
        </span>
        <span class="muted" data-testid="log-state" data-state={tail.state}>
          {describe(tail)}
        </span>
        <button
          type="button"
          class={follow ? "active" : ""}
          aria-pressed={follow}
          onClick={() => setFollow(!follow)}
          data-testid="log-follow"
        >
          {follow ? "Following" : "Follow"}
        </button>
      </div>
      <div class="logview" ref={view} onScroll={onScroll} data-testid="log-view">
        <div style={{ height: total * LINE_HEIGHT, position: "relative" }}>{rows}</div>
      </div>
    </div>
  );
}

function describe(tail: Tail): string {
  switch (tail.state) {
    case "ended": {
      const end = tail.end!;
      return `ended ${statusName(end.status)}${end.exitCode === undefined ? "" : `, exit code ${end.exitCode}`}`;
    }
    case "reconnecting":
      return `reconnecting (${tail.error})`;
    case "failed":
      return tail.error;
    default:
      return tail.state;
  }
}
