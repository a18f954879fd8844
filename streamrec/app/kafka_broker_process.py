"""The operating-system side of one local broker process: kill its group, wait for its ports,
read what it logged since it was launched, and probe whether it answers.

Helpers of ``streamrec.app.kafka_launcher``, kept apart so the launcher reads as the broker's
life cycle (start, kill, restart, stop) and these stay testable without a JVM.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from streamrec.connection import KafkaSecurity
from streamrec.app.kafka_broker_config import tail

LOG_FILES = ("server.log", "stdout.log")


class KafkaLaunchError(RuntimeError):
    """The broker could not be resolved, formatted or started; the message says why."""


def die_with_parent() -> None:
    """Runs in the child before exec: the kernel SIGTERMs it when its parent dies.

    Linux sends it when the *thread* that forked the child ends, not only the process: a
    broker must be (re)started from a thread that lives as long as the broker should.
    """
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL,
               wait_s: float = 10.0) -> None:
    """Send ``sig`` to the process group ``proc`` leads; wait up to ``wait_s`` for it to end.

    ``proc`` must lead its group (``start_new_session=True``): the JVM's own children go too.
    Raises ``KafkaLaunchError`` if it still runs after the wait (SIGKILL never takes that long
    unless the process is stuck in the kernel, which a test must hear about).
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    try:
        proc.wait(wait_s)  # also reaps it: no zombie keeps the pid or the ports
    except subprocess.TimeoutExpired:
        raise KafkaLaunchError(f"broker pid {proc.pid} still runs {wait_s:g} s after "
                               f"{signal.Signals(sig).name}") from None


def busy_ports(host: str, ports: list[int]) -> list[tuple[int, str]]:
    """The ``ports`` a listener could not bind now, each with the reason.

    Binds as the JVM does on Linux (``SO_REUSEADDR`` on), so connections of a killed broker
    left in ``TIME_WAIT`` do not count; a live listener, or a client socket that happens to
    use the port (a local client retrying a dead port can connect to itself), does.
    """
    busy = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
                probe.listen(1)
            except OSError as exc:
                busy.append((port, errno.errorcode.get(exc.errno or 0, str(exc))))
    return busy


def wait_until_bindable(host: str, ports: list[int], deadline: float, bound_s: float) -> None:
    """Return once every port can be bound; raise ``KafkaLaunchError`` at ``deadline``
    (``time.monotonic()``), naming the ports still taken after ``bound_s`` seconds."""
    while busy := busy_ports(host, ports):
        if time.monotonic() >= deadline:
            named = ", ".join(f"{host}:{port} ({why})" for port, why in busy)
            raise KafkaLaunchError(
                f"cannot restart the broker on its own ports: {named} still taken after "
                f"{bound_s:g} s (another process listens there, or holds a connection "
                f"from that port; `ss -tanp` names it)")
        time.sleep(0.2)


@dataclass(frozen=True)
class LogMark:
    """Where a broker's log files ended when it was launched: a restart appends to them."""

    data: Path
    sizes: tuple[int, ...]

    @classmethod
    def now(cls, data: Path) -> "LogMark":
        sizes = []
        for name in LOG_FILES:
            try:
                sizes.append((data / name).stat().st_size)
            except OSError:
                sizes.append(0)
        return cls(data, tuple(sizes))

    def since(self) -> str:
        """Everything both log files gained since the mark (only this launch's lines)."""
        text = []
        for name, size in zip(LOG_FILES, self.sizes):
            with contextlib.suppress(OSError), open(self.data / name, "rb") as log:
                log.seek(size)
                text.append(log.read().decode(errors="replace"))
        return "\n".join(text)


def probe(bootstrap: str, security: KafkaSecurity | None = None) -> Exception | None:
    """None if a broker at ``bootstrap`` answers a metadata request, else the error.

    ``security`` is the connection config (default: plaintext, the local broker); refused
    credentials raise ``KafkaAccessError`` at once: waiting would not make them right.
    """
    from kafka.errors import KafkaConfigurationError  # late: the pure helpers need no client

    from streamrec.transport import kafka_clients
    from streamrec.config import Settings
    settings = Settings(bootstrap_servers=bootstrap, kafka_security=security or KafkaSecurity())
    try:
        admin = kafka_clients.admin(settings, request_timeout_ms=5000, bootstrap_timeout_ms=2000)
        try:
            admin.list_topics()  # a metadata answer: listener up and broker unfenced
            return None
        finally:
            admin.close()
    except (KafkaConfigurationError, kafka_clients.KafkaAccessError):
        raise  # our bug or refused credentials, not a slow broker: retrying would hide it
    except Exception as exc:  # noqa: BLE001 - any other failure means "not yet"
        return exc


def failure_report(reason: str, data: Path) -> str:
    """``reason``, then the last lines of the broker's logs (the data dir is kept for them)."""
    return (f"{reason}; data dir kept at {data}\n--- last lines of server.log ---\n"
            f"{tail(data / 'server.log')}\n--- last lines of stdout.log ---\n"
            f"{tail(data / 'stdout.log')}")
