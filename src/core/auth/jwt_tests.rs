//! Each attack from the identity issue, and the boundaries around it.

use super::*;
use base64ct::{Base64UrlUnpadded, Encoding};
use jwt_compact::{
    alg::{Ed25519, Es256, Hs256, Hs256Key, Rsa, RsaPrivateKey, SigningKey as _},
    jwk::JsonWebKey,
    Algorithm, AlgorithmSignature,
};
use rand_core::OsRng;
use serde_json::{json, Value};
use std::sync::OnceLock;

const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";
const NOW: i64 = 1_750_000_000_000;
const NOW_S: i64 = NOW / 1000;

struct Keys {
    es256: <Es256 as Algorithm>::SigningKey,
    ed25519: <Ed25519 as Algorithm>::SigningKey,
    rsa: RsaPrivateKey,
    jwks: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut seed = [7u8; 32];
        crate::core::ids::fill_random(&mut seed);
        let es256 = <Es256 as Algorithm>::SigningKey::from_slice(&seed).unwrap();
        let (ed25519, ed_public) = Ed25519::generate(&mut OsRng);
        let rsa = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        let with = |jwk: JsonWebKey<'_>, kid: &str, alg: &str| {
            let mut v = serde_json::to_value(jwk).unwrap();
            v["kid"] = json!(kid);
            v["alg"] = json!(alg);
            v
        };
        let jwks = json!({"keys": [
            with(JsonWebKey::from(&es256.to_verifying_key()), "ec-1", "ES256"),
            with(JsonWebKey::from(&ed_public), "ed-1", "EdDSA"),
            with(JsonWebKey::from(&rsa.to_public_key()), "rsa-1", "RS256"),
        ]})
        .to_string();
        Keys {
            es256,
            ed25519,
            rsa,
            jwks,
        }
    })
}

fn verifier() -> JwtVerifier {
    JwtVerifier::new(JwtSettings {
        secret: Some(SECRET),
        jwks: Some(&keys().jwks),
        issuer: None,
        audience: None,
    })
    .unwrap()
}

fn b64(v: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(v)
}

/// A token with exactly this header and these claims, signed by `sign` over the first two
/// segments (the signature segment is whatever `sign` returns, base64url-encoded).
fn craft(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = sign(signed.as_bytes());
    format!("{signed}.{}", b64(&signature))
}

fn bytes(signature: impl AlgorithmSignature) -> Vec<u8> {
    signature.as_bytes().to_vec()
}

fn hs256_with(secret: &[u8]) -> impl Fn(&[u8]) -> Vec<u8> {
    let key = Hs256Key::new(secret);
    move |m| bytes(Hs256.sign(&key, m))
}

fn hs256(claims: &Value) -> String {
    craft(
        &json!({"alg": "HS256", "typ": "JWT"}),
        claims,
        hs256_with(SECRET.as_bytes()),
    )
}

fn good_claims() -> Value {
    json!({"sub": "user-1", "exp": NOW_S + 3600, "iat": NOW_S})
}

fn signed(alg: &str, kid: &str, claims: &Value) -> String {
    let k = keys();
    let header = json!({"alg": alg, "kid": kid});
    match alg {
        "ES256" => craft(&header, claims, |m| bytes(Es256.sign(&k.es256, m))),
        "EdDSA" => craft(&header, claims, |m| bytes(Ed25519.sign(&k.ed25519, m))),
        "RS256" => craft(&header, claims, |m| bytes(Rsa::rs256().sign(&k.rsa, m))),
        _ => unreachable!(),
    }
}

#[test]
fn valid_tokens_of_every_supported_algorithm_pass() {
    let v = verifier();
    let expect = Ok(Session {
        user_id: "user-1".into(),
    });
    assert_eq!(v.verify(&hs256(&good_claims()), NOW), expect);
    assert_eq!(
        v.verify(&signed("ES256", "ec-1", &good_claims()), NOW),
        expect
    );
    assert_eq!(
        v.verify(&signed("EdDSA", "ed-1", &good_claims()), NOW),
        expect
    );
    assert_eq!(
        v.verify(&signed("RS256", "rsa-1", &good_claims()), NOW),
        expect
    );
}

#[test]
fn alg_none_in_any_case_is_refused() {
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = craft(&json!({"alg": alg}), &good_claims(), |_| Vec::new());
        assert!(token.ends_with('.'), "empty signature: {token}");
        assert_eq!(
            verifier().verify(&token, NOW),
            Err(JwtError::Invalid),
            "{alg}"
        );
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_or_an_empty_secret_is_refused() {
    let public_jwk = serde_json::to_vec(&JsonWebKey::from(&keys().rsa.to_public_key())).unwrap();
    for kid in [None, Some("rsa-1")] {
        let mut header = json!({"alg": "HS256"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        let forged = craft(&header, &good_claims(), hs256_with(&public_jwk));
        assert_eq!(verifier().verify(&forged, NOW), Err(JwtError::Invalid));
    }
    let empty = craft(&json!({"alg": "HS256"}), &good_claims(), hs256_with(b""));
    assert_eq!(verifier().verify(&empty, NOW), Err(JwtError::Invalid));
    // A server without JWT_SECRET accepts no HS256 at all, whatever it was signed with.
    let no_secret = JwtVerifier::new(JwtSettings {
        secret: Some(""),
        jwks: Some(&keys().jwks),
        issuer: None,
        audience: None,
    })
    .unwrap();
    assert_eq!(no_secret.verify(&empty, NOW), Err(JwtError::Invalid));
}

#[test]
fn an_asymmetric_alg_must_match_its_keys_own_alg() {
    // RS256 token pointing at the EC key, ES256 pointing at the RSA key.
    let rs_on_ec = craft(
        &json!({"alg": "RS256", "kid": "ec-1"}),
        &good_claims(),
        |m| bytes(Rsa::rs256().sign(&keys().rsa, m)),
    );
    assert_eq!(verifier().verify(&rs_on_ec, NOW), Err(JwtError::Invalid));
    let es_on_rsa = craft(
        &json!({"alg": "ES256", "kid": "rsa-1"}),
        &good_claims(),
        |m| bytes(Es256.sign(&keys().es256, m)),
    );
    assert_eq!(verifier().verify(&es_on_rsa, NOW), Err(JwtError::Invalid));
}

#[test]
fn an_all_zero_es256_signature_is_refused() {
    let token = craft(
        &json!({"alg": "ES256", "kid": "ec-1"}),
        &good_claims(),
        |_| vec![0u8; 64],
    );
    assert_eq!(verifier().verify(&token, NOW), Err(JwtError::Invalid));
}

#[test]
fn exp_and_nbf_as_strings_are_refused() {
    let exp_string = json!({"sub": "u", "exp": (NOW_S + 3600).to_string()});
    assert_eq!(
        verifier().verify(&hs256(&exp_string), NOW),
        Err(JwtError::Invalid)
    );
    let nbf_string = json!({"sub": "u", "exp": NOW_S + 3600, "nbf": NOW_S.to_string()});
    assert_eq!(
        verifier().verify(&hs256(&nbf_string), NOW),
        Err(JwtError::Invalid)
    );
}

#[test]
fn exp_and_sub_are_required_with_their_types() {
    for claims in [
        json!({"sub": "u"}),
        json!({"exp": NOW_S + 60}),
        json!({"sub": 42, "exp": NOW_S + 60}),
        json!({"sub": "", "exp": NOW_S + 60}),
        json!({"sub": null, "exp": NOW_S + 60}),
        json!({"sub": "u", "exp": null}),
    ] {
        assert_eq!(
            verifier().verify(&hs256(&claims), NOW),
            Err(JwtError::Invalid),
            "{claims}"
        );
    }
}

#[test]
fn expiry_honours_exactly_sixty_seconds_of_leeway() {
    let v = verifier();
    let exp = |offset_s: i64| hs256(&json!({"sub": "u", "exp": NOW_S + offset_s}));
    assert!(v.verify(&exp(-59), NOW).is_ok(), "just inside the leeway");
    assert_eq!(
        v.verify(&exp(-60), NOW),
        Err(JwtError::Expired),
        "at the leeway"
    );
    assert_eq!(
        v.verify(&exp(-61), NOW),
        Err(JwtError::Expired),
        "just past it"
    );
    assert_eq!(v.verify(&exp(-86_400), NOW), Err(JwtError::Expired));
}

#[test]
fn nbf_and_iat_in_the_future_are_refused_beyond_the_leeway() {
    let v = verifier();
    let with = |field: &str, offset_s: i64| {
        let mut c = good_claims();
        c[field] = json!(NOW_S + offset_s);
        hs256(&c)
    };
    assert!(v.verify(&with("nbf", 59), NOW).is_ok());
    assert_eq!(v.verify(&with("nbf", 61), NOW), Err(JwtError::Invalid));
    assert!(v.verify(&with("iat", 59), NOW).is_ok());
    assert_eq!(v.verify(&with("iat", 120), NOW), Err(JwtError::Invalid));
}

#[test]
fn issuer_and_audience_are_checked_when_configured() {
    let v = JwtVerifier::new(JwtSettings {
        secret: Some(SECRET),
        jwks: None,
        issuer: Some("https://auth.example"),
        audience: Some("edge-credentials"),
    })
    .unwrap();
    let with = |iss: Value, aud: Value| {
        let mut c = good_claims();
        c["iss"] = iss;
        c["aud"] = aud;
        hs256(&c)
    };
    assert!(v
        .verify(
            &with(json!("https://auth.example"), json!("edge-credentials")),
            NOW
        )
        .is_ok());
    assert!(v
        .verify(
            &with(
                json!("https://auth.example"),
                json!(["x", "edge-credentials"])
            ),
            NOW
        )
        .is_ok());
    let wrong = [
        with(json!("https://evil.example"), json!("edge-credentials")),
        with(json!("https://auth.example"), json!("other-service")),
        with(json!(null), json!("edge-credentials")),
        with(json!("https://auth.example"), json!(null)),
    ];
    for token in wrong {
        assert_eq!(v.verify(&token, NOW), Err(JwtError::Invalid));
    }
}

#[test]
fn unknown_or_hostile_kids_are_refused() {
    for kid in [
        "missing",
        "../../etc/passwd",
        "ec-1' OR '1'='1",
        "",
        "rsa-1\0",
    ] {
        let token = signed("ES256", kid, &good_claims());
        assert_eq!(
            verifier().verify(&token, NOW),
            Err(JwtError::Invalid),
            "{kid:?}"
        );
    }
    // No kid at all: an asymmetric token has no key to be verified with.
    let no_kid = craft(&json!({"alg": "ES256"}), &good_claims(), |m| {
        bytes(Es256.sign(&keys().es256, m))
    });
    assert_eq!(verifier().verify(&no_kid, NOW), Err(JwtError::Invalid));
}

#[test]
fn jku_x5u_and_jwk_headers_are_ignored() {
    // An attacker's own key, offered in the header, verifies nothing.
    let (attacker, attacker_public) = Ed25519::generate(&mut OsRng);
    let header = json!({
        "alg": "EdDSA",
        "kid": "ed-1",
        "jwk": serde_json::to_value(JsonWebKey::from(&attacker_public)).unwrap(),
        "jku": "https://evil.example/jwks.json",
        "x5u": "https://evil.example/cert.pem",
    });
    let forged = craft(&header, &good_claims(), |m| {
        bytes(Ed25519.sign(&attacker, m))
    });
    assert_eq!(verifier().verify(&forged, NOW), Err(JwtError::Invalid));
    // The same headers on a token signed by the configured key change nothing either.
    let genuine = craft(&header, &good_claims(), |m| {
        bytes(Ed25519.sign(&keys().ed25519, m))
    });
    assert!(verifier().verify(&genuine, NOW).is_ok());
}

#[test]
fn a_crit_header_is_refused_whatever_it_names() {
    for crit in [json!(["exp"]), json!(["b64"]), json!([]), json!("x")] {
        let header = json!({"alg": "HS256", "typ": "JWT", "crit": crit, "b64": true});
        let token = craft(&header, &good_claims(), hs256_with(SECRET.as_bytes()));
        assert_eq!(
            verifier().verify(&token, NOW),
            Err(JwtError::Invalid),
            "{crit}"
        );
    }
    // The same token without `crit` passes: the refusal is the header's, not the signature's.
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let token = craft(&header, &good_claims(), hs256_with(SECRET.as_bytes()));
    assert!(verifier().verify(&token, NOW).is_ok());
}

#[test]
fn rsa_keys_under_2048_bits_are_refused_when_the_jwks_is_parsed() {
    let small = RsaPrivateKey::new(&mut OsRng, 1024).unwrap();
    let mut jwk = serde_json::to_value(JsonWebKey::from(&small.to_public_key())).unwrap();
    jwk["kid"] = json!("rsa-small");
    let jwks = json!({ "keys": [jwk] }).to_string();
    let e = JwtVerifier::new(JwtSettings {
        secret: None,
        jwks: Some(&jwks),
        issuer: None,
        audience: None,
    })
    .err()
    .expect("refused");
    assert_eq!(
        (e.variable, e.problem),
        ("JWT_JWKS", "RSA keys must be at least 2048 bits")
    );
    assert!(
        verifier().has_jwks(),
        "the 2048-bit key of the other tests is accepted"
    );
}

#[test]
fn tokens_with_two_or_four_segments_are_refused() {
    let token = hs256(&good_claims());
    let parts: Vec<&str> = token.split('.').collect();
    for bad in [
        parts[..2].join("."),
        format!("{token}.{}", parts[2]),
        format!("{token}."),
        String::new(),
        "....".into(),
    ] {
        assert_eq!(
            verifier().verify(&bad, NOW),
            Err(JwtError::Invalid),
            "{bad}"
        );
    }
}

#[test]
fn config_errors_are_clear_and_never_panic() {
    let make = |secret: Option<&str>, jwks: Option<&str>| {
        JwtVerifier::new(JwtSettings {
            secret,
            jwks,
            issuer: None,
            audience: None,
        })
        .err()
    };
    assert_eq!(make(Some("short"), None).unwrap().variable, "JWT_SECRET");
    for jwks in [
        "not json",
        "{}",
        r#"{"keys": [{"kty": "EC"}]}"#,
        r#"{"keys": [{"kty": "oct", "kid": "a", "k": "AAAA"}]}"#,
        r#"{"keys": [{"kty": "EC", "kid": "a", "crv": "P-256", "x": "AA", "y": "AA"}]}"#,
    ] {
        assert_eq!(
            make(None, Some(jwks)).unwrap().variable,
            "JWT_JWKS",
            "{jwks}"
        );
    }
    let mut dup: Value = serde_json::from_str(&keys().jwks).unwrap();
    dup["keys"][1]["kid"] = json!("ec-1");
    assert!(make(None, Some(&dup.to_string())).is_some());
    let mut mislabelled: Value = serde_json::from_str(&keys().jwks).unwrap();
    mislabelled["keys"][0]["alg"] = json!("HS256");
    assert!(make(None, Some(&mislabelled.to_string())).is_some());
}

/// The worker checks ES256, EdDSA and RS256 signatures with WebCrypto, between
/// [`JwtVerifier::begin`] and [`Pending::finish`]: what it is handed, and what it decides.
#[test]
fn an_asymmetric_token_hands_its_signed_bytes_and_signature_to_the_caller() {
    let v = verifier();
    for (alg, kid, len) in [
        ("ES256", "ec-1", 64),
        ("EdDSA", "ed-1", 64),
        ("RS256", "rsa-1", 256),
    ] {
        let token = signed(alg, kid, &good_claims());
        let Step::Signature(pending) = v.begin(&token, NOW) else {
            panic!("{alg}: no signature step");
        };
        let (signed_part, signature) = token.rsplit_once('.').unwrap();
        assert_eq!(pending.message, signed_part.as_bytes(), "{alg}");
        assert_eq!(pending.signature().len(), len, "{alg}");
        assert_eq!(b64(pending.signature()), signature, "{alg}");
        assert_eq!(pending.key.alg.name(), alg);
        // The caller's "no" is final; its "yes" leads to the claims.
        assert_eq!(pending.finish(false, NOW), Err(JwtError::Invalid), "{alg}");
        let Step::Signature(pending) = v.begin(&token, NOW) else {
            unreachable!()
        };
        let (session, exp) = pending.finish(true, NOW).unwrap();
        assert_eq!(
            (session.user_id.as_str(), exp),
            ("user-1", (NOW_S + 3600) * 1000)
        );
    }
    // A good signature does not rescue expired claims.
    let expired = signed("ES256", "ec-1", &json!({"sub": "u", "exp": NOW_S - 3600}));
    let Step::Signature(pending) = v.begin(&expired, NOW) else {
        panic!("no signature step");
    };
    assert_eq!(pending.finish(true, NOW), Err(JwtError::Expired));
    // HS256 is decided whole; a signature of the wrong length never reaches the caller.
    assert!(matches!(
        v.begin(&hs256(&good_claims()), NOW),
        Step::Done(Ok(_))
    ));
    let short = craft(
        &json!({"alg": "ES256", "kid": "ec-1"}),
        &good_claims(),
        |_| vec![1u8; 63],
    );
    assert!(matches!(
        v.begin(&short, NOW),
        Step::Done(Err(JwtError::Invalid))
    ));
}

fn jwks_only(jwks: &Value) -> JwtVerifier {
    JwtVerifier::new(JwtSettings {
        secret: None,
        jwks: Some(&jwks.to_string()),
        issuer: None,
        audience: None,
    })
    .unwrap()
}

#[test]
fn webcrypto_is_given_only_a_keys_public_members() {
    let mut jwks: Value = serde_json::from_str(&keys().jwks).unwrap();
    jwks["keys"][0]["use"] = json!("sig");
    jwks["keys"][0]["key_ops"] = json!(["verify"]);
    jwks["keys"][0]["d"] = json!(b64(&[9u8; 32]));
    let v = jwks_only(&jwks);
    let token = signed("ES256", "ec-1", &good_claims());
    let Step::Signature(pending) = v.begin(&token, NOW) else {
        panic!("no signature step");
    };
    let given: Value = serde_json::from_str(&pending.key.jwk).unwrap();
    let mut members: Vec<&String> = given.as_object().unwrap().keys().collect();
    members.sort();
    assert_eq!(members, ["crv", "kty", "x", "y"]);
    assert_eq!(given["x"], jwks["keys"][0]["x"]);
}

#[test]
fn a_key_off_its_curve_passes_the_shape_check_and_verifies_nothing() {
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "off",
        "x": b64(&[1u8; 32]), "y": b64(&[2u8; 32]),
    }]});
    let v = jwks_only(&jwks);
    let token = signed("ES256", "ec-1", &good_claims()).replacen(
        &b64(json!({"alg": "ES256", "kid": "ec-1"})
            .to_string()
            .as_bytes()),
        &b64(json!({"alg": "ES256", "kid": "off"}).to_string().as_bytes()),
        1,
    );
    assert_eq!(v.verify(&token, NOW), Err(JwtError::Invalid));
}

/// An HS256 token over exactly these header and claims texts.
fn hs256_raw(header: &str, claims: &str) -> String {
    let signed = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let signature = hs256_with(SECRET.as_bytes())(signed.as_bytes());
    format!("{signed}.{}", b64(&signature))
}

#[test]
fn the_token_is_read_with_the_rules_jwt_compact_applied() {
    let exp = NOW_S + 3600;
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    let ok = Ok(Session {
        user_id: "u".into(),
    });
    let verify = |h: &str, c: &str| verifier().verify(&hs256_raw(h, c), NOW);
    assert_eq!(verify(header, &format!(r#"{{"sub":"u","exp":{exp}}}"#)), ok);
    // Accepted: a float time (truncated), `cty` JSON in any case, null optional members, and
    // an audience as one string or a list.
    for (h, c) in [
        (header, format!(r#"{{"sub":"u","exp":{exp}.75}}"#)),
        (
            r#"{"alg":"HS256","cty":"json","kid":null}"#,
            format!(r#"{{"sub":"u","exp":{exp},"iss":null,"aud":null}}"#),
        ),
        (
            header,
            format!(r#"{{"sub":"u","exp":{exp},"aud":["a","b"]}}"#),
        ),
        (
            header,
            format!(r#"{{"sub":"u","exp":{exp},"other":{{"x":[1]}}}}"#),
        ),
    ] {
        assert_eq!(verify(h, &c), ok, "{h} {c}");
    }
    // Refused: a repeated key in either object (the parser would keep the last), a header or
    // claims that are not an object, members of the wrong type, another `cty`, and times
    // out of range.
    for (h, c) in [
        (
            header,
            format!(r#"{{"sub":"u","sub":"admin","exp":{exp}}}"#),
        ),
        (
            header,
            format!(r#"{{"sub":"u","exp":{exp},"exp":{}}}"#, exp + 1),
        ),
        (
            r#"{"alg":"HS256","alg":"HS256"}"#,
            format!(r#"{{"sub":"u","exp":{exp}}}"#),
        ),
        (r#"["HS256"]"#, format!(r#"{{"sub":"u","exp":{exp}}}"#)),
        (header, format!(r#"["u",{exp}]"#)),
        (
            r#"{"alg":"HS256","kid":7}"#,
            format!(r#"{{"sub":"u","exp":{exp}}}"#),
        ),
        (
            r#"{"alg":"HS256","typ":1}"#,
            format!(r#"{{"sub":"u","exp":{exp}}}"#),
        ),
        (
            r#"{"alg":"HS256","cty":"txt"}"#,
            format!(r#"{{"sub":"u","exp":{exp}}}"#),
        ),
        (header, format!(r#"{{"sub":"u","exp":{exp},"iss":5}}"#)),
        (
            header,
            format!(r#"{{"sub":"u","exp":{exp},"aud":["a",1]}}"#),
        ),
        (header, format!(r#"{{"sub":"u","exp":{exp},"aud":{{}}}}"#)),
        (
            header,
            r#"{"sub":"u","exp":9223372036854775808}"#.to_string(),
        ),
        (header, r#"{"sub":"u","exp":99999999999999999}"#.to_string()),
        (header, format!(r#"{{"sub":"u","exp":{exp},"iat":true}}"#)),
    ] {
        assert_eq!(verify(h, &c), Err(JwtError::Invalid), "{h} {c}");
    }
    // The three segments must each be base64url without padding.
    let token = hs256_raw(header, &format!(r#"{{"sub":"u","exp":{exp}}}"#));
    let (signed, signature) = token.rsplit_once('.').unwrap();
    assert!(verifier()
        .verify(&format!("{signed}.{signature}="), NOW)
        .is_err());
    assert!(verifier()
        .verify(&format!("{signed}.{}", &signature[1..]), NOW)
        .is_err());
}
