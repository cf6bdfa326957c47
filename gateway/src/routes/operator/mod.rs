//! Operator routes (API.md "Operator", SPEC §5): offices, releases, withdrawals, certificate
//! imports, registrations, voids, look-ups, figures, the blacklist, the audit trail, citizen tokens
//! for demos and load tests, and the built-in SMS outbox.
//!
//! Every handler takes the [`Operator`](crate::auth::Operator) extractor first, so a request
//! without the operator credential is refused (401, or 403 for a citizen token) before its body
//! is read.
//!
//! One file per resource; [`shared`] holds what several handlers use.

pub(crate) mod applications;
pub(crate) mod audit;
pub(crate) mod blacklist;
pub(crate) mod certificates;
pub(crate) mod claims;
pub(crate) mod offices;
pub(crate) mod outbox;
pub(crate) mod plates;
pub(crate) mod registrations;
pub(crate) mod releases;
mod shared;
pub(crate) mod stats;
pub(crate) mod tokens;
