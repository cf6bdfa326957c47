//! Citizen tokens as JWTs (RFC 7519), beside the `v1.` tokens of [`crate::auth`].
//!
//! A JWT is accepted when it is signed with HS256 and the shared `token_secret`, or with the
//! platform's public key from `jwt_public_key` (RSA: RS256/384/512 and PS256/384/512; Ed25519:
//! EdDSA; P-256/P-384: ES256/ES384). Its claims are `sub` (the user id), `phone`, `exp` (Unix
//! seconds; accepted up to `jwt_leeway_s` after it, for clocks a little apart) and optionally
//! `iat` (refused when more than the leeway in the future). `alg: none`, any other algorithm,
//! a key the token does not verify with, and any claim missing or out of the rules of
//! [`crate::auth::validate_user`] / [`crate::auth::validate_phone`] are 401 `unauthorized`.
//!
//! Expiry is checked against the engine's clock (the same the `v1.` tokens use), not the
//! library's reading of the system clock.

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::auth::{validate_phone, validate_user, verify_token, TokenClaims, TOKEN_LEN_MAX};
use crate::config::GatewayConfig;
use crate::error::ApiError;

/// Prefix of the gateway's own token format.
const V1_PREFIX: &str = "v1.";

#[derive(Debug, Deserialize)]
struct JwtClaims {
    sub: String,
    phone: String,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
}

/// The platform's public key and the algorithms it verifies.
struct PublicKey {
    key: DecodingKey,
    algorithms: &'static [Algorithm],
    kind: &'static str,
}

/// Verifies citizen tokens of both formats. Built once per gateway (the public key is parsed
/// at start, not per request).
pub struct TokenVerifier {
    secret: String,
    hs256: DecodingKey,
    public: Option<PublicKey>,
    leeway_s: u64,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("public_key", &self.public.as_ref().map(|p| p.kind))
            .field("leeway_s", &self.leeway_s)
            .finish_non_exhaustive()
    }
}

const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Reads `jwt_public_key`: PEM text itself, or the path of a PEM file.
pub fn load_public_key_pem(setting: &str) -> Result<String, String> {
    let setting = setting.trim();
    if setting.starts_with("-----BEGIN") {
        return Ok(setting.to_string());
    }
    std::fs::read_to_string(setting).map_err(|e| format!("jwt_public_key {setting}: {e}"))
}

/// Parses a PEM public key (SubjectPublicKeyInfo, or PKCS#1 for RSA) of any kind accepted.
fn parse_public_key(pem: &str) -> Result<PublicKey, String> {
    let bytes = pem.as_bytes();
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        return Ok(PublicKey {
            key,
            algorithms: RSA_ALGORITHMS,
            kind: "rsa",
        });
    }
    if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        return Ok(PublicKey {
            key,
            algorithms: &[Algorithm::EdDSA],
            kind: "ed25519",
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        return Ok(PublicKey {
            key,
            algorithms: &[Algorithm::ES256, Algorithm::ES384],
            kind: "ec",
        });
    }
    Err("jwt_public_key is not a PEM RSA, Ed25519 or EC public key".into())
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::unauthorized(message.into())
}

impl TokenVerifier {
    /// From the configuration; fails when `jwt_public_key` is set but unreadable.
    pub fn new(config: &GatewayConfig) -> Result<TokenVerifier, String> {
        let public = match config.jwt_public_key.as_deref().map(str::trim) {
            Some(setting) if !setting.is_empty() => {
                Some(parse_public_key(&load_public_key_pem(setting)?)?)
            }
            _ => None,
        };
        Ok(TokenVerifier {
            secret: config.token_secret.clone(),
            hs256: DecodingKey::from_secret(config.token_secret.as_bytes()),
            public,
            leeway_s: config.jwt_leeway_s,
        })
    }

    /// Verifies a citizen token (`v1.` or JWT) at `now_s` (Unix seconds).
    pub fn verify(&self, token: &str, now_s: u64) -> Result<TokenClaims, ApiError> {
        if token.len() > TOKEN_LEN_MAX {
            return Err(unauthorized("token too long"));
        }
        if token.starts_with(V1_PREFIX) {
            return verify_token(&self.secret, token, now_s);
        }
        self.verify_jwt(token, now_s)
    }

    fn key_for(&self, alg: Algorithm) -> Result<&DecodingKey, ApiError> {
        if alg == Algorithm::HS256 {
            return Ok(&self.hs256);
        }
        match &self.public {
            Some(p) if p.algorithms.contains(&alg) => Ok(&p.key),
            _ => Err(unauthorized(format!(
                "tokens signed with {alg:?} are not accepted"
            ))),
        }
    }

    fn verify_jwt(&self, token: &str, now_s: u64) -> Result<TokenClaims, ApiError> {
        let header = decode_header(token).map_err(|_| unauthorized("malformed token"))?;
        let key = self.key_for(header.alg)?;
        let mut validation = Validation::new(header.alg);
        // Time and audience are checked below, against the engine's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = decode::<JwtClaims>(token, key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    unauthorized("token signature does not verify")
                }
                _ => unauthorized("malformed token: sub, phone and exp are required"),
            })?
            .claims;
        if claims.exp.saturating_add(self.leeway_s) <= now_s {
            return Err(unauthorized("token expired"));
        }
        if claims
            .iat
            .is_some_and(|iat| iat > now_s.saturating_add(self.leeway_s))
        {
            return Err(unauthorized("token issued in the future"));
        }
        validate_user(&claims.sub).map_err(ApiError::unauthorized)?;
        validate_phone(&claims.phone).map_err(ApiError::unauthorized)?;
        Ok(TokenClaims {
            user: claims.sub,
            phone: claims.phone,
            exp: claims.exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn verifier(leeway_s: u64) -> TokenVerifier {
        let config = GatewayConfig {
            token_secret: SECRET.into(),
            jwt_leeway_s: leeway_s,
            ..GatewayConfig::default()
        };
        TokenVerifier::new(&config).expect("verifier")
    }

    fn hs256(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encode")
    }

    #[test]
    fn an_hs256_token_verifies_until_its_leeway_ends() {
        let v = verifier(30);
        let t = hs256(
            json!({"sub": "u1", "phone": "13800138000", "exp": 2_000, "iat": 1_000}),
            SECRET,
        );
        let claims = v.verify(&t, 1_500).expect("valid");
        assert_eq!(
            (claims.user.as_str(), claims.phone.as_str(), claims.exp),
            ("u1", "13800138000", 2_000)
        );
        assert!(v.verify(&t, 2_029).is_ok(), "within the leeway");
        assert_eq!(
            v.verify(&t, 2_030).expect_err("expired").code,
            "unauthorized"
        );
        assert!(verifier(0).verify(&t, 2_000).is_err(), "no leeway");
        assert!(v.verify(&t, 970).is_ok(), "iat up to the leeway ahead");
        assert!(v.verify(&t, 969).is_err(), "iat beyond the leeway ahead");
    }

    #[test]
    fn forged_incomplete_and_unsigned_tokens_are_refused() {
        let v = verifier(30);
        let good = json!({"sub": "u1", "phone": "13800138000", "exp": 2_000});
        assert!(v
            .verify(&hs256(good.clone(), "another-secret-0123456789"), 1)
            .is_err());
        for bad in [
            json!({"phone": "13800138000", "exp": 2_000}),
            json!({"sub": "u1", "exp": 2_000}),
            json!({"sub": "u1", "phone": "13800138000"}),
            json!({"sub": "a/b", "phone": "13800138000", "exp": 2_000}),
            json!({"sub": "u1", "phone": "12ab5", "exp": 2_000}),
            json!({"sub": "u1", "phone": "13800138000", "exp": "later"}),
        ] {
            assert!(v.verify(&hs256(bad.clone(), SECRET), 1).is_err(), "{bad}");
        }
        // alg none: the signature part empty.
        let t = hs256(good, SECRET);
        let mut parts = t.split('.');
        let (_, payload) = (parts.next(), parts.next().expect("payload"));
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        assert!(v.verify(&format!("{none_header}.{payload}."), 1).is_err());
        // RS256 without a configured public key.
        let rs_header = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"; // {"alg":"RS256","typ":"JWT"}
        let e = v.verify(&format!("{rs_header}.{payload}.c2ln"), 1);
        assert_eq!(e.expect_err("no key").code, "unauthorized");
        assert!(v.verify("", 1).is_err());
        assert!(v.verify("a.b", 1).is_err());
        assert!(v.verify(&"x".repeat(TOKEN_LEN_MAX + 1), 1).is_err());
    }

    #[test]
    fn v1_tokens_are_still_accepted() {
        let claims = TokenClaims {
            user: "u1".into(),
            phone: "13800138000".into(),
            exp: 2_000,
        };
        let t = crate::auth::sign_token(SECRET, &claims);
        assert_eq!(verifier(30).verify(&t, 1_000).expect("valid"), claims);
    }

    #[test]
    fn a_public_key_setting_that_is_not_a_key_is_refused() {
        let config = GatewayConfig {
            token_secret: SECRET.into(),
            jwt_public_key: Some(
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".into(),
            ),
            ..GatewayConfig::default()
        };
        assert!(TokenVerifier::new(&config).is_err());
        let config = GatewayConfig {
            jwt_public_key: Some("/nonexistent/platform.pem".into()),
            ..config
        };
        assert!(TokenVerifier::new(&config).is_err());
    }
}
