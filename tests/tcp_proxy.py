"""A TCP proxy on loopback whose connections a test can cut, to drop a client's or an agent's streams mid-way."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `upstream`.

    `drop()` resets every open connection while new ones still work; `cut()` also turns new ones away until
    `restore()`, as while a network path is down.
    """

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._refusing = False
        self.connections = 0  # forwarded
        self.refused = 0  # turned away during a cut
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._refusing:  # decided under the lock, so a cut never misses a connection being set up
                    for end in (downstream, upstream):
                        end.close()
                    self.refused += 1
                    continue
                self._open += [downstream, upstream]
                self.connections += 1
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def drop(self) -> None:
        """Cut every open connection, as when a network path dies; both ends see it at once."""
        with self._lock:
            cut, self._open = self._open, []
        for end in cut:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def cut(self) -> None:
        """Cut every open connection and turn new ones away (accepted, then closed) until `restore()`."""
        with self._lock:
            self._refusing = True
        self.drop()

    def restore(self) -> None:
        """Forward new connections again after a `cut()`."""
        with self._lock:
            self._refusing = False

    def close(self) -> None:
        self._listener.close()
        self.drop()
