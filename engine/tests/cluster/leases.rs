//! Leases: one owner per office, a take bumps the epoch, and the epoch fences commits.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::time::Duration;

use platepool_engine::cluster::PgError;
use platepool_engine::record::Record;

use crate::local_pg::{connect, expire, raw_client, runtime, shared};
use crate::records::{app, audit};

const LONG: Duration = Duration::from_secs(60);

fn offices(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn two_nodes_racing_for_an_expired_lease_exactly_one_wins_every_round() {
    let pg = shared();
    runtime().block_on(async {
        let mut a = connect(&pg.primary).await;
        let mut b = connect(&pg.primary).await;
        let time = raw_client(&pg.primary).await;
        a.register_offices(&offices(&["race"]))
            .await
            .expect("register");
        let first = a
            .acquire("race", "a", LONG)
            .await
            .expect("acquire")
            .expect("free");
        let mut epoch = first.epoch;
        let mut holder = first;
        for round in 0..300 {
            // Half the rounds the holder stops renewing (expiry), half it gives the lease up.
            if round % 2 == 0 {
                expire(&time, "race").await;
            } else {
                let released = if holder.node == "a" {
                    a.release(&holder).await
                } else {
                    b.release(&holder).await
                };
                assert!(released.expect("release"), "round {round}: release");
            }
            // Both sent before either answer is read; which is sent first alternates.
            let (got_a, got_b) = if round % 4 < 2 {
                tokio::join!(a.acquire("race", "a", LONG), b.acquire("race", "b", LONG))
            } else {
                let (b_, a_) =
                    tokio::join!(b.acquire("race", "b", LONG), a.acquire("race", "a", LONG));
                (a_, b_)
            };
            let (got_a, got_b) = (got_a.expect("a's take"), got_b.expect("b's take"));
            let winner = match (got_a, got_b) {
                (Some(l), None) | (None, Some(l)) => l,
                (Some(_), Some(_)) => panic!("round {round}: both nodes took the lease"),
                (None, None) => panic!("round {round}: neither node took a free lease"),
            };
            epoch += 1;
            assert_eq!(winner.epoch, epoch, "round {round}: one take, one epoch");
            holder = winner;
        }
        let status = a.lease_status().await.expect("status");
        let row = status.iter().find(|r| r.office == "race").expect("row");
        assert_eq!(row.epoch, epoch);
        assert_eq!(row.node.as_deref(), Some(holder.node.as_str()));
    });
}

#[test]
fn a_node_whose_lease_was_taken_over_has_every_commit_refused() {
    let pg = shared();
    runtime().block_on(async {
        let mut a = connect(&pg.primary).await;
        let mut b = connect(&pg.primary).await;
        let time = raw_client(&pg.primary).await;
        a.register_offices(&offices(&["fenced"]))
            .await
            .expect("register");
        let held = a
            .acquire("fenced", "a", LONG)
            .await
            .expect("take")
            .expect("free");
        let first = vec![
            Record::App(Box::new(app(1))),
            audit(1, "apply", Some(1), None),
        ];
        a.commit("fenced", held.epoch, &first)
            .await
            .expect("a commits under its lease");
        // A holds a live lease: B cannot take it.
        assert!(b.acquire("fenced", "b", LONG).await.expect("try").is_none());
        expire(&time, "fenced").await;
        let taken = b
            .acquire("fenced", "b", LONG)
            .await
            .expect("take")
            .expect("expired");
        assert_eq!(taken.epoch, held.epoch + 1);
        for seq in 2..12 {
            let late = vec![Record::App(Box::new(app(seq)))];
            match a.commit("fenced", held.epoch, &late).await {
                Err(PgError::Fenced { epoch, .. }) => assert_eq!(epoch, held.epoch),
                other => panic!("a's commit after the takeover: {other:?}"),
            }
        }
        assert_eq!(a.renew(&held, LONG).await.expect("renew"), None);
        assert!(!a.release(&held).await.expect("release"));
        // What B recovers is exactly what A committed under its lease.
        let snap = b.load("fenced").await.expect("load");
        let seqs: Vec<u64> = snap.apps.iter().map(|a| a.seq).collect();
        assert_eq!(seqs, vec![1]);
        let trail = b.audit("fenced", 0, 100).await.expect("audit");
        assert_eq!(trail.len(), 1);
        b.commit("fenced", taken.epoch, &[Record::App(Box::new(app(2)))])
            .await
            .expect("the new owner commits");
        assert!(b.renew(&taken, LONG).await.expect("renew").is_some());
    });
}

#[test]
fn commits_racing_a_takeover_are_either_recovered_by_the_new_owner_or_refused() {
    let pg = shared();
    runtime().block_on(async {
        let mut a = connect(&pg.primary).await;
        let mut b = connect(&pg.primary).await;
        let time = raw_client(&pg.primary).await;
        let mut split_rounds = 0;
        for round in 0..20u64 {
            let office = format!("takeover-{round}");
            a.register_offices(std::slice::from_ref(&office))
                .await
                .expect("register");
            let held = a
                .acquire(&office, "a", LONG)
                .await
                .expect("take")
                .expect("free");
            let taken_over = Cell::new(false);
            let mut acknowledged = BTreeSet::new();
            let mut refused = 0;
            let committer = async {
                for seq in 1..=40u64 {
                    let after_takeover = taken_over.get();
                    let group = vec![Record::App(Box::new(app(seq)))];
                    match a.commit(&office, held.epoch, &group).await {
                        Ok(()) => {
                            assert!(!after_takeover, "{office}: commit {seq} after the takeover");
                            acknowledged.insert(seq);
                        }
                        Err(PgError::Fenced { .. }) => refused += 1,
                        Err(e) => panic!("{office}: commit {seq}: {e}"),
                    }
                    tokio::task::yield_now().await;
                }
            };
            let taker = async {
                tokio::time::sleep(Duration::from_micros(500 * round)).await;
                expire(&time, &office).await;
                let lease = b.acquire(&office, "b", LONG).await.expect("take");
                taken_over.set(true);
                lease.expect("an expired lease is taken")
            };
            let ((), lease) = tokio::join!(committer, taker);
            let snap = b.load(&office).await.expect("recover");
            let recovered: BTreeSet<u64> = snap.apps.iter().map(|a| a.seq).collect();
            assert_eq!(
                recovered, acknowledged,
                "{office}: recovered = acknowledged"
            );
            assert_eq!(lease.epoch, held.epoch + 1);
            if !acknowledged.is_empty() && refused > 0 {
                split_rounds += 1;
            }
        }
        // The takeover fell in the middle of the commits, not only before or after them.
        assert!(
            split_rounds >= 5,
            "only {split_rounds} rounds had commits on both sides"
        );
    });
}

#[test]
fn nodes_claim_their_preferred_offices_then_a_fair_share() {
    let pg = shared();
    runtime().block_on(async {
        // A database of their own, where other tests' offices are not.
        let admin = raw_client(&pg.primary).await;
        admin
            .batch_execute("CREATE DATABASE claims")
            .await
            .expect("database");
        let url = format!("{} dbname=claims", pg.primary);
        let mut n1 = connect(&url).await;
        let mut n2 = connect(&url).await;
        let all = offices(&["o1", "o2", "o3", "o4", "o5", "o6"]);
        n1.register_offices(&all).await.expect("register");
        n2.acquire("o6", "n2", LONG)
            .await
            .expect("take")
            .expect("free");
        // Two live nodes, six offices: n1's share is three, the first three free ones.
        let got: Vec<String> = n1
            .claim("n1", LONG, &[])
            .await
            .expect("claim")
            .into_iter()
            .map(|l| l.office)
            .collect();
        assert_eq!(got, offices(&["o1", "o2", "o3"]));
        // n2 prefers o5, then fills its share of three.
        let got: Vec<String> = n2
            .claim("n2", LONG, &offices(&["o5"]))
            .await
            .expect("claim")
            .into_iter()
            .map(|l| l.office)
            .collect();
        assert_eq!(got, offices(&["o5", "o4"]));
        // Nothing is left to take.
        assert!(n1.claim("n1", LONG, &all).await.expect("claim").is_empty());
        let status = n1.lease_status().await.expect("status");
        let owners: Vec<(&str, Option<&str>, u64)> = status
            .iter()
            .map(|r| (r.office.as_str(), r.node.as_deref(), r.epoch))
            .collect();
        assert_eq!(
            owners,
            vec![
                ("o1", Some("n1"), 1),
                ("o2", Some("n1"), 1),
                ("o3", Some("n1"), 1),
                ("o4", Some("n2"), 1),
                ("o5", Some("n2"), 1),
                ("o6", Some("n2"), 1),
            ]
        );
        for row in &status {
            let expires = row.expires_in_ms.expect("held");
            assert!(expires > 0 && expires <= 60_000, "{row:?}");
            assert!(row.held_ms.expect("held") >= 0, "{row:?}");
        }
    });
}
