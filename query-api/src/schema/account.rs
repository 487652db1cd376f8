//! The signed-in account's own data, as fields of `me`: profile (name, phone), address book and
//! sessions. Read straight from the `accounts` crate's tables (plain rows, no read model: there
//! is nothing to wait for).

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{QueryError, QueryResult};
use crate::ReadModels;
use accounts::address_book::{self, AddressBookError};

/// A postal address.
#[derive(SimpleObject, Clone, Debug)]
pub struct PostalAddress {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

/// An address of my address book.
#[derive(SimpleObject, Clone, Debug)]
pub struct SavedAddress {
    /// Pass as `shipping_address_id` to the checkout.
    pub id: Uuid,
    /// My name for it, e.g. `Home`.
    pub label: Option<String>,
    pub address: PostalAddress,
    pub default_shipping: bool,
    pub default_billing: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One of my signed-in sessions (a sign-in on a device, kept alive by refreshing).
#[derive(SimpleObject, Clone, Debug)]
pub struct AccountSession {
    /// Revoke with `DELETE /api/auth/sessions/{id}`.
    pub id: Uuid,
    /// The User-Agent it signed in from.
    pub device: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it last refreshed its tokens (or signed in).
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl From<address_book::SavedAddress> for SavedAddress {
    fn from(saved: address_book::SavedAddress) -> Self {
        let a = &saved.address;
        SavedAddress {
            id: saved.id,
            label: saved.label.map(|l| l.as_str().to_owned()),
            address: PostalAddress {
                name: a.name().to_owned(),
                line1: a.line1().to_owned(),
                line2: a.line2().map(str::to_owned),
                city: a.city().to_owned(),
                postal_code: a.postal_code().to_owned(),
                country: a.country().as_str().to_owned(),
            },
            default_shipping: saved.default_shipping,
            default_billing: saved.default_billing,
            created_at: saved.created_at,
            updated_at: saved.updated_at,
        }
    }
}

fn book_error(error: AddressBookError) -> QueryError {
    match error {
        AddressBookError::Database(db) => db.into(),
        other => QueryError::internal(other),
    }
}

pub async fn addresses(models: &ReadModels, account: Uuid) -> QueryResult<Vec<SavedAddress>> {
    Ok(address_book::list(&models.pool, account)
        .await
        .map_err(book_error)?
        .into_iter()
        .map(SavedAddress::from)
        .collect())
}

pub async fn sessions(models: &ReadModels, account: Uuid) -> QueryResult<Vec<AccountSession>> {
    Ok(accounts::list_sessions(&models.pool, account)
        .await?
        .into_iter()
        .map(|s| AccountSession {
            id: s.id,
            device: s.device,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
        })
        .collect())
}

pub async fn profile(
    models: &ReadModels,
    account: Uuid,
) -> QueryResult<Option<accounts::profile::Profile>> {
    Ok(accounts::profile::load(&models.pool, account).await?)
}
