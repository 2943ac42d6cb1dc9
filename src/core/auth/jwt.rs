//! Session JWT verification.
//!
//! The server's configuration decides which algorithm and key verify a token; the token's
//! header only says which configured key it claims:
//! - `HS256` is verified with `JWT_SECRET` and nothing else, so an HS256 token "signed" with
//!   a public key from the JWKS cannot pass;
//! - `ES256`, `EdDSA` and `RS256` need a `kid` naming a key in `JWT_JWKS` whose own algorithm
//!   is the token's `alg`;
//! - anything else (`none` in any case, `HS512`, ...) is refused.
//!
//! `jku`, `x5u` and `jwk` headers are never read, so nothing is ever fetched. A `crit`
//! header names extensions the token requires its verifier to understand; we understand
//! none, so such a token is refused (RFC 7515 §4.1.11).

use std::collections::HashMap;

use base64ct::{Base64UrlUnpadded, Encoding};
use jwt_compact::{
    alg::{Ed25519, Es256, Hs256, Hs256Key, Rsa, RsaPublicKey},
    jwk::JsonWebKey,
    Algorithm, AlgorithmExt, UntrustedToken,
};
use serde::Deserialize;

use crate::core::{config::ConfigError, time::UnixMillis};

/// RSA keys shorter than this are refused when `JWT_JWKS` is parsed.
pub const MIN_RSA_BITS: usize = 2048;

pub const LEEWAY_MS: i64 = 60_000;
const MIN_SECRET_BYTES: usize = 32;

type Es256Key = <Es256 as Algorithm>::VerifyingKey;
type Ed25519Key = <Ed25519 as Algorithm>::VerifyingKey;

enum PublicKey {
    Es256(Es256Key),
    EdDsa(Ed25519Key),
    Rs256(Box<RsaPublicKey>),
}

impl PublicKey {
    fn alg(&self) -> &'static str {
        match self {
            PublicKey::Es256(_) => "ES256",
            PublicKey::EdDsa(_) => "EdDSA",
            PublicKey::Rs256(_) => "RS256",
        }
    }
}

pub struct JwtVerifier {
    hs256: Option<Hs256Key>,
    keys: HashMap<String, PublicKey>,
    issuer: Option<String>,
    audience: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    Expired,
    Invalid,
}

/// What a verified token says about its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: String,
}

#[derive(Deserialize)]
struct SessionClaims {
    sub: String,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(all) => all.iter().any(|a| a == wanted),
        }
    }
}

pub struct JwtSettings<'a> {
    pub secret: Option<&'a str>,
    pub jwks: Option<&'a str>,
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
}

impl JwtVerifier {
    pub fn new(settings: JwtSettings<'_>) -> Result<JwtVerifier, ConfigError> {
        let hs256 = match settings.secret.filter(|s| !s.is_empty()) {
            Some(s) if s.len() < MIN_SECRET_BYTES => {
                return Err(ConfigError::invalid(
                    "JWT_SECRET",
                    "must be at least 32 bytes",
                ))
            }
            Some(s) => Some(Hs256Key::new(s.as_bytes())),
            None => None,
        };
        let keys = match settings.jwks.filter(|s| !s.trim().is_empty()) {
            Some(text) => parse_jwks(text)?,
            None => HashMap::new(),
        };
        let non_empty = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_string);
        Ok(JwtVerifier {
            hs256,
            keys,
            issuer: non_empty(settings.issuer),
            audience: non_empty(settings.audience),
        })
    }

    /// Whether asymmetric keys are configured (`JWT_JWKS`).
    pub fn has_jwks(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether both `iss` and `aud` are checked.
    pub fn checks_issuer_and_audience(&self) -> bool {
        self.issuer.is_some() && self.audience.is_some()
    }

    pub fn verify(&self, token: &str, now: UnixMillis) -> Result<Session, JwtError> {
        self.verify_until(token, now).map(|(session, _)| session)
    }

    /// [`JwtVerifier::verify`], with the token's `exp` (Unix milliseconds).
    pub fn verify_until(
        &self,
        token: &str,
        now: UnixMillis,
    ) -> Result<(Session, UnixMillis), JwtError> {
        if has_crit_header(token) {
            return Err(JwtError::Invalid);
        }
        let untrusted = UntrustedToken::new(token).map_err(|_| JwtError::Invalid)?;
        let kid = untrusted.header().key_id.as_deref();
        let verified = match untrusted.algorithm() {
            "HS256" => {
                let key = self.hs256.as_ref().ok_or(JwtError::Invalid)?;
                Hs256.validator::<SessionClaims>(key).validate(&untrusted)
            }
            alg => match self.keys.get(kid.ok_or(JwtError::Invalid)?) {
                Some(key) if key.alg() == alg => match key {
                    PublicKey::Es256(k) => Es256.validator(k).validate(&untrusted),
                    PublicKey::EdDsa(k) => Ed25519.validator(k).validate(&untrusted),
                    PublicKey::Rs256(k) => Rsa::rs256().validator(k.as_ref()).validate(&untrusted),
                },
                _ => return Err(JwtError::Invalid),
            },
        }
        .map_err(|_| JwtError::Invalid)?;

        let claims = verified.claims();
        let exp = claims
            .expiration
            .ok_or(JwtError::Invalid)?
            .timestamp_millis();
        if now >= exp.saturating_add(LEEWAY_MS) {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = claims.not_before {
            if now.saturating_add(LEEWAY_MS) < nbf.timestamp_millis() {
                return Err(JwtError::Invalid);
            }
        }
        if let Some(iat) = claims.issued_at {
            if iat.timestamp_millis() > now.saturating_add(LEEWAY_MS) {
                return Err(JwtError::Invalid);
            }
        }
        let custom = &claims.custom;
        if let Some(issuer) = &self.issuer {
            if custom.iss.as_deref() != Some(issuer.as_str()) {
                return Err(JwtError::Invalid);
            }
        }
        if let Some(audience) = &self.audience {
            if !custom.aud.as_ref().is_some_and(|a| a.contains(audience)) {
                return Err(JwtError::Invalid);
            }
        }
        if custom.sub.is_empty() || custom.sub.len() > 255 {
            return Err(JwtError::Invalid);
        }
        Ok((
            Session {
                user_id: custom.sub.clone(),
            },
            exp,
        ))
    }
}

/// Whether the token's header carries `crit` (or cannot be read, which fails later anyway).
fn has_crit_header(token: &str) -> bool {
    let Some(segment) = token.split('.').next() else {
        return false;
    };
    Base64UrlUnpadded::decode_vec(segment)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|header| header.get("crit").is_some())
}

/// The bit length of an RSA JWK's modulus `n` (base64url, big-endian).
fn rsa_modulus_bits(n: Option<&str>) -> usize {
    let Some(bytes) = n.and_then(|n| Base64UrlUnpadded::decode_vec(n).ok()) else {
        return 0;
    };
    let significant: Vec<u8> = bytes.into_iter().skip_while(|b| *b == 0).collect();
    match significant.first() {
        Some(first) => significant.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<serde_json::Value>,
}

fn parse_jwks(text: &str) -> Result<HashMap<String, PublicKey>, ConfigError> {
    let bad = |problem| ConfigError::invalid("JWT_JWKS", problem);
    let jwks: Jwks = serde_json::from_str(text)
        .map_err(|_| bad("must be a JSON Web Key Set: {\"keys\": [...]}"))?;
    let mut keys = HashMap::new();
    for value in jwks.keys {
        let kid = value["kid"]
            .as_str()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| bad("every key needs a non-empty \"kid\""))?
            .to_string();
        let jwk: JsonWebKey<'_> =
            serde_json::from_value(value.clone()).map_err(|_| bad("a key is not a valid JWK"))?;
        let key = match (value["kty"].as_str(), value["crv"].as_str()) {
            (Some("EC"), Some("P-256")) => Es256Key::try_from(&jwk).ok().map(PublicKey::Es256),
            (Some("OKP"), Some("Ed25519")) => Ed25519Key::try_from(&jwk).ok().map(PublicKey::EdDsa),
            (Some("RSA"), _) if rsa_modulus_bits(value["n"].as_str()) < MIN_RSA_BITS => {
                return Err(bad("RSA keys must be at least 2048 bits"))
            }
            (Some("RSA"), _) => RsaPublicKey::try_from(&jwk)
                .ok()
                .map(|k| PublicKey::Rs256(Box::new(k))),
            _ => return Err(bad("only EC P-256, OKP Ed25519 and RSA keys are supported")),
        }
        .ok_or_else(|| bad("a key's material is invalid"))?;
        if let Some(alg) = value.get("alg") {
            if alg.as_str() != Some(key.alg()) {
                return Err(bad("a key's \"alg\" does not match its type"));
            }
        }
        if keys.insert(kid, key).is_some() {
            return Err(bad("two keys share a \"kid\""));
        }
    }
    Ok(keys)
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
