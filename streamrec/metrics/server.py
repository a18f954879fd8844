"""The HTTP endpoint of a service: ``/metrics``, ``/healthz`` and ``/readyz``.

A ``ThreadingHTTPServer`` on a daemon thread, so a slow scrape never blocks the consumer
loop and a stuck endpoint never keeps the process alive. Health and readiness are callables
supplied by the service: the server only reports, it does not decide.
"""

from __future__ import annotations

import json
import logging
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


class MetricsServer:
    """Serve a registry for Prometheus and health for the orchestrator.

    ``port=0`` picks a free port; read it back from ``.port``. ``ready`` defaults to
    ``health``: a service that restores state before consuming passes a separate check so
    it is alive (not restarted) but not yet ready (no traffic) during the restore.

    >>> server = MetricsServer(MetricsRegistry(), port=0, host="127.0.0.1")
    >>> server.port > 0
    True
    >>> server.close()
    """

    def __init__(self, registry: MetricsRegistry, port: int, host: str = "0.0.0.0",
                 health: HealthCheck | None = None, ready: HealthCheck | None = None) -> None:
        self.registry = registry
        self.health = health
        self.ready = ready if ready is not None else health
        self._started = time.monotonic()
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
        self._thread.join(timeout=5)

    def __enter__(self) -> "MetricsServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
