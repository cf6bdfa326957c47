#!/usr/bin/env bash
# PostgreSQL's server programs (initdb, pg_ctl, pg_basebackup) for the cluster tests, which start
# their own primary and synchronous standby on loopback (deploy/postgres/local-cluster.sh).
exec bash "$(dirname "$0")/apt-install.sh" \
  'ls /usr/lib/postgresql/*/bin/pg_basebackup && ls /usr/lib/postgresql/*/bin/psql' postgresql postgresql-client
