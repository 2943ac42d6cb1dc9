//! The `Authorization` header through `bearer::parse` and `JwtVerifier::verify`, as the edge
//! does it, against two verifiers built from a fixed config (HS256 secret and a JWKS with an
//! ES256, an EdDSA and an RS256 key; one also requires `iss` and `aud`). Time is fixed.
//!
//! Three kinds of input:
//! - `Raw`: any header value. Parsing must sort it into exactly one contract outcome, and a
//!   JWT must never verify unless it really carries a valid signature (no success on garbage).
//! - `SignedRaw`: arbitrary header and claims bytes, validly signed by a key we hold, so the
//!   fuzzer reaches claim parsing; a success must satisfy every claim rule.
//! - `Claims`: structured header and claims, signed; the outcome must equal an independent
//!   model of the contract's rules (`expected`), both ways: nothing wrong passes, nothing
//!   right is refused, and expiry is told apart from everything else.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64ct::{Base64UrlUnpadded, Encoding};
use edge_credentials::core::{
    auth::{
        api_key::{self, KeyKind},
        bearer::{self, Bearer, INVALID_API_KEY, INVALID_TOKEN, MAX_HEADER_BYTES, MISSING_HEADER},
        jwt::{JwtError, JwtSettings, JwtVerifier, Session, LEEWAY_MS},
    },
    error::ErrorKind,
};
use jwt_compact::{
    alg::{Ed25519, Es256, Hs256, Hs256Key, SigningKey as _},
    jwk::JsonWebKey,
    Algorithm, AlgorithmSignature,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

const SECRET: &str = "fuzz-secret-that-is-at-least-32-bytes-long";
const NOW: i64 = 1_750_000_000_000;
const NOW_S: i64 = NOW / 1000;
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "edge-credentials";
/// A fixed 2048-bit RSA public key (generating one at start-up takes seconds under ASan).
/// Nothing here can sign for it, so RS256 tokens only ever exercise refusal.
const RSA_N: &str = "zhmBqz1e5ZQWXcV7SyemV-qbt_Bh5yFcdoJFSz0RiMNfv4OMdXSlIiUbid9gOZq5B5mPp7JEg_USqfGi1m-ntfyyZJMxQp3IDf2tWIRW-u1hyPlfaqHr7o81f7_KHeiE-TZdCqAVL3elO4j-lFbgA1PuiucPWdnVCmtGorY0jVJF4AFHmSIuGHC9EA3WOWPCtdp2nG0Eq4X7RWaegvPi5OzLZOp02WCJ_Tul6MAaWNal2VLT-310PNCLdkzCucfMOucrk5i5piWVdAVmkayqdjnpcsDKaOr4tXvseUXGOu7zpqC4MKy-XZzrx8F3SWtHOaSK7Uk2RpwDmqdeWDjk9Q";

/// A deterministic generator for the fixed test keys (never for anything real).
struct SplitMix(u64);
impl rand_core::RngCore for SplitMix {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand_core::impls::fill_bytes_via_next(self, dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand_core::CryptoRng for SplitMix {}

struct Fixture {
    plain: JwtVerifier,
    strict: JwtVerifier,
    hs256: Hs256Key,
    es256: <Es256 as Algorithm>::SigningKey,
    ed25519: <Ed25519 as Algorithm>::SigningKey,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = SplitMix(7);
        let es256 = <Es256 as Algorithm>::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let (ed25519, ed_public) = Ed25519::generate(&mut rng);
        let with = |jwk: JsonWebKey<'_>, kid: &str, alg: &str| {
            let mut v = serde_json::to_value(jwk).unwrap();
            v["kid"] = json!(kid);
            v["alg"] = json!(alg);
            v
        };
        let jwks = json!({"keys": [
            with(JsonWebKey::from(&es256.to_verifying_key()), "ec-1", "ES256"),
            with(JsonWebKey::from(&ed_public), "ed-1", "EdDSA"),
            json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "kid": "rsa-1", "alg": "RS256"}),
        ]})
        .to_string();
        let verifier = |strict: bool| {
            JwtVerifier::new(JwtSettings {
                secret: Some(SECRET),
                jwks: Some(&jwks),
                issuer: strict.then_some(ISSUER),
                audience: strict.then_some(AUDIENCE),
            })
            .unwrap()
        };
        Fixture {
            plain: verifier(false),
            strict: verifier(true),
            hs256: Hs256Key::new(SECRET.as_bytes()),
            es256,
            ed25519,
        }
    })
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Signer {
    Hs256,
    Es256,
    EdDsa,
}

#[derive(Arbitrary, Debug)]
enum AlgName {
    Hs256,
    Es256,
    EdDsa,
    Rs256,
    None,
    Hs512,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Kid {
    Absent,
    Ec,
    Ed,
    Rsa,
    Other(String),
}

/// A value for `exp`, `nbf` or `iat`.
#[derive(Arbitrary, Debug)]
enum Time {
    Absent,
    /// Seconds from now: where the interesting boundaries are.
    Rel(i32),
    Int(i64),
    Float(f64),
    Str(String),
    Null,
    Bool(bool),
}

/// A value for `sub`, `iss` or `aud`.
#[derive(Arbitrary, Debug)]
enum Text {
    Absent,
    /// `user-1`, the configured issuer, the configured audience.
    Good,
    Str(String),
    Null,
    Num(i64),
    List(Vec<String>),
    ListWithGood(Vec<String>),
}

#[derive(Arbitrary, Debug)]
struct ClaimsCase {
    signer: Signer,
    alg: AlgName,
    kid: Kid,
    typ: bool,
    /// Ignored by the verifier, whatever it says.
    jku: Option<String>,
    exp: Time,
    nbf: Time,
    iat: Time,
    sub: Text,
    iss: Text,
    aud: Text,
    extra: Vec<(String, i64)>,
    scheme: u8,
    spaces: u8,
}

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    Raw {
        header: Option<&'a str>,
    },
    SignedRaw {
        signer: Signer,
        header: &'a [u8],
        claims: &'a [u8],
    },
    Claims(Box<ClaimsCase>),
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

fn sign(signer: Signer, message: &[u8]) -> Vec<u8> {
    let f = fixture();
    match signer {
        Signer::Hs256 => Hs256.sign(&f.hs256, message).as_bytes().to_vec(),
        Signer::Es256 => Es256.sign(&f.es256, message).as_bytes().to_vec(),
        Signer::EdDsa => Ed25519.sign(&f.ed25519, message).as_bytes().to_vec(),
    }
}

fn token(signer: Signer, header: &[u8], claims: &[u8]) -> String {
    let signed = format!("{}.{}", b64(header), b64(claims));
    let signature = sign(signer, signed.as_bytes());
    format!("{signed}.{}", b64(&signature))
}

/// The parse half of the pipeline: every header gets exactly one contract outcome.
fn check_bearer(header: Option<&str>) -> Option<&str> {
    let parsed = bearer::parse(header);
    let Some(h) = header else {
        let e = parsed.expect_err("no header must be refused");
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert_eq!(e.message, MISSING_HEADER);
        return None;
    };
    let scheme_ok = h
        .split_once(' ')
        .is_some_and(|(s, _)| s.eq_ignore_ascii_case("bearer"));
    match parsed {
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::Unauthorized);
            assert_eq!(e.kind.status(), 401);
            if e.message == INVALID_API_KEY {
                let t = h.split_once(' ').unwrap().1.trim();
                assert!(KeyKind::of_token(t).is_some(), "{h:?}");
                assert!(api_key::parse(t).is_none(), "{h:?}");
            } else {
                assert_eq!(e.message, INVALID_TOKEN, "{h:?}");
            }
            None
        }
        Ok(Bearer::ApiKey(k)) => {
            assert!(h.len() <= MAX_HEADER_BYTES && scheme_ok, "{h:?}");
            assert_eq!(k.key.len(), api_key::KEY_LEN);
            assert_eq!(api_key::parse(k.key), Some(k.clone()));
            assert_eq!(KeyKind::of_token(k.key), Some(k.kind));
            None
        }
        Ok(Bearer::Jwt(t)) => {
            assert!(h.len() <= MAX_HEADER_BYTES && scheme_ok, "{h:?}");
            assert!(!t.is_empty() && t.trim() == t, "{h:?}");
            assert!(KeyKind::of_token(t).is_none(), "{h:?}");
            assert!(h.ends_with(t) || h.trim_end().ends_with(t), "{h:?}");
            Some(t)
        }
    }
}

/// A timestamp claim as jwt-compact reads it: whole seconds (floats truncated) within
/// chrono's range, in milliseconds. `Err` is a wrong type or an out-of-range value.
fn timestamp(v: &Value) -> Result<i64, ()> {
    let secs = match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i
            } else if n.is_u64() {
                return Err(());
            } else {
                n.as_f64().ok_or(())? as i64
            }
        }
        _ => return Err(()),
    };
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.timestamp_millis())
        .ok_or(())
}

/// The contract's claim rules, written independently of `jwt.rs`, for a token whose
/// signature is valid. `claims` must be a JSON object.
fn expected(claims: &Map<String, Value>, strict: bool) -> Result<Session, JwtError> {
    use JwtError::*;
    let opt_time = |name| match claims.get(name) {
        None => Ok(None),
        Some(v) => timestamp(v).map(Some),
    };
    let exp = opt_time("exp").map_err(|_| Invalid)?.ok_or(Invalid)?;
    let nbf = opt_time("nbf").map_err(|_| Invalid)?;
    let iat = opt_time("iat").map_err(|_| Invalid)?;
    let sub = match claims.get("sub") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(Invalid),
    };
    let iss = match claims.get("iss") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Invalid),
    };
    let aud: Option<Vec<&str>> = match claims.get("aud") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(vec![s.as_str()]),
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|i| i.as_str().ok_or(Invalid))
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err(Invalid),
    };
    if NOW >= exp + LEEWAY_MS {
        return Err(Expired);
    }
    if nbf.is_some_and(|nbf| NOW + LEEWAY_MS < nbf) {
        return Err(Invalid);
    }
    if iat.is_some_and(|iat| iat > NOW + LEEWAY_MS) {
        return Err(Invalid);
    }
    if strict && iss != Some(ISSUER) {
        return Err(Invalid);
    }
    if strict && !aud.is_some_and(|a| a.contains(&AUDIENCE)) {
        return Err(Invalid);
    }
    if sub.is_empty() || sub.len() > 255 {
        return Err(Invalid);
    }
    Ok(Session { user_id: sub })
}

/// What must hold of any verified token, however it was made.
fn check_verified(token: &str, strict: bool, result: &Result<Session, JwtError>) {
    if result.is_err() {
        return;
    }
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(
        parts.len(),
        3,
        "verified token without three segments: {token:?}"
    );
    let header: Value =
        serde_json::from_slice(&Base64UrlUnpadded::decode_vec(parts[0]).expect("header b64"))
            .expect("verified token with a non-JSON header");
    let alg = header["alg"].as_str().expect("verified token without alg");
    let signature = Base64UrlUnpadded::decode_vec(parts[2]).expect("signature b64");
    let signed = &token[..parts[0].len() + 1 + parts[1].len()];
    match alg {
        // Only the configured secret verifies HS256.
        "HS256" => assert_eq!(signature, sign(Signer::Hs256, signed.as_bytes())),
        "ES256" => assert_eq!(header["kid"], "ec-1"),
        "EdDSA" => assert_eq!(header["kid"], "ed-1"),
        "RS256" => assert_eq!(header["kid"], "rsa-1"),
        other => panic!("token with alg {other:?} verified"),
    }
    let claims: Value =
        serde_json::from_slice(&Base64UrlUnpadded::decode_vec(parts[1]).expect("claims b64"))
            .expect("verified token with non-JSON claims");
    let claims = claims.as_object().expect("claims not an object");
    assert_eq!(&expected(claims, strict), result, "{claims:?}");
}

fn verify_both(token: &str) -> [Result<Session, JwtError>; 2] {
    let f = fixture();
    let plain = f.plain.verify(token, NOW);
    let strict = f.strict.verify(token, NOW);
    check_verified(token, false, &plain);
    check_verified(token, true, &strict);
    // The strict verifier only adds rules.
    if strict.is_ok() {
        assert_eq!(plain, strict);
    }
    [plain, strict]
}

/// `FUZZ_OUTCOMES=1` prints each structured case's results, to see that a corpus reaches
/// every outcome: `FUZZ_OUTCOMES=1 cargo +nightly fuzz run auth_jwt fuzz/corpus/auth_jwt -- -runs=0`.
fn show_outcomes() -> bool {
    static SHOW: OnceLock<bool> = OnceLock::new();
    *SHOW.get_or_init(|| std::env::var_os("FUZZ_OUTCOMES").is_some())
}

fn time_value(t: &Time) -> Option<Value> {
    Some(match t {
        Time::Absent => return None,
        Time::Rel(d) => json!(NOW_S + *d as i64),
        Time::Int(i) => json!(i),
        Time::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Time::Str(s) => json!(s),
        Time::Null => Value::Null,
        Time::Bool(b) => json!(b),
    })
}

fn text_value(t: &Text, good: &str) -> Option<Value> {
    Some(match t {
        Text::Absent => return None,
        Text::Good => json!(good),
        Text::Str(s) => json!(s),
        Text::Null => Value::Null,
        Text::Num(n) => json!(n),
        Text::List(l) => json!(l),
        Text::ListWithGood(l) => {
            let mut l = l.clone();
            l.push(good.to_string());
            json!(l)
        }
    })
}

fn claims_case(c: &ClaimsCase) {
    let alg = match &c.alg {
        AlgName::Hs256 => "HS256",
        AlgName::Es256 => "ES256",
        AlgName::EdDsa => "EdDSA",
        AlgName::Rs256 => "RS256",
        AlgName::None => "none",
        AlgName::Hs512 => "HS512",
        AlgName::Other(s) => s.as_str(),
    };
    let kid = match &c.kid {
        Kid::Absent => None,
        Kid::Ec => Some("ec-1"),
        Kid::Ed => Some("ed-1"),
        Kid::Rsa => Some("rsa-1"),
        Kid::Other(s) => Some(s.as_str()),
    };
    let mut header = Map::new();
    header.insert("alg".into(), json!(alg));
    if let Some(kid) = kid {
        header.insert("kid".into(), json!(kid));
    }
    if c.typ {
        header.insert("typ".into(), json!("JWT"));
    }
    if let Some(jku) = &c.jku {
        header.insert("jku".into(), json!(jku));
        header.insert("x5u".into(), json!(jku));
    }
    let mut claims = Map::new();
    for (name, key) in [("exp", &c.exp), ("nbf", &c.nbf), ("iat", &c.iat)] {
        if let Some(v) = time_value(key) {
            claims.insert(name.into(), v);
        }
    }
    for (name, key, good) in [
        ("sub", &c.sub, "user-1"),
        ("iss", &c.iss, ISSUER),
        ("aud", &c.aud, AUDIENCE),
    ] {
        if let Some(v) = text_value(key, good) {
            claims.insert(name.into(), v);
        }
    }
    for (name, value) in c.extra.iter().take(8) {
        claims.insert(format!("x-{name}"), json!(value));
    }

    // Which configured key verifies this header, and is it the one that signed?
    let signature_ok = match (alg, kid) {
        ("HS256", _) => c.signer == Signer::Hs256,
        ("ES256", Some("ec-1")) => c.signer == Signer::Es256,
        ("EdDSA", Some("ed-1")) => c.signer == Signer::EdDsa,
        _ => false,
    };
    let t = token(
        c.signer,
        Value::Object(header).to_string().as_bytes(),
        Value::Object(claims.clone()).to_string().as_bytes(),
    );
    let scheme = ["Bearer", "bearer", "BEARER", "BeArEr"][c.scheme as usize % 4];
    let pad = " ".repeat(c.spaces as usize % 4);
    let header_value = format!("{scheme} {pad}{t}{pad}");
    let parsed = check_bearer(Some(&header_value));
    if header_value.len() > MAX_HEADER_BYTES {
        assert!(parsed.is_none());
        return;
    }
    assert_eq!(parsed, Some(t.as_str()), "{header_value:?}");
    let [plain, strict] = verify_both(&t);
    if show_outcomes() {
        eprintln!("outcome: {plain:?} {strict:?}");
    }
    for (got, strict) in [(plain, false), (strict, true)] {
        let want = if signature_ok {
            expected(&claims, strict)
        } else {
            Err(JwtError::Invalid)
        };
        assert_eq!(
            got, want,
            "alg {alg:?} kid {kid:?} strict {strict}: {claims:?}"
        );
    }
}

fuzz_target!(|input: Input<'_>| {
    match input {
        Input::Raw { header } => {
            if let Some(t) = check_bearer(header) {
                let _ = verify_both(t);
            }
        }
        Input::SignedRaw {
            signer,
            header,
            claims,
        } => {
            let t = token(signer, header, claims);
            let _ = verify_both(&t);
        }
        Input::Claims(c) => claims_case(&c),
    }
});
