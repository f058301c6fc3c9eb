#!/usr/bin/env bash
# Stop what up.sh started. Safe to run twice, or when nothing runs.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
"$here/kafka.sh" stop
"$here/postgres.sh" stop
pidfile="$PREDLOG_SERVICES_DIR/jaeger/pid"
if [[ -f "$pidfile" ]]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
fi
exit 0
