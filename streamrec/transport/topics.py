"""Create every topic streamrec uses, with the layout DESIGN.md gives them.

``clicks``, ``user-state``, ``requests`` and ``scorer-state`` are co-partitioned: keyed by user
id with the same partition count, so one scorer / ingest instance sees a user's clicks, state,
requests and the scorer's own state of that user in the same partition number. A mismatch
would silently send a user's events to the wrong instance, so ``create_topics`` refuses to go
on when an existing topic breaks it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kafka import KafkaAdminClient
from kafka import errors as kafka_errors

from streamrec.transport import kafka_clients
from streamrec.config import ConfigError, Settings

COMPACT = {"cleanup.policy": "compact"}
# user-state also carries each partition's online-model snapshot (about 1-2 MB for a
# MovieLens-sized catalogue), above the broker's 1 MB default message limit.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


class TopicLayoutError(ConfigError):
    """An existing topic's layout conflicts with what streamrec needs; the message says how."""


class ReplicationFactorError(ConfigError):
    """More replicas were asked for than the cluster has brokers."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic to create: name, partitions, configs; ``co_partitioned`` topics must agree."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)
    co_partitioned: bool = False


def topic_specs(settings: Settings, partitions: int | None = None) -> list[TopicSpec]:
    """The topics of DESIGN.md, named by ``settings.topics`` (prefix applied)."""
    n = partitions if partitions is not None else settings.partitions
    rf = settings.replication_factor
    names = settings.topics
    return [
        TopicSpec(names.clicks, n, rf, co_partitioned=True),
        # Same count as clicks: the DLQ keeps the original key, hence its partition.
        TopicSpec(names.dlq, n, rf),
        # Compacted changelog: the latest state per user survives, so state can be rebuilt.
        TopicSpec(names.user_state, n, rf, {**COMPACT, "max.message.bytes": str(MAX_MESSAGE_BYTES)},
                  co_partitioned=True),
        TopicSpec(names.requests, n, rf, co_partitioned=True),
        TopicSpec(names.recommendations, n, rf),
        # One partition: every consumer reads all of it, and model order is total.
        TopicSpec(names.models, 1, rf, dict(COMPACT)),
        # The scorer's own learned state, written in the same transactions as its offsets and
        # restored by the owner of the user-state partition of the same number: compacted
        # like user-state (the latest per key survives), and as large a message limit.
        TopicSpec(names.scorer_state, n, rf,
                  {**COMPACT, "max.message.bytes": str(MAX_MESSAGE_BYTES)}, co_partitioned=True),
    ]


def create_topics(settings: Settings, admin: KafkaAdminClient | None = None,
                  partitions: int | None = None, timeout_s: float = 30.0) -> list[str]:
    """Create streamrec's topics; existing ones are fine. Returns every topic name, in order.

    Idempotent, so every service and test may call it at start-up. Raises
    ``TopicLayoutError`` if an existing co-partitioned topic has another partition count,
    and returns only once every topic has a leader for each partition (see
    ``wait_for_topics``), so the caller can produce right away.
    """
    specs = topic_specs(settings, partitions)
    own_admin = admin is None
    if admin is None:
        admin = kafka_clients.admin(settings, client_id="streamrec-topics")
    try:
        names = [s.name for s in specs]
        check_replication_factor(settings, admin)
        existing = sorted(set(admin.list_topics()) & set(names))
        if existing:  # check first: never create half a layout next to a conflicting topic
            check_layout(specs, wait_for_topics(admin, existing, timeout_s))
        request = {s.name: {"num_partitions": s.partitions,
                            "replication_factor": s.replication_factor,
                            "configs": s.configs} for s in specs}
        # raise_errors=False: one existing topic must not hide another topic's real error.
        response = admin.create_topics(request, timeout_ms=int(timeout_s * 1000),
                                       raise_errors=False)
        for topic in response["topics"]:
            error = kafka_errors.for_code(topic["error_code"])
            if error is kafka_errors.InvalidReplicationFactorError:
                raise ReplicationFactorError(
                    f"replication factor {settings.replication_factor} refused for topic "
                    f"{topic['name']!r}: {topic.get('error_message') or error.__name__}")
            if error not in (kafka_errors.NoError, kafka_errors.TopicAlreadyExistsError):
                raise error(f"creating topic {topic['name']!r} failed: "
                            f"{topic.get('error_message') or error.__name__}")
        # Again after creating: another process may have created one concurrently.
        check_layout(specs, wait_for_topics(admin, names, timeout_s))
        return names
    finally:
        if own_admin:
            admin.close()


def check_replication_factor(settings: Settings, admin: KafkaAdminClient) -> None:
    """Raise ``ReplicationFactorError`` if the factor exceeds the brokers of the cluster.

    Checked before creating anything, so a bad factor never leaves half a layout behind.
    """
    try:
        brokers = len(admin.describe_cluster().get("brokers") or [])
    except kafka_errors.AuthorizationError:
        return  # no Describe on the cluster: the broker's own refusal is mapped below
    if brokers and settings.replication_factor > brokers:
        raise ReplicationFactorError(
            f"replication factor {settings.replication_factor} exceeds the {brokers} broker(s) "
            f"of the cluster at {settings.bootstrap_servers}: use --replication-factor "
            f"{brokers} or less")


def check_layout(specs: list[TopicSpec], partition_counts: dict[str, int]) -> None:
    """Raise ``TopicLayoutError`` if a co-partitioned topic has the wrong partition count."""
    wrong = [f"{s.name} has {partition_counts[s.name]} partitions, expected {s.partitions}"
             for s in specs if s.co_partitioned
             and partition_counts.get(s.name, s.partitions) != s.partitions]
    if wrong:
        raise TopicLayoutError(
            "co-partitioned topics (clicks, user-state, requests, scorer-state) must have the "
            f"same partition count: {'; '.join(wrong)}. Set STREAMREC_PARTITIONS to the "
            "existing count, or add partitions to the others (only before any state is keyed "
            "by them).")


def wait_for_topics(admin: KafkaAdminClient, names: list[str],
                    timeout_s: float = 30.0) -> dict[str, int]:
    """Block until every topic has a leader for each partition; return partition counts.

    A successful CreateTopics only means the controller accepted it; producing before the
    metadata reaches the broker fails with UnknownTopicOrPartition, so callers wait here.
    """
    deadline = time.monotonic() + timeout_s
    pending: dict[str, str] = {}
    while True:
        counts: dict[str, int] = {}
        pending = {}
        for topic in admin.describe_topics(names):
            reason = _not_ready(topic)
            if reason:
                pending[topic["name"]] = reason
            else:
                counts[topic["name"]] = len(topic["partitions"])
        pending.update({n: "missing from metadata" for n in names if n not in counts
                        and n not in pending})
        if not pending:
            return counts
        if time.monotonic() >= deadline:
            raise kafka_errors.KafkaTimeoutError(f"topics not ready after {timeout_s} s: {pending}")
        time.sleep(0.05)


def _not_ready(topic: dict) -> str | None:
    if topic.get("error_code", 0):
        return kafka_errors.for_code(topic["error_code"]).__name__
    partitions = topic.get("partitions") or []
    if not partitions:
        return "no partitions yet"
    if any(p.get("error_code", 0) or p.get("leader_id", -1) < 0 for p in partitions):
        return "partition without a leader"
    return None
