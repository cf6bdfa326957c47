//! The group commit on PostgreSQL: what a new owner recovers is what was committed, in the
//! shape the sled backend gives back for the same commits.

use platepool_engine::store::{Durability, Store};

use crate::local_pg::{connect, runtime, shared};
use crate::records::{assert_same, office_history};

#[test]
fn an_office_recovered_from_postgres_equals_what_sled_recovers_from_the_same_commits() {
    let pg = shared();
    let folder = tempfile::tempdir().expect("folder");
    let sled = Store::open(folder.path(), Durability::None).expect("sled store");
    let sled_office = sled.office("recovered").expect("office tree");
    runtime().block_on(async {
        let mut node = connect(&pg.primary).await;
        node.register_offices(&["recovered".to_string()])
            .await
            .expect("register");
        let lease = node
            .acquire("recovered", "n1", std::time::Duration::from_secs(60))
            .await
            .expect("take")
            .expect("free");
        let history = office_history(7, 150);
        let records: usize = history.iter().map(Vec::len).sum();
        assert!(
            records > 2000,
            "a history worth recovering: {records} records"
        );
        for group in &history {
            node.commit("recovered", lease.epoch, group)
                .await
                .expect("commit");
            sled_office.commit_now(group).expect("sled commit");
        }
        let expected = sled_office.load().expect("sled load");
        assert!(expected.apps.len() > 300 && !expected.numbers.is_empty());
        // A new connection, as a new owner would open.
        let mut other = connect(&pg.primary).await;
        let found = other.load("recovered").await.expect("load");
        assert_same(&found, &expected);
        let sled_trail = sled_office.audit(0, usize::MAX).expect("sled audit");
        let pg_trail = other
            .audit("recovered", 0, usize::MAX)
            .await
            .expect("audit");
        let entries = |t: &[(u64, platepool_engine::AuditEntry)]| {
            t.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>()
        };
        assert_eq!(entries(&pg_trail), entries(&sled_trail));
        assert!(pg_trail.windows(2).all(|w| w[0].0 < w[1].0), "ids grow");
        // Paging from an id gives what follows it.
        let (mid, _) = pg_trail[pg_trail.len() / 2];
        let rest = other.audit("recovered", mid, 10).await.expect("page");
        assert_eq!(rest.as_slice(), &pg_trail[pg_trail.len() / 2 + 1..][..10]);
        // Another office's records are not this one's.
        other
            .register_offices(&["empty".to_string()])
            .await
            .expect("register");
        let empty = other.load("empty").await.expect("load");
        assert!(empty.config.is_none() && empty.apps.is_empty() && empty.numbers.is_empty());
    });
}
