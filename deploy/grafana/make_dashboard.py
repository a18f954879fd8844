"""Writes deploy/grafana/dashboards/streamrec.json: run it after changing a panel.

The dashboard is generated so every panel's query uses a name from one list below, which
tests/unit/test_monitoring.py checks against the metrics the code registers.
    python deploy/grafana/make_dashboard.py
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards" / "streamrec.json"

# (title, unit, [(PromQL, legend)]), two panels per row.
PANELS = [
    ("Events in per second", "ops", [
        ('sum by (service) (rate(streamrec_events_in_total[1m]))', "{{service}}")]),
    ("Records out per second (recommendations, states)", "ops", [
        ('sum by (service) (rate(streamrec_events_out_total[1m]))', "{{service}}")]),
    ("Consumer lag (records)", "short", [
        ('sum by (service, topic) (streamrec_consumer_lag)', "{{service}} {{topic}}"),
        ('streamrec_global_reader_lag', "{{service}} global reader")]),
    ("Seconds since last commit", "s", [
        ('streamrec_seconds_since_last_commit', "{{service}} {{instance}}")]),
    ("Recommendation freshness p50 / p99 (click produced -> recommendation)", "s", [
        ('histogram_quantile(0.5, sum by (le) '
         '(rate(streamrec_recommendation_freshness_seconds_bucket[5m])))', "p50"),
        ('histogram_quantile(0.99, sum by (le) '
         '(rate(streamrec_recommendation_freshness_seconds_bucket[5m])))', "p99")]),
    ("Batch latency p50 / p99", "s", [
        ('histogram_quantile(0.5, sum by (service, le) '
         '(rate(streamrec_processing_latency_seconds_bucket[5m])))', "{{service}} p50"),
        ('histogram_quantile(0.99, sum by (service, le) '
         '(rate(streamrec_processing_latency_seconds_bucket[5m])))', "{{service}} p99")]),
    ("Dead-lettered per second, by reason", "ops", [
        ('sum by (service, reason) (rate(streamrec_events_rejected_total[5m])) > 0',
         "{{service}} {{reason}}"),
        ('sum by (service, topic, reason) (rate(streamrec_inputs_skipped_total[5m])) > 0',
         "{{service}} skipped {{topic}} {{reason}}")]),
    ("Batches, commits and failed commits per second", "ops", [
        ('sum by (service) (rate(streamrec_batches_total[5m]))', "{{service}} batches"),
        ('sum by (service) (rate(streamrec_commits_total[5m]))', "{{service}} commits"),
        ('sum by (service, cause) (rate(streamrec_commit_failures_total[5m]))',
         "{{service}} failed: {{cause}}")]),
    ("Online hit rate (score) and drift detections", "percentunit", [
        ('streamrec_online_hit_rate', "{{service}} hit rate"),
        ('sum by (direction) (increase(streamrec_drift_detected_total[1h]))',
         "drift {{direction}} / h")]),
    ("Model version served (1 = current)", "short", [
        ('streamrec_model_info', "{{service}} {{instance}} {{version}} ({{kind}})")]),
    ("Model adoptions (ingest) and follower skips/failures (score)", "short", [
        ('sum by (outcome) (increase(streamrec_model_adoptions_total[1h]))', "adopt {{outcome}}"),
        ('sum by (reason) (increase(streamrec_model_follower_skipped_total[1h]))',
         "not served: {{reason}}"),
        ('sum by (reason) (increase(streamrec_model_follower_failures_total[1h]))',
         "follower failure: {{reason}}")]),
    ("Trainer runs per outcome (6 h)", "short", [
        ('sum by (outcome) (increase(streamrec_trainer_runs_total[6h]))', "{{outcome}}")]),
    ("Trainer: last run duration and age", "s", [
        ('streamrec_trainer_last_run_duration_seconds', "duration"),
        ('time() - streamrec_trainer_last_run_timestamp_seconds', "since last run")]),
    ("Process CPU (cores)", "short", [
        ('rate(process_cpu_seconds_total{job="streamrec"}[1m])', "{{component}} {{instance}}")]),
    ("Process resident memory", "bytes", [
        ('process_resident_memory_bytes{job="streamrec"}', "{{component}} {{instance}}")]),
]


def panel(index: int, title: str, unit: str, queries: list[tuple[str, str]]) -> dict:
    return {
        "id": index + 1, "type": "timeseries", "title": title,
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "right"}},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                     "datasource": {"type": "prometheus", "uid": "prometheus"}}
                    for i, (expr, legend) in enumerate(queries)],
    }


def dashboard() -> dict:
    return {
        "uid": "streamrec", "title": "streamrec", "schemaVersion": 39, "version": 1,
        "editable": True, "refresh": "10s", "time": {"from": "now-30m", "to": "now"},
        "tags": ["streamrec"], "templating": {"list": []}, "annotations": {"list": []},
        "panels": [panel(i, *spec) for i, spec in enumerate(PANELS)],
    }


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {OUT} ({len(PANELS)} panels)")
