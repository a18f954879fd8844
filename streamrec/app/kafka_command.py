"""``streamrec kafka start|stop|status``: the CLI edge of ``streamrec.app.kafka_launcher``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from streamrec.app.kafka_launcher import DEFAULT_HOME, KafkaLauncher, KafkaLaunchError
from streamrec.app.kafka_secure import write_client_properties


def add_kafka_command(subparsers: argparse._SubParsersAction) -> None:
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
