/**
 * A `fetch` for streaming calls that goes over a WebSocket instead of an HTTP request.
 *
 * A browser opens at most six HTTP/1.1 connections to a host, and each open stream (WatchTasks, TailLogs) holds
 * one for as long as it lasts: a few tabs would use them all, and every later call, in any tab, would wait.
 * WebSockets are not counted against that limit. The server's side is `GrpcWebBridge.serve_websocket`
 * (docs/grpc-web.md): the first message holds the call's headers as `name: value` lines (a browser cannot set
 * headers on a WebSocket), the second the gRPC-web request body; each message back is one gRPC-web frame, the
 * trailer last. The frames are handed to connect as the body of an ordinary gRPC-web response, so parsing,
 * interceptors, deadlines and errors are the same as over fetch.
 */

/** The request headers the server reads from the first message. */
const FORWARDED = ["authorization", "grpc-timeout"];

export function webSocketFetch(input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> {
  const url = new URL(String(input));
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const headers = new Headers(init.headers);
  const body = init.body as Uint8Array;
  const signal = init.signal;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    let frames: ReadableStreamDefaultController<Uint8Array> | undefined;
    let ended = false;
    const response = new ReadableStream<Uint8Array>({
      start(controller) {
        frames = controller;
      },
      cancel() {
        end();
        socket.close();
      },
    });
    const abort = () => {
      fail(signal?.reason);
      socket.close();
    };
    signal?.addEventListener("abort", abort, { once: true });

    function end(): boolean {
      if (ended) return false;
      ended = true;
      signal?.removeEventListener("abort", abort);
      return true;
    }
    function fail(reason: unknown) {
      if (!end()) return;
      reject(reason); // a no-op once the response was given
      frames?.error(reason);
    }

    socket.onopen = () => {
      const lines = FORWARDED.filter((name) => headers.has(name)).map((name) => `${name}: ${headers.get(name)}\r\n`);
      socket.send(new TextEncoder().encode(lines.join("")));
      socket.send(body);
      resolve(new Response(response, { status: 200, headers: { "content-type": "application/grpc-web+proto" } }));
    };
    socket.onmessage = (event: MessageEvent<ArrayBuffer>) => {
      if (!ended) frames?.enqueue(new Uint8Array(event.data));
    };
    socket.onclose = (event) => {
      // 1000: the server sent the trailer and closed; anything else broke the call (connect retries those).
      if (event.code === 1000 || event.code === 1009) {
        if (end()) frames?.close();
      } else {
        fail(new TypeError(`the connection closed (WebSocket code ${event.code})`));
      }
    };
  });
}
