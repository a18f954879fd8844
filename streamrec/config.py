"""One frozen settings object, built at the CLI edge and passed into constructors.

Nothing below the CLI reads ``os.environ``; ``Settings.from_env`` is the only place that
does (through ``streamrec.settings_sources``), with the ``STREAMREC_`` prefix (plus the
standard ``KAFKA_BOOTSTRAP_SERVERS``). What each field accepts is one rule per field in
``streamrec.setting_rules``, plus the rules between fields of ``streamrec.setting_bounds``;
``validate`` checks them all and a refusal is one line naming the setting and the accepted
range.
How clients connect (``kafka_security``) comes, by precedence, from flags, then
``STREAMREC_KAFKA_*`` variables, then a Kafka client properties file
(``--kafka-config`` / ``STREAMREC_KAFKA_CONFIG``), then the plaintext defaults.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Mapping

from streamrec.connection import KafkaSecurity
from streamrec.setting_rules import RULES, SECRET_SETTINGS


class ConfigError(ValueError):
    """A setting has a value we cannot use; the one-line message names it and what is accepted.

    ``setting`` is the field at fault (None for a message about no single field) and
    ``problem`` the words after its name, so the CLI edge can name the variable or flag the
    value came from instead (``Settings.from_env`` does).
    """

    def __init__(self, message: str, *, setting: str | None = None,
                 problem: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting
        self.problem = problem

    # Other (setting, problem) wordings of the same refusal, for a rule between fields:
    # the CLI edge names the one the user set (``--k 300`` rather than max_k's default).
    alternatives: tuple[tuple[str, str], ...] = ()

    def named(self, label: str) -> "ConfigError":
        """The same error with the setting called ``label`` (``--k 300``, ``STREAMREC_TOP_K=300``)."""
        if self.problem is None:
            return self
        return ConfigError(f"{label}: {self.problem}", setting=self.setting, problem=self.problem)


def refuse(name: str, value: object, problem: str) -> ConfigError:
    """The ``ConfigError`` for field ``name`` holding ``value`` (a secret's value is hidden)."""
    shown = "***" if name in SECRET_SETTINGS else shown_value(value)
    return ConfigError(f"{name}={shown}: {problem}", setting=name, problem=problem)


def shown_value(value: object) -> str:
    """``value`` as a user typed it: bare when plain, quoted when empty or spaced."""
    text = str(value)
    return text if text and text.isprintable() and " " not in text else repr(text)


@dataclass(frozen=True)
class TopicNames:
    clicks: str = "clicks"
    dlq: str = "clicks.dlq"
    user_state: str = "user-state"
    requests: str = "requests"
    recommendations: str = "recommendations"
    models: str = "models"
    # The scorer's own learned state (fusion weights, candidate pools), co-partitioned with
    # user-state and restored by the partition's owner (``Processor.state_topic``).
    scorer_state: str = "scorer-state"

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
    # The scorer fuses the online ranking, item co-visitation, next-item transitions and the
    # deep model's candidates by weighted reciprocal rank (consumers/ranking.py); 0 turns a
    # source off. The defaults were chosen by `streamrec tune --until 0.5` on the first half
    # of ML-100K only (events before the split; the README quotes the second half): online
    # 0.5, co-visitation 1.5 and fusion depth 50 kept (no grid value beat them by 0.5%),
    # covisit_recent 5 -> 10 (+2.8% NDCG@10 on the prefix), transitions 0.5 (+1.5%; 1.0
    # and 2.0 lost), deep 1.0 -> 0.5 on streamrec-full (+1.3%; 2.0 lost).
    online_weight: float = 0.5
    deep_weight: float = 0.5
    # Co-visitation: its fusion weight, how many of a user's latest items a new item is
    # paired with, and how many vote when ranking.
    covisit_weight: float = 1.5
    covisit_window: int = 20
    covisit_recent: int = 10
    # Next-item transitions (directed: "after X, users went on to Y"): their fusion weight
    # and how many of the trigger's latest items vote (1: the last; 2: also the one before,
    # by where users went two steps on, at half weight).
    transition_weight: float = 0.5
    transition_order: int = 2
    # How many candidates each source brings into the fusion (the deep model's top-C too).
    # On ML-100K's first half 25, 50 and 100 rank alike (NDCG@10 0.0913/0.0913/0.0914);
    # 50 costs the scorer half of 100's per trigger.
    fusion_depth: int = 50
    # "learned": each partition's scorer serves, among the weights above times 0.5/1/2 per
    # source, the vector with the best recent NDCG@top_k on the clicks that followed its
    # recommendations (online_models/fusion_learner.py), a click counting half after
    # fusion_half_life more; its state goes to scorer-state. "fixed": the weights above.
    # On ML-100K's first half the two tie (NDCG@10 0.0926 / 0.0927, where the weights were
    # tuned), and half-lives 1,000 / 5,000 / 20,000 score 0.0925 / 0.0926 / 0.0924: 5,000 held.
    # Not the default yet: under load, 3 scorers already rank a few triggers differently
    # from 1 (tests/integration/test_scale_out.py: 9 of 345 with fixed weights), and the
    # learner, switching vectors at other moments, turns that into 37 of 345.
    fusion: str = "fixed"
    fusion_half_life: float = 5000.0
    # Users per partition whose last candidate pool the learned fusion keeps for their next
    # click (least recently triggered dropped first).
    fusion_pending_users: int = 100_000
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
    # The scorer merges the partitions of user-state in event-time order
    # (streamrec.transport.event_time): a partition with nothing fetched yet, though not at its end
    # (records in flight, an open transaction), holds the merge back at most this long.
    event_time_idle_ms: int = 2000
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
    # -- the command line ----------------------------------------------------------------
    # How long a command waits for a first answer from the brokers before it exits with one
    # line (``streamrec.app.kafka_args.check_reachable``): a typo in an address fails in seconds.
    connect_timeout_s: float = 10.0
    # Log level of every command (``--log-level`` wins).
    log_level: str = "info"

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
                 flag_names: Mapping[str, str] | None = None,
                 **overrides: object) -> "Settings":
        """Read ``STREAMREC_<FIELD>`` variables; explicit overrides (CLI flags) win.

        ``kafka_config`` is a client properties file (else ``STREAMREC_KAFKA_CONFIG``);
        ``security_flags`` are ``KafkaSecurity`` field values given as flags (None = unset).
        A ``kafka_security=`` override replaces the whole connection config. A refused
        value is named as the user gave it: its variable, or its flag (``flag_names`` maps
        the fields of ``overrides`` that came from flags to the flag, e.g. ``top_k: --k``).
        See ``streamrec.settings_sources``.
        """
        from streamrec.settings_sources import read_settings
        return read_settings(cls, os.environ if environ is None else environ,
                             kafka_config=kafka_config, security_flags=security_flags or {},
                             flag_names=flag_names or {}, overrides=overrides)

    def validate(self) -> None:
        """Raise ``ConfigError`` on the first field outside its rule (``setting_rules``),
        then on the first rule between fields that fails, then on the connection config."""
        for f in dataclasses.fields(self):
            if f.name == "kafka_security":
                continue  # KafkaSecurity.validate below, field by field
            problem = RULES[f.name].problem(getattr(self, f.name))
            if problem is not None:
                raise refuse(f.name, getattr(self, f.name), problem)
        for rule in CROSS_FIELD_RULES:
            refused = rule(self)
            if refused:
                (name, problem), others = refused[0], tuple(refused[1:])
                error = refuse(name, getattr(self, name), problem)
                error.alternatives = tuple((n, p) for n, p in others)
                raise error
        self.kafka_security.validate()
        if self.kafka_security.ssl_password and not self.kafka_security.ssl_keyfile:
            raise ConfigError("an ssl key password (STREAMREC_KAFKA_SSL_PASSWORD or "
                              "ssl.key.password) is given without ssl_keyfile: it only "
                              "decrypts a client key (accepted: with --ssl-keyfile and "
                              "--ssl-certfile, or without a key password)")


# Re-exported: the bounds that make every message fit its topic live with the rules between
# fields (tests and older callers import them from here).
from streamrec.setting_bounds import (  # noqa: E402 - needs Settings defined above
    CROSS_FIELD_RULES, USER_STATE_MAX_MESSAGE_BYTES, recommendation_bytes_bound,
    user_state_bytes_bound)

__all__ = ["CROSS_FIELD_RULES", "USER_STATE_MAX_MESSAGE_BYTES", "ConfigError", "Settings",
           "TopicNames", "recommendation_bytes_bound", "refuse", "shown_value",
           "user_state_bytes_bound"]
