"""One frozen settings object, built at the CLI edge and passed into constructors.

Nothing below the CLI reads ``os.environ``; ``Settings.from_env`` is the only place that
does, with the ``STREAMREC_`` prefix (plus the standard ``KAFKA_BOOTSTRAP_SERVERS``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Mapping


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
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        """Read ``STREAMREC_<FIELD>`` variables; explicit overrides (CLI flags) win."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            values["bootstrap_servers"] = environ["KAFKA_BOOTSTRAP_SERVERS"]
        for f in dataclasses.fields(cls):
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
