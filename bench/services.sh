#!/usr/bin/env bash
# Redis and PostgreSQL for the side-by-side comparison (`bench/compare.sh`), on loopback only,
# with their own data folders under one temporary folder: never the system-wide services.
#
#   bench/services.sh install   apt-get install redis-server postgresql wrk (Debian's packages)
#   bench/services.sh start     start both; prints the environment the `compare` binary reads
#   bench/services.sh stop      stop both and remove their folder
#   bench/services.sh status
#
# Two Redis servers run side by side, so both durability settings are measured in one run:
#   port 6390  appendonly yes, appendfsync always    (an acknowledged write is fsynced: the same
#                                                      durability as platepool's fdatasync)
#   port 6391  appendonly yes, appendfsync everysec  (up to a second of writes lost on power loss)
# PostgreSQL listens on port 5440 with fsync on and synchronous_commit on (acknowledged = WAL
# flushed), the settings a plate pool would run with. Every data folder is on the same file
# system as the temporary folder the engine's fixtures use ($TMPDIR or /tmp).
#
# Not needed by `cargo test` or CI.
set -euo pipefail

ROOT="${PLATEPOOL_SERVICES_DIR:-${TMPDIR:-/tmp}/platepool-services}"
REDIS_ALWAYS_PORT=6390
REDIS_EVERYSEC_PORT=6391
PG_PORT=5440
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"

# PostgreSQL refuses to run as root: run its commands as the `postgres` user when we are root.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

install() {
    if command -v redis-server >/dev/null && command -v wrk >/dev/null && [ -n "$PG_BIN" ]; then
        return
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server postgresql wrk
}

start_redis() {
    local port=$1 fsync=$2 dir="$ROOT/redis-$1"
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
        --appendonly yes --appendfsync "$fsync" --save "" \
        --maxmemory 0 --io-threads 1 --protected-mode yes
    for _ in $(seq 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "redis on port $port did not start; see $dir/redis.log" >&2
    exit 1
}

start_pg() {
    local dir="$ROOT/pg"
    if [ -z "$PG_BIN" ]; then
        echo "postgresql is not installed: bench/services.sh install" >&2
        exit 1
    fi
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
    fi
    # Durable commits (fsync, synchronous_commit on, full pages); memory for a 1M-row table;
    # connections for the pool the benchmark opens.
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w start -o "\
        -c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories='$dir' \
        -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c wal_sync_method=fdatasync \
        -c shared_buffers=1GB -c max_connections=100 -c max_wal_size=4GB \
        -c checkpoint_timeout=30min -c autovacuum_naptime=10s" >/dev/null
    as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAt \
        -c "select 1 from pg_database where datname = 'platepool'" | grep -q 1 ||
        as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres platepool
}

start() {
    mkdir -p "$ROOT"
    chmod 755 "$ROOT"
    start_redis "$REDIS_ALWAYS_PORT" always
    start_redis "$REDIS_EVERYSEC_PORT" everysec
    start_pg
    env
}

env() {
    echo "PLATEPOOL_REDIS_ALWAYS=redis://127.0.0.1:$REDIS_ALWAYS_PORT/"
    echo "PLATEPOOL_REDIS_EVERYSEC=redis://127.0.0.1:$REDIS_EVERYSEC_PORT/"
    echo "PLATEPOOL_POSTGRES=host=127.0.0.1 port=$PG_PORT user=postgres dbname=platepool"
}

stop() {
    for port in "$REDIS_ALWAYS_PORT" "$REDIS_EVERYSEC_PORT"; do
        redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    done
    if [ -n "$PG_BIN" ] && [ -f "$ROOT/pg/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$ROOT/pg/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$ROOT"
}

status() {
    redis-cli -p "$REDIS_ALWAYS_PORT" config get appendfsync 2>/dev/null | tr '\n' ' ' || true
    echo
    redis-cli -p "$REDIS_EVERYSEC_PORT" config get appendfsync 2>/dev/null | tr '\n' ' ' || true
    echo
    [ -n "$PG_BIN" ] && "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" || true
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) env ;;
    *)
        echo "usage: $0 install|start|stop|status|env" >&2
        exit 2
        ;;
esac
