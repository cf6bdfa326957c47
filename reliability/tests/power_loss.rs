//! Power loss through the real binary (campaign 8 in a test's size): the binary runs under
//! strace (Debian's package; the test fails when it is missing) from an empty data folder
//! through the operator calls and the citizen flow, and
//! - every HTTP answer is written only after every file of the data folder written before it
//!   was fsynced or fdatasynced after its last write, and every new entry of a folder had its
//!   folder fsynced (`sync_file_range` counts for nothing);
//! - 2,000 draws sent by 48 connections at once (numbers of a 100,000-number release among
//!   them) land as group commits of several calls, and each answer follows the syncs of
//!   everything written before its request arrived;
//! - the folder rebuilt as a power loss right after the burst's first answer and at the end of
//!   the run opens with every acknowledged change.
#![allow(clippy::unwrap_used)]

use platepool_reliability::power_loss;
use platepool_reliability::power_loss::flow::Burst;
use platepool_reliability::storage;

fn binary() -> std::path::PathBuf {
    storage::binary(false)
        .ok()
        .filter(|b| storage::binary_is_fresh(b))
        .map_or_else(|| storage::binary(true), Ok)
        .unwrap_or_else(|e| panic!("no platepool binary: {e}"))
}

#[test]
fn every_answer_finds_its_bytes_on_the_device_and_survives_a_power_loss() {
    power_loss::strace::available().unwrap_or_else(|e| panic!("{e}"));
    let bin = binary();
    let burst = Burst {
        citizens: 6,
        draws: 2_000,
        clients: 48,
    };
    let rec = power_loss::record(&bin, &burst).unwrap_or_else(|e| panic!("traced run: {e}"));
    assert!(
        rec.model.unmodelled.is_empty(),
        "calls on the data folder the model cannot replay: {:?}",
        rec.model.unmodelled
    );
    assert_eq!(rec.unmatched(), 0, "answers missing from the trace");
    assert!(
        rec.model.acks.len() >= rec.flow.requests.len(),
        "{} answers traced for {} requests",
        rec.model.acks.len(),
        rec.flow.requests.len()
    );
    let (blobs, synced) = rec.model.blobs();
    assert!(
        blobs > 0,
        "the listed release is large enough for sled to write it as a blob"
    );
    assert_eq!(synced, blobs, "every blob file is fsynced");
    let (drawn, groups) = rec.burst_groups();
    assert_eq!(
        drawn,
        2_000,
        "every draw of the burst answered 201; {} did not, e.g. {:?}",
        rec.flow.failures.len(),
        rec.flow.failures.iter().take(3).collect::<Vec<_>>()
    );
    assert!(
        groups > 0 && drawn >= groups * 2,
        "{drawn} draws in {groups} group commits"
    );
    let unsynced = rec.unsynced_answers();
    assert!(
        unsynced.is_empty(),
        "{} answer(s) written before the data folder was synced:\n{}",
        unsynced.len(),
        unsynced.join("\n")
    );
    let first_draw = rec
        .flow
        .requests
        .iter()
        .zip(&rec.answered_at)
        .filter(|(r, _)| r.concurrent)
        .filter_map(|(_, at)| *at)
        .min()
        .unwrap();
    let (checked, problems) = rec.power_loss_at(&bin, first_draw + 1).unwrap();
    assert!(
        checked > 0,
        "nothing acknowledged before the burst's first answer"
    );
    assert!(
        problems.is_empty(),
        "after a power loss amid the burst: {problems:#?}"
    );
    let last = rec.model.last_line + 1;
    let (checked, problems) = rec.power_loss_at(&bin, last).unwrap();
    assert!(
        checked >= rec.flow.requests.len() / 2,
        "{checked} changes checked"
    );
    assert!(problems.is_empty(), "after the power loss: {problems:#?}");
}
