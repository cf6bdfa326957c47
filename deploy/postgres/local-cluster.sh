#!/usr/bin/env bash
# A PostgreSQL primary and a synchronous streaming standby on loopback, in one folder: what the
# cluster tests run against, and a way to try cluster mode on one machine. Production runs
# PostgreSQL under Patroni instead (docs/cluster.md); the replication settings are the same.
#
#   deploy/postgres/local-cluster.sh start DIR PRIMARY_PORT STANDBY_PORT
#       initdb the primary in DIR/primary, clone it with pg_basebackup into DIR/standby, start
#       both and wait until the standby is the synchronous one; prints PLATEPOOL_POSTGRES=URL.
#   deploy/postgres/local-cluster.sh stop DIR            stop both and remove DIR
#   deploy/postgres/local-cluster.sh stop-standby DIR    stop the standby: commits then wait
#   deploy/postgres/local-cluster.sh start-standby DIR   start it again; waits until it is in sync
#   deploy/postgres/local-cluster.sh kill-primary DIR    stop the primary at once (as a crash)
#   deploy/postgres/local-cluster.sh promote DIR         promote the standby to primary
#
# Commits on the primary wait for the standby to have flushed their WAL
# (synchronous_standby_names = 'FIRST 1 (standby)', synchronous_commit = on), so a commit the
# primary acknowledges is on both machines' disks. Authentication is `trust` on loopback only:
# this is a test and demonstration cluster, never a production one.
#
# PostgreSQL refuses to run as root: when run as root, its programs run as the `postgres` user
# (created by Debian's package) and DIR is given to that user; its parent must be traversable.
set -euo pipefail

PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
if [ -z "$PG_BIN" ]; then
    echo "PostgreSQL is not installed: bash .ci/install-postgres.sh" >&2
    exit 1
fi

as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

usage() {
    sed -n '5,15p' "$0" >&2
    exit 2
}

port_of() { cat "$1/$2.port"; }

psql_at() {
    as_pg "$PG_BIN/psql" -X -q -A -t -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"
}

# Starts the server in DIR/NAME and waits until it accepts connections.
start_server() {
    local dir=$1 name=$2
    as_pg "$PG_BIN/pg_ctl" -D "$dir/$name" -l "$dir/$name.log" -w -t 60 start >/dev/null || {
        echo "PostgreSQL $name did not start; its log:" >&2
        cat "$dir/$name.log" >&2
        exit 1
    }
}

# Waits (at most 30 s) until the primary reports the standby as its synchronous standby.
wait_sync() {
    local dir=$1 port state
    port=$(port_of "$dir" primary)
    for _ in $(seq 300); do
        state=$(psql_at "$port" \
            "select sync_state from pg_stat_replication where application_name = 'standby'" \
            2>/dev/null || true)
        [ "$state" = sync ] && return 0
        sleep 0.1
    done
    echo "the standby did not become synchronous; see $dir/standby.log" >&2
    exit 1
}

start() {
    local dir=$1 primary_port=$2 standby_port=$3
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
        runuser -u postgres -- test -w "$dir" || {
            echo "the postgres user cannot reach $dir: choose a folder whose parents it may enter" >&2
            exit 1
        }
    fi
    echo "$primary_port" | as_pg tee "$dir/primary.port" >/dev/null
    echo "$standby_port" | as_pg tee "$dir/standby.port" >/dev/null
    as_pg "$PG_BIN/initdb" -D "$dir/primary" -U postgres -A trust -E UTF8 --no-locale \
        --no-sync >/dev/null
    # The settings of a durable synchronous pair, sized for a test machine. A later line of
    # postgresql.conf wins, so the standby overrides only its port.
    as_pg tee -a "$dir/primary/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $primary_port
unix_socket_directories = '$dir'
fsync = on
full_page_writes = on
synchronous_commit = on
wal_level = replica
max_wal_senders = 4
max_replication_slots = 4
hot_standby = on
max_connections = 60
shared_buffers = 32MB
EOF
    start_server "$dir" primary
    as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$primary_port" -U postgres platepool
    # The standby is a copy of the primary streaming its WAL through a slot (the primary keeps
    # what the standby has not received yet, also while it is stopped).
    as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres \
        -D "$dir/standby" -X stream -C -S standby -c fast --no-sync
    as_pg touch "$dir/standby/standby.signal"
    as_pg tee -a "$dir/standby/postgresql.conf" >/dev/null <<EOF
port = $standby_port
primary_conninfo = 'host=127.0.0.1 port=$primary_port user=postgres application_name=standby'
primary_slot_name = 'standby'
EOF
    # Only now do commits wait for the standby (creating the database above would have waited
    # for a standby that did not exist yet); the standby's copy of the settings has no such line.
    echo "synchronous_standby_names = 'FIRST 1 (standby)'" |
        as_pg tee -a "$dir/primary/postgresql.conf" >/dev/null
    as_pg "$PG_BIN/pg_ctl" -D "$dir/primary" reload >/dev/null
    start_server "$dir" standby
    wait_sync "$dir"
    echo "PLATEPOOL_POSTGRES=postgresql://postgres@127.0.0.1:$primary_port/platepool"
    echo "PLATEPOOL_POSTGRES_STANDBY=postgresql://postgres@127.0.0.1:$standby_port/platepool"
}

stop_server() {
    local dir=$1 name=$2 mode=$3
    if [ -f "$dir/$name/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$dir/$name" -m "$mode" -w -t 60 stop >/dev/null || true
    fi
}

stop() {
    local dir=$1
    [ -d "$dir" ] || return 0
    # Its data goes with it: no need for a shutdown checkpoint.
    stop_server "$dir" standby immediate
    stop_server "$dir" primary immediate
    rm -rf "$dir"
}

cmd=${1:-}
case "$cmd" in
    start) [ $# = 4 ] || usage; start "$2" "$3" "$4" ;;
    stop) [ $# = 2 ] || usage; stop "$2" ;;
    stop-standby) [ $# = 2 ] || usage; stop_server "$2" standby fast ;;
    start-standby) [ $# = 2 ] || usage; start_server "$2" standby; wait_sync "$2" ;;
    kill-primary) [ $# = 2 ] || usage; stop_server "$2" primary immediate ;;
    promote) [ $# = 2 ] || usage; as_pg "$PG_BIN/pg_ctl" -D "$2/standby" -w -t 60 promote >/dev/null ;;
    *) usage ;;
esac
