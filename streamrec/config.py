"""One frozen settings object, built at the CLI edge and passed into constructors.

Nothing below the CLI reads ``os.environ``; ``Settings.from_env`` is the only place that
does, with the ``STREAMREC_`` prefix (plus the standard ``KAFKA_BOOTSTRAP_SERVERS``).
How clients connect (``kafka_security``) comes, by precedence, from flags, then
``STREAMREC_KAFKA_*`` variables, then a Kafka client properties file
(``--kafka-config`` / ``STREAMREC_KAFKA_CONFIG``), then the plaintext defaults.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Mapping

from streamrec.connection import SECURITY_FIELDS, KafkaSecurity, read_secret_file


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names it."""


@dataclass(frozen=True)
class TopicNames:
    clicks: str = "clicks"
    dlq: str = "clicks.dlq"
    user_state: str = "user-state"
    requests: str = "requests"
    recommendations: str = "recommendations"
    models: str = "models"

    @classmethod
    def with_prefix(cls, prefix: str) -> "TopicNames":
        base = cls()
        return cls(**{f.name: prefix + getattr(base, f.name) for f in dataclasses.fields(cls)})

    def all(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:9092"
    # TLS / SASL of every client (streamrec.kafka_clients builds them all from it).
    kafka_security: KafkaSecurity = KafkaSecurity()
    topic_prefix: str = ""
    partitions: int = 4
    replication_factor: int = 1
    # Events larger than this are dead-lettered before decoding (protects memory).
    max_event_bytes: int = 64 * 1024
    # How many recent items a user's state keeps as its sequence (model input).
    recent_items: int = 50
    # How many distinct seen items a state keeps for exclusion; older ones fall off.
    max_seen_items: int = 5000
    top_k: int = 10
    # The scorer fuses the online ranking, item co-visitation and the deep model's
    # candidates by weighted reciprocal rank (consumers/ranking.py). Defaults chosen on the
    # ML-100K prequential replay (README); 0 turns a source off.
    online_weight: float = 0.5
    deep_weight: float = 1.0
    # Co-visitation: its fusion weight, how many of a user's latest items a new item is
    # paired with, and how many vote when ranking.
    covisit_weight: float = 1.5
    covisit_window: int = 20
    covisit_recent: int = 5
    # How many candidates each source brings into the fusion (the deep model's top-C too).
    # Measured on ML-100K: 50 ranks as well as 100 or 200 (NDCG@10 within 0.0002) at a
    # quarter of the scorer's per-trigger cost.
    fusion_depth: int = 50
    # Half-life of the popularity / recency scores, in event-time seconds.
    popularity_half_life_s: float = 7 * 24 * 3600.0
    # ADWIN's confidence for drift of the scorer's online hit-rate: smaller flags fewer,
    # clearer changes (each detected drop can trigger a retraining).
    drift_delta: float = 0.002
    batch_size: int = 500
    # Online models learn in micro-batches of this many events per partition (counted in
    # partition order, so results never depend on how polls were cut).
    learn_every: int = 128
    # A partition's models are snapshotted to user-state after about this many events.
    snapshot_every: int = 5000
    online_learning: int = 1  # 0 turns the online models off (state and popularity only)
    seed: int = 0
    poll_timeout_ms: int = 200
    metrics_port: int = 0  # 0 = no HTTP endpoint
    ingest_group: str = "streamrec-ingest"
    score_group: str = "streamrec-score"
    transactional_id_prefix: str = "streamrec"
    # -- metrics endpoint (streamrec.metrics.MetricsServer) --------------------------------
    # Bind address of /metrics, /healthz and /readyz when metrics_port is set. 0.0.0.0 (all
    # interfaces) is what a container needs: Prometheus, the orchestrator and the host's
    # published port reach it over the container network. On a shared host, bind to
    # 127.0.0.1 or a private interface instead.
    metrics_host: str = "0.0.0.0"
    # Model snapshots on user-state (consumers/snapshot_chunks.py): written in chunks of at
    # most snapshot_chunk_bytes (far under the topic's 32 MB max.message.bytes); a reader
    # buffers at most snapshot_max_chunks chunks per partition and snapshot_max_bytes in
    # all, and a snapshot larger than that is neither written nor read.
    snapshot_chunk_bytes: int = 4 * 1024 * 1024
    snapshot_max_chunks: int = 1024
    snapshot_max_bytes: int = 1024 * 1024 * 1024
    # --- Control-plane trust (issue 9; export.store_root, streamrec.signing) -------------
    # Models are loaded only from version folders directly under this root (resolved, no
    # ".." or symlink out): the trainer writes there, the scorer and ingest read there.
    # `streamrec train --store` overrides it for the trainer; compose mounts /models.
    model_store: str = "./model-store"
    # HMAC-SHA256 key of forget, adopt-model and models messages; empty = unsigned (no
    # check). A secret: never in repr, logs or metrics.
    control_secret: str = field(default="", repr=False)

    @property
    def topics(self) -> TopicNames:
        return TopicNames.with_prefix(self.topic_prefix)

    def replace(self, **changes: object) -> "Settings":
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 kafka_config: str | None = None,
                 security_flags: Mapping[str, object] | None = None,
                 **overrides: object) -> "Settings":
        """Read ``STREAMREC_<FIELD>`` variables; explicit overrides (CLI flags) win.

        ``kafka_config`` is a client properties file (else ``STREAMREC_KAFKA_CONFIG``);
        ``security_flags`` are ``KafkaSecurity`` field values given as flags (None = unset).
        A ``kafka_security=`` override replaces the whole connection config.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        security: dict[str, object] = {}
        properties_path = kafka_config or environ.get("STREAMREC_KAFKA_CONFIG")
        if properties_path:
            from streamrec.kafka_properties import load_properties
            properties = load_properties(properties_path)
            if properties.bootstrap_servers:
                values["bootstrap_servers"] = properties.bootstrap_servers
            security.update(properties.security)
        security.update(_security_from_env(environ))
        security.update({k: v for k, v in (security_flags or {}).items() if v is not None})
        values["kafka_security"] = KafkaSecurity(**security)  # type: ignore[arg-type]
        if environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            values["bootstrap_servers"] = environ["KAFKA_BOOTSTRAP_SERVERS"]
        for f in dataclasses.fields(cls):
            if f.name == "kafka_security":
                continue  # read field by field above
            raw = environ.get(f"STREAMREC_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _coerce(f.name, raw, f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        positive = ("partitions", "replication_factor", "max_event_bytes", "recent_items",
                    "max_seen_items", "top_k", "batch_size", "poll_timeout_ms", "learn_every",
                    "snapshot_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.popularity_half_life_s <= 0:
            raise ConfigError("popularity_half_life_s must be positive")
        if not 0.0 < self.drift_delta < 1.0:
            raise ConfigError(f"drift_delta must be between 0 and 1, got {self.drift_delta!r}")
        if not self.bootstrap_servers:
            raise ConfigError("bootstrap_servers must not be empty")
        # Snapshot chunks: each must fit a user-state message (32 MiB) with its key.
        if not 0 < self.snapshot_chunk_bytes <= 31 * 1024 * 1024:
            raise ConfigError("snapshot_chunk_bytes must be in (0, 31 MiB], got "
                              f"{self.snapshot_chunk_bytes!r}")
        if self.snapshot_max_chunks <= 0 or self.snapshot_max_bytes < self.snapshot_chunk_bytes:
            raise ConfigError("snapshot_max_chunks must be positive and snapshot_max_bytes at "
                              "least snapshot_chunk_bytes")
        self.kafka_security.validate()


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _security_from_env(environ: Mapping[str, str]) -> dict[str, object]:
    """``STREAMREC_KAFKA_<FIELD>`` for each ``KafkaSecurity`` field, plus a password file."""
    values: dict[str, object] = {}
    password_file = environ.get("STREAMREC_KAFKA_SASL_PASSWORD_FILE")
    if password_file:
        values["sasl_password"] = read_secret_file(password_file,
                                                   "STREAMREC_KAFKA_SASL_PASSWORD_FILE")
    for name in SECURITY_FIELDS:
        variable = f"STREAMREC_KAFKA_{name.upper()}"
        raw = environ.get(variable)
        if raw is None or (raw == "" and name not in ("sasl_password", "ssl_password")):
            continue
        if name == "ssl_check_hostname":
            if raw.strip().lower() not in _TRUE + _FALSE:
                raise ConfigError(f"{variable}={raw!r} is not a boolean (true or false)")
            values[name] = raw.strip().lower() in _TRUE
        elif name in ("security_protocol", "sasl_mechanism"):
            values[name] = raw.strip().upper()
        else:
            values[name] = raw  # secrets too: never echoed in a message
    return values


def _coerce(name: str, raw: str, type_name: object) -> object:
    type_text = str(type_name)
    try:
        if type_text == "int":
            return int(raw)
        if type_text == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"STREAMREC_{name.upper()}={raw!r} is not a valid {type_text}") from None
    return raw
