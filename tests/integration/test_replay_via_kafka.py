"""`streamrec replay --via-kafka --start-services` on a real broker, end to end.

A small synthetic log goes through clicks -> ingest -> user-state -> score ->
recommendations; the report must hold real end-to-end latencies and one recommendation
per user-state trigger.
"""

from __future__ import annotations

import json
import math

import pytest

from streamrec.online_models.user_state import decode_state
from streamrec.producers.synthetic import SyntheticStream
from streamrec.app.cli import main
from streamrec.events import encode_click
from support import latest_by_key, read_topic, trigger_ids

pytestmark = pytest.mark.kafka

N_EVENTS = 2_000


@pytest.fixture
def log(tmp_path):
    stream = SyntheticStream(n_users=80, n_items=300, n_events=N_EVENTS, seed=7, mean_gap_s=1.0)
    path = tmp_path / "clicks.jsonl"
    path.write_bytes(b"\n".join(encode_click(e) for e in stream.events()) + b"\n")
    return path


def test_replay_via_kafka_reports_end_to_end_latency_and_one_recommendation_per_trigger(
        kafka_settings, log, tmp_path, capsys):
    settings = kafka_settings
    out = tmp_path / "report"
    code = main(["replay", str(log), "--format", "jsonl", "--out", str(out), "--no-progress",
                 "--systems", "most-popular", "--window", "500", "--via-kafka",
                 "--start-services", "--bootstrap-servers", settings.bootstrap_servers,
                 "--topic-prefix", settings.topic_prefix,
                 # 2,000 s of event time in ~5 s: paced, so recommendations arrive between
                 # a user's clicks and the hit rule has something to find.
                 "--speed", "400", "--timeout", "60"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert settings.topic_prefix in captured.out

    report = json.loads((out / "report.json").read_text())
    kafka = report["via_kafka"]
    assert report["config"]["via_kafka"]["hit_rule"] == kafka["hit_rule"]
    assert "received before the event was produced" in kafka["hit_rule"]
    assert kafka["events_produced"] == N_EVENTS and kafka["events_per_s_produced"] > 0
    for key in ("e2e_latency_ms", "event_to_reflecting_recommendation_ms",
                "scorer_end_to_end_ms", "scorer_score_ms"):
        figures = kafka[key]
        assert figures["count"] > 0, key
        assert all(math.isfinite(figures[q]) for q in ("p50", "p95", "p99")), key
        assert 0 <= figures["p50"] <= figures["p95"] <= figures["p99"], key
    e2e = kafka["e2e_latency_ms"]
    assert 0 < e2e["p50"] <= e2e["p99"] and e2e["count"] == kafka["recommendations_received"]
    assert kafka["events_unreflected"] == 0 and kafka["recommendations_unmatched"] == 0

    # One recommendation per trigger: a user-state message that carried new events (ingest
    # emits one per user per batch; states only re-emitted for a new embedding trigger none).
    states = read_topic(settings, settings.topics.user_state, idle_s=1.0,
                        until=lambda rs: sum(decode_state(r.value).event_count
                                             for r in latest_by_key(rs).values()) >= N_EVENTS)
    assert kafka["recommendations_received"] == len(trigger_ids(states))

    assert set(report["systems"]) == {"streamrec-kafka", "most-popular"}
    for name, stats in report["systems"].items():
        overall = stats["overall"]
        assert overall["events"] == N_EVENTS, name
        for metric in ("hr@10", "ndcg@10", "mrr@10"):
            assert 0.0 <= overall[metric] <= 1.0, (name, metric)
    assert report["systems"]["streamrec-kafka"]["exclusion_violations"] == 0
    assert "## Kafka path" in (out / "report.md").read_text()
    assert len(list(out.glob("*.png"))) >= 2
