//! End to end: small openings against a real gateway in this process. The audit must pass and the
//! report files must be well-formed.

use std::collections::HashSet;

use clap::Parser;
use platepool_engine::{Durability, Pattern, Serial};
use platepool_loadtest::buyer::{BuyerRecord, Outcome};
use platepool_loadtest::cli::{main_with, Args};
use platepool_loadtest::embedded::{Embedded, EmbeddedOptions};
use platepool_loadtest::html::check_well_formed;
use platepool_loadtest::run::{run, Progress, RunOptions, Target};
use platepool_loadtest::scenario::{Model, Scenario};
use serde_json::Value;

#[test]
fn an_embedded_open_model_opening_passes_the_audit_and_writes_well_formed_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let (json_path, html_path, history_path) = (path("r.json"), path("r.html"), path("h.json"));
    // Over the preset: fewer draws and short holds, so buyers who find the pool empty give up
    // sooner and the audit waits less.
    let scenario_path = path("s.toml");
    std::fs::write(
        &scenario_path,
        "think_max_ms = 200\nreaction_ms = 100\n[rules]\nrandom_quota = 3\nrandom_ttl_ms = 1000\n\
         candidate_ttl_ms = 1000\ncustom_min_interval_ms = 500\n",
    )
    .expect("scenario written");
    let args = Args::try_parse_from([
        "platepool-loadtest",
        "--embedded",
        "--preset",
        "smoke",
        "--buyers",
        "300",
        "--scenario",
        &scenario_path,
        "--durability",
        "flush",
        "--quiet",
        "--json",
        &json_path,
        "--html",
        &html_path,
        "--history",
        &history_path,
        "--max-error-rate",
        "0",
    ])
    .expect("arguments");
    let code = main_with(&args).expect("the rehearsal runs");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("json written"))
            .expect("JSON parses");
    let audit = &report["audit"];
    for check in audit["checks"].as_array().expect("checks") {
        assert_eq!(check["passed"], true, "{check}");
    }
    assert_eq!(audit["passed"], true);
    assert_eq!(report["errors"], 0, "errors: {}", report["errors_by_kind"]);
    assert_eq!(code, 0, "exit code");
    assert_eq!(report["exit_code"], 0);

    // Every buyer finished; 300 buyers raced for 200 numbers.
    let buyers = &report["buyers"];
    assert_eq!(buyers["total"], 300);
    assert_eq!(buyers["finished"], 300);
    assert_eq!(buyers["bots"], 30);
    // Buyers who find the pool empty keep looking until every holder has claimed or let go:
    // every number ends claimed and a third of the buyers leave empty-handed.
    let claimed = buyers["outcomes"]["claimed"].as_u64().expect("claimed");
    assert_eq!(claimed, 200, "{}", buyers["outcomes"]);
    assert_eq!(buyers["outcomes"]["pool_empty"], 100);
    assert_eq!(buyers["outcomes"]["failed"], 0, "{}", buyers["failures"]);
    assert_eq!(audit["server_claims"].as_u64(), Some(claimed));
    assert_eq!(audit["release"]["total"], 200);
    assert_eq!(audit["release"]["claimed"].as_u64(), Some(claimed));
    assert_eq!(audit["release"]["held"], 0);

    // Every step of the flow ran, with ordered percentiles.
    for step in report["steps"].as_array().expect("steps") {
        let name = step["name"].as_str().expect("name");
        if (step["windowed"] == true || step["after_faults"] == true) && step["sent"] == 0 {
            continue;
        }
        assert!(step["sent"].as_u64().expect("sent") > 0, "{name} never ran");
        let l = &step["latency"];
        let (p50, p99, p999, max) = (
            l["p50_ms"].as_f64().expect("p50"),
            l["p99_ms"].as_f64().expect("p99"),
            l["p999_ms"].as_f64().expect("p999"),
            l["max_ms"].as_f64().expect("max"),
        );
        assert!(
            p50 > 0.0 && p50 <= p99 && p99 <= p999 && p999 <= max,
            "{name}: {l}"
        );
    }
    assert!(report["timeline"].as_array().expect("timeline").len() >= 3);
    assert!(report["cpu"]["loadtest_share"].as_f64().expect("cpu") > 0.0);
    let fairness = &audit["fairness"];
    assert_eq!(fairness["claims"].as_u64(), Some(claimed));
    assert_eq!(fairness["bots"]["buyers"], 30);

    // The history matches the release and claims each number once.
    let history: Vec<BuyerRecord> =
        serde_json::from_str(&std::fs::read_to_string(&history_path).expect("history"))
            .expect("parses");
    assert_eq!(history.len(), 300);
    let pattern = Pattern::parse("A0[01]##").expect("pattern");
    let mut seen = HashSet::new();
    for b in history.iter().filter(|b| b.outcome == Outcome::Claimed) {
        let serial = b.claim.as_deref().expect("a claimed buyer has a claim");
        assert!(
            pattern.matches(Serial::parse(serial).expect("serial")),
            "{serial}"
        );
        assert!(seen.insert(serial.to_string()), "{serial} twice");
        assert!(b.custom_debit.min <= 20 && b.random_debit.min <= 3);
    }

    let html = std::fs::read_to_string(&html_path).expect("html written");
    check_well_formed(&html).expect("well-formed HTML");
    assert!(html.contains("<svg") && html.contains("Audit: <span class=\"ok\">passed</span>"));
}

#[test]
fn a_closed_model_run_against_a_target_issues_tokens_and_passes_the_audit() {
    let gateway = Embedded::start(&EmbeddedOptions {
        durability: Durability::None,
        ..EmbeddedOptions::default()
    })
    .expect("gateway starts");
    let scenario = Scenario {
        name: "closed-e2e".into(),
        buyers: 120,
        bots: 0.25,
        model: Model::Closed,
        concurrency: 30,
        opens_in_secs: 1.0,
        think_min_ms: 0,
        think_max_ms: 100,
        reaction_ms: 100,
        patterns: vec!["B[01234]0##".into()],
        rules: platepool_loadtest::scenario::Rules {
            custom_min_interval_ms: 300,
            random_ttl_ms: 1_000,
            candidate_ttl_ms: 1_500,
            sms_confirm_delay_ms: 100,
            opening_window_ms: 100,
            ..Default::default()
        },
        ..Scenario::default()
    };
    let target = Target {
        base: gateway.base.clone(),
        operator_token: gateway.operator_token.clone(),
        // No secret: tokens come from POST /v1/admin/tokens, as against a remote gateway.
        token_secret: None,
        embedded: false,
    };
    let result = run(
        &scenario,
        &target,
        &RunOptions {
            progress: Progress::Off,
            audit: true,
            max_p99_ms: Some(60_000.0),
            max_error_rate: Some(0.0),
        },
    )
    .expect("runs");
    gateway.stop();
    let r = &result.report;
    let audit = r.audit.as_ref().expect("audited");
    assert!(audit.passed, "{}", r.text());
    assert_eq!(r.errors, 0, "{:?}", r.errors_by_kind);
    assert_eq!(r.exit_code, 0);
    assert_eq!(r.buyers.finished, 120);
    assert_eq!(result.history.len(), 120);
    assert_eq!(
        r.buyers.outcomes.get("failed"),
        Some(&0),
        "{:?}",
        r.buyers.failures
    );
    // 120 buyers, 500 numbers: nearly everybody claims.
    let claimed = *r.buyers.outcomes.get("claimed").expect("claimed");
    assert!(claimed >= 100, "{claimed} claims:\n{}", r.text());
    assert_eq!(audit.server_claims, claimed);
    assert!(
        r.steps
            .iter()
            .filter(|s| !s.windowed && !s.after_faults)
            .all(|s| s.sent > 0),
        "every step ran"
    );
    assert!(r.thresholds.passed);
}
