"""What a local single-node Kafka is made of: its pom, log4j2 and server.properties.

Pure helpers of ``streamrec.app.kafka_launcher`` (no processes, no broker), kept apart so the
launcher stays about processes and the rendering can be unit-tested on its own: the broker
config for one combined KRaft broker+controller, free local ports, a cluster id, and the
JSON state file through which ``streamrec kafka stop|status`` find a broker.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import socket
import uuid
from pathlib import Path
from typing import Mapping

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"  # log4j-slf4j-impl binds the slf4j 1.7 API that Kafka 4.1 uses
STATE_FILE = "broker.json"

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>streamrec</groupId><artifactId>kafka-jars</artifactId><version>1</version><dependencies>
<dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version></dependency>
<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
</dependencies></project>
"""

# Per-request and per-partition chatter stays out: it would bury the lines worth reading.
LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


@dataclasses.dataclass(frozen=True)
class BrokerState:
    """What another process needs to find, probe and stop a running broker."""

    pid: int
    bootstrap: str
    data_dir: str
    started_at: float
    secure_bootstrap: str = ""  # the SASL_SSL listener of a ``--secure`` broker

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self)))
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one

    @classmethod
    def read(cls, path: Path) -> "BrokerState | None":
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def pick_free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ask the OS for ``count`` distinct free ports (all bound at once, so none repeats)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes as 22 base64url chars, like ``Uuid.randomUuid``."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka skips these too: they would parse as CLI flags
            return text


def render_server_properties(data_dir: Path, broker_port: int, controller_port: int,
                             host: str = "127.0.0.1",
                             extra: Mapping[str, str] | None = None,
                             secure_port: int | None = None) -> str:
    """The ``server.properties`` of one combined broker+controller for local use.

    ``secure_port`` adds a ``SASL_SSL`` listener there; ``extra`` then carries its TLS, SASL
    and authorizer settings (``streamrec.app.kafka_secure.secure_properties``).
    """
    listeners = f"PLAINTEXT://{host}:{broker_port},CONTROLLER://{host}:{controller_port}"
    advertised = f"PLAINTEXT://{host}:{broker_port}"
    protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if secure_port is not None:
        listeners += f",SASL_SSL://{host}:{secure_port}"
        advertised += f",SASL_SSL://{host}:{secure_port}"
        protocols += ",SASL_SSL:SASL_SSL"
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{controller_port}",
        "listeners": listeners,
        "advertised.listeners": advertised,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": protocols,
        "log.dirs": str(data_dir / "logs"),
        "num.partitions": "1",
        # One broker: internal topics cannot get 3 replicas, or groups/transactions never start.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # One internal partition each: the first group or transaction is ready in well under 1 s.
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.num.partitions": "1",
        # Tests join groups constantly; the default 3 s delay would be paid on every join.
        "group.initial.rebalance.delay.ms": "0",
    }
    props.update(extra or {})
    return "".join(f"{k}={v}\n" for k, v in props.items())


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs a Kafka broker (not a zombie, not a recycled pid)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.exists():  # no procfs (macOS): signal 0 is all we can know
        return True
    with contextlib.suppress(OSError, IndexError):
        if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # exited, but a parent that is no real init has not reaped it
        return b"kafka.Kafka" in proc.joinpath("cmdline").read_bytes()
    return False


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return f"(no {path.name})"
