"""How every Kafka client connects: security protocol, SASL and TLS, in one frozen value.

``KafkaSecurity`` is the one connection config of the project (``Settings.kafka_security``);
``streamrec.transport.kafka_clients`` turns it into kafka-python clients and nothing else builds one.
This module is a contract: stdlib only, no kafka import, so the CLI can parse and validate
a configuration without a client library.

Secrets (``sasl_password``, ``ssl_password``) are ``repr=False`` and never part of an error
message or ``describe()``: a log line or a traceback must not carry them.

>>> s = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "ingest", "s3cret", ssl_cafile="ca.pem")
>>> s.describe()
"SASL_SSL, SCRAM-SHA-512, user 'ingest'"
>>> "s3cret" in repr(s)
False
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, fields

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
# Fields holding secret material; ``secrets()`` returns their values for log redaction.
SECRET_FIELDS = ("sasl_password", "ssl_password")


class KafkaAccessError(RuntimeError):
    """The cluster refused us: authentication failed or a principal lacks an ACL.

    Fatal by nature: retrying with the same credentials cannot succeed, so services exit
    with this one-line message instead of retrying (see ``kafka_clients.is_fatal``).
    """


class KafkaUnreachableError(RuntimeError):
    """No broker completed a connection (address, protocol mismatch, TLS handshake)."""


class KafkaHandshakeError(KafkaUnreachableError):
    """Every TLS handshake failed for the whole bootstrap timeout: TLS against a plaintext
    listener, an untrusted certificate, a host name that does not match. Fatal: the broker
    answered, and retrying the same configuration cannot succeed."""


def _config_error(message: str) -> Exception:
    from streamrec.config import ConfigError  # late: config imports this module
    return ConfigError(message)


@dataclass(frozen=True)
class KafkaSecurity:
    """Security settings shared by every client; the defaults are a plaintext broker."""

    security_protocol: str = "PLAINTEXT"      # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str | None = None         # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 | OAUTHBEARER
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = field(default=None, repr=False)
    ssl_check_hostname: bool = True
    oauth_token_provider: str | None = None   # "module:attribute" of an AbstractTokenProvider factory

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def validate(self) -> None:
        """Raise ``ConfigError`` with a one-line message (never a secret) on nonsense."""
        if self.security_protocol not in PROTOCOLS:
            raise _config_error(f"security protocol must be one of {', '.join(PROTOCOLS)}, "
                                f"got {self.security_protocol!r}")
        if self.uses_sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise _config_error(f"{self.security_protocol} needs a SASL mechanism, one of "
                                    f"{', '.join(MECHANISMS)}; got {self.sasl_mechanism!r}")
            if self.sasl_mechanism == "OAUTHBEARER":
                if not self.oauth_token_provider or ":" not in self.oauth_token_provider:
                    raise _config_error("SASL mechanism OAUTHBEARER needs a token provider "
                                        "'module:attribute' (STREAMREC_KAFKA_OAUTH_TOKEN_PROVIDER)")
            elif not self.sasl_username or self.sasl_password is None:
                raise _config_error(f"SASL mechanism {self.sasl_mechanism} needs a username and "
                                    "a password (--sasl-username, --sasl-password-file or "
                                    "STREAMREC_KAFKA_SASL_USERNAME / _PASSWORD)")
        elif self.sasl_mechanism is not None:
            raise _config_error(f"a SASL mechanism ({self.sasl_mechanism}) needs security "
                                f"protocol SASL_PLAINTEXT or SASL_SSL, not {self.security_protocol}")
        tls_files = {"ssl_cafile": self.ssl_cafile, "ssl_certfile": self.ssl_certfile,
                     "ssl_keyfile": self.ssl_keyfile}
        given = [name for name, value in tls_files.items() if value]
        if given and not self.uses_ssl:
            raise _config_error(f"{', '.join(given)} given but security protocol "
                                f"{self.security_protocol} does not use TLS (use SSL or SASL_SSL)")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise _config_error("ssl_keyfile needs ssl_certfile (the client certificate)")
        for name in given:
            path = tls_files[name]
            try:
                with open(path, "rb"):  # type: ignore[arg-type]
                    pass
            except OSError as exc:
                # The path is not a secret; the file's content never reaches a message.
                raise _config_error(f"{name} {path}: {exc.strerror or 'cannot be read'}") from None

    def client_kwargs(self) -> dict[str, object]:
        """The kafka-python keyword arguments for this configuration (secrets included)."""
        kwargs: dict[str, object] = {"security_protocol": self.security_protocol}
        if self.uses_sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            if self.sasl_mechanism == "OAUTHBEARER":
                kwargs["sasl_oauth_token_provider"] = load_token_provider(
                    self.oauth_token_provider or "")
            else:
                kwargs["sasl_plain_username"] = self.sasl_username
                kwargs["sasl_plain_password"] = self.sasl_password
        if self.uses_ssl:
            kwargs["ssl_check_hostname"] = self.ssl_check_hostname
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password"):
                if getattr(self, name) is not None:
                    kwargs[name] = getattr(self, name)
        return kwargs

    def describe(self) -> str:
        """Safe for logs and errors: protocol, mechanism, user; never a secret."""
        parts = [self.security_protocol]
        if self.uses_sasl:
            parts.append(str(self.sasl_mechanism))
            if self.sasl_username:
                parts.append(f"user {self.sasl_username!r}")
        if self.uses_ssl and not self.ssl_check_hostname:
            parts.append("no hostname check")
        return ", ".join(parts)

    def secrets(self) -> list[str]:
        """Secret values in use (for log redaction); empty strings are not secrets."""
        return [v for v in (getattr(self, name) for name in SECRET_FIELDS) if v]


SECURITY_FIELDS = tuple(f.name for f in fields(KafkaSecurity))


def load_token_provider(spec: str) -> object:
    """Import ``module:attribute`` and call it: an OAUTHBEARER token provider.

    The operator names the factory in their own configuration (never read from a topic),
    so importing it is as trusted as the command line itself.
    """
    module_name, _, attribute = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise _config_error(f"OAUTHBEARER token provider {spec!r} cannot be loaded: "
                            f"{type(exc).__name__}") from None
    # A class or a function returning a provider; an instance already made is fine too.
    provider = factory() if isinstance(factory, type) or not hasattr(factory, "token") else factory
    if not callable(getattr(provider, "token", None)):
        raise _config_error(f"OAUTHBEARER token provider {spec!r} has no token() method")
    return provider


def read_secret_file(path: str, source: str) -> str:
    """A password kept in a file (not on the command line, where ``ps`` shows it).

    One trailing newline is dropped (``echo secret > file``). Neither the content nor the
    path reaches an error message: a password typed where the path belongs must not leak.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(64 * 1024 + 1)
    except OSError as exc:
        raise _config_error(f"{source}: cannot read the file "
                            f"({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise _config_error(f"{source}: the file is not UTF-8 text") from None
    if len(text) > 64 * 1024:
        raise _config_error(f"{source}: the file is larger than 64 KiB, not a password file")
    return text[:-1] if text.endswith("\n") else text
