"""The only place that constructs kafka-python clients: every one gets the connection config.

``consumer``, ``producer`` and ``admin`` take the frozen ``Settings`` (bootstrap servers and
``kafka_security``) plus the caller's own keyword arguments (group, isolation level, sizes),
so no client can be built without TLS/SASL once the settings ask for them. A unit test
(tests/unit/core/test_kafka_clients.py) fails if a construction appears anywhere else.

Failures to connect are made one-line and typed here:

- authentication refused (wrong password, unknown user) or an ACL missing:
  ``KafkaAccessError``, fatal (``is_fatal``): retrying with the same credentials cannot work;
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
from typing import Any, Callable, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer  # type: ignore[import-untyped]
from kafka import errors as kafka_errors

from streamrec.config import Settings
from streamrec.connection import KafkaAccessError, KafkaHandshakeError, KafkaUnreachableError

__all__ = ["KafkaAccessError", "KafkaHandshakeError", "KafkaUnreachableError", "access_error",
           "admin", "consumer", "is_fatal", "producer"]

T = TypeVar("T")
_MANAGER_LOG = "kafka.net.manager"  # where kafka-python says why a bootstrap attempt failed


def consumer(settings: Settings, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A ``KafkaConsumer`` (subscribed to ``topics`` if any) with the settings' security."""
    return _build(settings, lambda kwargs: KafkaConsumer(*topics, **kwargs), overrides)


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


def _build(settings: Settings, construct: Callable[[dict[str, Any]], T],
           overrides: dict[str, Any]) -> T:
    config = client_config(settings, **overrides)
    with _bootstrap_failures() as reasons:
        try:
            return construct(config)
        except (kafka_errors.SaslAuthenticationFailedError, kafka_errors.AuthorizationError) as exc:
            raise access_error(exc, settings) from None  # type: ignore[misc]
        except kafka_errors.KafkaTimeoutError as exc:
            reason = reasons[-1] if reasons else _one_line(str(exc))
            # The listener answered but TLS never completed: not a broker that is down.
            kind = KafkaHandshakeError if "Handshake failed" in reason else KafkaUnreachableError
            raise kind(
                f"cannot connect to Kafka at {settings.bootstrap_servers} "
                f"({settings.kafka_security.describe()}): {reason}") from None


class _ReasonCollector(logging.Handler):
    """Keeps the reasons kafka-python logs for failed bootstrap connections."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("Bootstrap connection to") and len(record.args or ()) >= 2:
            self.reasons.append(_one_line(str(record.args[1])))  # type: ignore[index]


_collector_lock = threading.Lock()


class _bootstrap_failures:
    """Context manager: collect bootstrap failure reasons while a client is constructed."""

    def __enter__(self) -> list[str]:
        self._handler = _ReasonCollector()
        with _collector_lock:
            logging.getLogger(_MANAGER_LOG).addHandler(self._handler)
        return self._handler.reasons

    def __exit__(self, *exc: object) -> None:
        with _collector_lock:
            logging.getLogger(_MANAGER_LOG).removeHandler(self._handler)


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."
