#!/usr/bin/env bash
# Run a command against a real Kafka broker: scripts/with-kafka.sh CMD [ARGS...]
#
# If KAFKA_BOOTSTRAP_SERVERS is set, CMD just runs against that broker. Else, if a broker
# started by `streamrec kafka start` is already running, CMD uses it and it is left running.
# Else a local broker is started from its jars, exported as KAFKA_BOOTSTRAP_SERVERS for CMD,
# and always stopped afterwards (also on failure or Ctrl-C). Exits with CMD's exit code.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi
if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    exec "$@"
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
streamrec="${STREAMREC_BIN:-$repo/.venv/bin/streamrec}"

# A broker someone else started stays theirs: use it, do not stop it.
if "$streamrec" kafka status >/dev/null 2>&1; then
    KAFKA_BOOTSTRAP_SERVERS="$("$streamrec" kafka start)"
    export KAFKA_BOOTSTRAP_SERVERS
    exec "$@"
fi

# Installed before starting, so a start interrupted half-way is cleaned up too.
trap '"$streamrec" kafka stop >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
KAFKA_BOOTSTRAP_SERVERS="$("$streamrec" kafka start)"
export KAFKA_BOOTSTRAP_SERVERS

set +e  # CMD's failure must reach the exit code, not abort before the trap reports it
"$@"
status=$?
set -e
exit "$status"
