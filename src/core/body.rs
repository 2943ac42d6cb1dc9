//! Request bodies: JSON only, at most 16 KiB, and exactly the fields a schema names.
//! Error messages never echo request values: a mistyped field may hold a secret.

use serde_json::{Map, Value};

use super::{
    error::{ApiError, ErrorKind},
    json,
};

pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Checks the declared type and length before the body is read.
pub fn check_headers(
    content_type: Option<&str>,
    content_length: Option<&str>,
) -> Result<(), ApiError> {
    let media_type = content_type
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media_type.as_deref() != Some("application/json") {
        return Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "Content-Type must be application/json",
        ));
    }
    if let Some(length) = declared_length(content_length) {
        if length > MAX_BODY_BYTES as u64 {
            return Err(too_large());
        }
    }
    Ok(())
}

/// Whether a body can be taken whole in one read, never holding more than `max` bytes: it
/// declares one `Content-Length` of at most `max` and no `Transfer-Encoding` (which HTTP
/// puts before the length). Any other body is read chunk by chunk and counted.
pub fn declared_within(
    content_length: Option<&str>,
    transfer_encoding: Option<&str>,
    max: u64,
) -> bool {
    transfer_encoding.is_none() && declared_length(content_length).is_some_and(|n| n <= max)
}

/// A `Content-Length` as one number of bytes; `None` when there is none or it is not one
/// number (left to counting the bytes as they come).
pub fn declared_length(content_length: Option<&str>) -> Option<u64> {
    content_length.and_then(|v| v.trim().parse::<u64>().ok())
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorKind::PayloadTooLarge,
        "Request body is larger than 16 KiB",
    )
}

/// A body type, read by hand from the parsed object. serde's derive would generate a
/// deserializer per type, and its error text only says where, not which field (issue 16:
/// the seven bodies' derived code was about 5 KB of the gzipped wasm).
pub trait FromBody: Sized {
    /// Every member the body may have; any other is refused.
    const FIELDS: &'static [&'static str];
    /// Reads the members; [`required`] comes last, so a wrong type is reported first.
    fn read(fields: &Fields<'_>) -> Result<Self, ApiError>;
}

/// A body's members, after the checks every body gets.
pub struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    /// Absent is `None`; anything but a string, `null` included, is a wrong type.
    pub fn string(&self, name: &'static str) -> Result<Option<String>, ApiError> {
        self.typed(name, "a string", |v| v.as_str().map(str::to_string))
    }

    /// As [`Fields::string`], but `null` reads as absent.
    pub fn nullable_string(&self, name: &'static str) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            Some(Value::Null) => Ok(None),
            _ => self.string(name),
        }
    }

    pub fn bool(&self, name: &'static str) -> Result<Option<bool>, ApiError> {
        self.typed(name, "a boolean", Value::as_bool)
    }

    pub fn strings(&self, name: &'static str) -> Result<Option<Vec<String>>, ApiError> {
        self.typed(name, "an array of strings", |v| {
            v.as_array()?
                .iter()
                .map(|s| s.as_str().map(str::to_string))
                .collect()
        })
    }

    fn typed<T>(
        &self,
        name: &'static str,
        what: &str,
        read: impl Fn(&Value) -> Option<T>,
    ) -> Result<Option<T>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) => read(v).map(Some).ok_or_else(|| {
                ApiError::invalid_request(format!(
                    "Request body has a field of the wrong type: `{name}` must be {what}"
                ))
            }),
        }
    }
}

/// A member the body must have.
pub fn required<T>(name: &'static str, value: Option<T>) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::invalid_request(format!("Missing field `{name}`")))
}

pub fn parse<T: FromBody>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::invalid_request("Request body is not valid UTF-8"))?;
    let parsed = reject_duplicate_keys(text)?;
    let Some(members) = parsed.as_object() else {
        return Err(ApiError::invalid_request(
            "Request body is of the wrong type: it must be a JSON object",
        ));
    };
    if let Some(name) = members.keys().find(|k| !T::FIELDS.contains(&k.as_str())) {
        // Only a name shaped like ours is echoed: a client may have put a secret in a key,
        // and an error must not reflect it.
        let ours = (1..=32).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        return Err(ApiError::invalid_request(if ours {
            format!("Unknown field `{name}`")
        } else {
            "Request body has an unknown field".to_string()
        }));
    }
    T::read(&Fields(members))
}

/// serde keeps the last of two equal keys; a body that says two things is refused instead.
/// The keys as written are counted against the keys serde kept.
fn reject_duplicate_keys(text: &str) -> Result<Value, ApiError> {
    let parsed: Value = serde_json::from_slice(text.as_bytes()).map_err(|e| {
        ApiError::invalid_request(format!(
            "Request body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if json::repeats_a_key(text, &parsed) {
        return Err(ApiError::invalid_request("Request body repeats a field"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credential PUT's body: a required string and an optional boolean.
    use crate::core::credentials::PutCredential as Body;

    fn err(text: &str) -> ApiError {
        parse::<Body>(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn only_a_declared_small_length_is_read_whole() {
        assert!(declared_within(Some("0"), None, 10));
        assert!(declared_within(Some(" 10 "), None, 10));
        assert!(!declared_within(Some("11"), None, 10));
        assert!(!declared_within(None, None, 10));
        assert!(!declared_within(Some("ten"), None, 10));
        assert!(!declared_within(Some("5, 5"), None, 10));
        assert!(!declared_within(Some("-1"), None, 10));
        assert!(!declared_within(Some("5"), Some("chunked"), 10));
    }

    #[test]
    fn valid_bodies_parse() {
        let b: Body = parse(br#"{"api_key": "x"}"#).unwrap();
        assert_eq!((b.api_key.as_str(), b.cloud_fallback), ("x", false));
        let b: Body = parse(br#"{"cloud_fallback": true, "api_key": "y"}"#).unwrap();
        assert_eq!((b.api_key.as_str(), b.cloud_fallback), ("y", true));
    }

    #[test]
    fn content_type_and_length_are_checked_first() {
        assert!(check_headers(Some("application/json"), Some("10")).is_ok());
        assert!(check_headers(Some("Application/JSON; charset=utf-8"), None).is_ok());
        assert_eq!(
            check_headers(Some("text/plain"), None)
                .unwrap_err()
                .status(),
            415
        );
        assert_eq!(check_headers(None, None).unwrap_err().status(), 415);
        assert_eq!(
            check_headers(Some("application/json"), Some("16385"))
                .unwrap_err()
                .status(),
            413
        );
        assert_eq!(
            parse::<Body>(&vec![b' '; 16 * 1024 + 1])
                .unwrap_err()
                .status(),
            413
        );
    }

    #[test]
    fn bad_bodies_are_400_without_echoing_values() {
        for (text, expect) in [
            ("{", "not valid JSON"),
            (
                r#"{"api_key": "x", "team_id": "t"}"#,
                "Unknown field `team_id`",
            ),
            (r#"{"cloud_fallback": true}"#, "Missing field `api_key`"),
            (
                r#"{"api_key": "x", "cloud_fallback": "sk-secret-value"}"#,
                "wrong type",
            ),
            (r#"{"api_key": "x", "api_key": "y"}"#, "repeats a field"),
            ("[]", "wrong type"),
        ] {
            let e = err(text);
            assert_eq!(e.status(), 400, "{text}");
            assert!(e.message.contains(expect), "{text}: {}", e.message);
            assert!(!e.message.contains("sk-secret"), "{}", e.message);
        }
        assert_eq!(parse::<Body>(b"\xff\xfe").unwrap_err().status(), 400);
    }

    #[test]
    fn a_wrong_type_names_its_field_and_comes_before_a_missing_one() {
        for (text, expect) in [
            (
                r#"{"cloud_fallback": "yes"}"#,
                "Request body has a field of the wrong type: `cloud_fallback` must be a boolean",
            ),
            (
                r#"{"api_key": null}"#,
                "Request body has a field of the wrong type: `api_key` must be a string",
            ),
            (r#"{"api_key": 1, "zz": 1}"#, "Unknown field `zz`"),
            ("{}", "Missing field `api_key`"),
        ] {
            assert_eq!(err(text).message, expect, "{text}");
        }
        use crate::core::{
            api_keys::CreateApiKey,
            presence::{Heartbeat, RouteRequest},
        };
        let scopes =
            parse::<CreateApiKey>(br#"{"name": "n", "kind": "secret", "scopes": ["a", 1]}"#);
        assert_eq!(
            scopes.unwrap_err().message,
            "Request body has a field of the wrong type: `scopes` must be an array of strings"
        );
        // A heartbeat's `version` may be null, as serde's `Option` read it; a route's
        // `target` may only be left out.
        assert_eq!(
            parse::<Heartbeat>(br#"{"version": null}"#).unwrap().version,
            None
        );
        assert!(parse::<RouteRequest>(br#"{"target": null}"#).is_err());
        assert_eq!(parse::<RouteRequest>(b"{}").unwrap().target, "local");
    }

    #[test]
    fn deep_nesting_is_refused_cleanly() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse::<Body>(deep.as_bytes()).unwrap_err().status(), 413);
        let deep_small = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
        assert_eq!(
            parse::<Body>(deep_small.as_bytes()).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn an_array_is_not_read_as_a_body_by_position() {
        // Found by `fuzz/request_body`: `[""]` parsed as a one-field struct, and
        // `["x", true]` was a PUT body with no field names to check.
        for text in [
            r#"[""]"#,
            r#"["x", true]"#,
            r#"["x"]"#,
            "\"x\"",
            "1",
            "null",
        ] {
            let e = err(text);
            assert_eq!(e.status(), 400, "{text}");
            assert!(
                e.message.contains("must be a JSON object"),
                "{text}: {}",
                e.message
            );
        }
    }

    #[test]
    fn a_key_with_a_backtick_is_never_cut_down_to_a_field_name() {
        // Found by `fuzz/request_body`: `{"ri`":2}` was answered "Unknown field `ri`".
        for text in [
            "{\"ri`\":2}",
            r#"{"api_key": "x", "ri`, expected one of": 1}"#,
            r#"{"api_key": "x", "ri`x`, there are no fields": 1}"#,
        ] {
            assert_eq!(
                err(text).message,
                "Request body has an unknown field",
                "{text}"
            );
        }
    }

    #[test]
    fn an_unknown_field_is_named_only_when_it_looks_like_a_field() {
        let e = err(r#"{"api_key": "x", "comfyui-SECRET-value": 1}"#);
        assert_eq!(e.message, "Request body has an unknown field");
        assert_eq!(
            err(r#"{"api_key": "x", "extra": 1}"#).message,
            "Unknown field `extra`"
        );
    }
}
