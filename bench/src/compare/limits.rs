//! The limits measured in the same run as the comparison: what no design on this machine can
//! beat. A bare fdatasync and sled's batch + flush + fdatasync (from [`crate::io`]), an actix
//! message round trip to an actor on another thread, and an actix-web hello world
//! ([`super::http::serve_hello`], driven by wrk).

use std::time::Duration;

use actix::prelude::*;

use super::{measure, Measured};
use crate::io::{RawRecord, RawSled, SyncFile};
use crate::load::{histogram, record, Stop};

/// A message that does nothing.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Ping;

/// An actor that answers [`Ping`], on an arbiter (thread) of its own, as an office actor is.
#[derive(Debug)]
struct Pong;

impl Actor for Pong {
    type Context = Context<Self>;
}

impl Handler<Ping> for Pong {
    type Result = ();

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
}

/// Round trips of an actix message to an actor on another thread, `inflight` at a time.
pub async fn actix_round_trip(inflight: usize, budget: Duration) -> Measured {
    let arbiter = Arbiter::new();
    let addr = Pong::start_in_arbiter(&arbiter.handle(), |_| Pong);
    let m = measure(inflight, Stop::After(budget), move |_| {
        let addr = addr.clone();
        async move { addr.send(Ping).await.map_err(|e| e.to_string()) }
    })
    .await;
    arbiter.stop();
    m
}

/// Bare fdatasync of a 4 KiB write, one after another for `budget`.
pub fn fsync(budget: Duration) -> Measured {
    let mut file = SyncFile::new();
    let mut m = Measured::new();
    m.latency = histogram();
    let start = std::time::Instant::now();
    while start.elapsed() < budget {
        record(&mut m.latency, file.step());
        m.run.ok += 1;
    }
    m.run.elapsed = start.elapsed();
    m
}

/// sled group commits of `batch` records shaped like `template` (batch, flush, fdatasync), one
/// after another for `budget`; `run.ok` counts records.
pub fn sled_group_commits(
    raw: &mut RawSled,
    template: &[RawRecord],
    batch: usize,
    budget: Duration,
) -> Measured {
    let mut m = Measured::new();
    let start = std::time::Instant::now();
    let mut written = 0usize;
    while start.elapsed() < budget {
        let t = std::time::Instant::now();
        raw.group_commit(template, written, batch);
        record(&mut m.latency, t.elapsed());
        written += batch;
    }
    m.run.ok = written as u64;
    m.run.elapsed = start.elapsed();
    m
}
