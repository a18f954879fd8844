"""Least-privilege ACLs for streamrec's principals, as data.

Each service authenticates as its own principal and may touch only what its code uses
(names come from ``Settings``, so a topic prefix or another group name changes every rule):

- ``app``: the application around streamrec. Publishes ``clicks`` (also ``forget`` requests,
  which travel on clicks) and ``requests``; reads ``recommendations`` by partition
  assignment, without a consumer group, so it gets no group ACL.
- ``ingest``: consumes ``clicks`` in ``ingest_group_id`` (the topic prefix, then
  ``ingest_group``); writes ``user-state`` and the DLQ in
  transactions whose ids start with ``{transactional_id_prefix}-{ingest_group_id}-``
  (``streamrec.transport.runtime``); reads ``user-state`` back to restore its partitions.
- ``score``: consumes ``user-state`` and ``requests`` in ``score_group_id``; writes
  ``recommendations``, the DLQ, drift messages on ``models`` and its own learned state on
  ``scorer-state`` in its own transactions; reads ``scorer-state`` back to restore its
  partitions (the only principal that reads or writes it); follows ``models`` (no group).
- ``train``: reads ``clicks`` and ``models`` by assignment (no group); publishes models on
  ``models`` and ``adopt-model`` announcements on ``clicks`` with an idempotent producer.
- ``admin``: the operator, a super user on the broker (creates topics, applies these ACLs).

Idempotent producers need no ``IDEMPOTENT_WRITE`` on the cluster: since Kafka 3.0 (KIP-679)
``WRITE`` on any topic is enough, which the secure-broker tests check on Kafka 4.1.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from typing import Any

from streamrec.config import Settings

ADMIN = "admin"
SERVICE_PRINCIPALS = ("app", "ingest", "score", "train")

TOPIC, GROUP, TRANSACTIONAL_ID = "topic", "group", "transactional-id"
LITERAL, PREFIXED = "literal", "prefixed"


@dataclass(frozen=True, order=True)
class AclRule:
    """One ALLOW rule: ``principal`` may do ``operation`` on the resource (any host)."""

    principal: str      # the SASL user name; the Kafka principal is ``User:<principal>``
    resource_type: str  # TOPIC, GROUP or TRANSACTIONAL_ID
    resource_name: str
    pattern_type: str   # LITERAL or PREFIXED
    operation: str      # Kafka's operation name, lower case: read, write, describe

    @property
    def kafka_principal(self) -> str:
        return f"User:{self.principal}"


def transactional_id_prefix(settings: Settings, group: str) -> str:
    """What every transactional id of one service starts with (see ``ProcessorService``)."""
    return f"{settings.transactional_id_prefix}-{group}-"


def acl_bindings(settings: Settings) -> list[AclRule]:
    """Every rule the four service principals need, sorted, no duplicates."""
    t = settings.topics
    rules: set[AclRule] = set()

    def topic(principal: str, name: str, *operations: str) -> None:
        # DESCRIBE is implied by READ and WRITE; listed anyway so the table reads plainly.
        rules.update(AclRule(principal, TOPIC, name, LITERAL, op)
                     for op in (*operations, "describe"))

    def consumer_group(principal: str, group: str) -> None:
        rules.add(AclRule(principal, GROUP, group, LITERAL, "read"))

    def transactions(principal: str, group: str) -> None:
        for op in ("write", "describe"):
            rules.add(AclRule(principal, TRANSACTIONAL_ID,
                              transactional_id_prefix(settings, group), PREFIXED, op))

    topic("app", t.clicks, "write")
    topic("app", t.requests, "write")
    topic("app", t.recommendations, "read")

    topic("ingest", t.clicks, "read")
    topic("ingest", t.user_state, "read", "write")  # read: restore after a rebalance
    topic("ingest", t.dlq, "write")
    consumer_group("ingest", settings.ingest_group_id)
    transactions("ingest", settings.ingest_group_id)

    topic("score", t.user_state, "read")
    topic("score", t.requests, "read")
    topic("score", t.models, "read", "write")  # write: drift messages for the trainer
    topic("score", t.recommendations, "write")
    topic("score", t.dlq, "write")
    topic("score", t.scorer_state, "read", "write")  # read: restore after a rebalance
    consumer_group("score", settings.score_group_id)
    transactions("score", settings.score_group_id)

    topic("train", t.clicks, "read", "write")  # write: adopt-model announcements to ingest
    topic("train", t.models, "read", "write")
    return sorted(rules)


def kafka_acls_commands(settings: Settings, bootstrap: str | None = None,
                        command_config: str | None = None) -> list[str]:
    """One ``kafka-acls.sh --add`` line per (principal, resource): Kafka's own tool, ready to
    run by an operator whose ``--command-config`` authenticates as a super user."""
    head = ["kafka-acls.sh", "--bootstrap-server", bootstrap or settings.bootstrap_servers]
    if command_config:
        head += ["--command-config", command_config]
    grouped: dict[tuple[str, str, str, str], list[str]] = {}
    for rule in acl_bindings(settings):
        key = (rule.principal, rule.resource_type, rule.resource_name, rule.pattern_type)
        grouped.setdefault(key, []).append(rule.operation)
    lines = []
    for (principal, resource_type, name, pattern), operations in grouped.items():
        argv = [*head, "--add", "--allow-principal", f"User:{principal}"]
        for op in operations:
            argv += ["--operation", op.capitalize()]
        argv += [f"--{resource_type}", name, "--resource-pattern-type", pattern]
        lines.append(shlex.join(argv))
    return lines


def to_kafka_python(rule: AclRule) -> Any:
    """The ``kafka.admin.ACL`` for one rule (late import: the data needs no client)."""
    from kafka.admin import (ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                             ResourcePattern, ResourceType)
    resource_types = {TOPIC: ResourceType.TOPIC, GROUP: ResourceType.GROUP,
                      TRANSACTIONAL_ID: ResourceType.TRANSACTIONAL_ID}
    patterns = {LITERAL: ACLResourcePatternType.LITERAL, PREFIXED: ACLResourcePatternType.PREFIXED}
    return ACL(principal=rule.kafka_principal, host="*",
               operation=ACLOperation[rule.operation.upper()],
               permission_type=ACLPermissionType.ALLOW,
               resource_pattern=ResourcePattern(resource_types[rule.resource_type],
                                                rule.resource_name, patterns[rule.pattern_type]))


class AclApplyError(RuntimeError):
    """The broker refused some ACLs; the message names how many and why."""


def apply_acls(admin_client: Any, settings: Settings, timeout_s: float = 30.0) -> list[AclRule]:
    """Create every rule with a ``KafkaAdminClient`` authenticated as a super user, and
    return once the broker enforces them all.

    Idempotent: Kafka keeps one binding per distinct ACL, so applying twice changes nothing.
    The wait matters: CreateAcls returns once the controller committed the rules, but the
    broker's authorizer loads them from the metadata log a moment later (measured: clients
    were still refused right after the call), and a service started then would fail.
    """
    rules = acl_bindings(settings)
    result = admin_client.create_acls([to_kafka_python(rule) for rule in rules])
    if result["failed"]:
        reasons = sorted({error.__name__ if isinstance(error, type) else type(error).__name__
                          for error in result["failed"]})
        raise AclApplyError(f"{len(result['failed'])} of {len(rules)} ACLs were refused: "
                            f"{', '.join(reasons)}")
    deadline = time.monotonic() + timeout_s
    while missing := _not_yet_enforced(admin_client, rules):
        if time.monotonic() > deadline:
            raise AclApplyError(f"{len(missing)} of {len(rules)} ACLs not visible on the broker "
                                f"after {timeout_s:.0f} s, e.g. {missing[0]}")
        time.sleep(0.1)
    return rules


def _not_yet_enforced(admin_client: Any, rules: list[AclRule]) -> list[AclRule]:
    from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                             ResourcePatternFilter, ResourceType)
    from kafka.errors import NoError
    found: set[Any] = set()
    for principal in sorted({rule.kafka_principal for rule in rules}):
        acls, error = admin_client.describe_acls(ACLFilter(
            principal=principal, host="*", operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ALLOW, resource_pattern=ResourcePatternFilter(
                ResourceType.ANY, None, ACLResourcePatternType.ANY)))
        if error is not NoError:
            raise AclApplyError(f"describing the ACLs of {principal} failed: {error.__name__}")
        found.update(acls)
    return [rule for rule in rules if to_kafka_python(rule) not in found]
