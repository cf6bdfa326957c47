//! platepool-loadtest: rehearse a plate-pool opening the way operators need to, and audit the
//! result.
//!
//! Virtual buyers (people and bots) walk the citizen flow of SPEC §4 over HTTP against a running
//! gateway or one started in-process ([`embedded`]); the office is prepared through the operator
//! API ([`prepare`]); load is offered open (arrival rate with a ramp) or closed (N in flight) and
//! latency is measured from each request's intended send time ([`recorder`]); after every hold
//! has expired the office is read back and checked ([`audit`]); the [`report`] is text, JSON and
//! self-contained HTML ([`html`]).
pub mod api;
pub mod audit;
pub mod buyer;
pub mod cli;
pub mod distributed;
pub mod embedded;
pub mod fairness;
pub mod html;
pub mod identity;
pub mod lucky;
pub mod prepare;
pub mod recorder;
pub mod report;
pub mod run;
pub mod scenario;
pub mod sweep;
