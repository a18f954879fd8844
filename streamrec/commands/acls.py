"""``streamrec acls print|apply``: the least-privilege ACLs of ``streamrec.acls``.

``print`` needs no broker: it writes one ``kafka-acls.sh --add`` line per principal and
resource, for an operator to review and run with a super user's ``--command-config``.
``apply`` creates the same ACLs itself, authenticated as whoever the connection settings
name (a super user), and waits until the broker enforces them.
"""

from __future__ import annotations

import argparse
import sys

from streamrec.commands.core import settings_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    acls = subparsers.add_parser("acls", help="least-privilege ACLs for each service principal")
    actions = acls.add_subparsers(dest="acls_command", metavar="ACTION", required=True)
    show = actions.add_parser("print", help="print the kafka-acls.sh commands (no broker needed)")
    show.add_argument("--prefix", dest="topic_prefix",
                      help="topic prefix of the deployment (default: $STREAMREC_TOPIC_PREFIX)")
    show.add_argument("--bootstrap-server", dest="bootstrap_servers",
                      help="what the commands pass to --bootstrap-server "
                           "(default: $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    show.add_argument("--command-config", default=None,
                      help="client properties file of a super user, for --command-config")
    show.set_defaults(func=_cmd_print)
    apply = actions.add_parser("apply", help="create the ACLs on the broker (as a super user)")
    apply.add_argument("--prefix", dest="topic_prefix",
                       help="topic prefix of the deployment (default: $STREAMREC_TOPIC_PREFIX)")
    apply.add_argument("--bootstrap-servers", help="Kafka bootstrap servers "
                       "(default: $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    apply.set_defaults(func=_cmd_apply)


def _cmd_print(args: argparse.Namespace) -> int:
    from streamrec.acls import kafka_acls_commands
    settings = settings_from_args(args)
    for line in kafka_acls_commands(settings, command_config=args.command_config):
        print(line)
    return 0


def _cmd_apply(args: argparse.Namespace) -> int:
    from kafka import KafkaAdminClient
    from kafka import errors as kafka_errors

    from streamrec.acls import AclApplyError, apply_acls
    settings = settings_from_args(args)
    # The connection config (TLS/SASL) of Settings, once it has one; plaintext before that.
    security = getattr(settings, "kafka_security", None)
    client_kwargs = security.client_kwargs() if security is not None else {}
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                 client_id="streamrec-acls", **client_kwargs)
        try:
            rules = apply_acls(admin, settings)
        finally:
            admin.close()
    except (AclApplyError, kafka_errors.KafkaError) as exc:
        print(f"streamrec: error: applying ACLs on {settings.bootstrap_servers} failed: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    principals = sorted({rule.principal for rule in rules})
    print(f"{len(rules)} ACLs in force on {settings.bootstrap_servers} for "
          f"{', '.join(principals)}")
    return 0
