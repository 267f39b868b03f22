"""A real HTTP server on 127.0.0.1 for the download tests: files, folders, Range requests and faults.

It serves ``files`` (URL path → bytes) and ``mounts`` (URL path prefix → local folder, e.g. the
offline mirror ``../shared/data``), answers ``Range: bytes=N-`` with 206 like a real static server,
records every request, and can misbehave per URL path (see :meth:`LoopbackServer.fault`):

- ``404``: answers 404 Not Found;
- ``drop``: sends the headers (full Content-Length) and half of the body, then closes the connection;
- ``stall``: sends the headers and half of the body, then sends nothing until the test ends;
- ``hang``: accepts the connection and never answers;
- ``norange``: ignores Range and sends the whole file with 200.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FAULTS = ("404", "drop", "stall", "hang", "norange")


@dataclass
class Request:
    """One request the server saw: its path and its Range header (None when absent)."""

    path: str
    range: str | None


@dataclass
class LoopbackServer:
    """State of the server; its handler reads it on every request (tests change it between calls)."""

    files: dict[str, bytes] = field(default_factory=dict)
    mounts: dict[str, Path] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    faults: dict[str, list[str]] = field(default_factory=dict)  # path -> remaining faults, one per request
    release: threading.Event = field(default_factory=threading.Event)  # ends stalls and hangs at teardown
    port: int = 0

    def url(self, path: str = "") -> str:
        """The server's URL of ``path`` (a path starting with /)."""
        return f"http://127.0.0.1:{self.port}{path}"

    def fault(self, path: str, kind: str, times: int = 1) -> None:
        """Make the next ``times`` requests of ``path`` misbehave as ``kind`` (one of FAULTS)."""
        assert kind in FAULTS, kind
        self.faults.setdefault(path, []).extend([kind] * times)

    def body(self, path: str) -> bytes | None:
        """What ``path`` serves: a registered file, else a file under a mount, else None (404)."""
        if path in self.files:
            return self.files[path]
        for prefix, folder in self.mounts.items():
            if path.startswith(prefix.rstrip("/") + "/"):
                candidate = folder / path[len(prefix.rstrip("/")) + 1 :]
                if candidate.is_file():
                    return candidate.read_bytes()
        return None

    def paths(self) -> list[str]:
        """The paths requested so far, in order."""
        return [r.path for r in self.requests]


def _handler(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            """Keep the test output quiet."""

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            server.requests.append(Request(self.path, self.headers.get("Range")))
            pending = server.faults.get(self.path)
            fault = pending.pop(0) if pending else None
            if fault == "hang":
                server.release.wait(30)
                self.close_connection = True
                return
            body = server.body(self.path)
            if body is None or fault == "404":
                self._send(404, b"not found", {})
                return
            start = self._range_start() if fault != "norange" else 0
            if start >= len(body) and start:
                self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                return
            headers = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"} if start else {}
            chunk = body[start:]
            if fault in ("drop", "stall"):
                self._send(206 if start else 200, chunk[: len(chunk) // 2], headers, length=len(chunk))
                if fault == "stall":
                    server.release.wait(30)
                self.close_connection = True
                return
            self._send(206 if start else 200, chunk, headers)

        def _range_start(self) -> int:
            value = self.headers.get("Range")
            if not value or not value.startswith("bytes=") or not value.endswith("-"):
                return 0
            return int(value[len("bytes=") : -1])

        def _send(self, status: int, payload: bytes, headers: dict[str, str], length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload) if length is None else length))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            try:
                self.wfile.write(payload)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    return Handler


def serve() -> Iterator[LoopbackServer]:
    """Run a LoopbackServer on a free 127.0.0.1 port for the duration of a test (a fixture body)."""
    state = LoopbackServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    httpd.block_on_close = False
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()
