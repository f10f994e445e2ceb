"""Shared HTTP plumbing for the sandbox servers: request log, threaded server, fault application.

Each server is a stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive (PyGithub's
requests session and discord.py's aiohttp session both reuse connections) on a daemon thread.
An ``App`` turns a parsed ``Request`` into a ``Response``; this module handles the socket, the
fault plan (which may answer instead of the app, corrupt the app's payload, delay it, or drop
the connection) and appends every exchange to a ``RequestLog``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from credit_pipeline.sandbox.faults import Fault, FaultKind, FaultPlan, corrupt_payload, truncate_body


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the server saw it. ``status`` is 0 when the connection was dropped."""

    server: str
    method: str
    path: str
    query: dict[str, str]
    status: int
    timestamp: float
    fault: str | None = None


class RequestLog:
    """Thread-safe, append-only (until ``reset``) list of requests; tests and benchmarks read it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def records(self, server: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self._records if server is None or r.server == server]

    def reset(self) -> None:
        with self._lock:
            self._records.clear()

    def count(self, *, server: str | None = None, method: str | None = None, path_contains: str | None = None) -> int:
        return sum(
            1
            for r in self.records(server)
            if (method is None or r.method == method) and (path_contains is None or path_contains in r.path)
        )

    def faults(self) -> list[RequestRecord]:
        return [r for r in self.records() if r.fault]

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    query_pairs: list[tuple[str, str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    base_url: str  # scheme://host:port the client used (from the Host header)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8") or "null")


@dataclass(slots=True)
class Response:
    status: int
    payload: Any = None  # JSON-serialisable; ignored when ``raw`` is set
    headers: list[tuple[str, str]] = field(default_factory=list)
    raw: bytes | None = None
    content_type: str = "application/json"


class App:
    """Base class of the GitHub / Discord apps; subclasses implement ``handle`` and fault rendering."""

    name = "app"

    def __init__(self, log: RequestLog, faults: FaultPlan) -> None:
        self.log = log
        self.faults = faults

    def handle(self, request: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    def fault_response(self, fault: Fault, request: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, request: Request, response: Response) -> bytes:
        """Body bytes; subclasses may also adjust ``response`` (GitHub adds ETag / answers 304)."""
        if response.raw is not None:
            return response.raw
        if response.status in (204, 304):
            return b""
        try:
            return json.dumps(response.payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: JSON can carry it only as a \uXXXX escape, as a real API would
            return json.dumps(response.payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "SandboxHTTPServer"

    def setup(self) -> None:
        super().setup()
        # Headers and body in separate segments + Nagle + delayed ACK would cost ~40 ms per request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the default stderr access log; the RequestLog is the record."""

    def _dispatch(self) -> None:
        app = self.server.app
        split = urlsplit(self.path)
        pairs = parse_qsl(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        request = Request(
            method=self.command,
            path=split.path,
            query=dict(pairs),
            query_pairs=pairs,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            base_url=f"http://{host}",
        )
        fault = app.faults.match(app.name, request.method, request.path, request.query)
        kind = fault.kind.value if fault else None
        if fault and fault.kind is FaultKind.DROP_CONNECTION:
            self._record(request, 0, kind)
            self._drop()
            return
        if fault and fault.kind is FaultKind.DELAY:
            time.sleep(fault.delay)
        if fault and fault.kind not in (FaultKind.DELAY, FaultKind.MALFORMED_ITEM, FaultKind.TRUNCATED_BODY):
            response = app.fault_response(fault, request)
        else:
            try:
                response = app.handle(request)
            except Exception as exc:  # a sandbox bug must surface as a 500, not a hung client
                response = Response(500, {"message": f"sandbox error: {type(exc).__name__}: {exc}"})
            if fault and fault.kind is FaultKind.MALFORMED_ITEM and response.raw is None:
                response.payload = corrupt_payload(response.payload, fault)
        try:
            data = app.encode(request, response)
        except Exception as exc:  # e.g. a corrupted value that is not JSON-serialisable
            response = Response(500, {"message": f"sandbox error: {type(exc).__name__}: {exc}"})
            data = json.dumps(response.payload).encode()
        if fault and fault.kind is FaultKind.TRUNCATED_BODY and response.status == 200:
            data = truncate_body(data, fault)  # the real status and headers; Content-Length matches the cut body
        # Record before replying: a client that reads the log right after its response must see it.
        self._record(request, response.status, kind)
        self._send(response, data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def _send(self, response: Response, data: bytes) -> None:
        self.send_response(response.status)
        if data or response.status not in (204, 304):
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self._headers_buffer.append(b"\r\n")  # end_headers(), but sent in one write with the body
        if self.command != "HEAD" and data:
            self._headers_buffer.append(data)
        self.flush_headers()

    def _drop(self) -> None:
        """Close the socket without a byte of response (what a reset or LB timeout looks like)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _record(self, request: Request, status: int, fault: str | None) -> None:
        self.server.app.log.append(
            RequestRecord(self.server.app.name, request.method, request.path, request.query, status, time.time(), fault)
        )


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        super().__init__(address, _Handler)


class ServerThread:
    """Runs an ``App`` on ``host:port`` (port 0 = ephemeral) in a daemon thread until ``stop``."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.httpd = SandboxHTTPServer((host, port), app)
        self.host = host
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
