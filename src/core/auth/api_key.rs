//! Team API keys: `sk-` (secret, server integrations) and `dk-` (device, local agents).
//!
//! Format: prefix + 32 base62 characters of randomness + 6 base62 characters of checksum,
//! 41 characters in all. The checksum is CRC32 over the prefix and the random part, so a
//! mistyped or truncated key is rejected before any database lookup. Only the SHA-256 of
//! the whole key is stored.

use sha2::{Digest, Sha256};

use super::super::ids::fill_random;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
pub const KEY_LEN: usize = 3 + RANDOM_LEN + CHECKSUM_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Secret,
    Device,
}

impl KeyKind {
    pub fn prefix(self) -> &'static str {
        match self {
            KeyKind::Secret => "sk-",
            KeyKind::Device => "dk-",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Secret => "secret",
            KeyKind::Device => "device",
        }
    }
    pub fn parse(s: &str) -> Option<KeyKind> {
        match s {
            "secret" => Some(KeyKind::Secret),
            "device" => Some(KeyKind::Device),
            _ => None,
        }
    }
    /// The kind a bearer token claims by its prefix, whether or not it is well formed.
    pub fn of_token(token: &str) -> Option<KeyKind> {
        if token.starts_with("sk-") {
            Some(KeyKind::Secret)
        } else if token.starts_with("dk-") {
            Some(KeyKind::Device)
        } else {
            None
        }
    }
}

/// A key whose format and checksum are right; it may still be unknown or revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WellFormedKey<'a> {
    pub kind: KeyKind,
    pub key: &'a str,
}

impl WellFormedKey<'_> {
    /// The lookup value stored in D1: lower-case hex SHA-256 of the whole key.
    pub fn hash(&self) -> String {
        hash_key(self.key)
    }
}

pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[(byte >> 4) as usize]));
        hex.push(char::from(b"0123456789abcdef"[(byte & 15) as usize]));
    }
    hex
}

/// Checks prefix, length, alphabet and checksum, in memory. Typos and random garbage never
/// reach D1; the checksum is public, though, so a deliberately well-formed forgery costs
/// one D1 read, bounded by the per-IP limit (SECURITY.md).
pub fn parse(token: &str) -> Option<WellFormedKey<'_>> {
    let kind = KeyKind::of_token(token)?;
    if token.len() != KEY_LEN || !token[3..].bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let (body, checksum) = token.split_at(KEY_LEN - CHECKSUM_LEN);
    if checksum != encode_checksum(crc32(body.as_bytes())) {
        return None;
    }
    Some(WellFormedKey { kind, key: token })
}

/// A new key from the OS random source.
pub fn generate(kind: KeyKind) -> String {
    let mut key = String::with_capacity(KEY_LEN);
    key.push_str(kind.prefix());
    // Rejection sampling keeps every base62 character equally likely.
    let mut pool = [0u8; 64];
    while key.len() < 3 + RANDOM_LEN {
        fill_random(&mut pool);
        for &b in &pool {
            if b < 248 && key.len() < 3 + RANDOM_LEN {
                key.push(char::from(BASE62[(b % 62) as usize]));
            }
        }
    }
    let checksum = encode_checksum(crc32(key.as_bytes()));
    key.push_str(&checksum);
    key
}

/// What is shown after creation: `sk-AbCdE...wxyz`, 12 of 41 characters.
pub fn preview(key: &str) -> String {
    format!("{}...{}", &key[..8], &key[key.len() - 4..])
}

fn encode_checksum(mut value: u32) -> String {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// CRC-32 (IEEE 802.3, reflected, as zlib), bitwise: keys are 35 bytes, so no table.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn generated_keys_parse_and_have_the_contract_format() {
        for kind in [KeyKind::Secret, KeyKind::Device] {
            let key = generate(kind);
            assert_eq!(key.len(), 41);
            assert!(key.starts_with(kind.prefix()));
            assert!(key[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
            assert_eq!(parse(&key).map(|k| k.kind), Some(kind));
        }
        assert_ne!(generate(KeyKind::Secret), generate(KeyKind::Secret));
    }

    #[test]
    fn truncated_altered_or_wrong_checksum_keys_are_rejected() {
        let key = generate(KeyKind::Secret);
        assert!(parse(&key[..40]).is_none(), "truncated");
        assert!(parse(&format!("{key}x")).is_none(), "extended");
        for i in 3..key.len() {
            let mut altered = key.clone().into_bytes();
            altered[i] = if altered[i] == b'a' { b'b' } else { b'a' };
            let altered = String::from_utf8(altered).unwrap();
            assert!(parse(&altered).is_none(), "altered at {i}: {altered}");
        }
        let swapped = format!("dk-{}", &key[3..]);
        assert!(
            parse(&swapped).is_none(),
            "the prefix is covered by the checksum"
        );
        assert!(parse("sk-").is_none());
        assert!(parse(&format!("sk-{}", "é".repeat(19))).is_none());
    }

    #[test]
    fn hash_is_sha256_hex_of_the_whole_key() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn preview_shows_at_most_a_third() {
        let key = generate(KeyKind::Device);
        let p = preview(&key);
        assert_eq!(p.len(), 15);
        assert!(p.starts_with(&key[..8]) && p.ends_with(&key[37..]));
        assert!((p.len() - 3) * 3 <= key.len());
    }
}
