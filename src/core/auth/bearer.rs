//! Reading `Authorization: Bearer <token>` and telling a JWT from a team API key.

use super::api_key::{self, KeyKind, WellFormedKey};
use crate::core::error::ApiError;

/// Headers longer than this are rejected before any parsing.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

pub const MISSING_HEADER: &str = "Missing authorization header";
pub const INVALID_TOKEN: &str = "Invalid token";
pub const EXPIRED_TOKEN: &str = "Token has expired";
pub const INVALID_API_KEY: &str = "Invalid or expired API key";

#[derive(Debug, PartialEq, Eq)]
pub enum Bearer<'a> {
    /// Anything that is not an API key: verified as a session JWT.
    Jwt(&'a str),
    ApiKey(WellFormedKey<'a>),
}

pub fn parse(header: Option<&str>) -> Result<Bearer<'_>, ApiError> {
    let header = header.ok_or_else(|| ApiError::unauthorized(MISSING_HEADER))?;
    if header.len() > MAX_HEADER_BYTES {
        return Err(ApiError::unauthorized(INVALID_TOKEN));
    }
    let (scheme, token) = header
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized(INVALID_TOKEN))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::unauthorized(INVALID_TOKEN));
    }
    if KeyKind::of_token(token).is_some() {
        return api_key::parse(token)
            .map(Bearer::ApiKey)
            .ok_or_else(|| ApiError::unauthorized(INVALID_API_KEY));
    }
    Ok(Bearer::Jwt(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(header: Option<&str>) -> String {
        parse(header).unwrap_err().message.into_owned()
    }

    #[test]
    fn missing_wrong_scheme_and_empty_tokens() {
        assert_eq!(message(None), MISSING_HEADER);
        assert_eq!(message(Some("Basic dXNlcjpwYXNz")), INVALID_TOKEN);
        assert_eq!(message(Some("Bearer")), INVALID_TOKEN);
        assert_eq!(message(Some("Bearer ")), INVALID_TOKEN);
        assert_eq!(message(Some("Bearer    ")), INVALID_TOKEN);
        assert_eq!(parse(Some("bearer abc")), Ok(Bearer::Jwt("abc")));
    }

    #[test]
    fn a_one_megabyte_header_is_rejected_unparsed() {
        let huge = format!("Bearer {}", "a".repeat(1 << 20));
        assert_eq!(message(Some(&huge)), INVALID_TOKEN);
        let just_over = format!("Bearer {}", "a".repeat(MAX_HEADER_BYTES));
        assert_eq!(message(Some(&just_over)), INVALID_TOKEN);
    }

    #[test]
    fn api_keys_are_checked_before_any_lookup() {
        let key = api_key::generate(KeyKind::Secret);
        let header = format!("Bearer {key}");
        assert!(matches!(parse(Some(&header)), Ok(Bearer::ApiKey(k)) if k.kind == KeyKind::Secret));
        let bad = format!("Bearer {}", &key[..40]);
        assert_eq!(message(Some(&bad)), INVALID_API_KEY);
        assert_eq!(message(Some("Bearer dk-short")), INVALID_API_KEY);
    }
}
