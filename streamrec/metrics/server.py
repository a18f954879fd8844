"""The HTTP endpoint of a service: ``/metrics``, ``/healthz`` and ``/readyz``.

A ``ThreadingHTTPServer`` on a daemon thread, so a slow scrape never blocks the consumer
loop and a stuck endpoint never keeps the process alive. Each connection has its own thread
and an idle timeout: a client that connects and sends nothing (or trickles) is dropped after
``idle_timeout_s`` instead of holding its thread forever, and never delays other clients.
Health and readiness are callables supplied by the service: the server only reports, it does
not decide.

The bind address is the ``metrics_host`` setting (default ``0.0.0.0``: in a container the
endpoint must answer on the container's network, where the orchestrator and Prometheus
scrape it; on a shared host set ``127.0.0.1`` or a private interface).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping, Union

from streamrec.metrics.registry import CONTENT_TYPE, MetricsRegistry

log = logging.getLogger(__name__)

# A check returns ``True``/``False``, or a mapping whose ``"status"`` is ``"ok"`` when
# healthy; the mapping's other keys (lag, model version, ...) are echoed in the JSON body.
HealthResult = Union[bool, Mapping[str, object]]
HealthCheck = Callable[[], HealthResult]


def _evaluate(check: HealthCheck | None) -> tuple[int, dict[str, object]]:
    """Run a check and turn its answer into an HTTP status and a JSON body."""
    if check is None:
        return 200, {"status": "ok"}
    try:
        result = check()
    except Exception as exc:  # a failing check means unhealthy, never a 500 with a trace
        log.warning("health check raised", exc_info=True)
        return 503, {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    if isinstance(result, Mapping):
        body = {"status": "ok", **result}
        ok = body["status"] == "ok"
    else:
        ok = bool(result)
        body = {"status": "ok" if ok else "unhealthy"}
    return (200 if ok else 503), body


class _RequestDeadlines:
    """Shuts down connections that have not sent a whole request within ``seconds``.

    The socket timeout ends a connection that goes silent, but not one that trickles a
    byte every few seconds; this one thread bounds how long any client can take to ask.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._waiting: dict[socket.socket, float] = {}
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._reap, name="metrics-http-deadlines",
                                        daemon=True)
        self._thread.start()

    def watch(self, connection: socket.socket) -> None:
        with self._lock:
            self._waiting[connection] = time.monotonic() + self.seconds

    def release(self, connection: socket.socket) -> None:
        with self._lock:
            self._waiting.pop(connection, None)

    def _reap(self) -> None:
        while not self._closed.wait(min(0.5, self.seconds / 4)):
            now = time.monotonic()
            with self._lock:
                expired = [c for c, deadline in self._waiting.items() if deadline <= now]
                for connection in expired:
                    del self._waiting[connection]
            for connection in expired:
                try:
                    # The handler's pending read returns at once and its thread ends.
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:  # already closed by the client
                    pass

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)


class MetricsServer:
    """Serve a registry for Prometheus and health for the orchestrator.

    ``port=0`` picks a free port; read it back from ``.port``. ``ready`` defaults to
    ``health``: a service that restores state before consuming passes a separate check so
    it is alive (not restarted) but not yet ready (no traffic) during the restore.
    ``idle_timeout_s`` bounds both a silent connection and the time to send a request.

    >>> server = MetricsServer(MetricsRegistry(), port=0, host="127.0.0.1")
    >>> server.port > 0
    True
    >>> server.close()
    """

    def __init__(self, registry: MetricsRegistry, port: int, host: str = "0.0.0.0",
                 health: HealthCheck | None = None, ready: HealthCheck | None = None,
                 idle_timeout_s: float = 5.0) -> None:
        if idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be positive, got {idle_timeout_s!r}")
        self.registry = registry
        self.health = health
        self.ready = ready if ready is not None else health
        self.idle_timeout_s = idle_timeout_s
        self._started = time.monotonic()
        self._deadlines = _RequestDeadlines(idle_timeout_s)
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True  # in-flight scrapes never block shutdown
        self.host, self.port = str(self._httpd.server_address[0]), self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name=f"metrics-http-{self.port}", daemon=True)
        self._thread.start()
        log.info("metrics endpoint listening", extra={"host": self.host, "port": self.port})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            # Socket timeout of every read and write on the connection (set in setup()):
            # an idle or trickling client times out and its thread ends.
            timeout = server.idle_timeout_s

            def setup(self) -> None:
                super().setup()
                server._deadlines.watch(self.connection)

            def parse_request(self) -> bool:
                parsed = super().parse_request()  # reads the headers too
                # The request line and headers are in: the client asked in time.
                server._deadlines.release(self.connection)
                return parsed

            def finish(self) -> None:
                server._deadlines.release(self.connection)
                super().finish()

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE, server.registry.render().encode())
                elif path in ("/healthz", "/readyz"):
                    check = server.health if path == "/healthz" else server.ready
                    status, body = _evaluate(check)
                    body.setdefault("uptime_s", round(time.monotonic() - server._started, 3))
                    payload = json.dumps(body, default=str).encode()
                    self._send(status, "application/json", payload)
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found\n")

            def _send(self, status: int, content_type: str, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                # Scrapes every few seconds would flood stderr; keep them at debug level.
                log.debug("http %s", format % args)

        return Handler

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        """Stop serving, release the port and wait for the server thread."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._deadlines.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "MetricsServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
