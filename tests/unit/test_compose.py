"""docker-compose.yml stays consistent with the code it runs.

No Docker engine is needed: the file is parsed, every streamrec command is parsed by the
real CLI parser (not run), every environment variable is checked against ``Settings``, and
the Kafka service is checked for the settings a single broker cannot work without. The
secured overlay (docker-compose.secure.yml) is merged onto it the way compose merges files and
checked the same way, plus: every service connects as its own principal over SASL_SSL.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # stubs add nothing to a test

from streamrec.app.cli import build_parser
from streamrec.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OUR_SERVICES = sorted(name for name, svc in SERVICES.items()
                      if "build" in svc or str(svc.get("image", "")).startswith("streamrec"))
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
SETTINGS_ENV = {"KAFKA_BOOTSTRAP_SERVERS"} | {
    f"STREAMREC_{f.name.upper()}" for f in dataclasses.fields(Settings)}
_VAR = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}")


def _resolve(match: re.Match[str]) -> str:
    if (match.group("op") or "").endswith("?"):  # required: the operator's env file has it
        return f"<{match.group('name')}>"
    return match.group("default") or ""


def interpolate(value: object) -> str:
    """Resolve ``${VAR:-default}`` the way compose does with an empty host environment;
    a required ``${VAR:?message}`` becomes ``<VAR>``, standing for the operator's value."""
    text = str(value).replace("$$", "\0")
    return _VAR.sub(_resolve, text).replace("\0", "$")


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the "KEY=value" list form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): interpolate("" if v is None else v) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return deps


def dockerfile_entrypoint() -> list[str]:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    entrypoints = [line.split(None, 1)[1] for line in lines if line.startswith("ENTRYPOINT")]
    assert len(entrypoints) == 1, "the Dockerfile should have exactly one ENTRYPOINT"
    return json.loads(entrypoints[0])  # exec form: a JSON array


def test_our_services_are_all_there() -> None:
    assert {"topics", "ingest", "score", "replay"} <= set(OUR_SERVICES)
    assert "kafka" in SERVICES


def test_every_depends_on_names_an_existing_service() -> None:
    for name, service in SERVICES.items():
        for target, spec in depends_on(service).items():
            assert target in SERVICES, f"{name} depends on unknown service {target!r}"
            assert target != name, f"{name} depends on itself"
            condition = spec.get("condition", "service_started")
            assert condition in DEPENDS_CONDITIONS, f"{name}: unknown condition {condition!r}"
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], (
                    f"{name} waits for {target} to be healthy, but {target} has no healthcheck")


def test_services_wait_for_kafka_and_topics() -> None:
    for name in OUR_SERVICES:
        deps = depends_on(SERVICES[name])
        assert deps.get("kafka", {}).get("condition") == "service_healthy", name
        if name != "topics":
            assert deps.get("topics", {}).get("condition") == "service_completed_successfully", name


def test_image_entrypoint_is_the_streamrec_cli() -> None:
    assert dockerfile_entrypoint() == ["streamrec"]
    for name in OUR_SERVICES:
        assert "entrypoint" not in SERVICES[name], f"{name} must not override the entrypoint"


def mount_volumes(service: dict[str, Any], argv: list[str], host_root: Path) -> list[str]:
    """Stand in for the container's bind mounts: paths under a mount target point into
    ``host_root`` and exist there, as they will in the container once the data is given."""
    targets = [interpolate(v).split(":")[1] for v in service.get("volumes", [])
               if isinstance(v, str) and v.count(":") >= 1]
    mounted = []
    for arg in argv:
        target = next((t for t in targets if arg.startswith(t.rstrip("/") + "/")), None)
        if target is not None:
            local = host_root / target.strip("/") / arg[len(target.rstrip("/")) + 1:]
            local.parent.mkdir(parents=True, exist_ok=True)
            local.touch()
            arg = str(local)
        mounted.append(arg)
    return mounted


@pytest.mark.parametrize("name", OUR_SERVICES)
def test_command_is_accepted_by_the_cli_parser(name: str, tmp_path: Path) -> None:
    command = SERVICES[name].get("command")
    assert isinstance(command, list) and command, f"{name}: command must be a non-empty list"
    argv = mount_volumes(SERVICES[name], [interpolate(arg) for arg in command], tmp_path)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse reports bad arguments by exiting
        pytest.fail(f"{name}: `streamrec {' '.join(argv)}` is rejected by the CLI "
                    f"(exit {exc.code})")
    assert callable(getattr(args, "func", None)), f"{name}: subcommand sets no func"


@pytest.mark.parametrize("name", OUR_SERVICES)
def test_environment_is_understood_by_settings(name: str) -> None:
    env = environment(SERVICES[name])
    unknown = sorted(set(env) - SETTINGS_ENV)
    assert not unknown, f"{name}: Settings.from_env ignores {unknown}"
    assert env.get("KAFKA_BOOTSTRAP_SERVERS") == "kafka:9092", name
    settings = Settings.from_env(env)  # values must coerce and validate, defaults applied
    assert settings.bootstrap_servers == "kafka:9092"
    assert settings.metrics_port == 9100


@pytest.mark.parametrize("name", OUR_SERVICES)
def test_published_ports_and_healthchecks_use_the_metrics_port(name: str) -> None:
    service = SERVICES[name]
    metrics_port = environment(service)["STREAMREC_METRICS_PORT"]
    for mapping in service.get("ports", []):
        assert str(mapping).rsplit(":", 1)[-1] == metrics_port, f"{name}: port {mapping}"
    healthcheck = service.get("healthcheck")
    if healthcheck:
        assert f":{metrics_port}/healthz" in " ".join(healthcheck["test"]), name


def test_kafka_is_a_single_node_kraft_broker() -> None:
    kafka = SERVICES["kafka"]
    assert str(kafka["image"]).startswith("apache/kafka:")
    env = environment(kafka)
    for variable in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                     "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                     "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
        assert env.get(variable) == "1", f"kafka: {variable} must be 1 on a single broker"
    assert env.get("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS") == "0"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{node_id}@kafka:")
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert f"{controller}://" in env["KAFKA_LISTENERS"]
    # Containers reach the broker at the address our services are given.
    assert "//kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "healthcheck" in kafka


def test_replay_reads_a_mounted_read_only_dataset() -> None:
    replay = SERVICES["replay"]
    volumes = [str(v) for v in replay.get("volumes", [])]
    assert volumes, "replay needs the dataset mounted"
    source, target, mode = volumes[0].rsplit(":", 2)
    assert source == "${STREAMREC_DATA:-./data}" and mode == "ro"
    assert all("shared" not in v for v in volumes), "never point at the shared dataset path"
    path_args = [arg for arg in replay["command"] if str(arg).startswith("/")]
    assert path_args and all(arg.startswith(target + "/") for arg in path_args)


# -- docker-compose.secure.yml, merged onto the base file ----------------------------------------
SECURE_OVERLAY = yaml.safe_load((ROOT / "docker-compose.secure.yml").read_text())
KAFKA_SECURITY_ENV = {"STREAMREC_KAFKA_SECURITY_PROTOCOL", "STREAMREC_KAFKA_SASL_MECHANISM",
                      "STREAMREC_KAFKA_SASL_USERNAME", "STREAMREC_KAFKA_SASL_PASSWORD",
                      "STREAMREC_KAFKA_SSL_CAFILE"}
SECURE_SCRIPT = ROOT / "scripts" / "secure-kafka" / "kafka-secure.sh"


def _volume_target(volume: object) -> str:
    return interpolate(volume).split(":")[1]


def merge_service(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge of one service: mappings merge key by key (environment, depends_on),
    volumes merge by mount target, any other value (command, entrypoint, a healthcheck's
    test) is replaced by the overlay's."""
    merged = dict(base)
    for key, value in overlay.items():
        if key == "volumes":
            by_target = {_volume_target(v): v for v in base.get("volumes", [])}
            by_target.update({_volume_target(v): v for v in value})
            merged[key] = list(by_target.values())
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = {**base[key], **value}
        else:
            merged[key] = value
    return merged


SECURE_SERVICES: dict[str, dict[str, Any]] = {
    name: merge_service(SERVICES.get(name, {}), SECURE_OVERLAY["services"].get(name, {}))
    for name in {*SERVICES, *SECURE_OVERLAY["services"]}}
SECURE_VOLUMES = {**(COMPOSE.get("volumes") or {}), **(SECURE_OVERLAY.get("volumes") or {})}
OUR_SECURE_SERVICES = sorted(name for name, svc in SECURE_SERVICES.items()
                             if "build" in svc or str(svc.get("image", "")).startswith("streamrec"))
# Long-running services each get a principal of their own; one-shots act as a role's.
EXPECTED_PRINCIPAL = {"ingest": "ingest", "score": "score", "trainer": "train",
                      "replay": "app", "topics": "admin", "acls": "admin"}


def test_the_overlay_secures_every_service_of_the_base_file() -> None:
    assert set(OUR_SERVICES) <= set(OUR_SECURE_SERVICES)
    assert set(OUR_SECURE_SERVICES) == set(EXPECTED_PRINCIPAL)
    assert set(SECURE_OVERLAY["services"]) - set(SERVICES) == {"kafka-certs", "acls"}


def test_overlay_dependencies_resolve_and_acls_come_first() -> None:
    for name, service in SECURE_SERVICES.items():
        for target, spec in depends_on(service).items():
            assert target in SECURE_SERVICES, f"{name} depends on unknown service {target!r}"
            condition = spec.get("condition", "service_started")
            assert condition in DEPENDS_CONDITIONS, f"{name}: unknown condition {condition!r}"
            if condition == "service_healthy":
                assert "healthcheck" in SECURE_SERVICES[target], name
    for name in set(OUR_SECURE_SERVICES) - {"topics", "acls"}:
        # No service may start before its ACLs are in force: it would fail unauthorised.
        assert depends_on(SECURE_SERVICES[name])["acls"]["condition"] == \
            "service_completed_successfully", name
    assert depends_on(SECURE_SERVICES["kafka"])["kafka-certs"]["condition"] == \
        "service_completed_successfully"


@pytest.mark.parametrize("name", sorted(EXPECTED_PRINCIPAL))
def test_every_service_connects_as_its_own_principal_over_sasl_ssl(name: str, tmp_path) -> None:
    env = environment(SECURE_SERVICES[name])
    unknown = sorted(set(env) - SETTINGS_ENV - KAFKA_SECURITY_ENV)
    assert not unknown, f"{name}: neither Settings nor the connection config reads {unknown}"
    assert KAFKA_SECURITY_ENV <= set(env), f"{name}: missing {KAFKA_SECURITY_ENV - set(env)}"
    assert env["STREAMREC_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["STREAMREC_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    principal = env["STREAMREC_KAFKA_SASL_USERNAME"]
    assert principal == EXPECTED_PRINCIPAL[name]
    # Its own secret from the operator's env file, never a literal in the file.
    raw = SECURE_SERVICES[name]["environment"]["STREAMREC_KAFKA_SASL_PASSWORD"]
    assert re.fullmatch(rf"\$\{{STREAMREC_SECURE_{principal.upper()}_PASSWORD:\?[^}}]+\}}", raw)
    # The CA file lives in a mounted volume.
    targets = [_volume_target(v) for v in SECURE_SERVICES[name].get("volumes", [])]
    assert any(env["STREAMREC_KAFKA_SSL_CAFILE"].startswith(t.rstrip("/") + "/") for t in targets)
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    # The rest still coerces and validates; the CA path exists only inside the container,
    # and the connection config checks that its files are readable, so point it at one.
    (ca := tmp_path / "ca.pem").write_text("placeholder: only its existence is checked\n")
    settings = Settings.from_env({**env, "STREAMREC_KAFKA_SSL_CAFILE": str(ca)})
    assert settings.kafka_security.sasl_username == principal


def test_long_running_services_never_share_a_principal() -> None:
    principals = [environment(SECURE_SERVICES[name])["STREAMREC_KAFKA_SASL_USERNAME"]
                  for name in ("ingest", "score", "trainer")]
    assert len(set(principals)) == len(principals)


def test_the_broker_has_a_scram_user_for_every_principal_the_services_use() -> None:
    kafka_env = environment(SECURE_SERVICES["kafka"])
    script = SECURE_SCRIPT.read_text()
    declared = re.search(r'^PRINCIPALS="([^"]+)"', script, re.M)
    assert declared is not None
    script_principals = set(declared.group(1).split())
    used = {environment(SECURE_SERVICES[n])["STREAMREC_KAFKA_SASL_USERNAME"]
            for n in EXPECTED_PRINCIPAL}
    from streamrec.transport.acls import ADMIN, SERVICE_PRINCIPALS
    assert used == script_principals == {ADMIN, *SERVICE_PRINCIPALS}
    for principal in script_principals:
        assert kafka_env.get(f"SCRAM_PASSWORD_{principal.upper()}") == \
            f"<STREAMREC_SECURE_{principal.upper()}_PASSWORD>"


def test_every_referenced_file_and_volume_exists(tmp_path: Path) -> None:
    for name, service in SECURE_SERVICES.items():
        for volume in service.get("volumes", []):
            source = interpolate(volume).split(":")[0]
            if source.startswith((".", "/")):
                if source == "./data":  # the operator's dataset (STREAMREC_DATA)
                    continue
                assert (ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in SECURE_VOLUMES, f"{name}: volume {source!r} is not declared"
        entrypoint = service.get("entrypoint")
        if entrypoint and name not in OUR_SECURE_SERVICES:
            script = next(arg for arg in entrypoint if arg.endswith(".sh"))
            mounts = {_volume_target(v): interpolate(v).split(":")[0]
                      for v in service.get("volumes", [])}
            folder, file_name = script.rsplit("/", 1)
            assert folder in mounts, f"{name}: {script} is not in a mounted folder"
            assert (ROOT / mounts[folder] / file_name).is_file(), f"{name}: {script} missing"


@pytest.mark.parametrize("name", sorted(EXPECTED_PRINCIPAL))
def test_secure_commands_are_accepted_by_the_cli_parser(name: str, tmp_path: Path) -> None:
    command = SECURE_SERVICES[name]["command"]
    argv = mount_volumes(SECURE_SERVICES[name], [interpolate(arg) for arg in command], tmp_path)
    args = build_parser().parse_args(argv)
    assert callable(getattr(args, "func", None))


def test_only_sasl_ssl_is_reachable_from_other_containers() -> None:
    script = SECURE_SCRIPT.read_text()
    props = dict(line.split("=", 1) for line in script.splitlines()
                 if re.match(r"^[a-z][a-z0-9.\-]*=", line))
    protocols = dict(pair.split(":") for pair in props["listener.security.protocol.map"].split(","))
    for listener in props["listeners"].split(","):
        name, address = listener.split("://")
        if protocols[name] != "SASL_SSL":
            assert address.startswith("localhost:"), f"{listener} must bind loopback only"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    health = " ".join(SECURE_SERVICES["kafka"]["healthcheck"]["test"])
    assert "localhost:9094" in health and "INTERNAL://localhost:9094" in props["listeners"]
    assert "//kafka:9092" in props["advertised.listeners"]
