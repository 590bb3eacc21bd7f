/**
 * The console's one door to the server: gRPC-web clients for the public services, the API key, and errors.
 *
 * Contract for the pages (stable; pages import only these):
 * - `tasks`, `storage`, `accounts`, `machineGroups`: @connectrpc/connect clients of TaskService, StorageService,
 *   AccountService and MachineGroupService, speaking binary gRPC-web to the console's own origin: unary calls over
 *   fetch, streaming ones over WebSockets (websocket_fetch.ts), so that open streams never use up the browser's
 *   six HTTP/1.1 connections to the server.
 * - `getKey()`, `setKey(key)`, `signOut(reason?)`: the API key lives in localStorage until sign-out.
 * - `errorMessage(e)`: any thrown value as one readable line.
 * - `fieldViolations(e)`: the request fields an INVALID_ARGUMENT names, read from its status details (a
 *   google.rpc.BadRequest in grpc-status-details-bin), never from its message.
 * - Any call answered with UNAUTHENTICATED signs the user out and lands on /signin with the reason; a page
 *   need not handle that code itself.
 * - `signIn(key)`: checks a key with WhoAmI before keeping it (only the sign-in page needs it).
 */
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { BadRequestSchema } from "./gen/google/rpc/error_details_pb";
import { AccountService, type WhoAmIResponse } from "./gen/simplane/v1/account_pb";
import { MachineGroupService } from "./gen/simplane/v1/machine_group_pb";
import { StorageService } from "./gen/simplane/v1/storage_pb";
import { TaskService } from "./gen/simplane/v1/task_pb";
import { navigate } from "./router";
import { webSocketFetch } from "./websocket_fetch";

const KEY_ITEM = "simplane.apiKey";
const AUTHORIZATION = "authorization";

let signOutReason = "";

export function getKey(): string {
  return localStorage.getItem(KEY_ITEM) ?? "";
}

export function setKey(key: string): void {
  localStorage.setItem(KEY_ITEM, key);
}

/** Forgets the key and shows the sign-in page, with the reason when the server sent us there. */
export function signOut(reason = ""): void {
  localStorage.removeItem(KEY_ITEM);
  signOutReason = reason;
  navigate(signInPath());
}

/** The sign-in page, remembering the page to return to. */
export function signInPath(): string {
  const here = location.pathname;
  if (here === "/signin") return here + location.search;
  return here === "/" ? "/signin" : `/signin?next=${encodeURIComponent(here)}`;
}

/** The reason of the last forced sign-out, once. */
export function takeSignOutReason(): string {
  const reason = signOutReason;
  signOutReason = "";
  return reason;
}

export function errorMessage(e: unknown): string {
  if (e instanceof ConnectError) {
    // The browser's own failures (no network, connection reset) come as UNKNOWN with fetch's message.
    if (e.code === Code.Unknown) return `the connection failed (${e.rawMessage})`;
    return `${e.rawMessage || "no details"} (${codeName(e.code)})`;
  }
  if (e instanceof Error) return e.message;
  return String(e);
}

/** A request field the server refused: its path in the request ("cpus", "command[3]", "chunk.sha256") and why. */
export interface FieldViolation {
  field: string;
  description: string;
}

export function fieldViolations(e: unknown): FieldViolation[] {
  if (!(e instanceof ConnectError) || e.code !== Code.InvalidArgument) return [];
  return e
    .findDetails(BadRequestSchema)
    .flatMap((badRequest) => badRequest.fieldViolations.map(({ field, description }) => ({ field, description })));
}

function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

function refusedKey(e: unknown): void {
  if (ConnectError.from(e).code === Code.Unauthenticated) {
    signOut(`the API key was refused: ${ConnectError.from(e).rawMessage}`);
  }
}

/** Sends the stored key, unless the call brings its own; a stored key that is refused signs the user out. */
const auth: Interceptor = (next) => async (req) => {
  const ownKey = req.header.has(AUTHORIZATION);
  if (!ownKey) {
    const key = getKey();
    if (key) req.header.set(AUTHORIZATION, `Bearer ${key}`);
  }
  try {
    const res = await next(req);
    if (!res.stream || ownKey) return res;
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          yield* messages;
        } catch (e) {
          refusedKey(e);
          throw e;
        }
      })(),
    };
  } catch (e) {
    if (!ownKey) refusedKey(e);
    throw e;
  }
};

const overFetch = createGrpcWebTransport({ baseUrl: location.origin, useBinaryFormat: true, interceptors: [auth] });
const overWebSockets = createGrpcWebTransport({
  baseUrl: location.origin,
  useBinaryFormat: true,
  interceptors: [auth],
  fetch: webSocketFetch,
});
const transport: Transport = { unary: overFetch.unary, stream: overWebSockets.stream };

export const tasks = createClient(TaskService, transport);
export const storage = createClient(StorageService, transport);
export const accounts = createClient(AccountService, transport);
export const machineGroups = createClient(MachineGroupService, transport);

/** Keeps `key` only if the server accepts it; a refused key throws with the reason. */
export async function signIn(key: string): Promise<WhoAmIResponse> {
  try {
    const me = await accounts.whoAmI({}, { headers: { [AUTHORIZATION]: `Bearer ${key}` } });
    setKey(key);
    return me;
  } catch (e) {
    if (ConnectError.from(e).code === Code.Unauthenticated) {
      throw new Error(`the API key was refused: ${ConnectError.from(e).rawMessage}`);
    }
    throw new Error(`cannot check the API key: ${errorMessage(e)}`);
  }
}
