//! The engine's clock against the wall clock (SPEC T1), as `/readyz` and
//! `GET /v1/admin/clock` show it.

use platepool_engine::calendar::rfc3339;
use platepool_engine::clock::ClockStatus;
use serde::{Deserialize, Serialize};

/// The clock's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Clock)]
pub struct ClockAnswer {
    /// Engine time.
    #[schema(format = DateTime)]
    pub now: String,
    #[schema(format = DateTime)]
    pub wall: String,
    /// The largest disagreement followed without a confirmation.
    pub bound_ms: u64,
    /// Steps beyond the bound seen since the engine started.
    pub steps: u64,
    /// A step is not yet followed: engine time follows the monotonic clock.
    pub degraded: bool,
    /// Wall time minus engine time while degraded.
    pub offset_ms: Option<i64>,
    #[schema(format = DateTime)]
    pub step_seen_at: Option<String>,
}

impl From<&ClockStatus> for ClockAnswer {
    fn from(status: &ClockStatus) -> ClockAnswer {
        ClockAnswer {
            now: rfc3339(status.now_ms),
            wall: rfc3339(status.wall_ms),
            bound_ms: status.bound_ms,
            steps: status.steps,
            degraded: status.degraded.is_some(),
            offset_ms: status.degraded.map(|s| s.offset_ms),
            step_seen_at: status.degraded.map(|s| rfc3339(s.seen_at_ms)),
        }
    }
}
