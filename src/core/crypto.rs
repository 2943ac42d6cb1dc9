//! Encryption at rest: AES-256-GCM with a key ring.
//!
//! A sealed value is the text `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`: it names
//! its format version and the key that sealed it, so keys can rotate while old rows stay
//! readable. Every seal draws a fresh random 96-bit nonce. The associated data binds a
//! ciphertext to its team and provider: copied to another row, it no longer opens.

use aes_gcm::{
    aead::{Aead, Payload},
    Aes256Gcm, Key, KeyInit, Nonce,
};
use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use serde_json::Value;

use super::{config::ConfigError, ids::fill_random};

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a sealed value did not open. Deliberately vague: the caller learns nothing useful
/// about a forged or damaged blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Not a blob of a known format.
    Malformed,
    /// Sealed under a key id the ring no longer has.
    UnknownKey,
    /// Wrong key, wrong associated data, or altered bytes.
    Rejected,
}

pub struct KeyRing {
    active: String,
    /// A handful at most: looked up by a scan.
    keys: Vec<(String, Aes256Gcm)>,
}

fn valid_key_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl KeyRing {
    pub fn from_config(text: &str) -> Result<KeyRing, ConfigError> {
        let bad = |problem| ConfigError::invalid("CREDENTIAL_KEYS", problem);
        // `CREDENTIAL_KEYS`: `{"active": "<id>", "keys": {"<id>": "<base64 of 32 bytes>", ...}}`,
        // and nothing else.
        let shape =
            || bad("must be JSON: {\"active\": \"<id>\", \"keys\": {\"<id>\": \"<base64>\"}}");
        let config = super::json::parse(text.as_bytes()).ok_or_else(shape)?;
        let members = config.as_object().ok_or_else(shape)?;
        let active = config
            .get("active")
            .and_then(Value::as_str)
            .ok_or_else(shape)?;
        let listed = config
            .get("keys")
            .and_then(Value::as_object)
            .ok_or_else(shape)?;
        if members.len() != 2 {
            return Err(shape());
        }
        let mut keys = Vec::new();
        for (id, encoded) in listed {
            let encoded = encoded.as_str().ok_or_else(shape)?;
            if !valid_key_id(id) {
                return Err(bad("key ids are 1-64 characters of A-Z a-z 0-9 - _"));
            }
            let bytes =
                Base64::decode_vec(encoded.trim()).map_err(|_| bad("keys must be base64"))?;
            if bytes.len() != 32 {
                return Err(bad("every key must be 32 bytes (AES-256)"));
            }
            keys.push((
                id.clone(),
                Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
            ));
        }
        let ring = KeyRing {
            active: active.to_string(),
            keys,
        };
        if ring.key(active).is_none() {
            return Err(bad("\"active\" must name one of \"keys\""));
        }
        Ok(ring)
    }

    fn key(&self, id: &str) -> Option<&Aes256Gcm> {
        self.keys.iter().find(|(k, _)| k == id).map(|(_, c)| c)
    }

    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    /// Seals under the active key with a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8], associated_data: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        self.seal_with_nonce(plaintext, associated_data, nonce)
    }

    fn seal_with_nonce(
        &self,
        plaintext: &[u8],
        associated_data: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> String {
        let cipher = self
            .key(&self.active)
            .expect("the active key is in the ring");
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: associated_data,
                },
            )
            .expect("AES-GCM encryption of a bounded message cannot fail");
        let mut bytes = Vec::with_capacity(NONCE_LEN + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        format!(
            "{VERSION}.{}.{}",
            self.active,
            Base64UrlUnpadded::encode_string(&bytes)
        )
    }

    pub fn open(&self, blob: &str, associated_data: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (key_id, bytes) = parse_blob(blob)?;
        let cipher = self.key(key_id).ok_or(OpenError::UnknownKey)?;
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: associated_data,
                },
            )
            .map_err(|_| OpenError::Rejected)
    }
}

/// The key id a blob names, without opening it.
pub fn blob_key_id(blob: &str) -> Option<&str> {
    parse_blob(blob).ok().map(|(id, _)| id)
}

fn parse_blob(blob: &str) -> Result<(&str, Vec<u8>), OpenError> {
    let mut parts = blob.splitn(3, '.');
    let (Some(VERSION), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(OpenError::Malformed);
    };
    if !valid_key_id(key_id) {
        return Err(OpenError::Malformed);
    }
    let bytes = Base64UrlUnpadded::decode_vec(body).map_err(|_| OpenError::Malformed)?;
    if bytes.len() < NONCE_LEN + TAG_LEN {
        return Err(OpenError::Malformed);
    }
    Ok((key_id, bytes))
}

/// What a credential's ciphertext is bound to. Length-prefixed fields, so no two
/// (team, provider) pairs give the same bytes.
pub fn credential_aad(team_id: &str, provider_name: &str) -> Vec<u8> {
    format!(
        "edge-credentials/credential/v1|{}:{team_id}|{}:{provider_name}",
        team_id.len(),
        provider_name.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    fn ring(active: &str) -> KeyRing {
        KeyRing::from_config(&format!(
            r#"{{"active": "{active}", "keys": {{"k1": "{K1}", "k2": "{K2}"}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn round_trip_names_version_and_key() {
        let aad = credential_aad("team-a", "comfy_cloud");
        let blob = ring("k1").seal(b"comfyui-abc123", &aad);
        assert!(blob.starts_with("v1.k1."), "{blob}");
        assert_eq!(blob_key_id(&blob), Some("k1"));
        assert!(!blob.contains("comfyui"));
        assert_eq!(ring("k1").open(&blob, &aad).unwrap(), b"comfyui-abc123");
        // After rotation the old key still opens old blobs.
        assert_eq!(ring("k2").open(&blob, &aad).unwrap(), b"comfyui-abc123");
    }

    #[test]
    fn a_ciphertext_moved_to_another_team_or_provider_fails() {
        let r = ring("k1");
        let blob = r.seal(b"secret", &credential_aad("team-a", "comfy_cloud"));
        assert_eq!(
            r.open(&blob, &credential_aad("team-b", "comfy_cloud")),
            Err(OpenError::Rejected)
        );
        assert_eq!(
            r.open(&blob, &credential_aad("team-a", "other_cloud")),
            Err(OpenError::Rejected)
        );
        // No ambiguity from concatenation.
        assert_ne!(
            credential_aad("a\0provider=b", "c"),
            credential_aad("a", "b\0provider=c")
        );
    }

    #[test]
    fn every_single_bit_flip_and_every_truncation_fails_cleanly() {
        let r = ring("k1");
        let aad = credential_aad("t", "p");
        let blob = r.seal(b"the plaintext key", &aad);
        let bytes = blob.as_bytes();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.to_vec();
                flipped[i] ^= 1 << bit;
                if let Ok(text) = std::str::from_utf8(&flipped) {
                    assert!(r.open(text, &aad).is_err(), "flip at byte {i} bit {bit}");
                }
            }
        }
        for len in 0..bytes.len() {
            assert!(r.open(&blob[..len], &aad).is_err(), "truncated to {len}");
        }
        // Bit flips in the raw sealed bytes, re-encoded so only the crypto can object.
        let (_, raw) = parse_blob(&blob).unwrap();
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut flipped = raw.clone();
                flipped[i] ^= 1 << bit;
                let text = format!("v1.k1.{}", Base64UrlUnpadded::encode_string(&flipped));
                assert_eq!(
                    r.open(&text, &aad),
                    Err(OpenError::Rejected),
                    "raw flip {i}:{bit}"
                );
            }
        }
    }

    #[test]
    fn unknown_keys_and_malformed_blobs_are_told_apart_from_forgeries() {
        let r = ring("k1");
        let blob = r.seal(b"x", b"aad").replacen("v1.k1.", "v1.k9.", 1);
        assert_eq!(r.open(&blob, b"aad"), Err(OpenError::UnknownKey));
        for bad in [
            "",
            "v1",
            "v1.k1",
            "v2.k1.AAAA",
            "v1..AAAA",
            "v1.k1.!!!!",
            "v1.k1.AAAA",
        ] {
            assert_eq!(r.open(bad, b"aad"), Err(OpenError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn no_nonce_repeats_in_100_000_seals() {
        let r = ring("k1");
        let mut seen = HashSet::with_capacity(100_000);
        for _ in 0..100_000 {
            let blob = r.seal(b"", b"");
            let (_, bytes) = parse_blob(&blob).unwrap();
            assert!(seen.insert(bytes[..NONCE_LEN].to_vec()), "nonce repeated");
        }
    }

    #[test]
    fn the_key_ring_config_is_checked() {
        let cfg = |s: &str| KeyRing::from_config(s).err().map(|e| e.variable);
        assert_eq!(cfg("nope"), Some("CREDENTIAL_KEYS"));
        assert!(cfg(&format!(r#"{{"active": "k3", "keys": {{"k1": "{K1}"}}}}"#)).is_some());
        assert!(
            cfg(r#"{"active": "k1", "keys": {"k1": "AAAA"}}"#).is_some(),
            "short key"
        );
        assert!(cfg(&format!(
            r#"{{"active": "k.1", "keys": {{"k.1": "{K1}"}}}}"#
        ))
        .is_some());
        assert!(cfg(&format!(
            r#"{{"active": "k1", "keys": {{"k1": "{K1}"}}, "x": 1}}"#
        ))
        .is_some());
        assert!(cfg(r#"{"active": "k1", "keys": {"k1": 1}}"#).is_some());
        assert!(cfg(r#"{"active": 1, "keys": {}}"#).is_some());
        assert!(cfg(&format!(r#"{{"active": "k1", "keys": {{"k1": "{K1}"}}}}"#)).is_none());
    }

    #[test]
    fn fixed_nonce_output_is_stable() {
        // Guards the blob layout: nonce first, then ciphertext and tag.
        let blob = ring("k1").seal_with_nonce(b"", b"", [0; NONCE_LEN]);
        let (_, bytes) = parse_blob(&blob).unwrap();
        assert_eq!(bytes.len(), NONCE_LEN + TAG_LEN);
        assert_eq!(&bytes[..NONCE_LEN], &[0; NONCE_LEN]);
    }
}
