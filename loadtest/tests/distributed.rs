//! Load from more than one process: a coordinator and two workers (three processes on loopback)
//! against a real `platepool` node. The merged report must be the sum of the workers' parts, the
//! one audit over every buyer must pass, and a worker that is killed or stops answering must
//! fail the run at once, naming the worker, rather than hang it.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use platepool_loadtest::buyer::BuyerRecord;
use platepool_loadtest::report::Report;
use support::{free_port, Loadtest, Node};

/// Fewer buyers than numbers and short holds: every buyer claims soon after the opening and the
/// audit waits about two seconds.
const SCENARIO: &str = "buyers = 120\narrival_secs = 1\nopens_in_secs = 2\nthink_max_ms = 100\n\
reaction_ms = 100\n[rules]\nrandom_quota = 3\nrandom_ttl_ms = 1000\ncandidate_ttl_ms = 1000\n\
custom_min_interval_ms = 300\nsms_confirm_delay_ms = 200\n";

fn s(v: &str) -> String {
    v.to_string()
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

fn coordinator(dir: &Path, node: &Node, port: u16, extra: &[&str]) -> Loadtest {
    std::fs::write(dir.join("s.toml"), SCENARIO).expect("scenario written");
    let mut args = vec![
        s("--target"),
        node.base(),
        s("--preset"),
        s("smoke"),
        s("--scenario"),
        path(dir, "s.toml"),
        s("--listen"),
        format!("127.0.0.1:{port}"),
        s("--worker-processes"),
        s("2"),
        s("--connect-wait-secs"),
        s("60"),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    // The coordinator signs the citizen tokens with the node's secret.
    Loadtest::spawn("coordinator", &args, dir, true)
}

fn worker(dir: &Path, name: &str, port: u16, extra: &[&str]) -> Loadtest {
    let mut args = vec![s("--coordinator"), format!("127.0.0.1:{port}")];
    args.extend(extra.iter().map(|a| a.to_string()));
    Loadtest::spawn(name, &args, dir, false)
}

fn report(file: &str) -> Report {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn history(file: &str) -> Vec<BuyerRecord> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The merged report's counts are the parts' sums; its latencies lie within the parts'.
fn assert_sums(merged: &Report, parts: &[Report]) {
    let sum = |f: &dyn Fn(&Report) -> u64| parts.iter().map(f).sum::<u64>();
    assert_eq!(merged.requests, sum(&|r| r.requests));
    assert_eq!(merged.errors, sum(&|r| r.errors));
    assert_eq!(merged.buyers.total, sum(&|r| r.buyers.total));
    assert_eq!(merged.buyers.arrived, sum(&|r| r.buyers.arrived));
    assert_eq!(merged.buyers.finished, sum(&|r| r.buyers.finished));
    assert_eq!(merged.buyers.people, sum(&|r| r.buyers.people));
    assert_eq!(merged.buyers.bots, sum(&|r| r.buyers.bots));
    for (outcome, n) in &merged.buyers.outcomes {
        assert_eq!(
            *n,
            sum(&|r| r.buyers.outcomes.get(outcome).copied().unwrap_or(0)),
            "outcome {outcome}"
        );
    }
    assert_eq!(merged.people.requests, sum(&|r| r.people.requests));
    assert_eq!(merged.bots.requests, sum(&|r| r.bots.requests));
    assert_eq!(merged.bots.too_soon, sum(&|r| r.bots.too_soon));
    assert_eq!(merged.client.connections, sum(&|r| r.client.connections));
    for (kind, n) in &merged.errors_by_kind {
        assert_eq!(
            *n,
            sum(&|r| r.errors_by_kind.get(kind).copied().unwrap_or(0))
        );
    }
    for (i, step) in merged.steps.iter().enumerate() {
        let of = |r: &Report| r.steps[i].clone();
        assert!(parts.iter().all(|r| of(r).step == step.step));
        assert_eq!(step.sent, sum(&|r| of(r).sent), "{} sent", step.name);
        assert_eq!(step.errors, sum(&|r| of(r).errors), "{} errors", step.name);
        assert_eq!(
            step.latency.count,
            sum(&|r| of(r).latency.count),
            "{}",
            step.name
        );
        for (label, n) in &step.answers {
            assert_eq!(*n, sum(&|r| of(r).answers.get(label).copied().unwrap_or(0)));
        }
        let measured: Vec<_> = parts
            .iter()
            .map(|r| of(r).latency)
            .filter(|l| l.count > 0)
            .collect();
        if measured.is_empty() {
            continue;
        }
        // One histogram over both parts: the same largest value, a p99 between the parts'.
        let max = measured.iter().map(|l| l.max_ms).fold(0.0, f64::max);
        assert_eq!(step.latency.max_ms, max, "{} max", step.name);
        let lo = measured.iter().map(|l| l.p99_ms).fold(f64::MAX, f64::min);
        let hi = measured.iter().map(|l| l.p99_ms).fold(0.0, f64::max);
        assert!(
            step.latency.p99_ms >= lo && step.latency.p99_ms <= hi,
            "{}: merged p99 {} outside the parts' [{lo}, {hi}]",
            step.name,
            step.latency.p99_ms
        );
    }
    assert_eq!(merged.overall.count, sum(&|r| r.overall.count));
    // The timelines add second by second (the parts share the start of the load).
    let len = parts.iter().map(|r| r.timeline.len()).max().unwrap_or(0);
    assert_eq!(merged.timeline.len(), len);
    for (t, second) in merged.timeline.iter().enumerate() {
        let at = |r: &Report| r.timeline.get(t).copied().unwrap_or_default();
        assert_eq!(second.offered, sum(&|r| at(r).offered), "second {t}");
        assert_eq!(second.accepted, sum(&|r| at(r).accepted), "second {t}");
        assert_eq!(second.arrivals, sum(&|r| at(r).arrivals), "second {t}");
        assert_eq!(second.claims, sum(&|r| at(r).claims), "second {t}");
    }
}

#[test]
fn a_coordinator_and_two_workers_merge_into_one_report_and_one_audit() {
    let node = Node::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = free_port();
    let (merged_json, merged_history) = (path(d, "merged.json"), path(d, "merged-history.json"));
    let mut coordinator = coordinator(
        d,
        &node,
        port,
        &[
            "--json",
            &merged_json,
            "--history",
            &merged_history,
            "--max-error-rate",
            "0",
        ],
    );
    let mut workers: Vec<Loadtest> = (0..2)
        .map(|w| {
            let (json, hist) = (
                path(d, &format!("w{w}.json")),
                path(d, &format!("w{w}-h.json")),
            );
            worker(
                d,
                &format!("worker{w}"),
                port,
                &["--json", &json, "--history", &hist],
            )
        })
        .collect();
    let code = coordinator.wait(Duration::from_secs(120));
    for w in &mut workers {
        let status = w.wait(Duration::from_secs(30));
        assert!(
            status.success(),
            "{} exited {status}:\n{}",
            w.name,
            w.stderr()
        );
    }
    assert!(
        code.success(),
        "coordinator exited {code}:\n{}\n{}",
        coordinator.stderr(),
        coordinator.stdout()
    );

    let merged = report(&merged_json);
    let parts: Vec<Report> = (0..2)
        .map(|w| report(&path(d, &format!("w{w}.json"))))
        .collect();
    // The same form as a single-process report: audited once, over every buyer.
    let audit = merged.audit.as_ref().expect("the coordinator audits");
    assert!(audit.passed, "{}", merged.text());
    assert!(audit.checks.iter().all(|c| c.passed));
    assert!(
        parts.iter().all(|p| p.audit.is_none()),
        "workers do not audit"
    );
    assert_eq!(merged.errors, 0, "{:?}", merged.errors_by_kind);
    assert_eq!(merged.buyers.total, 120);
    assert_eq!(merged.buyers.finished, 120);
    let claimed = merged.buyers.outcomes["claimed"];
    assert!(claimed >= 100, "{claimed} claims:\n{}", merged.text());
    assert_eq!(audit.server_claims, claimed);
    assert!(parts.iter().all(|p| p.buyers.total == 60), "an even split");
    assert!(parts
        .iter()
        .all(|p| p.office == merged.office && p.run_tag == merged.run_tag));
    assert_sums(&merged, &parts);

    // Disjoint shares whose union is the merged history, each buyer once.
    let merged_history = history(&merged_history);
    let shares: Vec<Vec<BuyerRecord>> = (0..2)
        .map(|w| history(&path(d, &format!("w{w}-h.json"))))
        .collect();
    let mut union: Vec<BuyerRecord> = shares.iter().flatten().cloned().collect();
    union.sort_by_key(|b| b.index);
    assert_eq!(union, merged_history);
    assert_eq!(
        merged_history.iter().map(|b| b.index).collect::<Vec<_>>(),
        (0..120).collect::<Vec<u32>>()
    );
    for share in &shares {
        let classes: BTreeSet<u32> = share.iter().map(|b| b.index % 2).collect();
        assert_eq!(classes.len(), 1, "a worker runs one class of indices");
    }
    let text = coordinator.stdout();
    assert!(text.contains("Audit: PASSED"), "{text}");
}

#[test]
fn a_worker_killed_or_silent_during_the_load_fails_the_run_naming_it() {
    let node = Node::start();
    for (signal, cause) in [
        ("KILL", "the connection was closed"),
        ("STOP", "silent for 3 s"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let port = free_port();
        let timeout = ["--peer-timeout-secs", "3"];
        let mut coordinator = coordinator(d, &node, port, &timeout);
        let mut first = worker(d, "first", port, &timeout);
        coordinator.wait_for_line("worker 0 connected", Duration::from_secs(60));
        let mut second = worker(d, "second", port, &timeout);
        coordinator.wait_for_line("load started on 2 workers", Duration::from_secs(60));
        second.signal(signal);

        let status = coordinator.wait(Duration::from_secs(20));
        let err = coordinator.stderr();
        assert_eq!(status.code(), Some(1), "{signal}: {err}");
        let expected = format!("is gone during the load: {cause}");
        let line = err
            .lines()
            .find(|l| l.starts_with("platepool-loadtest: worker 1 (") && l.contains(&expected))
            .unwrap_or_else(|| panic!("{signal}: no clear error naming worker 1:\n{err}"));
        assert!(
            coordinator.stdout().is_empty(),
            "no report for a failed run"
        );
        // The other worker is told and stops too.
        let status = first.wait(Duration::from_secs(20));
        assert_eq!(status.code(), Some(1), "{}", first.stderr());
        let reason = line.trim_start_matches("platepool-loadtest: ");
        assert!(
            first
                .stderr()
                .contains(&format!("the coordinator ended the run: {reason}")),
            "{}",
            first.stderr()
        );
        if signal == "STOP" {
            second.signal("KILL");
        }
        second.wait(Duration::from_secs(20));
    }
}

#[test]
fn workers_whose_coordinator_dies_during_the_load_stop_with_a_clear_error() {
    let node = Node::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = free_port();
    let timeout = ["--peer-timeout-secs", "3"];
    let mut coordinator = coordinator(d, &node, port, &timeout);
    let mut workers: Vec<Loadtest> = (0..2)
        .map(|w| worker(d, &format!("worker{w}"), port, &timeout))
        .collect();
    coordinator.wait_for_line("load started on 2 workers", Duration::from_secs(60));
    coordinator.signal("KILL");
    coordinator.wait(Duration::from_secs(10));
    for w in &mut workers {
        let status = w.wait(Duration::from_secs(20));
        assert_eq!(status.code(), Some(1), "{}", w.stderr());
        assert!(
            w.stderr()
                .lines()
                .any(|l| l.starts_with("platepool-loadtest: the coordinator is gone: ")),
            "{}",
            w.stderr()
        );
        assert!(
            w.stdout().is_empty(),
            "no report from a worker of a failed run"
        );
    }
}
