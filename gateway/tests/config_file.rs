//! The configuration: `platepool.example.toml` parses, lists every key and shows the real
//! defaults; `platepool config check` validates a file with the environment over it and prints
//! the effective configuration with secrets masked; flags win over the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use platepool_gateway::settings::{self, LogFormat, ServeConfig, KEYS};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../platepool.example.toml")
}

fn no_flags() -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// `platepool config check FILE` with `env` added to a clean `PLATEPOOL_*` environment.
fn check(file: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_platepool"));
    cmd.arg("config").arg("check").arg(file);
    for (key, _) in std::env::vars() {
        if key.starts_with(settings::ENV_PREFIX) {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run platepool config check")
}

#[test]
fn the_example_parses_and_shows_the_defaults() {
    let loaded = settings::load(Some(&example()), &no_flags()).expect("the example is valid");
    assert_eq!(
        loaded.masked_toml(),
        ServeConfig::default().masked_toml(),
        "platepool.example.toml must show the defaults"
    );
}

#[test]
fn the_example_names_every_key() {
    let text = std::fs::read_to_string(example()).expect("read the example");
    let named = |key: &str| {
        text.lines().any(|line| {
            let line = line.trim_start_matches('#').trim_start();
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
    };
    let missing: Vec<&&str> = KEYS.iter().filter(|k| !named(k)).collect();
    assert!(
        missing.is_empty(),
        "keys missing from the example: {missing:?}"
    );
}

#[test]
fn flags_win_over_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        "addr = \"127.0.0.1:9000\"\nworkers = 3\nlog_format = \"json\"\ntrusted_proxies = [\"10.0.0.0/8\", \"192.168.1.1\"]\n",
    )
    .expect("write");
    let mut flags = no_flags();
    flags.insert("addr".into(), "127.0.0.1:9100".into());
    let c = settings::load(Some(&file), &flags).expect("valid");
    assert_eq!(c.addr, "127.0.0.1:9100");
    assert_eq!(c.workers, 3);
    assert_eq!(c.log_format, LogFormat::Json);
    let proxies: Vec<String> = c
        .gateway
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(proxies, ["10.0.0.0/8", "192.168.1.1/32"]);
}

#[test]
fn config_check_prints_the_effective_configuration_with_secrets_masked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        "operator_token = \"file-operator-token-0123456789\"\nrate_limit_ip_per_s = 50\nsms_webhook = \"https://sms.example/send\"\nsms_webhook_secret = \"webhook-secret-0123456789\"\n",
    )
    .expect("write");
    let out = check(
        &file,
        &[
            ("PLATEPOOL_RATE_LIMIT_IP_PER_S", "7"),
            ("PLATEPOOL_TOKEN_SECRET", "12345678901234567890"),
            ("PLATEPOOL_TRUSTED_PROXIES", "10.0.0.0/8,172.16.0.0/12"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rate_limit_ip_per_s = 7\n"),
        "env over file: {stdout}"
    );
    assert!(
        stdout.contains("trusted_proxies = [\"10.0.0.0/8\", \"172.16.0.0/12\"]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sms_webhook = \"https://sms.example/send\""),
        "{stdout}"
    );
    for secret in [
        "file-operator-token-0123456789",
        "12345678901234567890",
        "webhook-secret-0123456789",
    ] {
        assert!(!stdout.contains(secret), "secret printed: {stdout}");
    }
    assert!(stdout.contains("operator_token = \"********\""), "{stdout}");
    assert!(
        stdout.contains("token_secret = \"********\"  # set, 20 characters"),
        "{stdout}"
    );
}

#[test]
fn config_check_refuses_what_serve_would_refuse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "rate_limit_ip_per_s = 5\nrate_limt_user_per_s = 5\n",
            "unknown key",
        ),
        ("trusted_proxies = [\"10.0.0.0/33\"]\n", "10.0.0.0/33"),
        ("durability = \"sometimes\"\n", "durability"),
        ("sms_webhook = \"ftp://sms.example\"\n", "sms_webhook"),
        (
            "sms_webhook = \"https://sms.example\"\n",
            "sms_webhook_secret",
        ),
        ("jwt_leeway_s = 3600\n", "jwt_leeway_s"),
        (
            "jwt_public_key = \"/nonexistent/key.pem\"\n",
            "jwt_public_key",
        ),
        ("workers = \"many\"\n", "workers"),
    ];
    for (text, expected) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).expect("write");
        let out = check(&file, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} accepted");
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
    }
    let out = check(&dir.path().join("missing.toml"), &[]);
    assert!(!out.status.success());
    // The environment is checked too.
    let file = dir.path().join("ok.toml");
    std::fs::write(&file, "").expect("write");
    let out = check(&file, &[("PLATEPOOL_RATE_LIMIT_IP_PER_S", "lots")]);
    assert!(
        !out.status.success(),
        "a bad environment variable is refused"
    );
}
