"""``streamrec acls print|apply``: the least-privilege ACLs of ``streamrec.transport.acls``.

``print`` needs no broker: it writes one ``kafka-acls.sh --add`` line per principal and
resource, for an operator to review and run with a super user's ``--command-config``.
``apply`` creates the same ACLs itself, authenticated as whoever the connection settings
name (``--kafka-config`` of a super user, or the ``STREAMREC_KAFKA_*`` variables), and
waits until the broker enforces them.
"""

from __future__ import annotations

import argparse
import sys

from streamrec.app.commands.core import settings_from_args
from streamrec.app.kafka_args import add_kafka_options


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
    # The connection flags of every command: apply authenticates as a super user.
    add_kafka_options(apply, topic_prefix=False)
    apply.set_defaults(func=_cmd_apply)


def _cmd_print(args: argparse.Namespace) -> int:
    from streamrec.transport.acls import kafka_acls_commands
    settings = settings_from_args(args)
    for line in kafka_acls_commands(settings, command_config=args.command_config):
        print(line)
    return 0


def _cmd_apply(args: argparse.Namespace) -> int:
    from kafka import errors as kafka_errors

    from streamrec.transport import kafka_clients
    from streamrec.transport.acls import AclApplyError, apply_acls
    settings = settings_from_args(args)
    # Refused credentials or an unreachable broker raise the factory's one-line errors,
    # which the CLI edge prints; what the broker refuses afterwards is worded here.
    admin = kafka_clients.admin(settings, client_id="streamrec-acls")
    try:
        rules = apply_acls(admin, settings)
    except (AclApplyError, kafka_errors.KafkaError) as exc:
        refused = kafka_clients.access_error(exc, settings)
        print(f"streamrec: error: applying ACLs on {settings.bootstrap_servers} failed: "
              + (str(refused) if refused else f"{type(exc).__name__}: {exc}"), file=sys.stderr)
        return 1
    finally:
        admin.close()
    principals = sorted({rule.principal for rule in rules})
    print(f"{len(rules)} ACLs in force on {settings.bootstrap_servers} "
          f"({settings.kafka_security.describe()}) for {', '.join(principals)}")
    return 0
