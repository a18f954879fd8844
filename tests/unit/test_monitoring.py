"""The monitoring profile of docker-compose.yml: Prometheus scrapes every service, alert
rules and the Grafana dashboard only use metrics the code registers (no Docker needed)."""

from __future__ import annotations

import json
import os
import re
import runpy
from pathlib import Path

import yaml  # type: ignore[import-untyped]  # stubs add nothing to a test

from tests.unit.test_compose import SERVICES, environment, interpolate

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
ALERTS = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
DASHBOARD = json.loads((ROOT / "deploy/grafana/dashboards/streamrec.json").read_text())
# Long-running services with an HTTP endpoint: everything of ours that publishes a port.
SCRAPED = sorted(name for name, svc in SERVICES.items()
                 if svc.get("ports") and "STREAMREC_METRICS_PORT" in environment(svc))
# Series prometheus_client or Prometheus itself provides.
STANDARD = {"up", "process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"}
_REGISTERED_NAME = re.compile(r'"(streamrec_[a-z_]+)"')
_QUERY_NAME = re.compile(r"\b((?:streamrec|process|python)_[a-z_]+|up)\b")


def registered_metric_names() -> set[str]:
    names: set[str] = set()
    for folder, _, files in os.walk(ROOT / "streamrec", followlinks=True):  # subpackages
        for file_name in files:                                    # may be symlinks
            if file_name.endswith(".py"):
                names |= set(_REGISTERED_NAME.findall((Path(folder) / file_name).read_text()))
    return names


def _base(name: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", name)


def _names_in(expr: str) -> set[str]:
    return {_base(n) for n in _QUERY_NAME.findall(expr)}


def test_monitoring_services_are_only_in_the_profile() -> None:
    for name in ("prometheus", "grafana"):
        assert SERVICES[name]["profiles"] == ["monitoring"], name
    assert not any("profiles" in SERVICES[name] for name in SCRAPED)
    assert {"ingest", "score", "trainer"} <= set(SCRAPED)


def test_mounted_config_exists() -> None:
    for name in ("prometheus", "grafana"):
        for volume in SERVICES[name]["volumes"]:
            source = interpolate(volume).split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).is_dir(), f"{name}: {source} missing"
    mounts = dict(v.split(":")[:2] for v in SERVICES["prometheus"]["volumes"])
    for rule_file in PROMETHEUS["rule_files"]:
        folder, file_name = rule_file.rsplit("/", 1)
        local = next(src for src, target in mounts.items() if target == folder)
        assert (ROOT / local / file_name).is_file(), rule_file


def test_prometheus_scrapes_every_service_on_its_metrics_port() -> None:
    targets = {target for job in PROMETHEUS["scrape_configs"]
               for group in job["static_configs"] for target in group["targets"]}
    for name in SCRAPED:
        port = environment(SERVICES[name])["STREAMREC_METRICS_PORT"]
        assert f"{name}:{port}" in targets, f"{name} is not scraped"
    assert all(t.split(":")[0] in SERVICES for t in targets), targets


def test_alerts_and_dashboard_use_only_registered_metrics() -> None:
    known = registered_metric_names() | STANDARD
    assert {"streamrec_model_info", "streamrec_trainer_runs_total"} <= known
    exprs = [rule["expr"] for group in ALERTS["groups"] for rule in group["rules"]]
    exprs += [t["expr"] for panel in DASHBOARD["panels"] for t in panel["targets"]]
    assert len(exprs) > 20
    for expr in exprs:
        assert _names_in(expr), f"no metric in {expr!r}"
        unknown = _names_in(expr) - known
        assert not unknown, f"{expr!r} uses {unknown}, which no code registers"
    # Every metric the code registers is on the dashboard (a new one needs a panel).
    on_dashboard = set().union(*(_names_in(t["expr"]) for p in DASHBOARD["panels"]
                                 for t in p["targets"]))
    assert registered_metric_names() <= on_dashboard, registered_metric_names() - on_dashboard


def test_dashboard_file_is_what_the_generator_writes() -> None:
    module = runpy.run_path(str(ROOT / "deploy/grafana/make_dashboard.py"))
    assert module["dashboard"]() == DASHBOARD, "run python deploy/grafana/make_dashboard.py"
    datasource = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {d["uid"] for d in datasource["datasources"]}
    assert all(p["datasource"]["uid"] in uids for p in DASHBOARD["panels"])
