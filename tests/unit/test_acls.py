"""The ACL model and its kafka-acls.sh rendering, without a broker."""

from __future__ import annotations

import shlex
from collections import defaultdict

from streamrec.transport.acls import (ADMIN, GROUP, PREFIXED, SERVICE_PRINCIPALS, TOPIC, TRANSACTIONAL_ID,
                            acl_bindings, kafka_acls_commands, to_kafka_python)
from streamrec.app.cli import main
from streamrec.config import Settings, TopicNames

SETTINGS = Settings(topic_prefix="prod-", ingest_group="eu-ingest", score_group="eu-score",
                    transactional_id_prefix="eu")


def table(settings: Settings) -> dict[tuple[str, str], set[str]]:
    """(principal, topic) -> operations, for the topics only."""
    ops: dict[tuple[str, str], set[str]] = defaultdict(set)
    for rule in acl_bindings(settings):
        if rule.resource_type == TOPIC:
            ops[(rule.principal, rule.resource_name)].add(rule.operation)
    return ops


def parse(line: str) -> dict[str, list[str]]:
    argv = shlex.split(line)
    assert argv[0] == "kafka-acls.sh"
    flags: dict[str, list[str]] = defaultdict(list)
    key = None
    for word in argv[1:]:
        if word.startswith("--"):
            key = word[2:]
            flags[key]  # flags without a value (--add) are present with no values
        else:
            assert key is not None
            flags[key].append(word)
    return flags


def test_each_principal_gets_exactly_what_its_service_uses() -> None:
    t, ops = SETTINGS.topics, table(SETTINGS)
    expected = {
        ("app", t.clicks): {"write"}, ("app", t.requests): {"write"},
        ("app", t.recommendations): {"read"},
        ("ingest", t.clicks): {"read"}, ("ingest", t.user_state): {"read", "write"},
        ("ingest", t.dlq): {"write"},
        ("score", t.user_state): {"read"}, ("score", t.requests): {"read"},
        ("score", t.models): {"read", "write"}, ("score", t.recommendations): {"write"},
        ("score", t.dlq): {"write"}, ("score", t.scorer_state): {"read", "write"},
        ("train", t.clicks): {"read", "write"}, ("train", t.models): {"read", "write"},
    }
    assert {key: value - {"describe"} for key, value in ops.items()} == expected
    assert all("describe" in value for value in ops.values())
    # What the ACL test exercises, stated plainly.
    assert ("app", t.user_state) not in ops and ("app", t.models) not in ops
    # The scorer's own state: only the scorer reads it (its restore) and writes it.
    assert {principal for (principal, topic) in ops if topic == t.scorer_state} == {"score"}


def test_groups_and_transactional_ids_follow_settings() -> None:
    others = {(r.principal, r.resource_type, r.resource_name, r.pattern_type, r.operation)
              for r in acl_bindings(SETTINGS) if r.resource_type != TOPIC}
    assert others == {
        # Groups sit behind the topic prefix, so pipelines with other prefixes never share one.
        ("ingest", GROUP, "prod-eu-ingest", "literal", "read"),
        ("score", GROUP, "prod-eu-score", "literal", "read"),
        # streamrec.transport.runtime: transactional_id = f"{prefix}-{group_id}-{instance}"
        ("ingest", TRANSACTIONAL_ID, "eu-prod-eu-ingest-", PREFIXED, "write"),
        ("ingest", TRANSACTIONAL_ID, "eu-prod-eu-ingest-", PREFIXED, "describe"),
        ("score", TRANSACTIONAL_ID, "eu-prod-eu-score-", PREFIXED, "write"),
        ("score", TRANSACTIONAL_ID, "eu-prod-eu-score-", PREFIXED, "describe"),
    }


def test_printed_commands_name_exactly_the_prefixed_topics_and_every_principal() -> None:
    lines = kafka_acls_commands(SETTINGS, "kafka:9093", "/etc/streamrec/admin.properties")
    parsed = [parse(line) for line in lines]
    assert all(p["bootstrap-server"] == ["kafka:9093"] for p in parsed)
    assert all(p["command-config"] == ["/etc/streamrec/admin.properties"] for p in parsed)
    assert all("add" in p and len(p["allow-principal"]) == 1 for p in parsed)
    topics = {name for p in parsed for name in p.get("topic", [])}
    assert topics == set(TopicNames.with_prefix("prod-").all().values())
    principals = {p["allow-principal"][0] for p in parsed}
    assert principals == {f"User:{name}" for name in SERVICE_PRINCIPALS}
    assert f"User:{ADMIN}" not in principals  # a super user needs no ACL
    # Every rule appears once, in some line.
    printed = {(p["allow-principal"][0].removeprefix("User:"), op.lower(),
                p["resource-pattern-type"][0], (p.get("topic") or p.get("group")
                                                or p.get("transactional-id"))[0])
               for p in parsed for op in p["operation"]}
    assert printed == {(r.principal, r.operation, r.pattern_type, r.resource_name)
                       for r in acl_bindings(SETTINGS)}


def test_a_prefix_changes_every_topic_name() -> None:
    plain, prefixed = acl_bindings(Settings()), acl_bindings(Settings(topic_prefix="x."))
    plain_topics = {r.resource_name for r in plain if r.resource_type == TOPIC}
    prefixed_topics = {r.resource_name for r in prefixed if r.resource_type == TOPIC}
    assert prefixed_topics == {f"x.{name}" for name in plain_topics}


def test_rules_convert_to_kafka_python_acls() -> None:
    from kafka.admin import ACLOperation, ACLResourcePatternType, ResourceType
    rules = acl_bindings(SETTINGS)
    acls = [to_kafka_python(rule) for rule in rules]
    for acl in acls:
        acl.validate()  # kafka-python's own check of a concrete ACL
    assert len(set(acls)) == len(rules)
    txn = next(a for a in acls if a.resource_pattern.resource_type == ResourceType.TRANSACTIONAL_ID)
    assert txn.resource_pattern.pattern_type == ACLResourcePatternType.PREFIXED
    assert {a.operation for a in acls} == {ACLOperation.READ, ACLOperation.WRITE,
                                           ACLOperation.DESCRIBE}


def test_acls_print_cli(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("STREAMREC_TOPIC_PREFIX", raising=False)
    assert main(["acls", "print", "--prefix", "stage-", "--bootstrap-server", "b:9093",
                 "--command-config", "admin.properties"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == kafka_acls_commands(Settings(topic_prefix="stage-", bootstrap_servers="b:9093"),
                                      command_config="admin.properties")
