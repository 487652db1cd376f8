//! A customer's address book: saved postal addresses, at most one of them the default shipping
//! address and one the default billing address (partial unique indexes, migration 0110).
//!
//! Plain rows, not events: an address book is current-state personal data that no process
//! reacts to. The fact with business meaning — where an order ships — is already an event: the
//! checkout copies the chosen address into `CartCheckedOut`. Erasing a customer deletes these
//! rows (`ON DELETE CASCADE` from `users`).
//!
//! Personal fields: [`SavedAddress::address`] (a [`domain::Address`]: name, street, city, postal
//! code, country) and [`SavedAddress::label`].

use chrono::{DateTime, Utc};
use domain::Address;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

/// The most addresses one customer may save.
pub const MAX_ADDRESSES: i64 = 50;
/// The longest label ("Home", "Office"), in characters.
pub const LABEL_MAX_LEN: usize = 50;

/// A saved address of a customer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedAddress {
    pub id: Uuid,
    /// The customer's own name for it ("Home"). Personal data.
    pub label: Option<AddressLabel>,
    /// Personal data.
    pub address: Address,
    pub default_shipping: bool,
    pub default_billing: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A customer's name for a saved address: trimmed, 1 to [`LABEL_MAX_LEN`] characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressLabel(String);

impl AddressLabel {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > LABEL_MAX_LEN {
            return Err(format!("must be 1 to {LABEL_MAX_LEN} characters"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Changes to an address's default roles: `Some(true)` makes it the default (and the previous
/// default stops being one), `Some(false)` stops it being the default, `None` leaves it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Defaults {
    pub shipping: Option<bool>,
    pub billing: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum AddressBookError {
    #[error("the address book is full: at most {MAX_ADDRESSES} addresses")]
    Full,
    #[error("no such address in the address book")]
    NotFound,
    #[error("a stored address is not valid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

const COLUMNS: &str = "id, label, name, line1, line2, city, postal_code, country, \
                       default_shipping, default_billing, created_at, updated_at";

fn from_row(row: &PgRow) -> Result<SavedAddress, AddressBookError> {
    let address = Address::new(
        row.get::<String, _>("name"),
        row.get::<String, _>("line1"),
        row.get::<Option<String>, _>("line2"),
        row.get::<String, _>("city"),
        row.get::<String, _>("postal_code"),
        &row.get::<String, _>("country"),
    )
    .map_err(|e| AddressBookError::Corrupt(e.to_string()))?;
    Ok(SavedAddress {
        id: row.get("id"),
        label: row.get::<Option<String>, _>("label").map(AddressLabel),
        address,
        default_shipping: row.get("default_shipping"),
        default_billing: row.get("default_billing"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    })
}

/// The customer's addresses, oldest first.
pub async fn list(pool: &PgPool, customer: Uuid) -> Result<Vec<SavedAddress>, AddressBookError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM customer_addresses WHERE user_id = $1 ORDER BY created_at, id"
    ))
    .bind(customer)
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// One address of the customer's book (`None` for another customer's).
pub async fn find(
    pool: &PgPool,
    customer: Uuid,
    id: Uuid,
) -> Result<Option<SavedAddress>, AddressBookError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM customer_addresses WHERE user_id = $1 AND id = $2"
    ))
    .bind(customer)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// The customer's default shipping address, if one is set.
pub async fn default_shipping(
    pool: &PgPool,
    customer: Uuid,
) -> Result<Option<SavedAddress>, AddressBookError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM customer_addresses WHERE user_id = $1 AND default_shipping"
    ))
    .bind(customer)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Locks the customer's book (its account row) for the rest of `tx`: adds and default changes
/// of one customer take turns, so the count and the one-default rule hold.
async fn lock(tx: &mut Transaction<'_, Postgres>, customer: Uuid) -> Result<(), AddressBookError> {
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(customer)
        .fetch_optional(&mut **tx)
        .await?;
    found.map(|_| ()).ok_or(AddressBookError::NotFound)
}

async fn apply_defaults(
    tx: &mut Transaction<'_, Postgres>,
    customer: Uuid,
    id: Uuid,
    defaults: Defaults,
) -> Result<(), AddressBookError> {
    for (column, wanted) in [
        ("default_shipping", defaults.shipping),
        ("default_billing", defaults.billing),
    ] {
        match wanted {
            Some(true) => {
                sqlx::query(&format!(
                    "UPDATE customer_addresses SET {column} = false
                      WHERE user_id = $1 AND {column} AND id <> $2"
                ))
                .bind(customer)
                .bind(id)
                .execute(&mut **tx)
                .await?;
                sqlx::query(&format!(
                    "UPDATE customer_addresses SET {column} = true WHERE user_id = $1 AND id = $2"
                ))
                .bind(customer)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            Some(false) => {
                sqlx::query(&format!(
                    "UPDATE customer_addresses SET {column} = false WHERE user_id = $1 AND id = $2"
                ))
                .bind(customer)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            None => {}
        }
    }
    Ok(())
}

/// Saves a new address; returns its id.
pub async fn add(
    pool: &PgPool,
    customer: Uuid,
    label: Option<&AddressLabel>,
    address: &Address,
    defaults: Defaults,
) -> Result<Uuid, AddressBookError> {
    let mut tx = pool.begin().await?;
    lock(&mut tx, customer).await?;
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM customer_addresses WHERE user_id = $1")
            .bind(customer)
            .fetch_one(&mut *tx)
            .await?;
    if count >= MAX_ADDRESSES {
        return Err(AddressBookError::Full);
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO customer_addresses
             (id, user_id, label, name, line1, line2, city, postal_code, country)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(customer)
    .bind(label.map(AddressLabel::as_str))
    .bind(address.name())
    .bind(address.line1())
    .bind(address.line2())
    .bind(address.city())
    .bind(address.postal_code())
    .bind(address.country().as_str())
    .execute(&mut *tx)
    .await?;
    apply_defaults(&mut tx, customer, id, defaults).await?;
    tx.commit().await?;
    Ok(id)
}

/// Replaces an address's label and fields (and changes its defaults as asked).
pub async fn replace(
    pool: &PgPool,
    customer: Uuid,
    id: Uuid,
    label: Option<&AddressLabel>,
    address: &Address,
    defaults: Defaults,
) -> Result<(), AddressBookError> {
    let mut tx = pool.begin().await?;
    lock(&mut tx, customer).await?;
    let updated = sqlx::query(
        "UPDATE customer_addresses
            SET label = $3, name = $4, line1 = $5, line2 = $6, city = $7, postal_code = $8,
                country = $9, updated_at = now()
          WHERE user_id = $1 AND id = $2",
    )
    .bind(customer)
    .bind(id)
    .bind(label.map(AddressLabel::as_str))
    .bind(address.name())
    .bind(address.line1())
    .bind(address.line2())
    .bind(address.city())
    .bind(address.postal_code())
    .bind(address.country().as_str())
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(AddressBookError::NotFound);
    }
    apply_defaults(&mut tx, customer, id, defaults).await?;
    tx.commit().await?;
    Ok(())
}

/// Changes which address is the default shipping and billing address.
pub async fn set_defaults(
    pool: &PgPool,
    customer: Uuid,
    id: Uuid,
    defaults: Defaults,
) -> Result<(), AddressBookError> {
    let mut tx = pool.begin().await?;
    lock(&mut tx, customer).await?;
    let exists: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM customer_addresses WHERE user_id = $1 AND id = $2")
            .bind(customer)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    if exists.is_none() {
        return Err(AddressBookError::NotFound);
    }
    apply_defaults(&mut tx, customer, id, defaults).await?;
    sqlx::query("UPDATE customer_addresses SET updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes an address (a default it was goes with it).
pub async fn remove(pool: &PgPool, customer: Uuid, id: Uuid) -> Result<(), AddressBookError> {
    let removed = sqlx::query("DELETE FROM customer_addresses WHERE user_id = $1 AND id = $2")
        .bind(customer)
        .bind(id)
        .execute(pool)
        .await?;
    if removed.rows_affected() == 0 {
        return Err(AddressBookError::NotFound);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_trimmed_and_bounded() {
        assert_eq!(AddressLabel::parse("  Home ").unwrap().as_str(), "Home");
        assert!(AddressLabel::parse("   ").is_err());
        assert!(AddressLabel::parse(&"x".repeat(LABEL_MAX_LEN + 1)).is_err());
    }
}
