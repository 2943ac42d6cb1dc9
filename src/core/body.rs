//! Request bodies: JSON only, at most 16 KiB, and exactly the fields a schema names.
//! Error messages never echo request values: a mistyped field may hold a secret.

use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorKind};

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
    if let Some(length) = content_length.and_then(|v| v.trim().parse::<u64>().ok()) {
        if length > MAX_BODY_BYTES as u64 {
            return Err(too_large());
        }
    }
    Ok(())
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorKind::PayloadTooLarge,
        "Request body is larger than 16 KiB",
    )
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::invalid_request("Request body is not valid UTF-8"))?;
    let parsed = reject_duplicate_keys(text)?;
    // serde's derived structs also read an array, by position (`["key", true]`), which
    // would skip the field-name checks: every body is an object.
    if !parsed.is_object() {
        return Err(ApiError::invalid_request(
            "Request body is of the wrong type: it must be a JSON object",
        ));
    }
    serde_json::from_slice(text.as_bytes()).map_err(|e| ApiError::invalid_request(describe(&e)))
}

/// serde keeps the last of two equal keys; a body that says two things is refused instead.
/// The keys as written are counted against the keys serde kept.
fn reject_duplicate_keys(text: &str) -> Result<serde_json::Value, ApiError> {
    let parsed: serde_json::Value = serde_json::from_slice(text.as_bytes())
        .map_err(|e| ApiError::invalid_request(describe(&e)))?;
    if count_keys(text) != count_parsed_keys(&parsed) {
        return Err(ApiError::invalid_request("Request body repeats a field"));
    }
    Ok(parsed)
}

fn count_parsed_keys(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(items) => items.iter().map(count_parsed_keys).sum(),
        serde_json::Value::Object(map) => {
            map.len() + map.values().map(count_parsed_keys).sum::<usize>()
        }
        _ => 0,
    }
}

/// Keys as written: a string followed (after white space) by `:` outside another string.
fn count_keys(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut i, mut count) = (0, 0);
    while i < bytes.len() {
        if bytes[i] == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            let mut j = i;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b':' {
                count += 1;
            }
        } else {
            i += 1;
        }
    }
    count
}

fn describe(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let text = e.to_string();
    let quoted = |prefix: &str| {
        text.strip_prefix(prefix)
            // A key may itself hold backticks: it ends where serde's own suffix starts,
            // not at its first backtick (`{"ri`": 1}` must not read as field `ri`).
            .and_then(|rest| {
                let end = ["`, expected ", "`, there are no fields"]
                    .iter()
                    .filter_map(|suffix| rest.rfind(suffix))
                    .max()
                    .or_else(|| rest.find('`'))?;
                Some(&rest[..end])
            })
            // Only a name shaped like ours is echoed: a client may have put a secret in
            // a key, and an error must not reflect it.
            .filter(|name| {
                (1..=32).contains(&name.len())
                    && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            })
    };
    match e.classify() {
        Category::Syntax | Category::Eof => format!(
            "Request body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ),
        _ => {
            if let Some(name) = quoted("unknown field `") {
                format!("Unknown field `{name}`")
            } else if text.starts_with("unknown field `") {
                "Request body has an unknown field".to_string()
            } else if let Some(name) = quoted("missing field `") {
                format!("Missing field `{name}`")
            } else {
                format!(
                    "Request body has a field of the wrong type or value (line {}, column {})",
                    e.line(),
                    e.column()
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        api_key: String,
        #[serde(default)]
        cloud_fallback: bool,
    }

    fn err(text: &str) -> ApiError {
        parse::<Body>(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn valid_bodies_parse() {
        let b: Body = parse(br#"{"api_key": "x"}"#).unwrap();
        assert_eq!(
            b,
            Body {
                api_key: "x".into(),
                cloud_fallback: false
            }
        );
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
    fn key_counting_ignores_colons_inside_strings() {
        assert_eq!(count_keys(r#"{"a": "b:c", "d\"": {"e": 1}}"#), 3);
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
