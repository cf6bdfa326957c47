//! `platepool cluster status`: each office's owner, epoch and lease ages, and the primary's
//! standbys, read from the cluster's PostgreSQL.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use platepool_engine::cluster::{LeaseRow, PgStore, StandbyRow};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The cluster's PostgreSQL (a connection string or URL; several hosts with
    /// target_session_attrs=read-write find the primary).
    #[arg(long, env = "PLATEPOOL_POSTGRES", value_name = "URL")]
    pub postgres: String,
    /// Give up after this many seconds without an answer.
    #[arg(long, default_value_t = 10)]
    pub timeout_s: u64,
}

pub fn run_status(args: &StatusArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("platepool: {e}");
            return ExitCode::FAILURE;
        }
    };
    let read = async {
        let mut store =
            PgStore::connect(&args.postgres, Duration::from_secs(args.timeout_s)).await?;
        let leases = store.lease_status().await?;
        let standbys = store.standbys().await?;
        Ok::<_, platepool_engine::cluster::PgError>((leases, standbys))
    };
    match runtime.block_on(read) {
        Ok((leases, (standbys, names))) => {
            print!("{}", format_status(&leases, &standbys, &names));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("platepool: {e}");
            ExitCode::FAILURE
        }
    }
}

fn seconds(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0))
}

/// The status as a table of offices, then the standbys.
pub fn format_status(leases: &[LeaseRow], standbys: &[StandbyRow], sync_names: &str) -> String {
    let mut out = String::new();
    let width = leases
        .iter()
        .map(|r| r.office.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let _ = writeln!(
        out,
        "{:width$}  {:12}  {:>6}  {:>10}  {:>10}  {:>10}",
        "office", "owner", "epoch", "held", "renewed", "expires in"
    );
    for r in leases {
        let expired = r.expires_in_ms.is_some_and(|ms| ms <= 0);
        let owner = match (&r.node, expired) {
            (None, _) => "(free)".to_string(),
            (Some(node), true) => format!("{node} (expired)"),
            (Some(node), false) => node.clone(),
        };
        let _ = writeln!(
            out,
            "{:width$}  {:12}  {:>6}  {:>10}  {:>10}  {:>10}",
            r.office,
            owner,
            r.epoch,
            seconds(r.held_ms),
            seconds(r.renewed_ms),
            seconds(r.expires_in_ms),
        );
    }
    let names = if sync_names.is_empty() {
        "(none: commits wait for no standby)"
    } else {
        sync_names
    };
    let _ = writeln!(out, "\nsynchronous_standby_names: {names}");
    if standbys.is_empty() {
        let _ = writeln!(out, "standbys: none connected");
    }
    for s in standbys {
        let lag = s
            .flush_lag_bytes
            .map_or_else(|| "-".into(), |b| format!("{b} bytes"));
        let _ = writeln!(out, "standby {}: {}, flush lag {lag}", s.name, s.sync_state);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_names_owners_epochs_ages_and_the_synchronous_standby() {
        let leases = vec![
            LeaseRow {
                office: "maoming".into(),
                node: Some("node-1".into()),
                epoch: 3,
                held_ms: Some(12_345),
                renewed_ms: Some(1_000),
                expires_in_ms: Some(9_000),
            },
            LeaseRow {
                office: "shenzhen".into(),
                node: Some("node-2".into()),
                epoch: 7,
                held_ms: Some(40_000),
                renewed_ms: Some(15_000),
                expires_in_ms: Some(-5_000),
            },
            LeaseRow {
                office: "zhanjiang".into(),
                node: None,
                epoch: 0,
                held_ms: None,
                renewed_ms: None,
                expires_in_ms: None,
            },
        ];
        let standbys = vec![StandbyRow {
            name: "standby".into(),
            sync_state: "sync".into(),
            flush_lag_bytes: Some(0),
        }];
        let text = format_status(&leases, &standbys, "FIRST 1 (standby)");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("maoming ") && lines[1].contains("node-1"));
        assert!(
            lines[1].contains("12.3 s") && lines[1].contains("9.0 s"),
            "{text}"
        );
        assert!(
            lines[2].contains("node-2 (expired)") && lines[2].contains("-5.0 s"),
            "{text}"
        );
        assert!(lines[3].contains("(free)"), "{text}");
        assert!(text.contains("synchronous_standby_names: FIRST 1 (standby)"));
        assert!(text.contains("standby standby: sync, flush lag 0 bytes"));
        let alone = format_status(&[], &[], "");
        assert!(alone.contains("(none: commits wait for no standby)"));
        assert!(alone.contains("standbys: none connected"));
    }
}
