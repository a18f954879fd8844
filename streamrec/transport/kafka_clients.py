"""The only place that constructs kafka-python clients: every one gets the connection config.

``consumer``, ``producer`` and ``admin`` take the frozen ``Settings`` (bootstrap servers and
``kafka_security``) plus the caller's own keyword arguments (group, isolation level, sizes),
so no client can be built without TLS/SASL once the settings ask for them. A unit test
(tests/unit/core/test_kafka_clients.py) fails if a construction appears anywhere else.

Failures to connect are made one-line and typed here:

- authentication refused (wrong password, unknown user) or an ACL missing:
  ``KafkaAccessError``, fatal (``is_fatal``): retrying with the same credentials cannot work.
  A refused SASL login raises at once: kafka-python itself retries it until
  ``bootstrap_timeout_ms`` (30 s) and then only says "Unable to bootstrap", so before the
  first client of a SASL configuration is built, ``check_credentials`` logs in once with
  kafka-python's own connection classes (``kafka.net``) and raises on a refusal;
- no broker completed a connection in ``bootstrap_timeout_ms``: ``KafkaUnreachableError``,
  naming the last reason kafka-python logged for it; ``KafkaHandshakeError`` (fatal) when
  every TLS handshake failed (TLS against a plaintext listener, an untrusted certificate).

``access_error`` turns the raw kafka-python errors raised later (an ACL refusing a poll,
a send or a commit) into the same ``KafkaAccessError``; the CLI edge and the runtime's
recovery loop use it and ``is_fatal``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable, Mapping, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer  # type: ignore[import-untyped]
from kafka import errors as kafka_errors

from streamrec.config import Settings
from streamrec.connection import KafkaAccessError, KafkaHandshakeError, KafkaUnreachableError
from streamrec.records import Record

__all__ = ["KafkaAccessError", "KafkaHandshakeError", "KafkaUnreachableError", "access_error",
           "admin", "check_credentials", "committed_reader", "consumer", "is_fatal", "producer",
           "to_record", "to_records"]

T = TypeVar("T")
_MANAGER_LOG = "kafka.net.manager"  # where kafka-python says why a bootstrap attempt failed
# A broker that answers settles a login in well under a second (measured 0.05 s accepted,
# 0.5 s refused over SASL_SSL); one that does not answer is left to the client's own timeout.
CREDENTIALS_CHECK_TIMEOUT_S = 5.0
_CLOSED_IN_A_ROW = 3  # see _log_in_once


def consumer(settings: Settings, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A ``KafkaConsumer`` (subscribed to ``topics`` if any) with the settings' security."""
    return _build(settings, lambda kwargs: KafkaConsumer(*topics, **kwargs), overrides)


def committed_reader(settings: Settings, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A group-less consumer that sees only committed transactions and commits nothing.

    Every reader of another service's transactional output (restores, followers of
    ``models``, readers of ``recommendations``) is one of these: ``read_committed`` so an
    aborted or still-open batch is never seen, no group and no auto-commit since it assigns
    and seeks its own partitions. ``overrides`` (sizes, client id) come on top.
    """
    defaults: dict[str, Any] = {"group_id": None, "enable_auto_commit": False,
                                "isolation_level": "read_committed"}
    return consumer(settings, *topics, **{**defaults, **overrides})


def to_record(message: Any) -> Record:
    """The transport-neutral ``Record`` of one kafka-python ``ConsumerRecord``."""
    return Record(message.topic, message.partition, message.offset, message.key, message.value,
                  message.timestamp, tuple(message.headers or ()))


def to_records(polled: Mapping[Any, Iterable[Any]]) -> list[Record]:
    """A ``poll()`` result as one list of ``Record``s, partition by partition."""
    return [to_record(message) for messages in polled.values() for message in messages]


def producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A ``KafkaProducer`` with the settings' security (idempotent, acks=all by default)."""
    return _build(settings, lambda kwargs: KafkaProducer(**kwargs), overrides)


def admin(settings: Settings, **overrides: Any) -> KafkaAdminClient:
    """A ``KafkaAdminClient`` with the settings' security."""
    return _build(settings, lambda kwargs: KafkaAdminClient(**kwargs), overrides)


def client_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments a client gets: address, security, then the caller's own."""
    config: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers}
    config.update(settings.kafka_security.client_kwargs())
    config.update(overrides)
    return config


def is_fatal(exc: BaseException) -> bool:
    """True if retrying cannot help: refused credentials, missing ACLs, a bad client config.

    The runtime's recovery loop calls this to exit at once instead of restarting sessions.
    """
    return isinstance(exc, (KafkaAccessError, KafkaHandshakeError,
                            kafka_errors.SaslAuthenticationFailedError,
                            kafka_errors.AuthorizationError,
                            kafka_errors.KafkaConfigurationError))


def access_error(exc: BaseException, settings: Settings) -> KafkaAccessError | None:
    """The one-line ``KafkaAccessError`` for an authentication or authorization failure."""
    if isinstance(exc, KafkaAccessError):
        return exc
    where = f"at {settings.bootstrap_servers} ({settings.kafka_security.describe()})"
    if isinstance(exc, kafka_errors.SaslAuthenticationFailedError):
        return KafkaAccessError(f"Kafka authentication failed {where}")
    if isinstance(exc, kafka_errors.AuthorizationError):
        detail = _one_line(exc.args[0]) if exc.args else ""
        what = type(exc).__name__.removesuffix("Error")
        return KafkaAccessError(f"Kafka authorization failed {where}: {what}"
                                + (f" {detail}" if detail else "")
                                + " (check the principal's ACLs)")
    return None


def check_credentials(settings: Settings, timeout_s: float = CREDENTIALS_CHECK_TIMEOUT_S,
                      **overrides: Any) -> None:
    """Log in once to a bootstrap broker; raise ``KafkaAccessError`` if it refuses the login.

    Only for SASL configurations, and once per process for a configuration that got in
    (later clients skip it). A broker that cannot be reached in ``timeout_s`` proves
    nothing: the client built next waits its own bootstrap timeout and says why it failed.
    """
    security = settings.kafka_security
    key = (settings.bootstrap_servers, security)
    if not security.uses_sasl or key in _logged_in:
        return
    outcome = _log_in_once(client_config(settings, **overrides), timeout_s)
    if outcome is None:
        _logged_in.add(key)
    elif isinstance(outcome, kafka_errors.SaslAuthenticationFailedError):
        try:
            raise outcome
        except kafka_errors.SaslAuthenticationFailedError as exc:
            # Raised inside the handler: the kafka error stays the context (``__context__``),
            # for code that walks an error's causes to decide it is fatal.
            raise access_error(exc, settings) from None  # type: ignore[misc]


# (bootstrap servers, security) that logged in; a frozen KafkaSecurity is hashable.
_logged_in: set[tuple[str, Any]] = set()


def _log_in_once(config: dict[str, Any], timeout_s: float) -> BaseException | None:
    """Connect to the bootstrap brokers until one logs in: None, or the last failure.

    A refused login shows as ``SaslAuthenticationFailedError``, or about half the time as a
    bare "socket disconnected" after ApiVersions went through: the broker sends its refusal
    and closes the connection after its failed-login delay, and kafka-python 3.0.12
    (``KafkaSSLTransport._read_from_sock``) drops bytes read together with the close. A
    correct login is never closed by the broker, so ``_CLOSED_IN_A_ROW`` such closes count
    as a refusal too. A broker that never answered ApiVersions (refused, no route, TLS
    failed) ends the check: inconclusive, the client's own bootstrap reports it.
    """
    from kafka.net.manager import KafkaConnectionManager  # type: ignore[import-untyped]
    from kafka.net.selector import NetworkSelector  # type: ignore[import-untyped]

    config = {k: v for k, v in config.items() if k != "api_version"}  # always ask ApiVersions
    deadline = time.monotonic() + min(timeout_s, config.get("bootstrap_timeout_ms", 30_000) / 1000)
    net = NetworkSelector(**config)
    manager = KafkaConnectionManager(net, **config)

    async def log_in() -> BaseException | None:
        failure: BaseException | None = None
        closed_in_a_row = 0
        while time.monotonic() < deadline:
            answered = False
            for broker in manager.cluster.bootstrap_brokers():
                remaining_ms = (deadline - time.monotonic()) * 1000
                if remaining_ms <= 0:
                    break
                manager.reset_backoff(broker.node_id)  # our own pace, not the client's backoff
                # ApiVersions, SASL handshake and authentication: what a client's bootstrap does.
                connection = manager.get_connection(broker.node_id, timeout_ms=remaining_ms,
                                                    refresh_metadata_on_err=False)
                try:
                    await connection
                    return None
                except Exception as exc:  # noqa: BLE001 - the caller decides what it means
                    if isinstance(exc, kafka_errors.SaslAuthenticationFailedError):
                        return exc
                    failure = exc
                    if connection.broker_version_data is not None:  # it spoke Kafka, then...
                        answered = True
                        closed = isinstance(exc, kafka_errors.KafkaConnectionError)
                        closed_in_a_row = closed_in_a_row + 1 if closed else 0
                        if closed_in_a_row >= _CLOSED_IN_A_ROW:
                            return kafka_errors.SaslAuthenticationFailedError(
                                f"the broker closed {closed_in_a_row} connections in a row "
                                "during SASL authentication")
            if not answered:
                break
        return failure or kafka_errors.KafkaTimeoutError("no bootstrap broker answered in time")

    _quiet.active = True  # the outcome is ours to report: no kafka-python log line for it
    try:
        return net.run(log_in)  # type: ignore[no-any-return]
    except Exception as exc:  # noqa: BLE001 - DNS, sockets: inconclusive, not ours to judge
        return exc
    finally:
        try:
            manager.close()
            net.close()
        finally:
            _quiet.active = False


class _QuietThread(logging.Filter, threading.local):
    """Drops kafka-python's records logged by a thread while ``active`` (the credentials
    check runs its connection on the calling thread, so nothing else is hidden)."""

    active = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.active


_quiet = _QuietThread()
for _name in ("kafka.net.connection", "kafka.net.inet", "kafka.net.manager",
              "kafka.net.selector", "kafka.net.transport"):
    logging.getLogger(_name).addFilter(_quiet)


def _build(settings: Settings, construct: Callable[[dict[str, Any]], T],
           overrides: dict[str, Any]) -> T:
    config = client_config(settings, **overrides)
    check_credentials(settings, **overrides)
    with _bootstrap_failures() as failures:
        try:
            return construct(config)
        except (kafka_errors.SaslAuthenticationFailedError, kafka_errors.AuthorizationError) as exc:
            raise access_error(exc, settings) from None  # type: ignore[misc]
        except kafka_errors.KafkaTimeoutError as exc:
            # Refused logins alternate with plain disconnects in kafka-python's retries: any
            # refusal among them is the reason (credentials revoked since the check).
            refusal = next((f for f in failures
                            if isinstance(f, kafka_errors.SaslAuthenticationFailedError)), None)
            if refusal is not None:
                raise access_error(refusal, settings) from None  # type: ignore[misc]
            reason = _one_line(failures[-1]) if failures else _one_line(str(exc))
            # The listener answered but TLS never completed: not a broker that is down.
            kind = KafkaHandshakeError if "Handshake failed" in reason else KafkaUnreachableError
            raise kind(
                f"cannot connect to Kafka at {settings.bootstrap_servers} "
                f"({settings.kafka_security.describe()}): {reason}") from None


class _ReasonCollector(logging.Handler):
    """Keeps the errors kafka-python logs for failed bootstrap connections."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.failures: list[object] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("Bootstrap connection to") and len(record.args or ()) >= 2:
            self.failures.append(record.args[1])  # type: ignore[index]


_collector_lock = threading.Lock()


class _bootstrap_failures:
    """Context manager: collect bootstrap failures while a client is constructed."""

    def __enter__(self) -> list[object]:
        self._handler = _ReasonCollector()
        with _collector_lock:
            logging.getLogger(_MANAGER_LOG).addHandler(self._handler)
        return self._handler.failures

    def __exit__(self, *exc: object) -> None:
        with _collector_lock:
            logging.getLogger(_MANAGER_LOG).removeHandler(self._handler)


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."
