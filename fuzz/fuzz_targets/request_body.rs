//! Request bodies: `body::check_headers` and `body::parse` into every body type a handler
//! reads (PutCredential, PatchCredential, CreateTeam, SetMemberRole, CreateApiKey), then
//! each type's validation, with the request time fixed.
//!
//! - Errors are only 400 or 413 (413 exactly when over 16 KiB), and their message is one of
//!   the fixed texts, naming at most a field: it never echoes a value.
//! - A body that parses is UTF-8 JSON, an object with no repeated key at any depth (checked
//!   by an independent walker), only the type's fields and all its required ones, and the
//!   parsed values are the ones written. A valid JSON body with a repeated key is refused
//!   as such, and one without is never refused as such.
//! - Validation accepts exactly what the contract allows (lengths, blanks, control
//!   characters, roles, kinds, scopes, future `expires_at`), and the credential preview
//!   never shows more than a third of the key.
//! - `check_headers`: 415 unless the media type is application/json, 413 for a declared
//!   length over 16 KiB, otherwise fine.
#![no_main]

use std::collections::HashSet;

use arbitrary::Arbitrary;
use edge_credentials::core::{
    access::{Role, Scope},
    api_keys::CreateApiKey,
    auth::api_key::KeyKind,
    body::{self, MAX_BODY_BYTES},
    credentials::{self, PatchCredential, PutCredential},
    error::{ApiError, ErrorKind},
    teams::{CreateTeam, SetMemberRole},
    time::parse_rfc3339,
};
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

const NOW: i64 = 1_750_000_000_000;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    content_type: Option<&'a str>,
    content_length: Option<&'a str>,
    body: &'a [u8],
}

/// True when some object in the document repeats a key (after unescaping).
struct Repeats(bool);

impl<'de> Deserialize<'de> for Repeats {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Repeats;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Repeats, E> {
                Ok(Repeats(false))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Repeats, E> {
                Ok(Repeats(false))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Repeats, E> {
                Ok(Repeats(false))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Repeats, E> {
                Ok(Repeats(false))
            }
            fn visit_str<E>(self, _: &str) -> Result<Repeats, E> {
                Ok(Repeats(false))
            }
            fn visit_unit<E>(self) -> Result<Repeats, E> {
                Ok(Repeats(false))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Repeats, A::Error> {
                let mut any = false;
                while let Some(Repeats(r)) = seq.next_element()? {
                    any |= r;
                }
                Ok(Repeats(any))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Repeats, A::Error> {
                let mut seen = HashSet::new();
                let mut any = false;
                while let Some(key) = map.next_key::<String>()? {
                    any |= !seen.insert(key);
                    any |= map.next_value::<Repeats>()?.0;
                }
                Ok(Repeats(any))
            }
        }
        d.deserialize_any(V)
    }
}

/// What a body is, independently of `body.rs`: `None` when it is not valid JSON text.
struct Doc {
    value: Value,
    repeats: bool,
}

fn doc(bytes: &[u8]) -> Option<Doc> {
    let text = std::str::from_utf8(bytes).ok()?;
    let value: Value = serde_json::from_str(text).ok()?;
    let repeats = serde_json::from_str::<Repeats>(text).ok()?.0;
    Some(Doc { value, repeats })
}

fn strip_digits(s: &str) -> String {
    s.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// The error is of a contract kind and its message a fixed text.
fn check_error(e: &ApiError, bytes: &[u8], doc: &Option<Doc>, fields: &[&str], required: &[&str]) {
    if bytes.len() > MAX_BODY_BYTES {
        assert_eq!(e.kind, ErrorKind::PayloadTooLarge);
        assert_eq!(e.kind.status(), 413);
        assert_eq!(e.message, "Request body is larger than 16 KiB");
        return;
    }
    assert_eq!(e.kind, ErrorKind::InvalidRequest, "{}", e.message);
    assert_eq!(e.kind.status(), 400);
    assert!(e.retry_after.is_none() && e.internal_detail.is_none());
    let m = e.message.as_ref();
    if let Some(d) = doc {
        // Valid JSON: repeated keys are found first, and only when there are some; then
        // anything but an object is refused (serde would read an array by position).
        assert_eq!(m == "Request body repeats a field", d.repeats, "{m}");
        let not_object = m == "Request body is of the wrong type: it must be a JSON object";
        assert_eq!(not_object, !d.repeats && !d.value.is_object(), "{m}");
    }
    if let Some(name) = m
        .strip_prefix("Unknown field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        let obj = doc
            .as_ref()
            .and_then(|d| d.value.as_object())
            .expect("unknown field in a non-object");
        // Only a name shaped like a field is echoed (a key may hold a secret).
        assert!(
            (1..=32).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{m}"
        );
        assert!(obj.contains_key(name) && !fields.contains(&name), "{m}");
        return;
    }
    if m == "Request body has an unknown field" {
        let obj = doc
            .as_ref()
            .and_then(|d| d.value.as_object())
            .expect("unknown field in a non-object");
        assert!(obj.keys().any(|k| !fields.contains(&k.as_str())), "{m}");
        return;
    }
    if let Some(name) = m
        .strip_prefix("Missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        assert!(required.contains(&name), "{m}");
        return;
    }
    if let Some(rest) = m.strip_prefix("Request body has a field of the wrong type: `") {
        let (name, _) = rest.split_once('`').expect("no field named");
        let obj = doc
            .as_ref()
            .and_then(|d| d.value.as_object())
            .expect("wrong type in a non-object");
        assert!(fields.contains(&name) && obj.contains_key(name), "{m}");
        return;
    }
    let fixed = strip_digits(m);
    assert!(
        [
            "Request body is not valid UTF-",
            "Request body is not valid JSON (line , column )",
            "Request body repeats a field",
            "Request body is of the wrong type: it must be a JSON object",
        ]
        .contains(&fixed.as_str()),
        "unexpected message: {m}"
    );
    if fixed == "Request body is not valid UTF-" {
        assert!(std::str::from_utf8(bytes).is_err());
    }
}

/// A body that parsed as `T`: exactly an object of the type's fields.
fn check_ok<'d>(
    bytes: &[u8],
    doc: &'d Option<Doc>,
    fields: &[&str],
    required: &[&str],
) -> &'d Map<String, Value> {
    assert!(bytes.len() <= MAX_BODY_BYTES);
    let d = doc.as_ref().expect("a body that is not JSON parsed");
    assert!(!d.repeats, "a body with a repeated key parsed");
    let obj = d.value.as_object().expect("a non-object body parsed");
    assert!(obj.keys().all(|k| fields.contains(&k.as_str())), "{obj:?}");
    assert!(required.iter().all(|k| obj.contains_key(*k)), "{obj:?}");
    obj
}

fn parse<T: body::FromBody>(
    bytes: &[u8],
    doc: &Option<Doc>,
    fields: &[&str],
    required: &[&str],
) -> Option<T> {
    match body::parse::<T>(bytes) {
        Ok(t) => {
            check_ok(bytes, doc, fields, required);
            Some(t)
        }
        Err(e) => {
            check_error(&e, bytes, doc, fields, required);
            None
        }
    }
}

/// The contract's rule for names and user ids.
fn good_text(s: &str, max: usize) -> bool {
    let n = s.chars().count();
    (1..=max).contains(&n) && !s.trim().is_empty() && !s.chars().any(char::is_control)
}

fn check_body(bytes: &[u8]) {
    let doc = doc(bytes);
    let obj = |d: &Option<Doc>| d.as_ref().unwrap().value.as_object().unwrap().clone();

    if let Some(put) =
        parse::<PutCredential>(bytes, &doc, &["api_key", "cloud_fallback"], &["api_key"])
    {
        let o = obj(&doc);
        assert_eq!(o["api_key"].as_str(), Some(put.api_key.as_str()));
        let fallback = o
            .get("cloud_fallback")
            .map(|v| v.as_bool().expect("not a bool"));
        assert_eq!(put.cloud_fallback, fallback.unwrap_or(false));
        let valid = put.validate();
        assert_eq!(
            valid.is_ok(),
            good_text(&put.api_key, 512),
            "{:?}",
            put.api_key
        );
        if let Err(e) = valid {
            assert_eq!(e.kind, ErrorKind::InvalidRequest);
        } else {
            let key: Vec<char> = put.api_key.chars().collect();
            let p = credentials::preview(&put.api_key);
            let (head, tail) = p.split_once("...").expect("preview without ...");
            let shown = head.chars().count() + tail.chars().count();
            assert!(shown * 3 <= key.len() && shown <= 12, "{p}");
            assert!(put.api_key.starts_with(head) && put.api_key.ends_with(tail));
        }
    }

    if let Some(patch) =
        parse::<PatchCredential>(bytes, &doc, &["cloud_fallback"], &["cloud_fallback"])
    {
        assert_eq!(
            obj(&doc)["cloud_fallback"].as_bool(),
            Some(patch.cloud_fallback)
        );
    }

    if let Some(team) = parse::<CreateTeam>(bytes, &doc, &["name"], &["name"]) {
        assert_eq!(obj(&doc)["name"].as_str(), Some(team.name.as_str()));
        assert_eq!(team.validate().is_ok(), good_text(&team.name, 100));
    }

    if let Some(member) = parse::<SetMemberRole>(bytes, &doc, &["role"], &["role"]) {
        assert_eq!(obj(&doc)["role"].as_str(), Some(member.role.as_str()));
        let want = match member.role.as_str() {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        };
        let got = member.role();
        assert_eq!(got.as_ref().ok().copied(), want);
        if let Err(e) = got {
            assert_eq!(e.kind, ErrorKind::InvalidRequest);
        }
    }

    if let Some(create) = parse::<CreateApiKey>(
        bytes,
        &doc,
        &["name", "kind", "scopes", "expires_at"],
        &["name", "kind"],
    ) {
        let o = obj(&doc);
        assert_eq!(o["name"].as_str(), Some(create.name.as_str()));
        assert_eq!(o["kind"].as_str(), Some(create.kind.as_str()));
        let kind = KeyKind::parse(&create.kind);
        let scopes: Option<Option<Vec<Scope>>> = match (&kind, &create.scopes) {
            (Some(KeyKind::Device), None) => Some(Some(vec![Scope::CloudProvidersRead])),
            (Some(KeyKind::Device), Some(_)) => None,
            (Some(KeyKind::Secret), None) => Some(Some(Scope::ALL.to_vec())),
            (Some(KeyKind::Secret), Some(names)) => {
                let mut s: Vec<Scope> = Vec::new();
                let mut ok = !names.is_empty();
                for n in names {
                    match n.as_str() {
                        "cloud_providers:read" => s.push(Scope::CloudProvidersRead),
                        "cloud_providers:write" => s.push(Scope::CloudProvidersWrite),
                        _ => ok = false,
                    }
                }
                s.sort();
                s.dedup();
                Some(ok.then_some(s))
            }
            (None, _) => None,
        };
        let expires = create.expires_at.as_deref().map(parse_rfc3339);
        let expires_ok = match expires {
            None => true,
            Some(Some(at)) => at > NOW,
            Some(None) => false,
        };
        let name_ok = good_text(&create.name, 100);
        let name = create.name.clone();
        match create.validate(NOW) {
            Ok(new) => {
                assert!(name_ok && expires_ok, "{name:?} {expires:?}");
                assert_eq!(Some(new.kind), kind);
                assert_eq!(Some(Some(new.scopes.clone())), scopes);
                assert!(!new.scopes.is_empty());
                assert_eq!(new.expires_at, expires.flatten());
                assert!(new.expires_at.is_none_or(|at| at > NOW));
            }
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::InvalidRequest);
                assert!(
                    !name_ok || !expires_ok || !matches!(scopes, Some(Some(_))),
                    "a valid key request was refused: {}",
                    e.message
                );
            }
        }
    }
}

fn check_headers(content_type: Option<&str>, content_length: Option<&str>) {
    let json = content_type
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    let too_long = content_length
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES as u64);
    match body::check_headers(content_type, content_length) {
        Ok(()) => assert!(json && !too_long),
        Err(e) if e.kind == ErrorKind::UnsupportedMediaType => {
            assert!(!json);
            assert_eq!(e.kind.status(), 415);
        }
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::PayloadTooLarge, "{}", e.message);
            assert!(json && too_long);
            assert_eq!(e.kind.status(), 413);
        }
    }
}

fuzz_target!(|input: Input<'_>| {
    check_headers(input.content_type, input.content_length);
    check_body(input.body);
});
