//! `deploy/prometheus/alerts.yml` against what the binary really exports: the real `platepool`
//! binary is scraped, its series become the input of `promtool test rules` (Debian's
//! `prometheus` package, `.ci/install-prometheus.sh`), and
//!
//! - on the series as scraped (a healthy process) no alert of the file fires;
//! - with the office's `platepool_office_healthy` turned 0, its shed counter rising, and one
//!   route's slow buckets filling, `PlatepoolOfficeFailed`, `PlatepoolShedLoad` and
//!   `PlatepoolSlowAnswers` fire with the labels of the real series;
//! - every metric the rules name is exported, but for the families other parts of the system
//!   do not export yet (named in the file's comments).
//!
//! Fails when promtool is missing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

mod process;
use process::{get, require, Platepool};

const INSTANCE: &str = "platepool:8080";
/// Metric families the rules may name that the binary does not export (yet): `up` is
/// Prometheus's own; the lease comes with cluster mode.
const NOT_EXPORTED: [&str; 2] = ["up", "platepool_lease_lost_total"];

fn rules_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/alerts.yml")
}

/// The samples of a scrape: series (with the test's instance and job labels) → value.
fn samples(metrics: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let value: f64 = value.parse().expect("a sample value");
        let extra = format!("instance=\"{INSTANCE}\",job=\"platepool\"");
        let series = match series.split_once('{') {
            Some((name, labels)) => format!("{name}{{{extra},{labels}"),
            None => format!("{series}{{{extra}}}"),
        };
        out.insert(series, value);
    }
    out
}

fn family(series: &str) -> &str {
    series.split('{').next().unwrap_or(series)
}

fn label<'a>(series: &'a str, name: &str) -> Option<&'a str> {
    let start = series.find(&format!("{name}=\""))? + name.len() + 2;
    let len = series[start..].find('"')?;
    Some(&series[start..start + len])
}

fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

/// A promtool test group: `series` with their `values` notation, and the alerts expected at
/// `eval_minutes` (name → list of (labels, annotations)).
fn group(
    series: &BTreeMap<String, String>,
    eval_minutes: u32,
    alerts: &[(String, String)],
) -> String {
    let mut out = String::from("  - interval: 1m\n    input_series:\n");
    for (s, values) in series {
        let _ = writeln!(out, "      - series: '{s}'\n        values: '{values}'");
    }
    out.push_str("    alert_rule_test:\n");
    for (name, expected) in alerts {
        let _ = writeln!(
            out,
            "      - eval_time: {eval_minutes}m\n        alertname: {name}\n        exp_alerts:{expected}"
        );
    }
    out
}

fn run_promtool(promtool: &Path, dir: &Path, test: &str) {
    let file = dir.join("alerts_test.yml");
    std::fs::write(&file, test).expect("write the promtool test");
    let out = Command::new(promtool)
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}\n{}\n--- test file ---\n{test}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_hold_on_the_series_the_binary_exports() {
    let promtool = require("promtool", ".ci/install-prometheus.sh");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Platepool::start(dir.path(), &[], &[]);
    for path in [
        "/v1/offices",
        "/v1/offices/maoming/pool",
        "/healthz",
        "/nowhere",
    ] {
        get(server.port, path).expect("a request");
    }
    let scraped = samples(&server.metrics());
    drop(server);
    let rules = std::fs::read_to_string(rules_file()).expect("read alerts.yml");

    // Every family the rules and the dashboard name is exported (or listed as not yet).
    let exported: Vec<&str> = scraped.keys().map(|s| family(s)).collect();
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/platepool.json"),
    )
    .expect("read the dashboard");
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    for (file, text) in [("alerts.yml", &rules), ("platepool.json", &dashboard)] {
        let named = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("platepool_"));
        for name in named {
            let found = exported.iter().any(|e| {
                *e == name
                    || e.strip_prefix(name)
                        .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))
            });
            assert!(
                found || NOT_EXPORTED.contains(&name),
                "{file} names {name}, which /metrics does not export"
            );
        }
    }

    // A healthy process: nothing fires.
    let healthy: BTreeMap<String, String> = scraped
        .iter()
        .map(|(s, v)| (s.clone(), format!("{v}+0x30")))
        .collect();
    let none: Vec<(String, String)> = alert_names(&rules)
        .into_iter()
        .map(|n| (n, " []".to_string()))
        .collect();
    assert!(none.len() >= 9, "{none:?}");
    let rules_path = rules_file().canonicalize().expect("rules path");
    let head = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n",
        rules_path.display()
    );
    run_promtool(
        &promtool,
        dir.path(),
        &format!("{head}{}", group(&healthy, 25, &none)),
    );

    // The office fails, sheds load, one route gets slow.
    let office_series = scraped
        .keys()
        .find(|s| family(s) == "platepool_office_healthy")
        .expect("platepool_office_healthy is exported for the demo office")
        .clone();
    let office = label(&office_series, "office")
        .expect("office label")
        .to_string();
    assert_eq!(scraped[&office_series], 1.0, "the demo office is healthy");
    let slow_route = scraped
        .keys()
        .find(|s| family(s) == "platepool_http_request_duration_seconds_bucket")
        .and_then(|s| label(s, "route"))
        .expect("a route's latency histogram")
        .to_string();
    let mut bad = healthy.clone();
    for (s, values) in bad.iter_mut() {
        let v = scraped[s];
        match family(s) {
            "platepool_office_healthy" if label(s, "office") == Some(&office) => {
                *values = "1 1 1 0x30".into();
            }
            "platepool_office_shed_total" if label(s, "office") == Some(&office) => {
                *values = format!("{v}+10x30");
            }
            "platepool_http_request_duration_seconds_bucket"
                if label(s, "route") == Some(&slow_route)
                    && matches!(label(s, "le"), Some("1" | "2.5" | "+Inf")) =>
            {
                *values = format!("{v}+100x30");
            }
            _ => {}
        }
    }
    let fired = |labels: &str, annotations: &str| {
        format!("\n          - exp_labels:\n{labels}            exp_annotations:\n{annotations}")
    };
    let office_labels = format!(
        "              severity: critical\n              office: {office}\n              instance: {INSTANCE}\n              job: platepool\n"
    );
    let expected = vec![
        (
            "PlatepoolOfficeFailed".to_string(),
            fired(
                &office_labels,
                &format!(
                    "              summary: \"office {office} on {INSTANCE} refuses writes after a failed write\"\n              action: \"check the disk of the data folder, then restart the process\"\n"
                ),
            ),
        ),
        (
            "PlatepoolShedLoad".to_string(),
            fired(
                &format!("              severity: warning\n              office: {office}\n              instance: {INSTANCE}\n"),
                &format!("              summary: \"office {office} on {INSTANCE} has been shedding load for 5 minutes\"\n"),
            ),
        ),
        (
            "PlatepoolSlowAnswers".to_string(),
            fired(
                &format!("              severity: warning\n              instance: {INSTANCE}\n"),
                &format!("              summary: \"p99 answer time of platepool {INSTANCE} is over 0.5 s\"\n"),
            ),
        ),
        ("PlatepoolStorageFailed".to_string(), " []".to_string()),
    ];
    run_promtool(
        &promtool,
        dir.path(),
        &format!("{head}{}", group(&bad, 25, &expected)),
    );
}
