//! Sealed credential blobs (`crypto::KeyRing`), with a ring from a fixed two-key config.
//!
//! - `Open`: any text with any associated data. It never opens (no success on garbage), and
//!   the error is the right one of Malformed / UnknownKey / Rejected for the blob's shape.
//! - `Forged`: a well-formed blob around fuzzer bytes: never opens, never Malformed.
//! - `RoundTrip`: seal then open gives the plaintext back, under either active key; other
//!   associated data, or any one-byte change to the blob, makes it fail.
//! - `Aad`: `credential_aad` never gives two (team, provider) pairs the same bytes.
//! - `Config`: any `CREDENTIAL_KEYS` text; a ring that loads seals and opens.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64ct::{Base64UrlUnpadded, Encoding};
use edge_credentials::core::crypto::{blob_key_id, credential_aad, KeyRing, OpenError};
use libfuzzer_sys::fuzz_target;

const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn rings() -> &'static [KeyRing; 2] {
    static RINGS: OnceLock<[KeyRing; 2]> = OnceLock::new();
    RINGS.get_or_init(|| {
        let ring = |active: &str| {
            KeyRing::from_config(&format!(
                r#"{{"active": "{active}", "keys": {{"k1": "{K1}", "k-2_x": "{K2}"}}}}"#
            ))
            .unwrap()
        };
        [ring("k1"), ring("k-2_x")]
    })
}

#[derive(Arbitrary, Debug)]
enum KeyId<'a> {
    K1,
    K2,
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    Open {
        blob: &'a str,
        aad: &'a [u8],
    },
    Forged {
        key_id: KeyId<'a>,
        body: &'a [u8],
        aad: &'a [u8],
    },
    RoundTrip {
        plaintext: &'a [u8],
        aad: &'a [u8],
        other_aad: &'a [u8],
        second_key: bool,
        flip: Option<(u16, u8)>,
    },
    Aad {
        a: (&'a str, &'a str),
        b: (&'a str, &'a str),
    },
    Config(&'a str),
}

fn valid_key_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What `open` must say about a blob that was not sealed with this associated data.
fn expected_error(blob: &str) -> OpenError {
    let mut parts = blob.splitn(3, '.');
    let (Some("v1"), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return OpenError::Malformed;
    };
    if !valid_key_id(id) {
        return OpenError::Malformed;
    }
    match Base64UrlUnpadded::decode_vec(body) {
        Ok(bytes) if bytes.len() >= 12 + 16 => {}
        _ => return OpenError::Malformed,
    }
    if id == "k1" || id == "k-2_x" {
        OpenError::Rejected
    } else {
        OpenError::UnknownKey
    }
}

fn open_garbage(blob: &str, aad: &[u8]) {
    let want = expected_error(blob);
    for ring in rings() {
        assert_eq!(ring.open(blob, aad), Err(want), "{blob:?}");
    }
    assert_eq!(
        blob_key_id(blob).is_some(),
        want != OpenError::Malformed,
        "{blob:?}"
    );
}

fuzz_target!(|input: Input<'_>| match input {
    Input::Open { blob, aad } => open_garbage(blob, aad),
    Input::Forged { key_id, body, aad } => {
        let id = match key_id {
            KeyId::K1 => "k1",
            KeyId::K2 => "k-2_x",
            KeyId::Other(s) => s,
        };
        let blob = format!("v1.{id}.{}", Base64UrlUnpadded::encode_string(body));
        if valid_key_id(id) && body.len() >= 28 {
            assert_ne!(expected_error(&blob), OpenError::Malformed);
        }
        open_garbage(&blob, aad);
    }
    Input::RoundTrip {
        plaintext,
        aad,
        other_aad,
        second_key,
        flip,
    } => {
        let [r1, r2] = rings();
        let (sealer, other) = if second_key { (r2, r1) } else { (r1, r2) };
        let blob = sealer.seal(plaintext, aad);
        let active = sealer.active_key_id();
        assert!(blob.starts_with(&format!("v1.{active}.")), "{blob}");
        assert_eq!(blob_key_id(&blob), Some(active));
        assert_eq!(sealer.open(&blob, aad).as_deref(), Ok(plaintext));
        // Rotation: the other ring holds the same keys and opens it too.
        assert_eq!(other.open(&blob, aad).as_deref(), Ok(plaintext));
        if other_aad != aad {
            assert_eq!(sealer.open(&blob, other_aad), Err(OpenError::Rejected));
        }
        if let Some((pos, mask)) = flip {
            let mut bytes = blob.clone().into_bytes();
            let pos = pos as usize % bytes.len();
            bytes[pos] ^= mask.max(1);
            if let Ok(changed) = String::from_utf8(bytes) {
                let got = sealer.open(&changed, aad);
                assert!(got.is_err(), "a changed blob opened: {changed:?}");
            }
        }
    }
    Input::Aad { a, b } => {
        if a != b {
            assert_ne!(
                credential_aad(a.0, a.1),
                credential_aad(b.0, b.1),
                "{a:?} {b:?}"
            );
        }
    }
    Input::Config(text) => {
        if let Ok(ring) = KeyRing::from_config(text) {
            let blob = ring.seal(b"comfyui-abc123", b"aad");
            assert_eq!(blob_key_id(&blob), Some(ring.active_key_id()));
            assert_eq!(
                ring.open(&blob, b"aad").as_deref(),
                Ok(&b"comfyui-abc123"[..])
            );
            assert_eq!(ring.open(&blob, b"aae"), Err(OpenError::Rejected));
        }
    }
});
