//! `JsonBody<T>`: axum's JSON extractor with shop's errors. Wrong content type → 415, too large
//! → 413, anything else wrong with the body (syntax, unknown or missing fields, wrong types) →
//! 400 `malformed_request`; a control character in a string or a key → 422 `validation` naming
//! the field; never a 500.
//!
//! Control characters are refused at this edge, once for every route: U+0000 cannot be stored
//! by PostgreSQL (neither in `jsonb` nor in `text`), and the others (U+0001–U+001F except tab,
//! line feed and carriage return, and U+007F) have no business in names, addresses or codes
//! and only hide what a text says in logs and on screens.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::Value;

use http_vocabulary::{ApiError, ErrorCode};

/// The request body, parsed as JSON into `T`.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<Value>::from_request(request, state)
            .await
            .map_err(reject)?;
        if let Some(field) = control_character_at(&value, &mut String::new()) {
            return Err(ApiError::validation(format!(
                "{field}: control characters (such as U+0000) are not accepted in text; tab, \
                 line feed and carriage return are"
            )));
        }
        T::deserialize(value)
            .map(JsonBody)
            .map_err(|e| ApiError::new(ErrorCode::MalformedRequest, e.to_string()))
    }
}

/// Whether `c` is refused in text.
fn is_refused(c: char) -> bool {
    (c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{7f}'
}

/// The path (`shipping_address.city`, `lines[2].sku`) of the first string or key holding a
/// refused character; `path` is the path of `value` itself.
fn control_character_at(value: &Value, path: &mut String) -> Option<String> {
    let shown = |path: &str| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }
    };
    match value {
        Value::String(text) if text.chars().any(is_refused) => Some(shown(path)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let length = path.len();
            path.push_str(&format!("[{i}]"));
            let found = control_character_at(item, path);
            path.truncate(length);
            found
        }),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let length = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            if key.chars().any(is_refused) {
                // the key itself: name it without its control characters
                path.extend(key.chars().filter(|c| !is_refused(*c)));
                return Some(format!("{} (a field name)", shown(path)));
            }
            path.push_str(key);
            let found = control_character_at(item, path);
            path.truncate(length);
            found
        }),
        _ => None,
    }
}

fn reject(rejection: JsonRejection) -> ApiError {
    let code = match rejection.status() {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        _ => ErrorCode::MalformedRequest,
    };
    let detail = match code {
        ErrorCode::UnsupportedMediaType => {
            "expected a body with Content-Type: application/json".to_owned()
        }
        ErrorCode::PayloadTooLarge => "the request body is too large".to_owned(),
        _ => rejection.body_text(),
    };
    ApiError::new(code, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(value: Value) -> Option<String> {
        control_character_at(&value, &mut String::new())
    }

    #[test]
    fn control_characters_are_found_by_path_and_whitespace_is_text() {
        assert_eq!(at(json!({"name": "a\u{0}b"})), Some("name".into()));
        assert_eq!(
            at(json!({"address": {"city": "x", "line1": "\u{1b}[31m"}})),
            Some("address.line1".into())
        );
        assert_eq!(
            at(json!({"lines": [{"sku": "A"}, {"sku": "B\u{7f}"}]})),
            Some("lines[1].sku".into())
        );
        assert_eq!(at(json!("\u{1}")), Some("body".into()));
        assert_eq!(
            at(json!({"na\u{0}me": "x"})),
            Some("name (a field name)".into())
        );
        assert_eq!(
            at(json!({"text": "tab\there,\r\nlines", "n": 5, "z": null})),
            None
        );
        assert_eq!(at(json!({"emoji": "☕ \u{85} \u{2028}"})), None, "not C0");
    }
}
