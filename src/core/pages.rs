//! Bounded lists: every list endpoint takes `?limit=` (default 50, at most 200) and
//! `?cursor=` (a `next_cursor` from the page before), and answers `next_cursor` (null on
//! the last page). A cursor is the sort key of the last item shown, so items added or
//! removed between pages never make another item appear twice or be skipped.

use base64ct::{Base64UrlUnpadded, Encoding};

use super::{
    audit::DEFAULT_PAGE, audit::MAX_PAGE, error::ApiError, ids::parse_uuid, time::UnixMillis,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub limit: usize,
    /// The cursor as sent; each list decodes it ([`uuid_cursor`], [`member_cursor`]).
    pub cursor: Option<String>,
}

fn bad_cursor() -> ApiError {
    ApiError::invalid_request("`cursor` is not a cursor from this API")
}

/// A page size: 1 to 200.
pub fn parse_limit(value: &str) -> Result<usize, ApiError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| ApiError::invalid_request("`limit` must be 1 to 200"))
}

/// `?limit=&cursor=` and nothing else.
pub fn list_page(query: impl Iterator<Item = (String, String)>) -> Result<ListPage, ApiError> {
    let mut page = ListPage {
        limit: DEFAULT_PAGE,
        cursor: None,
    };
    for (name, value) in query {
        match name.as_str() {
            "limit" => page.limit = parse_limit(&value)?,
            "cursor" if !value.is_empty() && value.len() <= 1024 => page.cursor = Some(value),
            "cursor" => return Err(bad_cursor()),
            _ => return Err(ApiError::invalid_request("Unknown query parameter")),
        }
    }
    Ok(page)
}

/// A list keyed by UUID (teams, API keys, agents): the cursor is the last id shown.
pub fn uuid_cursor(page: &ListPage) -> Result<Option<String>, ApiError> {
    page.cursor
        .as_deref()
        .map(|c| {
            parse_uuid(c)
                .map(|id| id.to_string())
                .ok_or_else(bad_cursor)
        })
        .transpose()
}

/// Members are listed by (added_at, user_id): the cursor carries both, base64url-encoded.
pub fn member_cursor(page: &ListPage) -> Result<Option<(UnixMillis, String)>, ApiError> {
    let Some(cursor) = page.cursor.as_deref() else {
        return Ok(None);
    };
    let text = Base64UrlUnpadded::decode_vec(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(bad_cursor)?;
    let (at, user) = text.split_once(':').ok_or_else(bad_cursor)?;
    let at = at.parse::<UnixMillis>().map_err(|_| bad_cursor())?;
    Ok(Some((at, user.to_string())))
}

pub fn encode_member_cursor(added_at: UnixMillis, user_id: &str) -> String {
    Base64UrlUnpadded::encode_string(format!("{added_at}:{user_id}").as_bytes())
}

/// Given up to `limit + 1` items read in order, the page to show and its `next_cursor`.
pub fn page_of<T>(
    mut items: Vec<T>,
    limit: usize,
    cursor_of: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    if items.len() > limit {
        items.truncate(limit);
        let next = items.last().map(cursor_of);
        (items, next)
    } else {
        (items, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<ListPage, ApiError> {
        list_page(pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())))
    }

    #[test]
    fn limit_and_cursor_are_the_only_parameters() {
        assert_eq!(
            q(&[]).unwrap(),
            ListPage {
                limit: 50,
                cursor: None
            }
        );
        assert_eq!(q(&[("limit", "200")]).unwrap().limit, 200);
        for bad in [
            ("limit", "0"),
            ("limit", "201"),
            ("cursor", ""),
            ("page", "2"),
        ] {
            assert_eq!(q(&[bad]).unwrap_err().status(), 400, "{bad:?}");
        }
        let id = "019abc12-4567-7890-abcd-ef1234567891";
        assert_eq!(
            uuid_cursor(&q(&[("cursor", id)]).unwrap())
                .unwrap()
                .as_deref(),
            Some(id)
        );
        assert_eq!(
            uuid_cursor(&q(&[("cursor", "x")]).unwrap())
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn member_cursors_round_trip_any_user_id() {
        for user in ["auth0|42", "a:b:c", "é", "x"] {
            let c = encode_member_cursor(1_750_000_000_000, user);
            let page = q(&[("cursor", &c)]).unwrap();
            assert_eq!(
                member_cursor(&page).unwrap(),
                Some((1_750_000_000_000, user.to_string()))
            );
        }
        assert_eq!(
            member_cursor(&q(&[("cursor", "!!")]).unwrap())
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn a_page_says_whether_more_follow() {
        let (items, next) = page_of(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!((items, next.as_deref()), (vec![1, 2], Some("2")));
        let (items, next) = page_of(vec![1, 2], 2, |n| n.to_string());
        assert_eq!((items, next), (vec![1, 2], None));
    }
}
