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
    # TLS / SASL of every client (streamrec.transport.kafka_clients builds them all from it).
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
    # Consumer groups and the start of every transactional id. The topic prefix is put in
    # front of the groups (``ingest_group_id``, ``score_group_id``) and so of every
    # transactional id: two pipelines with different prefixes on one cluster never share a
    # group or fence each other's producers.
    ingest_group: str = "streamrec-ingest"
    score_group: str = "streamrec-score"
    transactional_id_prefix: str = "streamrec"
    # -- group membership and health (streamrec.transport.runtime, streamrec.transport.service_health) ---------
    # A member silent this long is dropped from its group and its partitions move. With
    # ``--instance-id`` (static membership) a restarted instance takes its partitions back
    # without a rebalance if it returns within this time; a stopped one keeps them idle
    # until it expires, so keep it short where instances are scaled down often.
    session_timeout_s: float = 45.0
    # /readyz turns unhealthy when nothing was committed for this long while there was work
    # (lag, or a batch in flight), or when the broker has not answered for this long.
    stall_after_s: float = 60.0
    broker_silence_s: float = 30.0
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
    # --- Control-plane trust (issue 9; streamrec.export.store_root, streamrec.signing) -------------
    # Models are loaded only from version folders directly under this root (resolved, no
    # ".." or symlink out): the trainer writes there, the scorer and ingest read there.
    # `streamrec train --store` overrides it for the trainer; compose mounts /models.
    model_store: str = "./model-store"
    # HMAC-SHA256 key of forget, adopt-model and models messages; empty = unsigned (no
    # check). A secret: never in repr, logs or metrics.
    control_secret: str = field(default="", repr=False)
    # -- Bounds on what enters and leaves (issue 9; README "Bounds on input") ---------------
    # A click's ``ts`` may be at most this far ahead of its record's broker timestamp (the
    # past is unbounded: replaying a 1997 log is fine); outside: dead letter ts_out_of_range.
    max_event_ahead_s: float = 86400.0
    # Ids (event, user, item, request, excluded items, context keys and string values) are
    # at most this many UTF-8 bytes and free of control characters (else ``bad_id``).
    max_id_bytes: int = 256
    max_context_entries: int = 32
    max_exclude_items: int = 1000
    # A request's ``k`` above this is clamped to it (not dead-lettered: the caller still
    # gets an answer, at most ``max_k`` items).
    max_k: int = 200
    # The size limit of topics without an override (Kafka's default, 1 MiB): dead letters
    # and recommendations are built to fit it; ``validate`` checks they can.
    max_message_bytes: int = 1024 * 1024
    # The longest online-embedding vector a user state may carry.
    max_embedding_dim: int = 1024

    @property
    def topics(self) -> TopicNames:
        return TopicNames.with_prefix(self.topic_prefix)

    @property
    def ingest_group_id(self) -> str:
        """Ingest's consumer group: ``ingest_group`` behind the topic prefix."""
        return self.topic_prefix + self.ingest_group

    @property
    def score_group_id(self) -> str:
        """The scorer's consumer group: ``score_group`` behind the topic prefix."""
        return self.topic_prefix + self.score_group

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
        # The broker refuses sessions outside group.{min,max}.session.timeout.ms (6 s, 30 min
        # by default); the heartbeat goes every third of it, at most every 3 s.
        if not 6.0 <= self.session_timeout_s <= 1800.0:
            raise ConfigError(f"session_timeout_s must be in [6, 1800], got "
                              f"{self.session_timeout_s!r}")
        for name in ("stall_after_s", "broker_silence_s"):
            if not 0.0 < getattr(self, name) < float("inf"):
                raise ConfigError(f"{name} must be a positive number of seconds, got "
                                  f"{getattr(self, name)!r}")
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
        self._validate_bounds()

    def _validate_bounds(self) -> None:
        """The input bounds, and that every message we build fits its topic by construction."""
        for name in ("max_id_bytes", "max_context_entries", "max_exclude_items", "max_k",
                     "max_message_bytes", "max_embedding_dim"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not self.max_event_ahead_s >= 0.0 or self.max_event_ahead_s == float("inf"):
            raise ConfigError(f"max_event_ahead_s must be finite and >= 0, "
                              f"got {self.max_event_ahead_s!r}")
        if self.top_k > self.max_k:
            raise ConfigError(f"top_k ({self.top_k}) must not exceed max_k ({self.max_k})")
        if recommendation_bytes_bound(self) > self.max_message_bytes:
            raise ConfigError(f"a recommendation of max_k={self.max_k} items with ids of "
                              f"max_id_bytes={self.max_id_bytes} can take "
                              f"{recommendation_bytes_bound(self)} bytes > max_message_bytes="
                              f"{self.max_message_bytes}")
        if user_state_bytes_bound(self) > USER_STATE_MAX_MESSAGE_BYTES:
            raise ConfigError(f"a user state (recent_items={self.recent_items}, max_seen_items="
                              f"{self.max_seen_items}, batch_size={self.batch_size}, ids of "
                              f"{self.max_id_bytes} bytes) can take {user_state_bytes_bound(self)}"
                              f" bytes > the user-state topic limit "
                              f"{USER_STATE_MAX_MESSAGE_BYTES}")
        if self.max_event_bytes > self.max_message_bytes:
            raise ConfigError("max_event_bytes must not exceed max_message_bytes")


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


# The ``max.message.bytes`` ``streamrec.transport.topics`` gives user-state (it also carries model
# snapshots); the same number, here so that Settings can check a state fits under it.
USER_STATE_MAX_MESSAGE_BYTES = 32 * 1024 * 1024
# Worst-case JSON bytes of one id of ``max_id_bytes`` UTF-8 bytes: every byte a quote or
# backslash (escaped to two), plus quotes and separator. Control characters are refused.
_ID_OVERHEAD = 4
_FLOAT_BYTES = 26  # the longest float msgspec writes, with separator
_FIXED_BYTES = 2048  # field names, counters, versions, framing


def _id_bytes(settings: Settings) -> int:
    return 2 * settings.max_id_bytes + _ID_OVERHEAD


def recommendation_bytes_bound(settings: Settings) -> int:
    """Upper bound of one recommendation message: ``max_k`` items, each explained.

    Per item: its id, its score, and at most 8 named components (streamrec.consumers.ranking); the
    user and trigger ids come from states, whose ids are bounded in characters (4 bytes
    each at most), and the model version is a store folder name.
    """
    per_item = _id_bytes(settings) + _FLOAT_BYTES + 8 * (32 + _FLOAT_BYTES)
    return _FIXED_BYTES + 4 * 4 * _id_bytes(settings) + settings.max_k * per_item


def user_state_bytes_bound(settings: Settings) -> int:
    """Upper bound of one user-state message as ingest writes it.

    Recent items with their times, seen items, the new events of one batch (id and time),
    the embedding, the user and event ids, type counts (five types).
    """
    ids = settings.recent_items + settings.max_seen_items + settings.batch_size
    times = settings.recent_items + settings.batch_size
    return (_FIXED_BYTES + ids * _id_bytes(settings) + times * _FLOAT_BYTES
            + settings.max_embedding_dim * _FLOAT_BYTES + 2 * _id_bytes(settings))


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
