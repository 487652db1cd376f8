//! The per-stream hash chain: what an event's hash covers and how it is computed.
//!
//! `hash = sha256(prev_hash || input)`, where `prev_hash` is the stream's previous event's hash
//! ([`GENESIS`] for the first) and `input` joins, with U+001F, the aggregate type and id, the
//! sequence, the event type and version, the payload and metadata as PostgreSQL's canonical
//! `jsonb` text, the event id and the record time in microseconds since the epoch.
//!
//! The writer computes it here, before the insert, so an append needs no trigger and no extra
//! round trip. The payload text must be byte-for-byte what PostgreSQL prints for the stored
//! `jsonb` — [`jsonb_text`] reproduces its output (keys ordered by length then bytes, `", "` and
//! `": "` separators, its string escapes), which a property test checks against the real server.
//! The SQL function `event_hash_input` (migration 0001) mirrors the input for manual audits.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The hash every stream's first event chains to.
pub const GENESIS: [u8; 32] = [0; 32];

/// A value that has no canonical `jsonb` text we can reproduce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("events may not contain non-integer numbers (found {0}); use integer minor units")]
    NonIntegerNumber(String),
    #[error("events may not contain the character U+0000")]
    NulCharacter,
}

/// PostgreSQL's text form of `value` stored as `jsonb`.
pub fn jsonb_text(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_jsonb(value, &mut out)?;
    Ok(out)
}

fn write_jsonb(value: &Value, out: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => {
            if number.is_i64() || number.is_u64() {
                out.push_str(&number.to_string());
            } else {
                return Err(CanonicalError::NonIntegerNumber(number.to_string()));
            }
        }
        Value::String(text) => write_string(text, out)?,
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_jsonb(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            // jsonb orders keys by length, then bytewise
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| {
                a.len()
                    .cmp(&b.len())
                    .then_with(|| a.as_bytes().cmp(b.as_bytes()))
            });
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_string(key, out)?;
                out.push_str(": ");
                write_jsonb(item, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_string(text: &str, out: &mut String) -> Result<(), CanonicalError> {
    out.push('"');
    for c in text.chars() {
        match c {
            '\0' => return Err(CanonicalError::NulCharacter),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(())
}

/// The fields an event's hash covers.
pub struct HashedFields<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    /// Canonical `jsonb` text of the payload.
    pub payload: &'a str,
    /// Canonical `jsonb` text of the metadata.
    pub metadata: &'a str,
    pub event_id: uuid::Uuid,
    pub recorded_at_micros: i64,
}

/// `sha256(prev_hash || input)`.
pub fn chain_hash(prev_hash: &[u8], fields: &HashedFields<'_>) -> [u8; 32] {
    const SEPARATOR: &[u8] = "\u{1f}".as_bytes();
    let sequence = fields.sequence.to_string();
    let event_id = fields.event_id.hyphenated().to_string();
    let recorded_at = fields.recorded_at_micros.to_string();
    let parts: [&str; 9] = [
        fields.aggregate_type,
        fields.aggregate_id,
        &sequence,
        fields.event_type,
        fields.event_version,
        fields.payload,
        fields.metadata,
        &event_id,
        &recorded_at,
    ];
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            hasher.update(SEPARATOR);
        }
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// Record times are stored with microsecond precision; hash what is stored.
pub fn truncate_to_micros(at: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_are_ordered_like_jsonb() {
        let value = json!({"bb": 1, "a": [true, null], "c": {"zz": "x", "y": -3}});
        assert_eq!(
            jsonb_text(&value).unwrap(),
            r#"{"a": [true, null], "c": {"y": -3, "zz": "x"}, "bb": 1}"#
        );
    }

    #[test]
    fn strings_are_escaped_like_jsonb() {
        let value = json!("quote \" backslash \\ tab \t nl \n bell \u{07} é ✓");
        assert_eq!(
            jsonb_text(&value).unwrap(),
            "\"quote \\\" backslash \\\\ tab \\t nl \\n bell \\u0007 é ✓\""
        );
    }

    #[test]
    fn floats_and_nul_have_no_canonical_text() {
        assert!(matches!(
            jsonb_text(&json!(1.5)),
            Err(CanonicalError::NonIntegerNumber(_))
        ));
        assert_eq!(
            jsonb_text(&json!("a\u{0}b")),
            Err(CanonicalError::NulCharacter)
        );
    }

    #[test]
    fn the_hash_changes_with_every_field_and_the_predecessor() {
        let id = uuid::Uuid::nil();
        let fields = |payload: &'static str, sequence| HashedFields {
            aggregate_type: "product",
            aggregate_id: "P-1",
            sequence,
            event_type: "ProductRenamed",
            event_version: "1",
            payload,
            metadata: "{}",
            event_id: id,
            recorded_at_micros: 1,
        };
        let base = chain_hash(&GENESIS, &fields("{}", 1));
        assert_ne!(base, chain_hash(&GENESIS, &fields("{\"a\": 1}", 1)));
        assert_ne!(base, chain_hash(&GENESIS, &fields("{}", 2)));
        assert_ne!(base, chain_hash(&[1; 32], &fields("{}", 1)));
        assert_eq!(base, chain_hash(&GENESIS, &fields("{}", 1)));
    }
}
