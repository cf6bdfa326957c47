//! Citizen tokens as JWTs through the HTTP API (`GET /v1/me`): HS256 with the shared secret,
//! RS256 (a key made by openssl) and EdDSA (a key made by ring) with the platform's public key
//! from the configuration, expiry with its leeway on the engine's clock, `v1.` tokens still
//! accepted, everything else 401; a JWT on the operator API is 403. And request ids: the
//! client's is answered back, a fresh one is made otherwise.
//!
//! Fails when openssl is missing.

use std::path::Path;
use std::process::Command;

use actix_web::test::{self, TestRequest};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use platepool_engine::actor::Clock;
use platepool_gateway::GatewayConfig;
use ring::signature::KeyPair as _;
use serde_json::{json, Value};

mod support;
use support::{t0, TestClock, SECRET};

const PHONE: &str = "13800000001";

/// An RSA key pair in PEM: (private PKCS#8, public SPKI), made by openssl.
fn rsa_keys(dir: &Path) -> (String, String) {
    let key = dir.join("rsa.pem");
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is missing: apt-get install openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let key_path = key.to_str().expect("path");
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key_path,
    ]);
    let public = run(&["pkey", "-in", key_path, "-pubout"]);
    (
        std::fs::read_to_string(&key).expect("read key"),
        String::from_utf8(public).expect("PEM"),
    )
}

/// An Ed25519 key pair: (private PKCS#8 DER, public SPKI PEM).
fn ed25519_keys() -> (Vec<u8>, String) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("pair");
    // SubjectPublicKeyInfo of an Ed25519 key: a fixed prefix, then the 32 key bytes.
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(pair.public_key().as_ref());
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
    (pkcs8.as_ref().to_vec(), pem)
}

fn claims(exp_s: u64) -> Value {
    json!({"sub": "jwt_user", "phone": PHONE, "exp": exp_s, "iat": t0() / 1000})
}

fn jwt(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(alg), claims, key).expect("encode")
}

/// The status `GET /v1/me` answers with `token`.
macro_rules! me {
    ($app:expr, $token:expr) => {{
        let req = TestRequest::get()
            .uri("/v1/me")
            .insert_header(("Authorization", format!("Bearer {}", $token)))
            .to_request();
        test::call_service(&$app, req).await.status().as_u16()
    }};
}

#[actix_rt::test]
async fn jwts_of_every_accepted_kind_work_and_others_are_401() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rsa_private, rsa_public) = rsa_keys(dir.path());
    let clock = TestClock::at(t0());
    let (_data, engine) = support::engine(None, Some(clock.clone())).await;
    let now_s = clock.now_ms() / 1000;
    let rsa = EncodingKey::from_rsa_pem(rsa_private.as_bytes()).expect("rsa key");
    let hs = EncodingKey::from_secret(SECRET.as_bytes());
    let (ed_private, ed_public) = ed25519_keys();
    let ed = EncodingKey::from_ed_der(&ed_private);

    // The RSA key from a PEM file.
    let key_file = dir.path().join("platform.pub.pem");
    std::fs::write(&key_file, &rsa_public).expect("write key");
    let config = GatewayConfig {
        jwt_public_key: Some(key_file.display().to_string()),
        jwt_leeway_s: 30,
        ..support::gateway_config()
    };
    let gw = support::gateway(&engine, config);
    let app = support::app!(gw);
    let valid = claims(now_s + 600);
    assert_eq!(me!(app, &jwt(Algorithm::HS256, &hs, &valid)), 200);
    assert_eq!(me!(app, &jwt(Algorithm::RS256, &rsa, &valid)), 200);
    assert_eq!(me!(app, &jwt(Algorithm::PS256, &rsa, &valid)), 200);
    // EdDSA is not the configured key's kind.
    assert_eq!(me!(app, &jwt(Algorithm::EdDSA, &ed, &valid)), 401);
    // HS256 signed with the public key as the secret (algorithm confusion).
    let confused = EncodingKey::from_secret(rsa_public.as_bytes());
    assert_eq!(me!(app, &jwt(Algorithm::HS256, &confused, &valid)), 401);
    // Expiry on the engine's clock, with the leeway.
    let expired_recently = claims(now_s - 10);
    assert_eq!(
        me!(app, &jwt(Algorithm::RS256, &rsa, &expired_recently)),
        200
    );
    let expired = claims(now_s - 31);
    assert_eq!(me!(app, &jwt(Algorithm::RS256, &rsa, &expired)), 401);
    // Claims outside the rules.
    let no_phone = json!({"sub": "jwt_user", "exp": now_s + 600});
    assert_eq!(me!(app, &jwt(Algorithm::HS256, &hs, &no_phone)), 401);
    // The v1. format still works.
    let v1 = support::token("v1_user", PHONE, now_s + 600);
    assert_eq!(me!(app, &v1), 200);
    assert_eq!(me!(app, "not-a-token"), 401);

    // A citizen's JWT on the operator API is 403, as a v1. token is.
    let req = TestRequest::get()
        .uri("/v1/admin/audit")
        .insert_header((
            "Authorization",
            format!("Bearer {}", jwt(Algorithm::HS256, &hs, &valid)),
        ))
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status().as_u16(), 403);

    // The Ed25519 key given as PEM text.
    let config = GatewayConfig {
        jwt_public_key: Some(ed_public),
        ..support::gateway_config()
    };
    let gw = support::gateway(&engine, config);
    let app = support::app!(gw);
    assert_eq!(me!(app, &jwt(Algorithm::EdDSA, &ed, &valid)), 200);
    assert_eq!(me!(app, &jwt(Algorithm::RS256, &rsa, &valid)), 401);
    // The default leeway is 30 s too; past it, 401.
    clock.advance(600_000 + 31_000);
    assert_eq!(me!(app, &jwt(Algorithm::EdDSA, &ed, &valid)), 401);
}

#[actix_rt::test]
async fn request_ids_are_answered_back_or_made() {
    let (_data, engine) = support::engine(None, None).await;
    let gw = support::gateway(&engine, support::gateway_config());
    let app = support::app!(gw);
    let id_of = |resp: &actix_web::dev::ServiceResponse| {
        resp.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let req = TestRequest::get()
        .uri("/v1/offices")
        .insert_header(("X-Request-Id", "client-id-1"))
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(id_of(&resp).as_deref(), Some("client-id-1"));
    // Made when missing or unfit (a space, too long), also on a 404.
    let mut made = Vec::new();
    for header in [None, Some("bad id".to_string()), Some("x".repeat(200))] {
        let mut req = TestRequest::get().uri("/v1/no-such-thing");
        if let Some(h) = header {
            req = req.insert_header(("X-Request-Id", h));
        }
        let resp = test::call_service(&app, req.to_request()).await;
        let id = id_of(&resp).expect("an id is made");
        assert_eq!(id.len(), 16, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        made.push(id);
    }
    made.dedup();
    assert_eq!(made.len(), 3, "each request gets its own id: {made:?}");
}
