//! A customer's profile: the name and phone number on the account (columns of `users`). The
//! e-mail address is the sign-in name and is not changed here.
//!
//! Personal fields: [`PersonName`], [`PhoneNumber`] and [`Profile::email`].

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::Role;

/// The longest name, in characters.
pub const NAME_MAX_LEN: usize = 100;

/// A person's name as the account holder gives it: trimmed, 1 to [`NAME_MAX_LEN`] characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > NAME_MAX_LEN {
            return Err(format!("must be 1 to {NAME_MAX_LEN} characters"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number: an optional leading `+` and 6 to 15 digits (E.164's bound); spaces, dots,
/// dashes and parentheses are dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (plus, rest) = match text.strip_prefix('+') {
            Some(rest) => ("+", rest),
            None => ("", text),
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '.' | '-' | '(' | ')' => {}
                _ => return Err("may hold only digits, a leading +, spaces and - . ( )".into()),
            }
        }
        if !(6..=15).contains(&digits.len()) {
            return Err("must have 6 to 15 digits".into());
        }
        Ok(Self(format!("{plus}{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What an account says about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

pub async fn load(pool: &PgPool, account: Uuid) -> Result<Option<Profile>, sqlx::Error> {
    let row =
        sqlx::query("SELECT id, email, name, phone, role, created_at FROM users WHERE id = $1")
            .bind(account)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|row| {
        Some(Profile {
            id: row.get("id"),
            email: row.get("email"),
            name: row.get("name"),
            phone: row.get("phone"),
            role: row.get::<String, _>("role").parse().ok()?,
            created_at: row.get("created_at"),
        })
    }))
}

/// Sets the name and phone number (none: removed). `false` if the account does not exist.
pub async fn update(
    pool: &PgPool,
    account: Uuid,
    name: &PersonName,
    phone: Option<&PhoneNumber>,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query("UPDATE users SET name = $2, phone = $3 WHERE id = $1")
        .bind(account)
        .bind(name.as_str())
        .bind(phone.map(PhoneNumber::as_str))
        .execute(pool)
        .await?;
    Ok(updated.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_phone_numbers_are_normalised_or_refused() {
        assert_eq!(PersonName::parse(" Ada ").unwrap().as_str(), "Ada");
        assert!(PersonName::parse("").is_err());
        assert!(PersonName::parse(&"x".repeat(101)).is_err());
        assert_eq!(
            PhoneNumber::parse("+49 (30) 123-456.7").unwrap().as_str(),
            "+49301234567"
        );
        assert_eq!(PhoneNumber::parse("030 1234").unwrap().as_str(), "0301234");
        assert!(PhoneNumber::parse("12345").is_err());
        assert!(PhoneNumber::parse("+1234567890123456").is_err());
        assert!(PhoneNumber::parse("call me").is_err());
        assert!(PhoneNumber::parse("++491234567").is_err());
    }
}
