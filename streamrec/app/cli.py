"""The ``streamrec`` command: one entry point, one subcommand per job.

Every subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an exit code.
Bad arguments get a one-line message and exit code 2; a ``ConfigError`` exits with 2 too
(one line naming the variable or flag and what it accepts), and so does a Kafka cluster
that refuses us (wrong password, missing ACL) or of which no broker answers within
``connect_timeout_s``: one line naming the broker and the mechanism, never a traceback.

Every command takes ``--log-level``; a ``STREAMREC_*`` variable that no setting reads gets
a one-line warning with the name it most likely meant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn, Sequence

from streamrec.app.gc_policy import apply_gc_policy
from streamrec import __version__
from streamrec.config import ConfigError
from streamrec.connection import KafkaAccessError, KafkaUnreachableError
from streamrec.app.kafka_args import FLAGS_ATTR
from streamrec.setting_rules import LOG_LEVELS

# Modules that contribute subcommands, in the order they appear in --help.
SUBCOMMAND_MODULES = (
    "streamrec.app.commands.core",        # schema, topics, ingest, score, forget, demo
    "streamrec.app.kafka_launcher",       # kafka start|stop|status
    "streamrec.producers.cli",                  # produce replay|synthetic
    "streamrec.app.evaluation.cli",       # replay
    "streamrec.app.evaluation.tuning_cli",  # tune
    "streamrec.app.commands.train",       # train
    "streamrec.app.commands.acls",        # acls print|apply
)


# The commands of the modules that import a serving library at the top, for a client-only
# install (kafka-python and msgspec): they stay listed and say what to install.
NEEDS_AN_EXTRA = {
    "streamrec.producers.cli": ("produce",),
    "streamrec.app.evaluation.cli": ("replay",),
    "streamrec.app.evaluation.tuning_cli": ("tune",),
}
EXTRA_HINT = "pip install 'streamrec[serve]' (or [train], [eval])"


def _is_third_party(module: str) -> bool:
    return module.split(".")[0] != "streamrec"


def _register_missing(subparsers: argparse._SubParsersAction, command: str, missing: str) -> None:
    def explain(args: argparse.Namespace) -> int:
        _error_line(f"streamrec {command} needs {missing}, which this install lacks: {EXTRA_HINT}")
        return 2

    p = subparsers.add_parser(command, help=f"(needs {missing}: {EXTRA_HINT})", add_help=False)
    p.set_defaults(func=explain, takes_any_arguments=True)


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
    parser.add_argument("--version", action="version", version=f"streamrec {__version__}")
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
            if exc.name and module_name in NEEDS_AN_EXTRA and _is_third_party(exc.name):
                for command in NEEDS_AN_EXTRA[module_name]:  # the client install: no numpy
                    _register_missing(subparsers, command, exc.name)
                continue
            raise
        module.register(subparsers)
    _finish_commands(parser)
    return parser


def _finish_commands(parser: argparse.ArgumentParser) -> None:
    """Give every command ``--log-level`` and remember its flags by destination, for
    errors that name the flag a refused value came from (``kafka_args.kafka_settings``)."""
    commands = [action for action in parser._actions  # argparse keeps them nowhere public
                if isinstance(action, argparse._SubParsersAction)]
    if commands:
        for action in commands:
            for command in set(action.choices.values()):
                _finish_commands(command)
        return
    if not any("--log-level" in action.option_strings for action in parser._actions):
        parser.add_argument("--log-level", type=_log_level, metavar="|".join(LOG_LEVELS),
                            help="log level (default: $STREAMREC_LOG_LEVEL or info)")
    flags = {action.dest: max(action.option_strings, key=len)
             for action in parser._actions if action.option_strings}
    parser.set_defaults(**{FLAGS_ATTR: flags})


def _log_level(text: str) -> str:
    from streamrec.app.argtypes import setting
    return setting("log_level")(text)  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "takes_any_arguments", False):
        parser.parse_args(argv)  # the usual one-line error for what it did not recognise
    apply_gc_policy()
    try:
        _warn_unknown_variables()
        _check_broker_first(args)
        _configure_log_level(args)
        return int(args.func(args) or 0)
    except (ConfigError, KafkaAccessError, KafkaUnreachableError) as exc:
        _error_line(str(exc))
        return 2
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:
        # A command that imports a serving library lazily, run from the client install.
        if not exc.name or not _is_third_party(exc.name):
            raise
        _error_line(f"streamrec {args.command} needs {exc.name}, which this install lacks: "
                    f"{EXTRA_HINT}")
        return 2
    except Exception as exc:
        access = _kafka_access_error(exc, args)
        if access is None:
            raise
        _error_line(str(access))
        return 2


def _warn_unknown_variables() -> None:
    from streamrec.settings_sources import unknown_variables
    for line in unknown_variables(os.environ):
        sys.stderr.write(f"streamrec: warning: {line}\n")


def _configure_log_level(args: argparse.Namespace) -> None:
    """``--log-level`` (or ``STREAMREC_LOG_LEVEL``) for commands that set up no logging of
    their own; the services and the trainer configure theirs from the same setting."""
    from streamrec.app.logging_setup import configure_logging
    from streamrec.settings_sources import log_level
    level = log_level(os.environ, getattr(args, "log_level", None))
    if level is not None:
        configure_logging(level, fmt="text")


def _check_broker_first(args: argparse.Namespace) -> None:
    """A command about to talk to Kafka checks, once its own ``preflight`` checks of its
    arguments passed, that a broker answers within ``connect_timeout_s`` and, over SASL,
    logs in once: an unreachable broker or refused credentials end it here with one line,
    before a service starts its metrics server, its model follower or its recovery loop
    (which would retry like any failure)."""
    preflight = getattr(args, "preflight", None)
    if preflight is not None:  # the command's own checks of its arguments come first
        preflight(args)
    offline = getattr(args, "stdout", False) or getattr(args, "via_kafka", True) is False
    if not hasattr(args, "kafka_config") or offline:  # no connection flags, or no broker
        return
    from streamrec.app.commands.core import settings_from_args
    from streamrec.app.kafka_args import check_reachable
    check_reachable(settings_from_args(args))  # its client logs in first over SASL


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
