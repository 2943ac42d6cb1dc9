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
//!
//! The token is split, decoded and read here, with the rules jwt-compact 0.8 applied
//! (which tests and fuzzing compare against, `jwt_tests.rs`, `fuzz/auth_jwt`): three
//! base64url segments without padding; a header object whose `alg` is a string and whose
//! `kid`, `typ`, `cty`, `jku` and `x5u` are strings when present, with `cty` only `JSON`;
//! claims in a JSON object, `exp`, `nbf` and `iat` numbers of seconds, `sub` a string, `iss`
//! a string and `aud` a string or an array of strings when present; no key repeated in
//! either object. HS256 is HMAC-SHA256, compared in constant time. jwt-compact's typed
//! serde code was about 9 KB of the gzipped wasm (issue 16); it is kept for native builds'
//! asymmetric algorithms and for the tests that sign tokens.

use std::collections::HashMap;

use base64ct::{Base64UrlUnpadded, Encoding};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::core::{
    config::ConfigError,
    json::{self, Obj},
    time::UnixMillis,
};

/// RSA keys shorter than this are refused when `JWT_JWKS` is parsed.
pub const MIN_RSA_BITS: usize = 2048;

pub const LEEWAY_MS: i64 = 60_000;
const MIN_SECRET_BYTES: usize = 32;

/// The algorithm of a `JWT_JWKS` key, which is the only one it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    Es256,
    EdDsa,
    Rs256,
}

impl KeyAlg {
    pub fn name(self) -> &'static str {
        match self {
            KeyAlg::Es256 => "ES256",
            KeyAlg::EdDsa => "EdDSA",
            KeyAlg::Rs256 => "RS256",
        }
    }
}

/// A public key from `JWT_JWKS`, its shape checked when the set is parsed.
///
/// The signature itself is checked by whoever holds [`Pending`]: in the worker, the
/// runtime's WebCrypto imports [`PublicKey::jwk`] (so the curve and RSA arithmetic is not
/// compiled into the wasm); natively, the jwt-compact algorithms do it in
/// [`JwtVerifier::verify`].
pub struct PublicKey {
    pub alg: KeyAlg,
    /// The key's public members only (`kty`, `crv`, `x`, `y`, `n`, `e`), as JSON: what
    /// WebCrypto's `importKey("jwk", ...)` is given.
    pub jwk: String,
    /// The exact length of this key's signatures: 64 bytes for ES256 (`r || s`) and EdDSA,
    /// the modulus length for RS256.
    signature_len: usize,
    /// `None`: the crates refuse the material (a point off the curve), as WebCrypto would.
    #[cfg(not(target_arch = "wasm32"))]
    native: Option<native::NativeKey>,
}

pub struct JwtVerifier {
    /// `JWT_SECRET`'s bytes.
    hs256: Option<Vec<u8>>,
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

/// A token split and decoded, its header read; nothing about it is trusted yet.
struct Untrusted<'t> {
    alg: String,
    kid: Option<String>,
    claims: Vec<u8>,
    signature: Vec<u8>,
    /// What was signed: the header and claims segments with their dot, exactly as sent.
    signed: &'t [u8],
}

impl Untrusted<'_> {
    fn parse(token: &str) -> Option<Untrusted<'_>> {
        let mut parts = token.split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let decode = |segment: &str| Base64UrlUnpadded::decode_vec(segment).ok();
        let (claims, signature) = (decode(claims)?, decode(signature)?);
        let header = json::parse_strict(&decode(header)?)?;
        let header = header.as_object()?;
        if header.contains_key("crit") {
            return None;
        }
        let text = |name: &str| match header.get(name) {
            None | Some(Value::Null) => Some(None),
            Some(v) => v.as_str().map(Some),
        };
        for name in ["typ", "jku", "x5u"] {
            text(name)?;
        }
        if text("cty")?.is_some_and(|cty| !cty.eq_ignore_ascii_case("json")) {
            return None;
        }
        Some(Untrusted {
            alg: header.get("alg")?.as_str()?.to_string(),
            kid: text("kid")?.map(str::to_string),
            claims,
            signature,
            signed: &token.as_bytes()[..token.rfind('.')?],
        })
    }
}

/// The claims we read. Times are Unix milliseconds.
struct SessionClaims {
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    sub: String,
    iss: Option<String>,
    aud: Option<Vec<String>>,
}

impl SessionClaims {
    fn parse(text: &[u8]) -> Option<SessionClaims> {
        let claims = json::parse_strict(text)?;
        let claims = claims.as_object()?;
        // Seconds, as an integer or (truncated) a float, within chrono's range.
        let time = |name: &str| match claims.get(name) {
            None => Some(None),
            Some(v) => {
                let secs = match (v.as_i64(), v.as_u64(), v.as_f64()) {
                    (Some(s), _, _) => s,
                    (None, Some(_), _) => return None,
                    (None, None, Some(f)) => f as i64,
                    _ => return None,
                };
                chrono::DateTime::from_timestamp(secs, 0).map(|t| Some(t.timestamp_millis()))
            }
        };
        let text = |v: &Value| v.as_str().map(str::to_string);
        let iss = match claims.get("iss") {
            None | Some(Value::Null) => None,
            Some(v) => Some(text(v)?),
        };
        let aud = match claims.get("aud") {
            None | Some(Value::Null) => None,
            Some(Value::Array(all)) => Some(all.iter().map(text).collect::<Option<Vec<_>>>()?),
            Some(v) => Some(vec![text(v)?]),
        };
        Some(SessionClaims {
            exp: time("exp")?,
            nbf: time("nbf")?,
            iat: time("iat")?,
            sub: text(claims.get("sub")?)?,
            iss,
            aud,
        })
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
            Some(s) => Some(s.as_bytes().to_vec()),
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

    /// The whole check, with the signature verified by the jwt-compact algorithms.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn verify(&self, token: &str, now: UnixMillis) -> Result<Session, JwtError> {
        self.verify_until(token, now).map(|(session, _)| session)
    }

    /// [`JwtVerifier::verify`], with the token's `exp` (Unix milliseconds).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn verify_until(
        &self,
        token: &str,
        now: UnixMillis,
    ) -> Result<(Session, UnixMillis), JwtError> {
        match self.begin(token, now) {
            Step::Done(result) => result,
            Step::Signature(pending) => {
                let valid = (pending.key.native.as_ref())
                    .is_some_and(|k| k.verify(pending.message, pending.signature()));
                pending.finish(valid, now)
            }
        }
    }

    /// The first step: the header's rules, the key, and an HS256 token whole. A token signed
    /// with a `JWT_JWKS` key comes back [`Step::Signature`], for the caller to check the
    /// signature (asynchronously, in the worker) before [`Pending::finish`] reads the claims.
    pub fn begin<'v, 't>(&'v self, token: &'t str, now: UnixMillis) -> Step<'v, 't> {
        match self.open(token, now) {
            Ok(step) => step,
            Err(e) => Step::Done(Err(e)),
        }
    }

    fn open<'v, 't>(&'v self, token: &'t str, now: UnixMillis) -> Result<Step<'v, 't>, JwtError> {
        let untrusted = Untrusted::parse(token).ok_or(JwtError::Invalid)?;
        if untrusted.alg == "HS256" {
            let secret = self.hs256.as_ref().ok_or(JwtError::Invalid)?;
            let mut mac =
                Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
            mac.update(untrusted.signed);
            // Constant time, and only a full-length tag.
            mac.verify_slice(&untrusted.signature)
                .map_err(|_| JwtError::Invalid)?;
            let claims = SessionClaims::parse(&untrusted.claims).ok_or(JwtError::Invalid)?;
            return Ok(Step::Done(self.claims(&claims, now)));
        }
        let kid = untrusted.kid.as_deref();
        let key = self.keys.get(kid.ok_or(JwtError::Invalid)?);
        let key = key
            .filter(|k| k.alg.name() == untrusted.alg)
            .ok_or(JwtError::Invalid)?;
        if untrusted.signature.len() != key.signature_len {
            return Err(JwtError::Invalid);
        }
        Ok(Step::Signature(Box::new(Pending {
            verifier: self,
            message: untrusted.signed,
            untrusted,
            key,
        })))
    }

    /// The claims of a token whose signature holds.
    fn claims(
        &self,
        claims: &SessionClaims,
        now: UnixMillis,
    ) -> Result<(Session, UnixMillis), JwtError> {
        let exp = claims.exp.ok_or(JwtError::Invalid)?;
        if now >= exp.saturating_add(LEEWAY_MS) {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = claims.nbf {
            if now.saturating_add(LEEWAY_MS) < nbf {
                return Err(JwtError::Invalid);
            }
        }
        if let Some(iat) = claims.iat {
            if iat > now.saturating_add(LEEWAY_MS) {
                return Err(JwtError::Invalid);
            }
        }
        let custom = claims;
        if let Some(issuer) = &self.issuer {
            if custom.iss.as_deref() != Some(issuer.as_str()) {
                return Err(JwtError::Invalid);
            }
        }
        if let Some(audience) = &self.audience {
            if !custom
                .aud
                .as_ref()
                .is_some_and(|all| all.contains(audience))
            {
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

/// Where [`JwtVerifier::begin`] left a token.
pub enum Step<'v, 't> {
    /// Decided: HS256, or refused before any signature check.
    Done(Result<(Session, UnixMillis), JwtError>),
    /// Signed with a `JWT_JWKS` key: check [`Pending::signature`] over
    /// [`Pending::message`] with [`Pending::key`], then [`Pending::finish`].
    Signature(Box<Pending<'v, 't>>),
}

/// A token whose signature is still to be checked. Its claims are read only by
/// [`Pending::finish`], and only when the signature held.
pub struct Pending<'v, 't> {
    verifier: &'v JwtVerifier,
    untrusted: Untrusted<'t>,
    /// The configured key the token names, of the token's own algorithm.
    pub key: &'v PublicKey,
    /// The signed bytes: the token's header and payload segments with their dot.
    pub message: &'t [u8],
}

impl Pending<'_, '_> {
    /// The signature, of [`PublicKey`]'s exact length: raw `r || s` for ES256.
    pub fn signature(&self) -> &[u8] {
        &self.untrusted.signature
    }

    /// The session, once the caller has checked the signature: `valid` is its answer.
    pub fn finish(self, valid: bool, now: UnixMillis) -> Result<(Session, UnixMillis), JwtError> {
        if !valid {
            return Err(JwtError::Invalid);
        }
        let claims = SessionClaims::parse(&self.untrusted.claims).ok_or(JwtError::Invalid)?;
        self.verifier.claims(&claims, now)
    }
}

/// A base64url member of a JWK, decoded.
fn member(jwk: &Value, name: &str) -> Option<Vec<u8>> {
    Base64UrlUnpadded::decode_vec(jwk.get(name)?.as_str()?).ok()
}

/// The bit length of a big-endian unsigned integer.
fn bit_length(bytes: &[u8]) -> usize {
    let significant = &bytes[bytes.iter().take_while(|b| **b == 0).count()..];
    match significant.first() {
        Some(first) => significant.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

fn parse_jwks(text: &str) -> Result<HashMap<String, PublicKey>, ConfigError> {
    let bad = |problem| ConfigError::invalid("JWT_JWKS", problem);
    let jwks = json::parse(text.as_bytes());
    let listed = (jwks.as_ref())
        .and_then(|set| set.get("keys")?.as_array())
        .ok_or_else(|| bad("must be a JSON Web Key Set: {\"keys\": [...]}"))?;
    let mut keys = HashMap::new();
    for value in listed {
        let kid = value["kid"]
            .as_str()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| bad("every key needs a non-empty \"kid\""))?
            .to_string();
        let key = public_key(value)?;
        if let Some(alg) = value.get("alg") {
            if alg.as_str() != Some(key.alg.name()) {
                return Err(bad("a key's \"alg\" does not match its type"));
            }
        }
        if keys.insert(kid, key).is_some() {
            return Err(bad("two keys share a \"kid\""));
        }
    }
    Ok(keys)
}

/// One JWK's type and shape: the curve point's coordinates of the curve's size, an RSA
/// modulus of at least [`MIN_RSA_BITS`] and a sane exponent. Whether a point lies on its
/// curve is for the crypto to find when it first uses the key (WebCrypto's import in the
/// worker, which logs why): such a key verifies no token.
fn public_key(jwk: &Value) -> Result<PublicKey, ConfigError> {
    let bad = |problem| ConfigError::invalid("JWT_JWKS", problem);
    let invalid = || bad("a key's material is invalid");
    let sized = |name: &str, len: usize| member(jwk, name).is_some_and(|m| m.len() == len);
    let kty = jwk["kty"]
        .as_str()
        .ok_or_else(|| bad("a key is not a valid JWK"))?;
    let (alg, members, signature_len): (_, &[&str], _) = match (kty, jwk["crv"].as_str()) {
        ("EC", Some("P-256")) if sized("x", 32) && sized("y", 32) => {
            (KeyAlg::Es256, &["kty", "crv", "x", "y"], 64)
        }
        ("OKP", Some("Ed25519")) if sized("x", 32) => (KeyAlg::EdDsa, &["kty", "crv", "x"], 64),
        ("EC", Some("P-256")) | ("OKP", Some("Ed25519")) => return Err(invalid()),
        ("RSA", _) => {
            let bits = member(jwk, "n").map_or(0, |n| bit_length(&n));
            if bits < MIN_RSA_BITS {
                return Err(bad("RSA keys must be at least 2048 bits"));
            }
            let e = member(jwk, "e").map_or(0, |e| bit_length(&e));
            if !(2..=64).contains(&e) {
                return Err(invalid());
            }
            (KeyAlg::Rs256, &["kty", "n", "e"], bits.div_ceil(8))
        }
        _ => return Err(bad("only EC P-256, OKP Ed25519 and RSA keys are supported")),
    };
    // Every member named here was read as a string above.
    let public = members.iter().fold(Obj::new(), |o, m| {
        o.str(m, jwk[*m].as_str().unwrap_or_default())
    });
    Ok(PublicKey {
        alg,
        jwk: public.done(),
        signature_len,
        #[cfg(not(target_arch = "wasm32"))]
        native: native::NativeKey::parse(alg, jwk),
    })
}

/// The jwt-compact algorithms, for native builds: tests, benchmarks and fuzzing. The worker
/// leaves them out and asks WebCrypto (`edge/webcrypto.rs`).
#[cfg(not(target_arch = "wasm32"))]
mod native {
    use jwt_compact::{
        alg::{Ed25519, Es256, Rsa, RsaPublicKey},
        jwk::JsonWebKey,
        Algorithm, AlgorithmSignature,
    };
    use serde_json::Value;

    use super::KeyAlg;

    pub(super) enum NativeKey {
        Es256(<Es256 as Algorithm>::VerifyingKey),
        EdDsa(<Ed25519 as Algorithm>::VerifyingKey),
        Rs256(Box<RsaPublicKey>),
    }

    impl NativeKey {
        pub(super) fn parse(alg: KeyAlg, jwk: &Value) -> Option<NativeKey> {
            let jwk: JsonWebKey<'_> = serde_json::from_value(jwk.clone()).ok()?;
            Some(match alg {
                KeyAlg::Es256 => NativeKey::Es256((&jwk).try_into().ok()?),
                KeyAlg::EdDsa => NativeKey::EdDsa((&jwk).try_into().ok()?),
                KeyAlg::Rs256 => NativeKey::Rs256(Box::new((&jwk).try_into().ok()?)),
            })
        }

        pub(super) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
            fn check<A: Algorithm>(alg: A, key: &A::VerifyingKey, m: &[u8], s: &[u8]) -> bool {
                A::Signature::try_from_slice(s).is_ok_and(|s| alg.verify_signature(&s, key, m))
            }
            match self {
                NativeKey::Es256(k) => check(Es256, k, message, signature),
                NativeKey::EdDsa(k) => check(Ed25519, k, message, signature),
                NativeKey::Rs256(k) => check(Rsa::rs256(), k, message, signature),
            }
        }
    }
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
