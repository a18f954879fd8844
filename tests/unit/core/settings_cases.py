"""For every setting: a value it accepts and values it must refuse, as a user would type them.

``test_settings_validation`` runs each through ``STREAMREC_<FIELD>`` and checks the refusal
names the variable and the accepted range; ``scripts/settings-table`` shows the first bad
value of each, with the line it gets, in the README's settings table.
"""

from __future__ import annotations

# field: (a good value, [bad values]) -- all as environment text.
CASES: dict[str, tuple[str, list[str]]] = {
    "bootstrap_servers": ("broker-1:9092,broker-2:9092", ["", "host:99999", "a b:9092"]),
    "topic_prefix": ("prod-eu.", ["a b-", "x/y-", "p" * 300]),
    "partitions": ("12", ["0", "-1", "many", "1000000"]),
    "replication_factor": ("3", ["0", "40000"]),
    "max_event_bytes": ("1024", ["10", "2.5"]),
    "recent_items": ("20", ["0", "-5"]),
    "max_seen_items": ("100", ["0"]),
    "top_k": ("20", ["0", "-1", "ten"]),
    "online_weight": ("0", ["-3", "nan", "inf", "heavy"]),
    "deep_weight": ("2.5", ["-0.1", "nan"]),
    "covisit_weight": ("0", ["-1", "inf"]),
    "covisit_window": ("5", ["0"]),
    "covisit_recent": ("1", ["0", "-2"]),
    "transition_weight": ("1.5", ["-1", "nan"]),
    "transition_order": ("1", ["0", "4"]),
    "fusion_depth": ("100", ["-1", "0"]),
    "fusion": ("learned", ["adaptive", "", "LEARNED!"]),
    "fusion_half_life": ("2000", ["0", "-5", "inf"]),
    "fusion_pending_users": ("5000", ["0", "many"]),
    "popularity_half_life_s": ("3600", ["0", "-1", "inf"]),
    "drift_delta": ("0.01", ["0", "1", "1.5", "nan"]),
    "batch_size": ("1000", ["0", "-10", "2000000"]),
    "learn_every": ("1", ["0"]),
    "snapshot_every": ("100", ["0"]),
    "online_learning": ("0", ["2", "-1", "yes"]),
    "seed": ("42", ["-1", "4294967296", "1.5"]),
    "poll_timeout_ms": ("1000", ["0", "600001"]),
    "event_time_idle_ms": ("0", ["-1", "3600001", "soon"]),
    "metrics_port": ("9100", ["99999", "-1", "http"]),
    "metrics_host": ("127.0.0.1", ["", "my host", "a/b"]),
    "ingest_group": ("eu-ingest", ["", "my group", "tab\tgroup"]),
    "score_group": ("eu-score", ["", "x y"]),
    "transactional_id_prefix": ("eu", ["", "a b"]),
    "session_timeout_s": ("10", ["5", "3600", "nan"]),
    "stall_after_s": ("120", ["0", "-1", "inf"]),
    "broker_silence_s": ("5", ["0", "inf"]),
    "snapshot_chunk_bytes": ("65536", ["0", "41943040"]),
    "snapshot_max_chunks": ("8", ["0"]),
    "snapshot_max_bytes": ("8388608", ["0", "1024"]),
    "model_store": ("/var/lib/streamrec/models", ["", "bad\x01path"]),
    "control_secret": ("0123456789abcdef0123", ["short-secret"]),
    "max_event_ahead_s": ("60", ["-1", "inf"]),
    "max_id_bytes": ("128", ["0", "100000"]),
    "max_context_entries": ("8", ["0"]),
    "max_exclude_items": ("10", ["0"]),
    "max_k": ("50", ["0", "5"]),  # 5 < top_k (10)
    "max_message_bytes": ("2097152", ["0", "1000", "4294967296"]),
    "max_embedding_dim": ("64", ["0"]),
    "connect_timeout_s": ("2.5", ["0", "-1", "601", "soon"]),
    "log_level": ("DEBUG", ["loud", "", "trace"]),
}
