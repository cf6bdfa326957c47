//! The citizen API (API.md "Citizen"; SPEC §4): stage 1 (apply), stage 2 (identity, custom and
//! random selection, claim), the voucher, re-entry and practice mode.
//!
//! Every handler: authenticate (401), rate-limit selection calls (429 before any rule), read the
//! body, then — for state-changing calls — run the work once per `Idempotency-Key`.
//!
//! One file per page of the flow; [`request`] and [`render`] hold what they share.

pub(crate) mod applications;
pub(crate) mod claim;
pub(crate) mod custom;
pub(crate) mod draws;
pub(crate) mod identity;
pub(crate) mod keyboard;
pub(crate) mod me;
pub(crate) mod practice;
mod render;
mod request;
pub(crate) mod sms;
pub(crate) mod voucher;
