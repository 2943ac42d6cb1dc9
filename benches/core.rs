//! Native microbenchmarks of the pure core: `cargo bench --bench core`.
//!
//! The bench profile inherits `[profile.release]` (opt-level "z", LTO), the settings the
//! wasm build uses, so relative costs match the worker's; absolute times are native x86-64,
//! and the same code runs some 1.5-3x slower as wasm in workerd.
//! Figures and their analysis: BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use base64ct::{Base64UrlUnpadded, Encoding};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use jwt_compact::{
    alg::{Ed25519, Es256, Hs256, Hs256Key, Rsa, RsaPrivateKey, SigningKey as _},
    jwk::JsonWebKey,
    Algorithm, AlgorithmSignature,
};
use rand_core::OsRng;
use serde_json::{json, Value};

use edge_credentials::core::{
    auth::{
        api_key::{self, KeyKind},
        bearer::{self, Bearer},
        jwt::{JwtSettings, JwtVerifier},
    },
    body,
    config::Config,
    credentials::{self, CredentialRecord, PutCredential, Status},
    crypto::{credential_aad, KeyRing},
    ids,
    json::ToJson,
    log::RequestLog,
    providers,
    ratelimit::{client_ip_key, rate_limit_headers, HeaderEntry, Policy, WindowState},
    routes::{self, Route},
};

const SECRET: &str = "insecure-dev-jwt-secret-0123456789abcdef";
const CREDENTIAL_KEYS: &str =
    r#"{"active":"k1","keys":{"k1":"ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM="}}"#;
const NOW: i64 = 1_750_000_000_000;
const TEAM: &str = "019abc12-4567-7890-abcd-ef1234567891";
const PROVIDER_KEY: &str = "comfyui-0123456789abcdefghijklmnopqrstuvwxyz";

fn b64(v: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(v)
}

/// A token with this header and these claims, signed over the first two segments.
fn craft(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = sign(signed.as_bytes());
    format!("{signed}.{}", b64(&signature))
}

fn claims() -> Value {
    json!({"sub": "bench-user", "exp": NOW / 1000 + 3600, "iat": NOW / 1000})
}

struct Tokens {
    verifier: JwtVerifier,
    hs256: String,
    es256: String,
    eddsa: String,
    rs256: String,
}

/// One key of each kind, a JWKS naming them, and one valid token per algorithm.
fn tokens() -> Tokens {
    let mut seed = [0u8; 32];
    ids::fill_random(&mut seed);
    let es = <Es256 as Algorithm>::SigningKey::from_slice(&seed).unwrap();
    let (ed, ed_public) = Ed25519::generate(&mut OsRng);
    let rsa = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let with = |jwk: JsonWebKey<'_>, kid: &str, alg: &str| {
        let mut v = serde_json::to_value(jwk).unwrap();
        v["kid"] = json!(kid);
        v["alg"] = json!(alg);
        v
    };
    let jwks = json!({"keys": [
        with(JsonWebKey::from(&es.to_verifying_key()), "ec-1", "ES256"),
        with(JsonWebKey::from(&ed_public), "ed-1", "EdDSA"),
        with(JsonWebKey::from(&rsa.to_public_key()), "rsa-1", "RS256"),
    ]})
    .to_string();
    let verifier = JwtVerifier::new(JwtSettings {
        secret: Some(SECRET),
        jwks: Some(&jwks),
        issuer: None,
        audience: None,
    })
    .unwrap();
    let hs_key = Hs256Key::new(SECRET.as_bytes());
    let c = claims();
    Tokens {
        verifier,
        hs256: craft(&json!({"alg": "HS256", "typ": "JWT"}), &c, |m| {
            Hs256.sign(&hs_key, m).as_bytes().to_vec()
        }),
        es256: craft(&json!({"alg": "ES256", "kid": "ec-1"}), &c, |m| {
            Es256.sign(&es, m).as_bytes().to_vec()
        }),
        eddsa: craft(&json!({"alg": "EdDSA", "kid": "ed-1"}), &c, |m| {
            Ed25519.sign(&ed, m).as_bytes().to_vec()
        }),
        rs256: craft(&json!({"alg": "RS256", "kid": "rsa-1"}), &c, |m| {
            Rsa::rs256().sign(&rsa, m).as_bytes().to_vec()
        }),
    }
}

fn jwt(c: &mut Criterion) {
    let t = tokens();
    let mut g = c.benchmark_group("jwt_verify");
    for (name, token) in [
        ("hs256", &t.hs256),
        ("es256", &t.es256),
        ("eddsa", &t.eddsa),
        ("rs256", &t.rs256),
    ] {
        assert!(t.verifier.verify(token, NOW).is_ok(), "{name}");
        g.bench_function(name, |b| {
            b.iter(|| t.verifier.verify(black_box(token), black_box(NOW)))
        });
    }
    g.finish();
}

fn api_keys(c: &mut Criterion) {
    let key = api_key::generate(KeyKind::Secret);
    let header = format!("Bearer {key}");
    let mut bad = key.clone().into_bytes();
    bad[40] = if bad[40] == b'a' { b'b' } else { b'a' };
    let bad = String::from_utf8(bad).unwrap();
    let mut g = c.benchmark_group("api_key");
    // Format and CRC-32 checksum: what a forged key costs before it is refused.
    g.bench_function("parse_checksum_ok", |b| {
        b.iter(|| api_key::parse(black_box(&key)))
    });
    g.bench_function("parse_checksum_bad", |b| {
        b.iter(|| api_key::parse(black_box(&bad)))
    });
    g.bench_function("bearer_parse", |b| {
        b.iter(|| bearer::parse(black_box(Some(header.as_str()))).is_ok())
    });
    g.bench_function("hash_sha256_hex", |b| {
        b.iter(|| api_key::hash_key(black_box(&key)))
    });
    g.bench_function("generate", |b| {
        b.iter(|| api_key::generate(KeyKind::Secret))
    });
    g.finish();
}

fn crypto(c: &mut Criterion) {
    let ring = KeyRing::from_config(CREDENTIAL_KEYS).unwrap();
    let aad = credential_aad(TEAM, "comfy_cloud");
    let sealed = ring.seal(PROVIDER_KEY.as_bytes(), &aad);
    let mut g = c.benchmark_group("crypto");
    g.bench_function("seal", |b| {
        b.iter(|| ring.seal(black_box(PROVIDER_KEY.as_bytes()), black_box(&aad)))
    });
    g.bench_function("open", |b| {
        b.iter(|| ring.open(black_box(&sealed), black_box(&aad)).unwrap())
    });
    g.bench_function("key_ring_from_config", |b| {
        b.iter(|| KeyRing::from_config(black_box(CREDENTIAL_KEYS)).is_ok())
    });
    g.finish();
}

/// A window already holding `n` accepted requests, one per millisecond up to NOW.
fn window_with(n: u32, policy: &Policy) -> WindowState {
    let mut w = WindowState::default();
    for i in 0..n {
        w.decide(policy, NOW - n as i64 + i as i64);
    }
    w
}

fn ratelimit(c: &mut Criterion) {
    let ip = Policy {
        limit: 40,
        window_ms: 10_000,
        cooldown_ms: 10_000,
    };
    let principal = Policy {
        limit: 600,
        window_ms: 60_000,
        cooldown_ms: 0,
    };
    let mut g = c.benchmark_group("ratelimit");
    // Steady state under the default IP policy: one expires, one is admitted.
    g.bench_function("decide_ip_allowed", |b| {
        let mut w = window_with(39, &ip);
        let mut now = NOW + ip.window_ms;
        b.iter(|| {
            now += 1;
            w.decide(&ip, black_box(now))
        })
    });
    g.bench_function("decide_principal_full_limited", |b| {
        let mut w = window_with(600, &principal);
        b.iter(|| w.decide(&principal, black_box(NOW + 1)))
    });
    // What the Durable Object does per request besides deciding: clone the state to see
    // whether it changed, and serialize it for storage. Grows with the window's length,
    // which is at most `limit` (600 by default, rps x window with the benchmark's limits).
    for n in [40u32, 600, 10_000] {
        let big = Policy {
            limit: 1_000_000_000,
            window_ms: 60_000,
            cooldown_ms: 0,
        };
        let w = window_with(n, &big);
        g.bench_function(format!("object_step_{n}_entries"), |b| {
            b.iter_batched(
                || w.clone(),
                |mut w| {
                    let before = w.clone();
                    let d = w.decide(&big, NOW + 1);
                    let changed = w != before;
                    (d, changed, w.to_json())
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.bench_function("client_ip_key_v6", |b| {
        b.iter(|| client_ip_key(black_box(Some("2001:db8:1:2:3:4:5:6"))))
    });
    g.bench_function("headers_two_limiters", |b| {
        b.iter(|| {
            rate_limit_headers(&[
                HeaderEntry {
                    name: "ip",
                    policy: &ip,
                    remaining: 39,
                    reset_ms: 9_000,
                },
                HeaderEntry {
                    name: "principal",
                    policy: &principal,
                    remaining: 599,
                    reset_ms: 59_000,
                },
            ])
        })
    });
    g.finish();
}

fn record() -> CredentialRecord {
    CredentialRecord {
        provider: providers::by_slug("comfy-cloud").unwrap(),
        status: Status::Active,
        cloud_fallback: false,
        created_at: NOW - 86_400_000,
        updated_at: NOW,
        key_preview: credentials::preview(PROVIDER_KEY),
        version: 3,
        verification: edge_credentials::core::verify::Verification::from_answer(
            edge_credentials::core::verify::ProviderAnswer::Status(200),
            NOW,
        ),
        last_used_at: None,
    }
}

fn serialization(c: &mut Criterion) {
    let r = record();
    let mut g = c.benchmark_group("credential");
    g.bench_function("response_json_and_etag", |b| {
        b.iter(|| {
            let r = black_box(&r);
            (r.view().to_json(), r.etag())
        })
    });
    g.bench_function("preview", |b| {
        b.iter(|| credentials::preview(black_box(PROVIDER_KEY)))
    });
    let put = format!(r#"{{"api_key": "{PROVIDER_KEY}", "cloud_fallback": false}}"#);
    g.bench_function("put_body_parse_validate", |b| {
        b.iter(|| {
            body::check_headers(Some("application/json"), Some("64")).unwrap();
            let p: PutCredential = body::parse(black_box(put.as_bytes())).unwrap();
            p.validate().unwrap();
            p
        })
    });
    g.finish();
}

/// Everything the worker does for a request in its own code, minus the platform (D1,
/// Durable Objects, the JS/wasm boundary), in the order app.rs does it.
fn pipeline(c: &mut Criterion) {
    let config = Config::from_lookup(|name| match name {
        "JWT_SECRET" => Some(SECRET.to_string()),
        "CREDENTIAL_KEYS" => Some(CREDENTIAL_KEYS.to_string()),
        "RATE_LIMIT_IP_REQUESTS" | "RATE_LIMIT_PRINCIPAL_REQUESTS" => Some("1000000000".into()),
        _ => None,
    })
    .unwrap();
    let t = tokens();
    let authorization = format!("Bearer {}", t.hs256);
    let put_body = format!(r#"{{"api_key": "{PROVIDER_KEY}", "cloud_fallback": false}}"#);
    let stored = record();
    let path = "/api/v1/cloud-providers/comfy-cloud";

    // Shared front half: request id, route, bearer + verify, limiter keys, X-Team-ID.
    let front = |method: &str| {
        let request_id = ids::new_id(NOW).to_string();
        let matched = routes::match_route(method, black_box(path)).unwrap();
        let Ok(Bearer::Jwt(token)) = bearer::parse(Some(black_box(authorization.as_str()))) else {
            unreachable!()
        };
        let session = config.jwt.verify(token, NOW).unwrap();
        let ip_key = client_ip_key(Some("203.0.113.9"));
        let principal_key = format!(
            "user:{}:{}|team:{}",
            session.user_id.len(),
            session.user_id,
            TEAM
        );
        let team = ids::parse_uuid(black_box(TEAM)).unwrap().to_string();
        let provider = credentials::provider_for(&matched.param().unwrap()).unwrap();
        (
            request_id,
            matched,
            session,
            ip_key,
            principal_key,
            team,
            provider,
        )
    };
    let back = |request_id: String, template, team: String, user: String, r: &CredentialRecord| {
        let body = r.view().to_json();
        let etag = r.etag();
        let (policy, state) = rate_limit_headers(&[HeaderEntry {
            name: "ip",
            policy: &config.limits.ip,
            remaining: 1,
            reset_ms: 1,
        }]);
        let log = RequestLog {
            request_id,
            method: "GET".into(),
            route: template,
            status: 200,
            duration_ms: 1,
            team_id: Some(team),
            principal_kind: Some("user"),
            principal_id: Some(user),
            ..Default::default()
        }
        .to_json_line();
        (body, etag, policy, state, log)
    };

    let mut g = c.benchmark_group("request_hs256");
    g.bench_function("get_credential", |b| {
        b.iter(|| {
            let (rid, m, session, ip, pk, team, _provider) = front("GET");
            assert_eq!(m.route, Route::GetCredential);
            (
                ip,
                pk,
                back(rid, m.template, team, session.user_id, &stored),
            )
        })
    });
    g.bench_function("put_credential", |b| {
        b.iter(|| {
            let (rid, m, session, ip, pk, team, provider) = front("PUT");
            assert_eq!(m.route, Route::PutCredential);
            body::check_headers(Some("application/json"), Some("64")).unwrap();
            let p: PutCredential = body::parse(black_box(put_body.as_bytes())).unwrap();
            p.validate().unwrap();
            let ring = config.key_ring.as_ref().unwrap();
            let sealed = ring.seal(p.api_key.as_bytes(), &credential_aad(&team, provider.name));
            let audit_id = ids::new_id(NOW).to_string();
            let record = CredentialRecord {
                key_preview: credentials::preview(&p.api_key),
                ..stored.clone()
            };
            let out = back(rid, m.template, team, session.user_id, &record);
            (ip, pk, sealed, audit_id, out)
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = jwt, api_keys, crypto, ratelimit, serialization, pipeline
}
criterion_main!(benches);
