//! Load from more than one machine: a coordinator and workers, started on any machines that
//! reach the gateway, rehearse one opening together.
//!
//! The coordinator (`--listen ADDR --worker-processes N`) waits for N workers (`--coordinator
//! HOST:PORT`), prepares the office once (rules, certificates, every buyer's token), gives
//! worker `w` the buyers `i` with `i % N == w` (disjoint identities, VINs and phones, since
//! those derive from the run tag and the index) and their tokens, and names the start of the
//! load and the opening instant on its clock ([`clock`]: each worker measures where that clock
//! is on its own). Each worker runs its share exactly as a single-process run runs all buyers
//! (arrival offsets from the same plan, so the arrivals together are the scenario's), sends its
//! live counters every second and, at the end, its part ([`part`]: recorder with serialised
//! HdrHistograms, buyers' records, CPU and client counts). The coordinator merges the parts into
//! one [`crate::report::Report`] — the single-process form — and audits the office once over
//! every buyer's record.
//!
//! The link ([`wire`]) is one TCP connection per worker, newline-delimited JSON, with heartbeats
//! both ways: a worker that dies (its connection closes) or falls silent for the peer timeout
//! fails the run at once, with the worker named, and the coordinator tells the others to stop.
pub mod clock;
pub mod coordinator;
pub mod part;
pub mod wire;
pub mod worker;
