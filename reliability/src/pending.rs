//! Campaigns that wait for the loadtest tool (being built in `loadtest/`): they print
//! "not yet run" so the campaign list stays complete and honest.

use crate::{Mode, Outcome};

/// Campaign 2: SIGKILL the gateway at random moments during a loadtest opening, restart,
/// continue; after each cycle every acknowledged claim and debit present, no number claimed
/// twice, quotas exact, holds back, the service ready again (and how long that took).
pub fn kill9_campaign(_mode: Mode) -> Outcome {
    let mut out = Outcome::new(
        "kill9",
        "kill -9 through the binary under a loadtest opening (campaign 2)",
    );
    out.not_yet_run = Some(
        "TODO(campaign 2): needs the loadtest tool (loadtest/) to drive an opening; \
         to be done next"
            .into(),
    );
    out
}

/// Campaign 4: offer 3x the measured maximum; mailboxes and memory bounded, excess answered
/// 503/429 quickly, p99 of accepted requests bounded, recovery at once when load drops.
pub fn overload_campaign(_mode: Mode) -> Outcome {
    let mut out = Outcome::new(
        "overload",
        "overload at 3x the measured maximum (campaign 4)",
    );
    out.not_yet_run = Some(
        "TODO(campaign 4): needs the loadtest tool (loadtest/) to measure the maximum and offer \
         3x; to be done next"
            .into(),
    );
    out
}
