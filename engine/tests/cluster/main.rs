//! Cluster mode against real PostgreSQL: a primary with a synchronous standby on loopback,
//! started by deploy/postgres/local-cluster.sh (Debian's packages: .ci/install-postgres.sh).
//! A missing PostgreSQL fails these tests; it never skips them.
mod commit;
mod leases;
mod local_pg;
mod records;
mod replication;
