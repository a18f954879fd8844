"""The model info metric and the trainer's /metrics, /healthz, /readyz (no torch, no broker)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from streamrec.app.trainer_health import TrainerHealth
from streamrec.metrics import MetricsRegistry, MetricsServer, ModelInfo


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _info_lines(registry: MetricsRegistry) -> list[str]:
    return [line for line in registry.render().splitlines()
            if line.startswith("streamrec_model_info{")]


def test_model_info_labels_only_the_current_model() -> None:
    registry = MetricsRegistry()
    info = ModelInfo(registry, "score")
    assert _info_lines(registry) == []  # no model yet: no series, not a 0 series
    info.set("v000001", "deep_onnx")
    info.set("v000002", "deep_onnx")
    assert _info_lines(registry) == [
        'streamrec_model_info{kind="deep_onnx",service="score",version="v000002"} 1.0']
    info.set("v000002", "deep_onnx")  # the same model again changes nothing
    assert len(_info_lines(registry)) == 1
    info.set("x" * 500, "deep_onnx")  # a label is bounded text
    assert max(len(line) for line in _info_lines(registry)) < 200


@dataclass
class FakeService:
    started: threading.Event = field(default_factory=threading.Event)
    stopping: bool = False


@dataclass
class Outcome:
    promoted: bool
    reason: str
    version: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


def test_trainer_serves_health_readiness_and_run_metrics() -> None:
    registry = MetricsRegistry(process_metrics=True)
    service = FakeService()
    health = TrainerHealth(registry, service)
    with MetricsServer(registry, port=0, host="127.0.0.1", health=health.health,
                       ready=health.ready) as server:
        assert _get(f"{server.url}/healthz")[0] == 200
        assert _get(f"{server.url}/readyz")[0] == 503  # broker not read yet
        service.started.set()
        health.serving("v000003")
        status, body = _get(f"{server.url}/readyz")
        assert status == 200 and json.loads(body)["model_version"] == "v000003"

        health.observe(Outcome(False, "too_few_events", timings={"run_s": 0.5}))
        health.observe(None)  # a run that raised
        health.observe(Outcome(True, "promoted", "v000004", {"run_s": 42.0}))
        status, text = _get(f"{server.url}/metrics")
        assert status == 200
        assert 'streamrec_trainer_runs_total{outcome="promoted",service="train"} 1.0' in text
        assert 'streamrec_trainer_runs_total{outcome="failed",service="train"} 1.0' in text
        assert 'streamrec_trainer_runs_total{outcome="too_few_events",service="train"} 1.0' in text
        assert 'streamrec_trainer_last_run_duration_seconds{service="train"} 42.0' in text
        assert ('streamrec_model_info{kind="deep_onnx",service="train",version="v000004"} 1.0'
                in text and 'version="v000003"' not in text)
        assert "process_cpu_seconds_total" in text
        assert json.loads(_get(f"{server.url}/healthz")[1])["runs"] == 3

        service.stopping = True
        assert _get(f"{server.url}/healthz")[0] == 503
        assert _get(f"{server.url}/readyz")[0] == 503


def test_train_command_wires_the_endpoint_on_metrics_port() -> None:
    import dataclasses
    import socket

    from streamrec.app.commands.train import _health_endpoint
    from streamrec.config import Settings

    @dataclass
    class Service(FakeService):
        on_run: object = None
        on_started: object = None

    with socket.socket() as probe:  # a free port: 0 means "no endpoint" to the setting
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = Settings()
    assert _health_endpoint(dataclasses.replace(base, metrics_port=0), Service()) is None
    service = Service()
    server = _health_endpoint(
        dataclasses.replace(base, metrics_port=port, metrics_host="127.0.0.1"), service)
    assert server is not None
    try:
        assert callable(service.on_run) and callable(service.on_started)
        service.started.set()
        service.on_started("v000007")  # type: ignore[operator]
        status, text = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and 'version="v000007"' in text
        assert _get(f"http://127.0.0.1:{port}/readyz")[0] == 200
    finally:
        server.close()
