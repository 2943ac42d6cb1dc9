//! `sk-`/`dk-` API key parsing (`auth::api_key::parse`), against an independent model of the
//! format: prefix + 32 base62 + 6 base62 digits of CRC-32 (computed here with crc32fast).
//!
//! - `Raw`: any token. `parse` must accept exactly what the model accepts, with the right
//!   kind, and the bearer parser must agree; garbage never passes.
//! - `Built`: a key built from fuzzer bytes by the model must parse (round trip); changing
//!   any one character, or swapping the prefix, must make it fail.
#![no_main]

use arbitrary::Arbitrary;
use edge_credentials::core::auth::{
    api_key::{self, KeyKind, KEY_LEN},
    bearer::{self, Bearer},
};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    Raw(&'a str),
    Built {
        device: bool,
        random: [u8; 32],
        /// Position (mod 41) and replacement byte for a one-character change.
        change: Option<(u8, u8)>,
        swap_prefix: bool,
    },
}

fn checksum(body: &str) -> String {
    let mut value = crc32fast::hash(body.as_bytes());
    let mut out = [0u8; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(out.to_vec()).unwrap()
}

/// The format as the contract states it.
fn model(token: &str) -> Option<KeyKind> {
    let kind = if token.starts_with("sk-") {
        KeyKind::Secret
    } else if token.starts_with("dk-") {
        KeyKind::Device
    } else {
        return None;
    };
    let rest = token.as_bytes().get(3..)?;
    if token.len() != 41 || !rest.iter().all(|b| BASE62.contains(b)) {
        return None;
    }
    (token[35..] == checksum(&token[..35])).then_some(kind)
}

fn check(token: &str) -> bool {
    let parsed = api_key::parse(token);
    let want = model(token);
    assert_eq!(parsed.as_ref().map(|k| k.kind), want, "{token:?}");
    if let Some(k) = &parsed {
        assert_eq!(k.key, token);
        assert_eq!(KEY_LEN, 41);
        let hash = k.hash();
        let digest = Sha256::digest(token.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hash, hex);
        let preview = api_key::preview(token);
        assert_eq!(preview.len(), 15);
        assert!(preview.starts_with(&token[..8]) && preview.ends_with(&token[37..]));
    }
    // The bearer parser sorts the same token the same way.
    if token.len() < 8000 {
        let header = format!("Bearer {token}");
        let trimmed = token.trim();
        match bearer::parse(Some(&header)) {
            Ok(Bearer::ApiKey(k)) => assert_eq!(Some(k.kind), model(trimmed)),
            Ok(Bearer::Jwt(t)) => assert!(KeyKind::of_token(t).is_none()),
            Err(_) => assert!(trimmed.is_empty() || model(trimmed).is_none()),
        }
    }
    parsed.is_some()
}

fuzz_target!(|input: Input<'_>| match input {
    Input::Raw(token) => {
        check(token);
    }
    Input::Built {
        device,
        random,
        change,
        swap_prefix,
    } => {
        let kind = if device {
            KeyKind::Device
        } else {
            KeyKind::Secret
        };
        let mut key = String::from(kind.prefix());
        key.extend(random.iter().map(|b| char::from(BASE62[*b as usize % 62])));
        key.push_str(&checksum(&key));
        assert!(check(&key), "a well-formed key was refused: {key}");
        if let Some((pos, byte)) = change {
            let mut bytes = key.clone().into_bytes();
            let pos = pos as usize % bytes.len();
            if bytes[pos] != byte && byte.is_ascii() {
                bytes[pos] = byte;
                let changed = String::from_utf8(bytes).unwrap();
                assert!(!check(&changed), "a one-character change passed: {changed}");
            }
        }
        if swap_prefix {
            let other = if device { "sk-" } else { "dk-" };
            let swapped = format!("{other}{}", &key[3..]);
            assert!(!check(&swapped), "the prefix is not covered: {swapped}");
        }
    }
});
