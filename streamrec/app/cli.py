"""The ``streamrec`` command: one entry point, one subcommand per job.

Every subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an exit code.
Bad arguments get a one-line message and exit code 2; a ``ConfigError`` exits with 2 too,
and so does a Kafka cluster that refuses us (wrong password, missing ACL) or that no
connection reaches: one line naming the broker and the mechanism, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn, Sequence

from streamrec.config import ConfigError
from streamrec.connection import KafkaAccessError, KafkaUnreachableError

# Modules that contribute subcommands, in the order they appear in --help.
SUBCOMMAND_MODULES = (
    "streamrec.app.commands.core",        # schema, topics, ingest, score, forget, demo
    "streamrec.app.kafka_launcher",       # kafka start|stop|status
    "streamrec.producers.cli",                  # produce replay|synthetic
    "streamrec.app.evaluation.cli",       # replay
    "streamrec.app.commands.train",       # train
    "streamrec.app.commands.acls",        # acls print|apply
)


class _OneLineErrorParser(argparse.ArgumentParser):
    def __init__(self, *args: object, **kwargs: object) -> None:
        # No abbreviations: "--sasl-password SECRET" must be an error, not a prefix of
        # --sasl-password-file that would take the password for a path.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:  # noqa: D401 - argparse API
        sys.stderr.write(f"streamrec: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrorParser(prog="streamrec", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND",
                                       parser_class=_OneLineErrorParser)
    subparsers.required = True
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A module still being written must not break the other subcommands.
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check_credentials_first(args)
        return int(args.func(args) or 0)
    except (ConfigError, KafkaAccessError, KafkaUnreachableError) as exc:
        _error_line(str(exc))
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        access = _kafka_access_error(exc, args)
        if access is None:
            raise
        _error_line(str(access))
        return 2


def _check_credentials_first(args: argparse.Namespace) -> None:
    """A command about to talk to Kafka over SASL logs in once before anything else: refused
    credentials end it here with one line, before a service starts its metrics server, its
    model follower or its recovery loop (which would retry a refusal like any failure)."""
    offline = getattr(args, "stdout", False) or getattr(args, "via_kafka", True) is False
    if not hasattr(args, "kafka_config") or offline:  # no connection flags, or no broker
        return
    from streamrec.app.kafka_args import kafka_settings
    from streamrec.transport.kafka_clients import check_credentials
    check_credentials(kafka_settings(args))


def _error_line(message: str) -> None:
    from streamrec.app.logging_setup import redact  # a secret never reaches the terminal either
    sys.stderr.write(f"streamrec: error: {redact(message)}\n")


def _kafka_access_error(exc: Exception, args: argparse.Namespace) -> Exception | None:
    """A raw kafka-python authentication/ACL error raised mid-run, as one line."""
    from streamrec.app.kafka_args import SETTINGS_ATTR
    settings = getattr(args, SETTINGS_ATTR, None)
    if settings is None or not type(exc).__module__.startswith("kafka"):
        return None
    from streamrec.transport.kafka_clients import access_error
    return access_error(exc, settings)


if __name__ == "__main__":
    raise SystemExit(main())
