/** When and how soon a broken stream is opened again. */
import { Code, ConnectError } from "@connectrpc/connect";

/** Codes that another try cannot change; anything else (a lost network, a restarting server) is worth a retry. */
const PERMANENT = new Set([
  Code.InvalidArgument,
  Code.NotFound,
  Code.PermissionDenied,
  Code.Unauthenticated,
  Code.FailedPrecondition,
  Code.Unimplemented,
]);

export function retryable(e: unknown): boolean {
  return !PERMANENT.has(ConnectError.from(e).code);
}

/** Exponential delays from 250 ms up to 8 s, with jitter so that many tabs don't come back in step. */
export class Backoff {
  private attempt = 0;

  next(): number {
    const delay = Math.min(8000, 250 * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 10);
    return delay / 2 + (Math.random() * delay) / 2;
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** Resolves after `ms`, or as soon as `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
