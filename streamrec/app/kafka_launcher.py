"""Run a real single-node Apache Kafka (KRaft) from its jars, for tests and development.

Development machines have Java and Maven but no Docker engine, so ``KafkaLauncher`` resolves
the broker's jars with Maven into a cache folder (once per Kafka version), formats storage in
a fresh temp dir and starts ``kafka.Kafka`` on free local ports. A state file in the cache lets
``streamrec kafka stop|status`` find a broker that another process started::

    BOOTSTRAP=$(streamrec kafka start)   # prints only the bootstrap address on stdout
    streamrec kafka stop

Fault tests can crash the broker and bring it back: ``kill()`` SIGKILLs it (no controlled
shutdown) and keeps its data dir; ``restart()`` runs it again on the same data dir, ports and
config, so clients reconnect to the address they had::

    with KafkaLauncher(record_state=False, die_with_parent=True) as bootstrap:
        ...
        launcher.kill()                # the broker is gone; clients see connection errors
        launcher.restart(down_s=30)    # back after 30 s, same bootstrap, same topics

``secure=True`` (``streamrec kafka start --secure``) adds a ``SASL_SSL`` listener with SCRAM
users and ACLs enforced (``streamrec.app.kafka_secure``); ``launcher.secured`` then says how to
reach it, passwords included (never logged).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Callable, Mapping

from streamrec.app.kafka_broker_process import (KafkaLaunchError, LogMark, die_with_parent,
                                            failure_report, kill_group, probe,
                                            wait_until_bindable)
from streamrec.app.kafka_broker_config import (KAFKA_VERSION, LOG4J2, LOG4J_VERSION, POM, STATE_FILE,
                                           BrokerState, pick_free_ports, pid_alive,
                                           random_cluster_id, render_server_properties)
from streamrec.app.kafka_secure import (SecureBroker, add_scram_arguments, make_tls_files,
                                    random_passwords, redact, secure_properties, tls_files)

DEFAULT_HOME = Path(__file__).resolve().parent.parent / ".kafka"  # git-ignored

# ``probe`` and ``KafkaLaunchError`` live in kafka_broker_process; callers import them here.
__all__ = ["DEFAULT_HOME", "KafkaLaunchError", "KafkaLauncher", "probe", "register"]


@dataclasses.dataclass(frozen=True)
class _Layout:
    """What stays the same across restarts of one broker: its data dir, ports and users."""

    data: Path
    ports: tuple[int, ...]  # broker listener, controller, and the SASL_SSL one if secure
    bootstrap: str
    secured: SecureBroker | None


class KafkaLauncher:
    """Start and stop one local Kafka broker; as a context manager it yields the bootstrap.

    ``record_state=False`` keeps the broker private to this process (test fixtures), so it
    never clashes with one a developer started with ``streamrec kafka start``;
    ``die_with_parent=True`` (Linux) stops it even if this process is killed outright.
    ``kill()`` and ``restart()`` crash and revive the broker it started (never another's).
    """

    def __init__(self, home: Path | str = DEFAULT_HOME, *, version: str = KAFKA_VERSION,
                 timeout_s: float = 90.0, heap: str = "512m", host: str = "127.0.0.1",
                 extra_properties: Mapping[str, str] | None = None, record_state: bool = True,
                 die_with_parent: bool = False, log: IO[str] | None = None,
                 secure: bool = False) -> None:
        self.home = Path(home)
        self.version = version
        self.timeout_s = timeout_s
        self.heap = heap
        self.host = host
        self.extra_properties = dict(extra_properties or {})
        self.record_state = record_state
        self.die_with_parent = die_with_parent
        self.secure = secure
        self.secured: SecureBroker | None = None  # set by start() when secure
        self._log = log if log is not None else sys.stderr
        self._proc: subprocess.Popen[bytes] | None = None
        self._state: BrokerState | None = None
        self._layout: _Layout | None = None  # set from start() until stop() drops the data
        self.libs_dir = self.home / f"kafka-{version}" / "libs"
        self.state_path = self.home / STATE_FILE

    def _say(self, text: str) -> None:
        print(text, file=self._log, flush=True)

    def resolve_jars(self) -> Path:
        """Fetch the broker's runtime jars once per version; later runs reuse the cache."""
        root, marker = self.libs_dir.parent, self.libs_dir.parent / ".resolved"
        if marker.exists():
            return self.libs_dir
        root.mkdir(parents=True, exist_ok=True)
        # Locked, because parallel test workers may all find the cache empty at once.
        with open(root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if marker.exists():
                return self.libs_dir
            if shutil.which("mvn") is None:
                raise KafkaLaunchError("Maven (mvn) is not on PATH; it fetches the Kafka jars")
            self._say(f"resolving Kafka {self.version} jars with Maven…")
            started = time.monotonic()
            (root / "pom.xml").write_text(POM.format(kafka=self.version, log4j=LOG4J_VERSION))
            partial = root / "libs.partial"
            shutil.rmtree(partial, ignore_errors=True)
            done = subprocess.run(["mvn", "-q", "-B", "dependency:copy-dependencies",
                                   f"-DoutputDirectory={partial}", "-DincludeScope=runtime"],
                                  cwd=root, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True)
            if done.returncode != 0:
                raise KafkaLaunchError(f"Maven failed:\n{(done.stdout + done.stderr)[-3000:]}")
            shutil.rmtree(self.libs_dir, ignore_errors=True)
            partial.rename(self.libs_dir)
            marker.write_text(f"{time.time()}\n")  # last: a half-copied folder never counts
            self._say(f"resolved {len(list(self.libs_dir.glob('*.jar')))} jars "
                      f"in {time.monotonic() - started:.1f} s")
        return self.libs_dir

    def start(self) -> str:
        """Start a fresh broker and return its bootstrap address once it answers requests."""
        if self._proc is not None or self._layout is not None:
            raise KafkaLaunchError("this launcher already started a broker (restart() it, "
                                   "or stop() it first)")
        if shutil.which("java") is None:
            raise KafkaLaunchError("Java is not on PATH; Kafka needs Java 17+")
        started = time.monotonic()
        self.resolve_jars()
        for attempt in range(3):
            try:
                bootstrap = self._start_once(started)
                break
            except _PortTaken:
                # Another process grabbed a picked port between our probe and Kafka's bind.
                self._say(f"port taken, retrying with new ports ({attempt + 1}/3)")
        else:
            raise KafkaLaunchError("could not bind free ports after 3 attempts")
        elapsed = time.monotonic() - started
        self._say(f"Kafka {self.version} ready at {bootstrap} in {elapsed:.1f} s")
        return bootstrap

    def _start_once(self, started: float) -> str:
        layout = self._prepare()
        self._layout = layout
        try:
            self._launch(layout, started)
        except KafkaLaunchError:
            self.stop(keep_data=True)  # keep the logs the error message points to
            self._layout = None  # a broker that never ran is not restartable
            raise
        except BaseException:  # _PortTaken or Ctrl-C: nothing worth keeping
            self.stop()
            raise
        return layout.bootstrap

    def _prepare(self) -> _Layout:
        """A fresh data dir on free ports: config written, storage formatted, TLS files made."""
        data = Path(tempfile.mkdtemp(prefix="streamrec-kafka-"))  # mode 0700: keys live here
        ports = tuple(pick_free_ports(3 if self.secure else 2, self.host))
        broker_port, controller_port, *secure_port = ports
        extra, passwords = dict(self.extra_properties), {}
        tls = tls_files(data / "tls")
        if self.secure:
            passwords = random_passwords()
            extra = {**secure_properties(tls), **extra}
        config = data / "server.properties"
        config.write_text(render_server_properties(data, broker_port, controller_port, self.host,
                                                   extra, secure_port[0] if secure_port else None))
        (data / "log4j2.properties").write_text(LOG4J2.format(log=data / "server.log"))
        with ThreadPoolExecutor(1) as pool:
            # keytool runs while storage formats: the broker reads the keystore only at start.
            certs: Future[object] | None = (pool.submit(make_tls_files, tls, self.host)
                                            if self.secure else None)
            # The one-shot formatter starts faster with the quick JIT only. SCRAM users are
            # written into the bootstrap metadata here: KRaft has no other way before start.
            fmt = subprocess.run([*self._java(data), "-XX:TieredStopAtLevel=1",
                                  "kafka.tools.StorageTool", "format", "-t", random_cluster_id(),
                                  "-c", str(config), *add_scram_arguments(passwords)],
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True)
            try:
                if certs is not None:
                    certs.result()
            except Exception as exc:
                shutil.rmtree(data, ignore_errors=True)
                raise KafkaLaunchError(f"generating TLS files failed: {exc}") from None
        if fmt.returncode != 0:
            shutil.rmtree(data, ignore_errors=True)  # the message carries all it had to say
            raise KafkaLaunchError("formatting storage failed:\n"
                                   + redact(fmt.stdout + fmt.stderr, passwords))
        bootstrap = f"{self.host}:{broker_port}"
        secured = (SecureBroker(f"{self.host}:{secure_port[0]}", str(tls.ca_pem), passwords,
                                plaintext_bootstrap=bootstrap, data_dir=str(data))
                   if secure_port else None)
        return _Layout(data, ports, bootstrap, secured)

    def _java(self, data: Path) -> list[str]:
        return ["java", f"-Xmx{self.heap}", "-cp", f"{self.libs_dir}/*",
                f"-Dlog4j2.configurationFile={data / 'log4j2.properties'}"]

    def _launch(self, layout: _Layout, started: float) -> None:
        """Run ``kafka.Kafka`` on the layout's data dir and wait until it answers."""
        preexec: Callable[[], None] | None = (
            die_with_parent if self.die_with_parent and sys.platform.startswith("linux") else None)
        mark = LogMark.now(layout.data)  # a restart appends: judge only this launch's lines
        with open(layout.data / "stdout.log", "ab") as out:
            # Own session: a terminal's Ctrl-C does not reach it, and stop() kills the group.
            self._proc = subprocess.Popen(
                [*self._java(layout.data), "kafka.Kafka", str(layout.data / "server.properties")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                preexec_fn=preexec)
        self.secured = layout.secured
        self._state = BrokerState(self._proc.pid, layout.bootstrap, str(layout.data), time.time(),
                                  layout.secured.bootstrap if layout.secured else "")
        if self.record_state:
            self.home.mkdir(parents=True, exist_ok=True)
            self._state.write(self.state_path)
        self._wait_ready(layout.bootstrap, mark, started)

    def _wait_ready(self, bootstrap: str, mark: LogMark, started: float) -> None:
        last_error: Exception | None = None
        while time.monotonic() < started + self.timeout_s:
            assert self._proc is not None
            if self._proc.poll() is not None:  # a dead JVM will never answer: fail now
                if "Address already in use" in mark.since():
                    raise _PortTaken()
                code = self._proc.returncode
                raise KafkaLaunchError(failure_report(f"broker exited with {code}", mark.data))
            last_error = probe(bootstrap)
            if last_error is None:
                return
            time.sleep(0.2)
        raise KafkaLaunchError(failure_report(
            f"broker did not answer within {self.timeout_s:.0f} s (last error: {last_error!r})",
            mark.data))

    def kill(self) -> bool:
        """SIGKILL this launcher's broker and its process group, as a crash would: no
        controlled shutdown, nothing flushed beyond what the OS already has.

        Returns once the process is gone (True if it was running). Its data dir, ports and
        config are kept, so ``restart()`` brings the same broker back.
        """
        if self._proc is None:
            return False
        was_running, state = self._proc.poll() is None, self._state
        kill_group(self._proc, signal.SIGKILL)
        self._proc, self._state, self.secured = None, None, None
        self._forget_state_file(state)
        return was_running

    def restart(self, down_s: float = 0.0, bind_timeout_s: float = 60.0) -> str:
        """Bring this launcher's broker back on the same data dir, ports and config.

        A running broker is SIGKILLed first (``kill()``); the broker then stays down for
        ``down_s`` seconds. Works after ``kill()`` and after ``stop(keep_data=True)``.
        Ports a dead broker's connections still hold are waited for up to
        ``bind_timeout_s`` (the JVM binds with ``SO_REUSEADDR``, so ``TIME_WAIT`` does not
        count); a failed bind is retried within the same bound, then ``KafkaLaunchError``.
        Returns the bootstrap address (the same as before) once the broker answers.
        With ``die_with_parent`` the calling thread must outlive the broker (see
        ``die_with_parent``).
        """
        layout = self._layout
        if layout is None or not layout.data.is_dir():
            raise KafkaLaunchError("nothing to restart: this launcher has no stopped broker "
                                   "with its data kept")
        self.kill()
        time.sleep(max(0.0, down_s))
        deadline = time.monotonic() + bind_timeout_s
        while True:
            wait_until_bindable(self.host, list(layout.ports), deadline, bind_timeout_s)
            started = time.monotonic()
            try:
                self._launch(layout, started)
                break
            except _PortTaken:
                self.kill()  # the JVM exited; reap it and try the same ports again
                if time.monotonic() >= deadline:
                    raise KafkaLaunchError(failure_report(
                        f"the broker could not bind {layout.ports} again within "
                        f"{bind_timeout_s:g} s", layout.data)) from None
                time.sleep(0.5)
            except BaseException:
                self.kill()  # the data stays: the error message points to its logs
                raise
        self._say(f"Kafka {self.version} back at {layout.bootstrap} in "
                  f"{time.monotonic() - started:.1f} s (data {layout.data})")
        return layout.bootstrap

    def status(self) -> BrokerState | None:
        """The running broker (this launcher's, else the state file's), or None."""
        if self._layout is not None:  # our own broker: never another one's state file
            alive = self._proc is not None and self._proc.poll() is None
            return self._state if alive else None
        state = BrokerState.read(self.state_path)
        return state if state is not None and pid_alive(state.pid) else None

    def stop(self, keep_data: bool = False, grace_s: float = 20.0) -> bool:
        """SIGTERM the broker's process group, SIGKILL after ``grace_s``; True if one ran.

        ``keep_data=True`` keeps the data dir: ``restart()`` can bring the broker back.
        """
        layout = self._layout
        # A launcher that started a broker only ever stops that one; else the state file's.
        state = self._state if layout is not None else BrokerState.read(self.state_path)
        proc = self._proc
        was_running = False
        if state is not None:
            def running() -> bool:  # our own child: poll() also reaps it, no zombie lingers
                return proc.poll() is None if proc is not None else pid_alive(state.pid)

            was_running = running()
            for sig in (signal.SIGTERM, signal.SIGKILL):  # TERM first: controlled shutdown
                if not running():
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(state.pid, sig)
                deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 5.0)
                while time.monotonic() < deadline and running():
                    time.sleep(0.1)
        data_dir = state.data_dir if state is not None else (
            str(layout.data) if layout is not None else None)
        if not keep_data:
            if data_dir is not None:
                shutil.rmtree(data_dir, ignore_errors=True)
            self._layout = None
        self._proc, self._state, self.secured = None, None, None
        self._forget_state_file(state)
        return was_running

    def _forget_state_file(self, state: BrokerState | None) -> None:
        if state is not None and BrokerState.read(self.state_path) == state:
            self.state_path.unlink(missing_ok=True)  # never remove another broker's record

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _PortTaken(Exception):
    """Kafka could not bind a port we picked: worth one more try with fresh ports."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``streamrec kafka start|stop|status`` (written in ``streamrec.app.kafka_command``)."""
    from streamrec.app.kafka_command import add_kafka_command  # late: it imports this module
    add_kafka_command(subparsers)
