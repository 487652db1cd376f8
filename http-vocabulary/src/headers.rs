//! The headers shop's APIs share.

use axum::http::HeaderMap;

/// The log position of a command's last event: a command API response carries it, a query API
/// request sends it back to read its own writes.
pub const POSITION_HEADER: &str = "shop-position";

/// The request's id: taken from the request when the client sends one, made up otherwise, and
/// always answered (see [`crate::request_span`]).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest request id taken from a client.
pub const REQUEST_ID_MAX_LEN: usize = 128;

/// A header's value when it is 1 to `max` visible ASCII characters (surrounding spaces
/// trimmed); `None` when it is absent or anything else.
pub fn header_text(headers: &HeaderMap, name: &str, max: usize) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= max && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn header_text_takes_only_short_visible_ascii() {
        let mut headers = HeaderMap::new();
        headers.insert("a", HeaderValue::from_static("  abc-1 "));
        headers.insert("b", HeaderValue::from_static("has space"));
        headers.insert("c", HeaderValue::from_static("abcdef"));
        headers.insert("d", HeaderValue::from_static(""));
        assert_eq!(header_text(&headers, "a", 10).as_deref(), Some("abc-1"));
        assert_eq!(header_text(&headers, "b", 10), None);
        assert_eq!(header_text(&headers, "c", 5), None);
        assert_eq!(header_text(&headers, "d", 5), None);
        assert_eq!(header_text(&headers, "missing", 5), None);
    }
}
