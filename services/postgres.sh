#!/usr/bin/env bash
# postgres.sh install|start|stop: PostgreSQL from Debian's packages on loopback, trust auth, for
# the Iceberg SQL catalog tests (PREDLOG_TEST_POSTGRES). State under $PREDLOG_SERVICES_DIR.
# initdb refuses to run as root: as root it runs as the `postgres` user the package made.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
pg_dir="$PREDLOG_SERVICES_DIR/postgres"
log() { printf '[services] %s\n' "$*" >&2; }

bin_dir() {
    local found
    found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    if [[ -z "$found" || ! -x "$found/initdb" ]]; then
        log "installing postgresql"
        (apt-get install -y -q postgresql >/dev/null 2>&1) ||
            (apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null)
        found="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    fi
    echo "$found"
}

as_owner() {  # run a command as the data directory's owner (never root)
    if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
install)
    bin_dir >/dev/null
    ;;
start)
    bin="$(bin_dir)"
    mkdir -p "$pg_dir"
    [[ "$(id -u)" == 0 ]] && chown postgres: "$pg_dir"
    if [[ ! -f "$pg_dir/data/PG_VERSION" ]]; then
        as_owner "$bin/initdb" -D "$pg_dir/data" -U postgres -A trust -E UTF8 >"$pg_dir/initdb.log" 2>&1
    fi
    as_owner "$bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/postgres.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $POSTGRES_PORT -k $pg_dir -c max_connections=200 -c fsync=off" >/dev/null
    ;;
stop)
    if [[ -f "$pg_dir/data/postmaster.pid" ]]; then
        bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
        as_owner "$bin/pg_ctl" -D "$pg_dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    fi
    ;;
*) echo "usage: postgres.sh install|start|stop" >&2; exit 2 ;;
esac
