"""The connection flags every Kafka-facing subcommand takes, and their ``Settings``.

Flags win over ``STREAMREC_KAFKA_*`` variables, which win over a properties file
(``--kafka-config``), which wins over the defaults (see ``Settings.from_env``). A password
is never a flag (``ps`` would show it): ``--sasl-password-file`` or the environment.
"""

from __future__ import annotations

import argparse
from typing import Any

from streamrec.app.argtypes import setting
from streamrec.config import Settings
from streamrec.connection import MECHANISMS, PROTOCOLS, read_secret_file
from streamrec.app.logging_setup import redact_secrets

# Where the CLI edge finds the settings a command ran with, to word a Kafka error.
SETTINGS_ATTR = "resolved_settings"
# Where ``streamrec.app.cli`` leaves each parser's {dest: flag} (``--prefix`` for topic_prefix in
# ``acls``), so that a refused value is named by the flag the user typed.
FLAGS_ATTR = "flag_names"
# Flags (by argparse dest) that set a Settings field, and the field: wherever a command has
# one, ``commands.core.settings_from_args`` passes it on (scripts/settings-table lists them).
SETTING_FLAGS = {"bootstrap_servers": "bootstrap_servers", "topic_prefix": "topic_prefix",
                 "partitions": "partitions", "replication_factor": "replication_factor",
                 "batch_size": "batch_size", "metrics_port": "metrics_port",
                 "metrics_host": "metrics_host", "k": "top_k", "store": "model_store",
                 "connect_timeout_s": "connect_timeout_s", "log_level": "log_level"}
_FIELD_DESTS = {field: dest for dest, field in SETTING_FLAGS.items()}


def _upper_choice(choices: tuple[str, ...]):  # type: ignore[no-untyped-def]
    def parse(text: str) -> str:
        value = text.strip().upper()
        if value not in choices:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(choices)}")
        return value
    return parse


def add_kafka_options(parser: argparse.ArgumentParser, *, topic_prefix: bool = True) -> None:
    """``--bootstrap-servers``, ``--topic-prefix`` and the connection (TLS/SASL) flags."""
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers "
                        "(default: $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    if topic_prefix:
        parser.add_argument("--topic-prefix", help="prefix for every topic name (default: none)")
    group = parser.add_argument_group("Kafka connection (flags > STREAMREC_KAFKA_* > --kafka-config)")
    group.add_argument("--kafka-config", metavar="FILE",
                       help="Kafka client properties file, as Kafka's tools take "
                            "(default: $STREAMREC_KAFKA_CONFIG)")
    group.add_argument("--security-protocol", type=_upper_choice(PROTOCOLS),
                       metavar="|".join(PROTOCOLS))
    group.add_argument("--sasl-mechanism", type=_upper_choice(MECHANISMS),
                       metavar="|".join(MECHANISMS))
    group.add_argument("--sasl-username")
    group.add_argument("--sasl-password-file", metavar="FILE",
                       help="file holding the SASL password (or $STREAMREC_KAFKA_SASL_PASSWORD)")
    group.add_argument("--ssl-cafile", metavar="PEM", help="CA certificate(s) to trust")
    group.add_argument("--ssl-certfile", metavar="PEM", help="client certificate (mutual TLS)")
    group.add_argument("--ssl-keyfile", metavar="PEM", help="client private key")
    group.add_argument("--no-ssl-check-hostname", dest="ssl_check_hostname",
                       action="store_const", const=False, default=None,
                       help="do not check the broker certificate's host name")
    group.add_argument("--connect-timeout", dest="connect_timeout_s", metavar="SECONDS",
                       type=setting("connect_timeout_s"),
                       help="give up with one line when no broker answers within this time "
                            "(default: $STREAMREC_CONNECT_TIMEOUT_S or 10)")


def security_flags(args: argparse.Namespace) -> dict[str, object]:
    """``KafkaSecurity`` field values given as flags (None where a flag is absent)."""
    password_file = getattr(args, "sasl_password_file", None)
    return {
        "security_protocol": getattr(args, "security_protocol", None),
        "sasl_mechanism": getattr(args, "sasl_mechanism", None),
        "sasl_username": getattr(args, "sasl_username", None),
        "sasl_password": (read_secret_file(password_file, "--sasl-password-file")
                          if password_file else None),
        "ssl_cafile": getattr(args, "ssl_cafile", None),
        "ssl_certfile": getattr(args, "ssl_certfile", None),
        "ssl_keyfile": getattr(args, "ssl_keyfile", None),
        "ssl_check_hostname": getattr(args, "ssl_check_hostname", None),
    }


def kafka_settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    """``Settings`` from flags, environment and properties file; remembered on ``args``.

    ``overrides`` are field values; those equal to the flag the parser read (``args``) are
    named by that flag if ``Settings.validate`` refuses them.
    """
    overrides.setdefault("bootstrap_servers", getattr(args, "bootstrap_servers", None))
    for name in ("connect_timeout_s", "log_level"):
        overrides.setdefault(name, getattr(args, name, None))
    parser_flags: dict[str, str] = getattr(args, FLAGS_ATTR, {})
    flag_names = {}
    for name, value in overrides.items():
        dest = _FIELD_DESTS.get(name, name)
        if value is not None and dest in parser_flags and getattr(args, dest, None) == value:
            flag_names[name] = parser_flags[dest]
    # environ=None (the process environment) is named so **overrides cannot be taken for it.
    settings = Settings.from_env(None, kafka_config=getattr(args, "kafka_config", None),
                                 security_flags=security_flags(args), flag_names=flag_names,
                                 **overrides)
    # From here on no log line of ours may carry the passwords these settings hold.
    redact_secrets(settings.kafka_security.secrets())
    setattr(args, SETTINGS_ATTR, settings)
    return settings


def check_reachable(settings: Settings) -> None:
    """Raise ``KafkaUnreachableError`` (one line) unless a broker answers within
    ``connect_timeout_s``: a command fails in seconds on a wrong address, not after the
    clients' own 30 s bootstrap timeout or, for a service, after it started serving."""
    from streamrec.transport import kafka_clients
    timeout_ms = max(1, int(settings.connect_timeout_s * 1000))
    try:
        admin = kafka_clients.admin(settings, client_id="streamrec-connect-check",
                                    bootstrap_timeout_ms=timeout_ms,
                                    request_timeout_ms=max(timeout_ms, 1000))
    except kafka_clients.KafkaHandshakeError:
        raise  # the listener answered, but TLS failed: its own words say why, not a timeout
    except kafka_clients.KafkaUnreachableError as exc:
        where = f"Kafka at {settings.bootstrap_servers} ({settings.kafka_security.describe()})"
        reason = str(exc).removeprefix(f"cannot connect to {where}: ")
        raise type(exc)(f"cannot reach {where} within {settings.connect_timeout_s:g} s "
                        f"(--connect-timeout, STREAMREC_CONNECT_TIMEOUT_S): {reason}") from None
    admin.close()
