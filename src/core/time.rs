//! Time is always passed in as Unix milliseconds: `SystemTime::now()` panics on wasm32,
//! and a passed-in clock makes every time rule testable.

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, UTC.
pub type UnixMillis = i64;

/// `2025-06-01T12:00:00Z`: RFC 3339, UTC, whole seconds, as the contract's examples.
pub fn rfc3339(ms: UnixMillis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses an RFC 3339 timestamp with any offset; `None` when it is not one.
pub fn parse_rfc3339(s: &str) -> Option<UnixMillis> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_seed() {
        assert_eq!(rfc3339(1_748_779_200_000), "2025-06-01T12:00:00Z");
        assert_eq!(rfc3339(1_748_779_200_999), "2025-06-01T12:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn parses_offsets_and_rejects_garbage() {
        assert_eq!(
            parse_rfc3339("2025-06-01T12:00:00Z"),
            Some(1_748_779_200_000)
        );
        assert_eq!(
            parse_rfc3339("2025-06-01T14:00:00+02:00"),
            Some(1_748_779_200_000)
        );
        assert_eq!(parse_rfc3339("2025-06-01"), None);
        assert_eq!(parse_rfc3339("tomorrow"), None);
    }
}
