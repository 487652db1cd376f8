//! Types every part of the schema shares: money, Relay page info, cursors and page sizes.

use async_graphql::SimpleObject;

use crate::error::{QueryError, QueryResult};

/// Largest page any connection returns.
pub const MAX_PAGE: i32 = 100;
/// Page size when `first` is not given.
pub const DEFAULT_PAGE: i32 = 20;

/// An amount of money: minor units (cents) and an ISO 4217 code.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct Money {
    /// Minor units: 1299 is 12.99 in EUR.
    pub amount_minor: i64,
    /// ISO 4217, e.g. `EUR`.
    pub currency: String,
}

impl Money {
    pub fn of(money: domain::Money) -> Money {
        Money {
            amount_minor: money.amount_minor,
            currency: money.currency.as_str().to_owned(),
        }
    }

    /// From a read model's columns.
    pub fn from_row(amount_minor: i64, currency: &str) -> Money {
        Money {
            amount_minor,
            currency: currency.to_owned(),
        }
    }
}

/// Relay page info.
#[derive(SimpleObject, Clone, Debug, Default, PartialEq, Eq)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

/// The validated `first` of a connection: 0..=[`MAX_PAGE`].
pub fn page_size(first: Option<i32>) -> QueryResult<usize> {
    let first = first.unwrap_or(DEFAULT_PAGE);
    if !(0..=MAX_PAGE).contains(&first) {
        return Err(QueryError::validation(format!(
            "first must be between 0 and {MAX_PAGE}, got {first}"
        )));
    }
    Ok(first as usize)
}

/// Opaque cursors: a kind tag and a value, hex-encoded so clients do not build them by hand.
pub fn encode_cursor(kind: &str, value: &str) -> String {
    hex::encode(format!("{kind}:{value}"))
}

/// The value of a cursor of `kind`; anything else is a `validation` error.
pub fn decode_cursor(kind: &str, cursor: &str) -> QueryResult<String> {
    let invalid = || QueryError::validation(format!("`{cursor}` is not a valid cursor here"));
    let bytes = hex::decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (found, value) = text.split_once(':').ok_or_else(invalid)?;
    if found != kind {
        return Err(invalid());
    }
    Ok(value.to_owned())
}

/// An offset cursor (the position after which the next page starts).
pub fn offset_cursor(offset: usize) -> String {
    encode_cursor("offset", &offset.to_string())
}

pub fn decode_offset_cursor(cursor: &str) -> QueryResult<usize> {
    decode_cursor("offset", cursor)?
        .parse()
        .map_err(|_| QueryError::validation(format!("`{cursor}` is not a valid cursor here")))
}

/// Where the page after an offset cursor starts. Cursors come from clients: one that names the
/// largest offset (no page can follow it) is a `validation` error, never an overflow.
pub fn offset_after(cursor: &str) -> QueryResult<usize> {
    decode_offset_cursor(cursor)?
        .checked_add(1)
        .ok_or_else(|| QueryError::validation(format!("no page follows the cursor `{cursor}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_other_kinds_and_garbage() {
        assert_eq!(decode_offset_cursor(&offset_cursor(40)).unwrap(), 40);
        let other = encode_cursor("seq", "4");
        assert!(matches!(
            decode_offset_cursor(&other),
            Err(QueryError::Validation(_))
        ));
        for garbage in ["", "zz", "6f6666736574", "6f66667365743a2d31"] {
            assert!(decode_offset_cursor(garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn the_page_after_the_largest_offset_is_refused_not_overflowed() {
        assert_eq!(offset_after(&offset_cursor(40)).unwrap(), 41);
        assert_eq!(
            offset_after(&offset_cursor(usize::MAX - 1)).unwrap(),
            usize::MAX
        );
        assert!(matches!(
            offset_after(&offset_cursor(usize::MAX)),
            Err(QueryError::Validation(_))
        ));
    }

    #[test]
    fn page_sizes_are_capped() {
        assert_eq!(page_size(None).unwrap(), DEFAULT_PAGE as usize);
        assert_eq!(page_size(Some(0)).unwrap(), 0);
        assert_eq!(page_size(Some(MAX_PAGE)).unwrap(), MAX_PAGE as usize);
        assert!(page_size(Some(MAX_PAGE + 1)).is_err());
        assert!(page_size(Some(-1)).is_err());
    }
}
