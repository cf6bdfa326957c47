//! Harness shared by the criterion benchmarks (`benches/engine.rs`) and the report binary
//! (`src/bin/engine-report.rs`): fixtures (offices with a million numbers and ten thousand
//! verified applications), closed-loop load generation on one actix system, the raw sled and
//! fdatasync baselines each figure is compared with, the linear keyboard scan, and machine facts.
//!
//! Every figure is measured against a limit taken in the same run on the same machine, so the
//! ratios mean something on a shared, noisy VM where absolute numbers do not.

pub mod compare;
pub mod fixture;
pub mod io;
pub mod load;
pub mod machine;
pub mod scan;
pub mod wrk;
