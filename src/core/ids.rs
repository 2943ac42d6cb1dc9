//! UUIDv7 identifiers: time-ordered, so D1 indexes stay append-mostly.

use super::time::UnixMillis;
use uuid::{Builder, Uuid};

/// A UUIDv7 for `now`, with 74 bits from the OS random source.
pub fn new_id(now: UnixMillis) -> Uuid {
    let mut random = [0u8; 10];
    fill_random(&mut random);
    Builder::from_unix_timestamp_millis(now.max(0) as u64, &random).into_uuid()
}

/// The OS random source (`crypto.getRandomValues` on Workers). A failure here means the
/// platform is broken; there is nothing safe to fall back to.
pub fn fill_random(buf: &mut [u8]) {
    getrandom::getrandom(buf).expect("the platform random source failed");
}

/// A UUID as the contract writes it: lower-case, hyphenated.
pub fn parse_uuid(s: &str) -> Option<Uuid> {
    if s.len() != 36 {
        return None;
    }
    Uuid::try_parse(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_and_ordered_by_time() {
        let a = new_id(1_000);
        let b = new_id(2_000);
        assert_eq!(a.get_version_num(), 7);
        assert!(a.to_string() < b.to_string());
        assert_ne!(new_id(1_000), new_id(1_000));
    }

    #[test]
    fn parse_accepts_only_hyphenated_uuids() {
        assert!(parse_uuid("019abc12-4567-7890-abcd-ef1234567891").is_some());
        assert!(parse_uuid("019abc1245677890abcdef1234567891").is_none());
        assert!(parse_uuid("not-a-uuid").is_none());
        assert!(parse_uuid("").is_none());
    }
}
