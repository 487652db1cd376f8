//! Value types of the shop domain, parsed once at the edge: every constructor
//! validates and serde deserialization goes through the same constructor, so a
//! value that exists is a valid value.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest accepted SKU, in characters.
pub const SKU_MAX_LEN: usize = 64;
/// Longest accepted e-mail address, in characters (RFC 5321 path limit).
pub const EMAIL_MAX_LEN: usize = 254;
/// Longest accepted address field, in characters.
pub const ADDRESS_FIELD_MAX_LEN: usize = 200;

/// Why a raw input could not become a value type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("sku must not be empty")]
    EmptySku,
    #[error("sku must be at most {max} characters, got {len}", max = SKU_MAX_LEN)]
    SkuTooLong { len: usize },
    #[error("sku must be uppercase, found lowercase character {0:?}")]
    SkuLowercase(char),
    #[error("sku may only contain A-Z, 0-9, '-' and '_', found {0:?}")]
    SkuInvalidCharacter(char),
    #[error("quantity must be at least 1")]
    ZeroQuantity,
    #[error("currency must be 3 uppercase ascii letters, got {0:?}")]
    InvalidCurrency(String),
    #[error("currency mismatch: {left} vs {right}")]
    CurrencyMismatch { left: Currency, right: Currency },
    #[error("money amount overflow")]
    Overflow,
    #[error("invalid email {input:?}: {reason}")]
    InvalidEmail { input: String, reason: &'static str },
    #[error("address field {0} must not be empty")]
    EmptyAddressField(&'static str),
    #[error("address field {field} must be at most {max} characters", max = ADDRESS_FIELD_MAX_LEN)]
    AddressFieldTooLong { field: &'static str },
    #[error("country must be a 2-letter uppercase iso code, got {0:?}")]
    InvalidCountry(String),
}

// ---------------------------------------------------------------- Sku

/// Stock keeping unit: 1..=64 characters of `A-Z`, `0-9`, `-` and `_`.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(extend("pattern" = "^[A-Z0-9_-]{1,64}$"))]
pub struct Sku(String);

impl Sku {
    pub fn parse(input: impl Into<String>) -> Result<Self, ValueError> {
        let input = input.into();
        if input.is_empty() {
            return Err(ValueError::EmptySku);
        }
        let len = input.chars().count();
        if len > SKU_MAX_LEN {
            return Err(ValueError::SkuTooLong { len });
        }
        for c in input.chars() {
            if c.is_lowercase() {
                return Err(ValueError::SkuLowercase(c));
            }
            if !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_') {
                return Err(ValueError::SkuInvalidCharacter(c));
            }
        }
        Ok(Self(input))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sku {
    type Error = ValueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<Sku> for String {
    fn from(value: Sku) -> Self {
        value.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------- Quantity

/// A positive number of units (at least 1).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "u32", into = "u32")]
#[schemars(extend("minimum" = 1))]
pub struct Quantity(u32);

impl Quantity {
    pub fn new(value: u32) -> Result<Self, ValueError> {
        if value == 0 {
            Err(ValueError::ZeroQuantity)
        } else {
            Ok(Self(value))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// Sum of two quantities, `None` on overflow.
    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        self.0.checked_add(other.0).map(Quantity)
    }
}

impl TryFrom<u32> for Quantity {
    type Error = ValueError;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Quantity> for u32 {
    fn from(value: Quantity) -> Self {
        value.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

// ---------------------------------------------------------------- Currency

/// ISO 4217-shaped currency code: exactly 3 uppercase ASCII letters.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(extend("pattern" = "^[A-Z]{3}$"))]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        match input.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => Ok(Self([*a, *b, *c])),
            _ => Err(ValueError::InvalidCurrency(input.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        // Always ASCII by construction.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl TryFrom<String> for Currency {
    type Error = ValueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------- Money

/// An amount in integer minor units (cents) of a currency. Never a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Self {
        Self {
            amount_minor,
            currency,
        }
    }

    pub fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    pub fn is_positive(&self) -> bool {
        self.amount_minor > 0
    }

    pub fn is_negative(&self) -> bool {
        self.amount_minor < 0
    }

    pub fn is_zero(&self) -> bool {
        self.amount_minor == 0
    }

    fn same_currency(&self, other: &Money) -> Result<(), ValueError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(ValueError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }

    pub fn checked_add(&self, other: &Money) -> Result<Money, ValueError> {
        self.same_currency(other)?;
        self.amount_minor
            .checked_add(other.amount_minor)
            .map(|amount| Money::new(amount, self.currency))
            .ok_or(ValueError::Overflow)
    }

    pub fn checked_sub(&self, other: &Money) -> Result<Money, ValueError> {
        self.same_currency(other)?;
        self.amount_minor
            .checked_sub(other.amount_minor)
            .map(|amount| Money::new(amount, self.currency))
            .ok_or(ValueError::Overflow)
    }

    pub fn checked_mul(&self, quantity: Quantity) -> Result<Money, ValueError> {
        self.amount_minor
            .checked_mul(i64::from(quantity.get()))
            .map(|amount| Money::new(amount, self.currency))
            .ok_or(ValueError::Overflow)
    }

    /// Sum of `items` in `currency` (zero when empty).
    pub fn sum<'a>(
        currency: Currency,
        items: impl IntoIterator<Item = &'a Money>,
    ) -> Result<Money, ValueError> {
        items
            .into_iter()
            .try_fold(Money::zero(currency), |acc, m| acc.checked_add(m))
    }

    /// The smaller of two amounts of the same currency.
    pub fn min(&self, other: &Money) -> Result<Money, ValueError> {
        self.same_currency(other)?;
        Ok(if self.amount_minor <= other.amount_minor {
            *self
        } else {
            *other
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount_minor, self.currency)
    }
}

// ---------------------------------------------------------------- Email

/// A trimmed, lowercased e-mail address with one `@`, a non-empty local part
/// and a domain containing a dot; at most 254 characters.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(extend("format" = "email"))]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let invalid = |reason| ValueError::InvalidEmail {
            input: input.to_owned(),
            reason,
        };
        let normalised = input.trim().to_lowercase();
        if normalised.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if normalised.chars().count() > EMAIL_MAX_LEN {
            return Err(invalid("must be at most 254 characters"));
        }
        if normalised.chars().any(char::is_whitespace) {
            return Err(invalid("must not contain whitespace"));
        }
        let mut parts = normalised.split('@');
        let (local, domain) = match (parts.next(), parts.next(), parts.next()) {
            (Some(local), Some(domain), None) => (local, domain),
            _ => return Err(invalid("must contain exactly one '@'")),
        };
        if local.is_empty() {
            return Err(invalid("local part must not be empty"));
        }
        if domain.is_empty() {
            return Err(invalid("domain must not be empty"));
        }
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
            return Err(invalid("domain must contain a dot between labels"));
        }
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = ValueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------- ids

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new(id: Uuid) -> Self {
                Self(id)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

uuid_id!(
    /// Identifies a registered customer.
    CustomerId
);
uuid_id!(
    /// Identifies an order (also the order aggregate id).
    OrderId
);
uuid_id!(
    /// Identifies a cart (also the cart aggregate id).
    CartId
);
uuid_id!(
    /// Identifies a payment (also the payment aggregate id).
    PaymentId
);
uuid_id!(
    /// Identifies one refund, so a repeated refund request is recognised.
    RefundId
);
uuid_id!(
    /// Identifies a product review (also the review aggregate id): derived from the customer
    /// and the SKU (`derived_ids::review_id_of`), one per customer and product.
    ReviewId
);

/// Human-facing sequential order number (allocated outside the domain).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct OrderNumber(pub u64);

impl fmt::Display for OrderNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

// ---------------------------------------------------------------- Address

/// Two-letter uppercase ISO 3166-1 alpha-2 shaped country code.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(extend("pattern" = "^[A-Z]{2}$"))]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        match input.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(Self([*a, *b])),
            _ => Err(ValueError::InvalidCountry(input.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl TryFrom<String> for CountryCode {
    type Error = ValueError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<CountryCode> for String {
    fn from(value: CountryCode) -> Self {
        value.as_str().to_owned()
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A postal address; fields are trimmed, required ones non-empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "AddressFields")]
pub struct Address {
    name: String,
    line1: String,
    line2: Option<String>,
    city: String,
    postal_code: String,
    country: CountryCode,
}

/// The unvalidated wire shape of [`Address`].
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(rename = "Address")]
struct AddressFields {
    name: String,
    line1: String,
    line2: Option<String>,
    city: String,
    postal_code: String,
    country: String,
}

impl TryFrom<AddressFields> for Address {
    type Error = ValueError;
    fn try_from(f: AddressFields) -> Result<Self, Self::Error> {
        Address::new(f.name, f.line1, f.line2, f.city, f.postal_code, &f.country)
    }
}

fn required_field(field: &'static str, value: &str) -> Result<String, ValueError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ValueError::EmptyAddressField(field));
    }
    if value.chars().count() > ADDRESS_FIELD_MAX_LEN {
        return Err(ValueError::AddressFieldTooLong { field });
    }
    Ok(value.to_owned())
}

impl Address {
    pub fn new(
        name: impl AsRef<str>,
        line1: impl AsRef<str>,
        line2: Option<String>,
        city: impl AsRef<str>,
        postal_code: impl AsRef<str>,
        country: &str,
    ) -> Result<Self, ValueError> {
        let line2 = match line2.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(l2) => Some(required_field("line2", l2)?),
        };
        Ok(Self {
            name: required_field("name", name.as_ref())?,
            line1: required_field("line1", line1.as_ref())?,
            line2,
            city: required_field("city", city.as_ref())?,
            postal_code: required_field("postal_code", postal_code.as_ref())?,
            country: CountryCode::parse(country)?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn line1(&self) -> &str {
        &self.line1
    }
    pub fn line2(&self) -> Option<&str> {
        self.line2.as_deref()
    }
    pub fn city(&self) -> &str {
        &self.city
    }
    pub fn postal_code(&self) -> &str {
        &self.postal_code
    }
    pub fn country(&self) -> CountryCode {
        self.country
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[test]
    fn sku_accepts_valid_inputs() {
        for ok in ["A", "ABC-123", "X_Y-Z9", &"A".repeat(64)] {
            assert_eq!(Sku::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn sku_rejects_invalid_inputs() {
        assert_eq!(Sku::parse(""), Err(ValueError::EmptySku));
        assert_eq!(
            Sku::parse("A".repeat(65)),
            Err(ValueError::SkuTooLong { len: 65 })
        );
        assert_eq!(Sku::parse("abc"), Err(ValueError::SkuLowercase('a')));
        assert_eq!(
            Sku::parse("AB c"),
            Err(ValueError::SkuInvalidCharacter(' '))
        );
        assert_eq!(Sku::parse("A.B"), Err(ValueError::SkuInvalidCharacter('.')));
        assert_eq!(Sku::parse("ÄB"), Err(ValueError::SkuInvalidCharacter('Ä')));
    }

    #[test]
    fn sku_serde_goes_through_validation() {
        let sku: Sku = serde_json::from_value(json!("AB-1")).unwrap();
        assert_eq!(serde_json::to_value(&sku).unwrap(), json!("AB-1"));
        assert!(serde_json::from_value::<Sku>(json!("ab-1")).is_err());
        assert!(serde_json::from_value::<Sku>(json!("")).is_err());
    }

    #[test]
    fn quantity_parser() {
        assert_eq!(Quantity::new(1).unwrap().get(), 1);
        assert_eq!(Quantity::new(u32::MAX).unwrap().get(), u32::MAX);
        assert_eq!(Quantity::new(0), Err(ValueError::ZeroQuantity));
        assert!(serde_json::from_value::<Quantity>(json!(0)).is_err());
        assert!(serde_json::from_value::<Quantity>(json!(-1)).is_err());
        assert_eq!(
            serde_json::from_value::<Quantity>(json!(3)).unwrap(),
            Quantity::new(3).unwrap()
        );
        let max = Quantity::new(u32::MAX).unwrap();
        assert_eq!(max.checked_add(Quantity::new(1).unwrap()), None);
    }

    #[test]
    fn currency_parser() {
        assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
        assert_eq!(Currency::parse("USD").unwrap().to_string(), "USD");
        for bad in ["", "EU", "EURO", "eur", "E1R", "ÉUR"] {
            assert_eq!(
                Currency::parse(bad),
                Err(ValueError::InvalidCurrency(bad.to_owned()))
            );
        }
        assert!(serde_json::from_value::<Currency>(json!("usd")).is_err());
        assert_eq!(serde_json::to_value(eur()).unwrap(), json!("EUR"));
    }

    #[test]
    fn money_arithmetic() {
        let usd = Currency::parse("USD").unwrap();
        let a = Money::new(150, eur());
        let b = Money::new(50, eur());
        assert_eq!(a.checked_add(&b), Ok(Money::new(200, eur())));
        assert_eq!(a.checked_sub(&b), Ok(Money::new(100, eur())));
        assert_eq!(b.checked_sub(&a), Ok(Money::new(-100, eur())));
        assert_eq!(
            a.checked_mul(Quantity::new(3).unwrap()),
            Ok(Money::new(450, eur()))
        );
        assert_eq!(
            a.checked_add(&Money::new(1, usd)),
            Err(ValueError::CurrencyMismatch {
                left: eur(),
                right: usd
            })
        );
        assert_eq!(
            a.checked_sub(&Money::new(1, usd)),
            Err(ValueError::CurrencyMismatch {
                left: eur(),
                right: usd
            })
        );
        assert_eq!(
            Money::new(i64::MAX, eur()).checked_add(&Money::new(1, eur())),
            Err(ValueError::Overflow)
        );
        assert_eq!(
            Money::new(i64::MIN, eur()).checked_sub(&Money::new(1, eur())),
            Err(ValueError::Overflow)
        );
        assert_eq!(
            Money::new(i64::MAX, eur()).checked_mul(Quantity::new(2).unwrap()),
            Err(ValueError::Overflow)
        );
        assert_eq!(Money::sum(eur(), &[a, b]), Ok(Money::new(200, eur())));
        assert_eq!(Money::sum(eur(), &[]), Ok(Money::zero(eur())));
        assert_eq!(a.min(&b), Ok(b));
        let json = serde_json::to_value(a).unwrap();
        assert_eq!(json, json!({"amount_minor": 150, "currency": "EUR"}));
        assert!(
            serde_json::from_value::<Money>(json!({"amount_minor": 1, "currency": "eur"})).is_err()
        );
        assert!(
            serde_json::from_value::<Money>(json!({"amount_minor": 1.5, "currency": "EUR"}))
                .is_err()
        );
    }

    #[test]
    fn email_accepts_and_normalises() {
        let e = Email::parse("  Jane.Doe@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "jane.doe@example.com");
        assert!(Email::parse("a@b.co").is_ok());
        let long_local = "a".repeat(240);
        assert!(Email::parse(&format!("{long_local}@example.com")).is_ok());
    }

    #[test]
    fn email_rejects_invalid() {
        let too_long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "   ",
            "no-at-sign.com",
            "two@@example.com",
            "a@b@example.com",
            "@example.com",
            "jane@",
            "jane@localhost",
            "jane@.com",
            "jane@example.",
            "ja ne@example.com",
            too_long.as_str(),
        ] {
            assert!(
                matches!(Email::parse(bad), Err(ValueError::InvalidEmail { .. })),
                "{bad:?} should be rejected"
            );
        }
        assert!(serde_json::from_value::<Email>(json!("nope")).is_err());
        assert_eq!(
            serde_json::from_value::<Email>(json!("A@B.CD"))
                .unwrap()
                .as_str(),
            "a@b.cd"
        );
    }

    #[test]
    fn ids_display_and_serialize_as_uuid() {
        let uuid = Uuid::from_u128(42);
        let id = OrderId::new(uuid);
        assert_eq!(id.to_string(), uuid.to_string());
        assert_eq!(serde_json::to_value(id).unwrap(), json!(uuid.to_string()));
        assert_eq!(OrderNumber(7).to_string(), "7");
        assert_eq!(serde_json::to_value(OrderNumber(7)).unwrap(), json!(7));
    }

    #[test]
    fn country_parser() {
        assert_eq!(CountryCode::parse("DE").unwrap().as_str(), "DE");
        for bad in ["", "D", "DEU", "de", "D1"] {
            assert_eq!(
                CountryCode::parse(bad),
                Err(ValueError::InvalidCountry(bad.to_owned()))
            );
        }
    }

    #[test]
    fn address_accepts_and_trims() {
        let a = Address::new(
            " Jane ",
            "Main St 1",
            Some("  ".into()),
            "Berlin",
            "10115",
            "DE",
        )
        .unwrap();
        assert_eq!(a.name(), "Jane");
        assert_eq!(a.line2(), None);
        assert_eq!(a.country().as_str(), "DE");
        let b = Address::new("J", "L1", Some("Apt 2".into()), "C", "P", "FR").unwrap();
        assert_eq!(b.line2(), Some("Apt 2"));
        let back: Address = serde_json::from_value(serde_json::to_value(&b).unwrap()).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn address_rejects_invalid() {
        assert_eq!(
            Address::new("", "L1", None, "C", "P", "DE"),
            Err(ValueError::EmptyAddressField("name"))
        );
        assert_eq!(
            Address::new("N", " ", None, "C", "P", "DE"),
            Err(ValueError::EmptyAddressField("line1"))
        );
        assert_eq!(
            Address::new("N", "L", None, "", "P", "DE"),
            Err(ValueError::EmptyAddressField("city"))
        );
        assert_eq!(
            Address::new("N", "L", None, "C", "", "DE"),
            Err(ValueError::EmptyAddressField("postal_code"))
        );
        assert_eq!(
            Address::new("N", "L", None, "C", "P", "de"),
            Err(ValueError::InvalidCountry("de".into()))
        );
        assert_eq!(
            Address::new("N", "L", Some("x".repeat(201)), "C", "P", "DE"),
            Err(ValueError::AddressFieldTooLong { field: "line2" })
        );
        let bad = json!({"name": "", "line1": "L", "line2": null, "city": "C", "postal_code": "P", "country": "DE"});
        assert!(serde_json::from_value::<Address>(bad).is_err());
    }

    #[test]
    fn schemas_carry_constraints() {
        let sku = serde_json::to_value(schemars::schema_for!(Sku)).unwrap();
        assert_eq!(sku["type"], "string");
        assert_eq!(sku["pattern"], "^[A-Z0-9_-]{1,64}$");
        let addr = serde_json::to_value(schemars::schema_for!(Address)).unwrap();
        assert!(addr["properties"]["country"].is_object());
    }
}
