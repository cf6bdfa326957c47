//! The synchronous standby: what the primary acknowledged survives the primary, and without
//! the standby the primary acknowledges nothing.

use std::time::Duration;

use platepool_engine::cluster::{PgError, PgStore};
use platepool_engine::record::Record;

use crate::local_pg::{connect, runtime, LocalPostgres};
use crate::records::{app, office_history};

const LONG: Duration = Duration::from_secs(60);

#[test]
fn what_the_primary_acknowledged_is_on_the_standby_it_fails_over_to() {
    let pg = LocalPostgres::start();
    runtime().block_on(async {
        let mut node = connect(&pg.primary).await;
        node.register_offices(&["failover".to_string()])
            .await
            .expect("register");
        let lease = node
            .acquire("failover", "n1", LONG)
            .await
            .expect("take")
            .expect("free");
        let history = office_history(11, 60);
        for group in &history {
            node.commit("failover", lease.epoch, group)
                .await
                .expect("commit");
        }
        let committed = node.load("failover").await.expect("load");
        // The primary dies at once after its last acknowledgement; the standby is promoted.
        pg.kill_primary();
        drop(node);
        pg.promote();
        // A node reconnects with both hosts and finds the writable one.
        let mut after = connect(&pg.both_hosts()).await;
        let found = after
            .load("failover")
            .await
            .expect("load from the promoted standby");
        crate::records::assert_same(&found, &committed);
        // The lease survived too: its holder goes on committing, a stale epoch is refused.
        after
            .commit(
                "failover",
                lease.epoch,
                &[Record::App(Box::new(app(9_000)))],
            )
            .await
            .expect("commit on the promoted standby");
        let stale = after.commit("failover", lease.epoch - 1, &[]).await;
        assert!(matches!(stale, Err(PgError::Fenced { .. })), "{stale:?}");
    });
}

#[test]
fn without_its_synchronous_standby_the_primary_acknowledges_nothing() {
    let pg = LocalPostgres::start();
    runtime().block_on(async {
        let mut node = connect(&pg.primary).await;
        node.register_offices(&["alone".to_string()])
            .await
            .expect("register");
        let lease = node
            .acquire("alone", "n1", LONG)
            .await
            .expect("take")
            .expect("free");
        node.commit("alone", lease.epoch, &[Record::App(Box::new(app(1)))])
            .await
            .expect("commit with the standby up");
        pg.stop_standby();
        let wait = Duration::from_secs(2);
        let mut waiting = PgStore::connect(&pg.primary, wait).await.expect("connect");
        let started = std::time::Instant::now();
        let alone = waiting
            .commit("alone", lease.epoch, &[Record::App(Box::new(app(2)))])
            .await;
        assert!(matches!(alone, Err(PgError::Timeout(_))), "{alone:?}");
        assert!(started.elapsed() >= wait, "it waited for the standby");
        // The connection's transaction has an unknown outcome: it is not used again.
        let again = waiting.load("alone").await;
        assert!(matches!(again, Err(PgError::Abandoned)), "{again:?}");
        pg.start_standby();
        let mut back = connect(&pg.primary).await;
        back.commit("alone", lease.epoch, &[Record::App(Box::new(app(3)))])
            .await
            .expect("commit with the standby back");
        let seqs: Vec<u64> = back
            .load("alone")
            .await
            .expect("load")
            .apps
            .iter()
            .map(|a| a.seq)
            .collect();
        // 2 was never acknowledged: it may or may not have been written (PostgreSQL committed it
        // locally before waiting for the standby); 1 and 3 were acknowledged and are there.
        assert!(seqs.contains(&1) && seqs.contains(&3), "{seqs:?}");
    });
}
