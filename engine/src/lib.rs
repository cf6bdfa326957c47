//! platepool engine: licence-plate pre-selection pools, one actor per office, durable in sled.
//!
//! The layers, from the inside out (see ARCHITECTURE.md):
//! - [`plate`], [`pattern`], [`class`], [`rules`], [`vin`], [`calendar`]: values and their rules;
//! - [`pool`]: one office's pool as a pure state machine (no clock, no IO);
//! - `store`, `actor`, `engine`: persistence in sled with group commit, the actor per office, and
//!   the handle an embedding program uses.
pub mod actor;
pub mod backup;
pub mod calendar;
pub mod class;
pub mod clock;
#[cfg(feature = "postgres")]
pub mod cluster;
pub mod config;
pub mod engine;
pub mod events;
pub mod figures;
pub(crate) mod group_commit;
pub mod keyboard;
pub mod kv;
pub mod outcome;
pub mod pattern;
pub mod plate;
pub mod pool;
pub mod record;
pub mod registry;
pub mod rules;
mod settled_store;
pub mod store;
pub mod supervisor;
pub mod verify;
mod verify_registry;
pub mod vin;
pub mod writer;

#[cfg(test)]
mod acknowledged_reads;

pub use class::{Energy, PlateClass};
pub use config::{Notice, OfficeConfig, OfficeRules};
pub use engine::{AppId, Caller, Engine, EngineConfig, EngineError};
pub use figures::{CallKind, CallSnapshot, OfficeCalls};
pub use outcome::{Refusal, Unavailable};
pub use pattern::{CharSet, Pattern, PatternError};
pub use plate::{PlateError, Serial};
pub use pool::{AppView, Check, Draw, HoldView, NewRelease, ReleasePreview};
pub use record::{AppRecord, AppState, AuditEntry, Claim, ReleaseRecord, ReleaseSource};
pub use registry::{ApplicationRequest, CertificateRow, ImportPart, ImportReport};
pub use store::Durability;
