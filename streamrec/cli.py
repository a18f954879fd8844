"""The ``streamrec`` command: one entry point, one subcommand per job.

Every subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an exit code.
Bad arguments get a one-line message and exit code 2; a ``ConfigError`` exits with 2 too.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from streamrec.config import ConfigError

# Modules that contribute subcommands, in the order they appear in --help.
SUBCOMMAND_MODULES = (
    "streamrec.commands.core",        # schema, topics, ingest, score, forget, demo
    "streamrec.kafka_launcher",       # kafka start|stop|status
    "producers.cli",                  # produce replay|synthetic
    "streamrec.evaluation.cli",       # replay
    "streamrec.commands.train",       # train
    "streamrec.commands.acls",        # acls print|apply
)


class _OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # noqa: D401 - argparse API
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
        return int(args.func(args) or 0)
    except ConfigError as exc:
        sys.stderr.write(f"streamrec: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
