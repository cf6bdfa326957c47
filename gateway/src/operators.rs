//! Named operator credentials (SPEC S4): who may use the operator API, with which role.
//!
//! - `admin`: everything.
//! - `clerk`: the offices listed for it — its requests must name one of them (in the path, the
//!   `office` query parameter, or a registration's body); calls about no office (certificate
//!   imports, the blacklist, citizen tokens, the outbox) and office configuration are refused.
//! - `auditor`: reads only (`GET`).
//!
//! Credentials come from the configuration (`[[operators]]`: name, role, offices, and the
//! SHA-256 of the token in hex) and can be replaced while serving ([`OperatorSet::replace`]:
//! the binary re-reads its configuration file when it changes). Tokens are stored only hashed.
//! SHA-256 rather than a password hash (argon2): an operator token is 32 random bytes (what
//! `platepool operator-token` makes), so a guess costs 2^256 tries however fast the hash is;
//! a slow hash protects low-entropy passwords, and would cost every operator request
//! milliseconds of CPU for nothing here. `PLATEPOOL_OPERATOR_TOKEN` (`operator_token`) stays
//! valid as an `admin` named `operator`.
//!
//! Every audit entry names the credential (`operator:<name>`): no header can change it.

use std::collections::BTreeSet;
use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::{constant_time_eq, validate_user};
use crate::config::GatewayConfig;

/// The name `operator_token` acts under.
pub const LEGACY_NAME: &str = "operator";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Clerk,
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Clerk => "clerk",
            Role::Auditor => "auditor",
        }
    }
}

/// One credential as the configuration gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorEntry {
    pub name: String,
    pub role: Role,
    /// A clerk's offices (ignored for the other roles).
    #[serde(default)]
    pub offices: Vec<String>,
    /// SHA-256 of the token, 64 hex digits (`platepool operator-token` prints both).
    pub token_sha256: String,
}

/// A credential found for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub name: String,
    pub role: Role,
    pub offices: BTreeSet<String>,
}

impl Credential {
    /// Whether this credential may act on `office`.
    pub fn covers(&self, office: &str) -> bool {
        self.role != Role::Clerk || self.offices.contains(office)
    }
}

/// SHA-256 of a token, in hex.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fresh operator token: 32 random bytes in hex.
pub fn new_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// Every credential of one configuration.
#[derive(Debug, Default)]
pub struct Credentials {
    entries: Vec<([u8; 32], Arc<Credential>)>,
}

fn decode_hash(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Credentials {
    /// The credentials of `config`, checked: names valid and distinct, hashes of 64 hex digits,
    /// clerks with at least one office.
    pub fn new(config: &GatewayConfig) -> Result<Credentials, String> {
        let mut entries = Vec::new();
        let mut names = BTreeSet::new();
        if !config.operator_token.is_empty() {
            names.insert(LEGACY_NAME.to_string());
            entries.push((
                Sha256::digest(config.operator_token.as_bytes()).into(),
                Arc::new(Credential {
                    name: LEGACY_NAME.into(),
                    role: Role::Admin,
                    offices: BTreeSet::new(),
                }),
            ));
        }
        for (i, e) in config.operators.iter().enumerate() {
            let at = |m: String| format!("operators[{i}] ({}): {m}", e.name);
            validate_user(&e.name).map_err(at)?;
            if !names.insert(e.name.clone()) {
                return Err(at("the name is used twice".into()));
            }
            let hash = decode_hash(&e.token_sha256.to_ascii_lowercase())
                .ok_or_else(|| at("token_sha256 must be 64 hex digits".into()))?;
            if entries.iter().any(|(h, _)| *h == hash) {
                return Err(at("the same token as another credential".into()));
            }
            if e.role == Role::Clerk && e.offices.is_empty() {
                return Err(at("a clerk lists the offices it acts for".into()));
            }
            entries.push((
                hash,
                Arc::new(Credential {
                    name: e.name.clone(),
                    role: e.role,
                    offices: e.offices.iter().cloned().collect(),
                }),
            ));
        }
        Ok(Credentials { entries })
    }

    /// The credential whose token this is. Every entry is compared, in constant time, so the
    /// time taken says nothing about which hash came close.
    pub fn find(&self, token: &str) -> Option<Arc<Credential>> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (h, c) in &self.entries {
            if constant_time_eq(h, &hash) {
                found = Some(Arc::clone(c));
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The credentials in force, replaceable while serving.
#[derive(Debug, Default)]
pub struct OperatorSet(RwLock<Arc<Credentials>>);

impl OperatorSet {
    pub fn new(credentials: Credentials) -> OperatorSet {
        OperatorSet(RwLock::new(Arc::new(credentials)))
    }

    pub fn current(&self) -> Arc<Credentials> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts `credentials` in force for every later request (rotation without a restart).
    pub fn replace(&self, credentials: Credentials) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(credentials);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(entries: Vec<OperatorEntry>) -> GatewayConfig {
        GatewayConfig {
            operator_token: "legacy-operator-token-0123456789".into(),
            operators: entries,
            ..GatewayConfig::default()
        }
    }

    fn entry(name: &str, role: Role, offices: &[&str], token: &str) -> OperatorEntry {
        OperatorEntry {
            name: name.into(),
            role,
            offices: offices.iter().map(|s| s.to_string()).collect(),
            token_sha256: hash_token(token),
        }
    }

    #[test]
    fn tokens_find_their_named_credential_and_nothing_else() {
        let creds = Credentials::new(&config(vec![
            entry("li", Role::Clerk, &["maoming"], "tok-li"),
            entry("wang", Role::Auditor, &[], "tok-wang"),
        ]))
        .expect("valid");
        let li = creds.find("tok-li").expect("li");
        assert_eq!((li.name.as_str(), li.role), ("li", Role::Clerk));
        assert!(li.covers("maoming") && !li.covers("gaozhou"));
        assert_eq!(creds.find("tok-wang").expect("wang").role, Role::Auditor);
        let legacy = creds
            .find("legacy-operator-token-0123456789")
            .expect("legacy");
        assert_eq!(
            (legacy.name.as_str(), legacy.role),
            ("operator", Role::Admin)
        );
        assert!(creds.find("tok-l").is_none());
        assert!(
            creds.find(&hash_token("tok-li")).is_none(),
            "the hash is no token"
        );
    }

    #[test]
    fn bad_credentials_are_refused_with_their_place() {
        let bad = |entries| Credentials::new(&config(entries)).expect_err("invalid");
        assert!(bad(vec![entry("li", Role::Clerk, &[], "t")]).contains("offices"));
        assert!(bad(vec![
            entry("li", Role::Admin, &[], "t1"),
            entry("li", Role::Admin, &[], "t2")
        ])
        .contains("twice"));
        assert!(bad(vec![entry("operator", Role::Admin, &[], "t")]).contains("twice"));
        let mut short = entry("li", Role::Admin, &[], "t");
        short.token_sha256.truncate(10);
        assert!(bad(vec![short]).contains("64 hex"));
        assert!(bad(vec![entry("a b", Role::Admin, &[], "t")]).contains("operators[0]"));
    }

    #[test]
    fn a_replaced_set_is_in_force_at_once() {
        let set = OperatorSet::new(
            Credentials::new(&config(vec![entry("li", Role::Admin, &[], "old")])).expect("v"),
        );
        assert!(set.current().find("old").is_some());
        set.replace(
            Credentials::new(&config(vec![entry("li", Role::Admin, &[], "new")])).expect("v"),
        );
        assert!(set.current().find("old").is_none());
        assert!(set.current().find("new").is_some());
    }
}
