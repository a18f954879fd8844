"""Run a real single-node Apache Kafka (KRaft) from its jars, for tests and development.

Development machines have Java and Maven but no Docker engine, so ``KafkaLauncher`` resolves
the broker's jars with Maven into a cache folder (once per Kafka version), formats storage in
a fresh temp dir and starts ``kafka.Kafka`` on free local ports. A state file in the cache lets
``streamrec kafka stop|status`` find a broker that another process started::

    BOOTSTRAP=$(streamrec kafka start)   # prints only the bootstrap address on stdout
    streamrec kafka stop

``secure=True`` (``streamrec kafka start --secure``) adds a ``SASL_SSL`` listener with SCRAM
users and ACLs enforced (``streamrec.kafka_secure``); ``launcher.secured`` then says how to
reach it, passwords included (never logged).
"""

from __future__ import annotations

import argparse
import contextlib
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

from streamrec.connection import KafkaSecurity
from streamrec.kafka_broker_config import (KAFKA_VERSION, LOG4J2, LOG4J_VERSION, POM, STATE_FILE,
                                           BrokerState, pick_free_ports, pid_alive,
                                           random_cluster_id, render_server_properties, tail)
from streamrec.kafka_secure import (SecureBroker, add_scram_arguments, make_tls_files,
                                    random_passwords, redact, secure_properties, tls_files,
                                    write_client_properties)

DEFAULT_HOME = Path(__file__).resolve().parent.parent / ".kafka"  # git-ignored


class KafkaLaunchError(RuntimeError):
    """The broker could not be resolved, formatted or started; the message says why."""


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel SIGTERMs it when its parent dies."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class KafkaLauncher:
    """Start and stop one local Kafka broker; as a context manager it yields the bootstrap.

    ``record_state=False`` keeps the broker private to this process (test fixtures), so it
    never clashes with one a developer started with ``streamrec kafka start``;
    ``die_with_parent=True`` (Linux) stops it even if this process is killed outright.
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
        if self._proc is not None:
            raise KafkaLaunchError("this launcher already started a broker")
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
        data = Path(tempfile.mkdtemp(prefix="streamrec-kafka-"))  # mode 0700: keys live here
        broker_port, controller_port, *secure_port = pick_free_ports(3 if self.secure else 2,
                                                                     self.host)
        extra, passwords = dict(self.extra_properties), {}
        tls = tls_files(data / "tls")
        if self.secure:
            passwords = random_passwords()
            extra = {**secure_properties(tls), **extra}
        config = data / "server.properties"
        config.write_text(render_server_properties(data, broker_port, controller_port, self.host,
                                                   extra, secure_port[0] if secure_port else None))
        (data / "log4j2.properties").write_text(LOG4J2.format(log=data / "server.log"))
        java = ["java", f"-Xmx{self.heap}", "-cp", f"{self.libs_dir}/*",
                f"-Dlog4j2.configurationFile={data / 'log4j2.properties'}"]
        with ThreadPoolExecutor(1) as pool:
            # keytool runs while storage formats: the broker reads the keystore only at start.
            certs: Future[object] | None = (pool.submit(make_tls_files, tls, self.host)
                                            if self.secure else None)
            # The one-shot formatter starts faster with the quick JIT only. SCRAM users are
            # written into the bootstrap metadata here: KRaft has no other way before start.
            fmt = subprocess.run([*java, "-XX:TieredStopAtLevel=1", "kafka.tools.StorageTool",
                                  "format", "-t", random_cluster_id(), "-c", str(config),
                                  *add_scram_arguments(passwords)],
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
        preexec: Callable[[], None] | None = (
            _die_with_parent if self.die_with_parent and sys.platform.startswith("linux") else None)
        with open(data / "stdout.log", "wb") as out:
            # Own session: a terminal's Ctrl-C does not reach it, and stop() kills the group.
            self._proc = subprocess.Popen([*java, "kafka.Kafka", str(config)],
                                          stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                          start_new_session=True, preexec_fn=preexec)
        bootstrap = f"{self.host}:{broker_port}"
        if secure_port:
            self.secured = SecureBroker(f"{self.host}:{secure_port[0]}", str(tls.ca_pem),
                                        passwords, plaintext_bootstrap=bootstrap,
                                        data_dir=str(data))
        self._state = BrokerState(self._proc.pid, bootstrap, str(data), time.time(),
                                  self.secured.bootstrap if self.secured else "")
        if self.record_state:
            self.home.mkdir(parents=True, exist_ok=True)
            self._state.write(self.state_path)
        try:
            self._wait_ready(bootstrap, data, started)
        except KafkaLaunchError:
            self.stop(keep_data=True)  # keep the logs the error message points to
            raise
        except BaseException:  # _PortTaken or Ctrl-C: nothing worth keeping
            self.stop()
            raise
        return bootstrap

    def _wait_ready(self, bootstrap: str, data: Path, started: float) -> None:
        last_error: Exception | None = None
        while time.monotonic() < started + self.timeout_s:
            assert self._proc is not None
            if self._proc.poll() is not None:  # a dead JVM will never answer: fail now
                logs = tail(data / "server.log", 200) + tail(data / "stdout.log", 200)
                if "Address already in use" in logs:
                    raise _PortTaken()
                code = self._proc.returncode
                raise KafkaLaunchError(_failure(f"broker exited with {code}", data))
            last_error = probe(bootstrap)
            if last_error is None:
                return
            time.sleep(0.2)
        raise KafkaLaunchError(_failure(f"broker did not answer within {self.timeout_s:.0f} s "
                                        f"(last error: {last_error!r})", data))

    def status(self) -> BrokerState | None:
        """The running broker (this launcher's, else the state file's), or None."""
        state = self._state or BrokerState.read(self.state_path)
        return state if state is not None and pid_alive(state.pid) else None

    def stop(self, keep_data: bool = False, grace_s: float = 20.0) -> bool:
        """SIGTERM the broker's process group, SIGKILL after ``grace_s``; True if one ran."""
        state = self._state or BrokerState.read(self.state_path)
        if state is None:
            return False
        proc = self._proc

        def running() -> bool:  # our own child: poll() also reaps it, so no zombie lingers
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
        if not keep_data:
            shutil.rmtree(state.data_dir, ignore_errors=True)
        if BrokerState.read(self.state_path) == state:  # never remove another broker's record
            self.state_path.unlink(missing_ok=True)
        self._proc, self._state, self.secured = None, None, None
        return was_running

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def probe(bootstrap: str, security: KafkaSecurity | None = None) -> Exception | None:
    """None if a broker at ``bootstrap`` answers a metadata request, else the error.

    ``security`` is the connection config (default: plaintext, the local broker); refused
    credentials raise ``KafkaAccessError`` at once: waiting would not make them right.
    """
    from kafka.errors import KafkaConfigurationError  # late: the pure helpers need no client

    from streamrec import kafka_clients
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


class _PortTaken(Exception):
    """Kafka could not bind a port we picked: worth one more try with fresh ports."""


def _failure(reason: str, data: Path) -> str:
    return (f"{reason}; data dir kept at {data}\n--- last lines of server.log ---\n"
            f"{tail(data / 'server.log')}\n--- last lines of stdout.log ---\n"
            f"{tail(data / 'stdout.log')}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``streamrec kafka start|stop|status``."""
    kafka = subparsers.add_parser("kafka", help="run a local Apache Kafka from its jars")
    actions = kafka.add_subparsers(dest="kafka_command", metavar="ACTION", required=True)
    for name, text in (("start", "start a broker; print only its bootstrap address"),
                       ("stop", "stop the broker that `kafka start` started"),
                       ("status", "exit 0 if that broker runs, 1 if not")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--home", type=Path, default=None,
                            help="jar cache and state folder (env STREAMREC_KAFKA_HOME, "
                                 "default <repo>/.kafka)")
        if name == "start":
            action.add_argument("--timeout", type=float, default=90.0,
                                help="seconds to wait for the broker to answer (default 90)")
            action.add_argument("--secure", action="store_true",
                                help="add a SASL_SSL listener (SCRAM users, ACLs enforced) and "
                                     "print its address; client configs go in the data dir")
        action.set_defaults(func=run_kafka_command)


def run_kafka_command(args: argparse.Namespace) -> int:
    """The CLI edge: the only place that reads ``STREAMREC_KAFKA_HOME``."""
    home = args.home or os.environ.get("STREAMREC_KAFKA_HOME") or DEFAULT_HOME
    secure = getattr(args, "secure", False)
    launcher = KafkaLauncher(home, timeout_s=getattr(args, "timeout", 90.0), secure=secure)
    state = launcher.status()
    if args.kafka_command == "status":
        extra = f", SASL_SSL at {state.secure_bootstrap}" if state and state.secure_bootstrap else ""
        print(f"running at {state.bootstrap}{extra} (pid {state.pid})" if state else "not running")
        return 0 if state else 1
    if args.kafka_command == "stop":
        print("Kafka stopped" if launcher.stop() else "no Kafka was running", file=sys.stderr)
        return 0
    if state is not None:  # idempotent, so a script may call start twice
        print(f"Kafka already running at {state.bootstrap} (pid {state.pid})", file=sys.stderr)
        if secure and not state.secure_bootstrap:
            print("streamrec: error: that broker is not secured; `streamrec kafka stop` first",
                  file=sys.stderr)
            return 1
    else:
        try:
            launcher.start()
        except KafkaLaunchError as exc:
            print(f"streamrec: error: {exc}", file=sys.stderr)
            return 1
        state = launcher.status()
        assert state is not None
        if launcher.secured is not None:
            folder = Path(state.data_dir) / "clients"
            write_client_properties(launcher.secured, folder)
            # The passwords stay in those 0600 files: never on a terminal or in a log.
            print(f"SASL_SSL client configs (SCRAM-SHA-512, one per principal; admin is a super "
                  f"user) in {folder}/<principal>.properties; CA at {launcher.secured.ca_file}",
                  file=sys.stderr)
    print(state.secure_bootstrap if secure else state.bootstrap)
    return 0
