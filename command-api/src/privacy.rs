//! A customer's personal data: the export of everything the shop holds about them, and its
//! erasure (GDPR articles 15/20 and 17).
//!
//! Erasure destroys the customer's data key (`schemas::personal`): the shipping addresses sealed
//! in their events can never be opened again, while the events, their hash chains and the audit
//! anchors stay as they were. The account itself (e-mail, name, password hash, sessions) is
//! deleted, and so are the notification e-mails queued or sent to them. Read models never held
//! the personal fields (they decode them as `[redacted]`), so they need no change.

use chrono::{DateTime, Utc};
use domain::order::PlacedOrder;
use domain::{Address, CustomerId};
use schemars::JsonSchema;
use schemas::personal::{Keyring, KeyringError, Subject};
use schemas::stores::Stores;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Why an export or an erasure failed.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error(
        "personal data is not sealed on this shop (no SHOP_DATA_KEY_MASTER): it cannot be erased"
    )]
    NotSealed,
    #[error("only a customer's data is exported or erased here; {0} is a {1} account")]
    NotACustomer(Uuid, String),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    Store(#[from] eventlog::Error),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The account, as the customer gave it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ExportedProfile {
    pub email: String,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

/// One of the customer's orders, with the shipping address they gave (`[erased]` once erased).
#[derive(Debug, Serialize, JsonSchema)]
pub struct ExportedOrder {
    pub order_id: Uuid,
    #[schemars(with = "serde_json::Value")]
    pub order: PlacedOrder,
}

/// One of the customer's product reviews, as it stands (without who voted for it).
#[derive(Debug, Serialize, JsonSchema)]
pub struct ExportedReview {
    pub review_id: Uuid,
    pub sku: String,
    pub rating: u8,
    pub title: String,
    pub text: String,
    pub verified_purchase: bool,
    pub hidden: bool,
    pub written_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub helpful_votes: usize,
}

/// Everything the shop holds about one customer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DataExport {
    pub customer_id: Uuid,
    pub exported_at: DateTime<Utc>,
    /// `null` once the account was erased.
    pub profile: Option<ExportedProfile>,
    /// Every shipping address of their orders, each once.
    pub addresses: Vec<Address>,
    pub orders: Vec<ExportedOrder>,
    /// The product reviews they wrote.
    pub reviews: Vec<ExportedReview>,
    /// Whether their personal data was erased.
    pub erased: bool,
}

/// What an erasure did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErasureReport {
    pub customer_id: Uuid,
    /// Whether a data key was destroyed now (false: none existed yet, or it was erased before;
    /// either way nothing of the customer is stored any more).
    pub key_destroyed: bool,
    /// Whether the account (e-mail, name, password hash, sessions) was deleted now.
    pub account_deleted: bool,
    /// Notification e-mails to the customer's address deleted from the outbox.
    pub notifications_deleted: u64,
    /// Events stored in plaintext before personal fields were sealed. They are immutable (the
    /// hash chain covers them) and stay in the log, redacted on every read from now on.
    pub plaintext_events_kept: i64,
}

/// Refuses accounts that are not customers' (staff and auditors are not erased here).
async fn customer_account(
    pool: &PgPool,
    customer: Uuid,
) -> Result<Option<accounts::profile::Profile>, PrivacyError> {
    let Some(profile) = accounts::profile::load(pool, customer).await? else {
        return Ok(None);
    };
    if profile.role != accounts::Role::Customer {
        return Err(PrivacyError::NotACustomer(
            customer,
            profile.role.as_str().to_owned(),
        ));
    }
    Ok(Some(profile))
}

/// The customer's data: their account and every order they placed, with the personal fields
/// opened (read from the event store, not from a read model).
pub async fn export(
    pool: &PgPool,
    stores: &Stores,
    customer: Uuid,
) -> Result<DataExport, PrivacyError> {
    let profile = customer_account(pool, customer).await?;
    // the event store is the truth (read models hold no addresses); a scan of the order
    // placements, fine for an operation this rare
    let placements = eventlog::streams::find_by_payload_field(
        pool,
        "order",
        "OrderPlaced",
        &["OrderPlaced", "customer"],
        &customer.to_string(),
    )
    .await?;
    let order_ids: Vec<String> = placements.into_iter().map(|e| e.aggregate_id).collect();
    let mut orders = Vec::with_capacity(order_ids.len());
    let mut addresses: Vec<Address> = Vec::new();
    for id in order_ids {
        let loaded = stores.orders.load(&id).await?;
        let Some(placed) = loaded.aggregate.placed() else {
            continue;
        };
        if !addresses.contains(&placed.shipping_address) {
            addresses.push(placed.shipping_address.clone());
        }
        orders.push(ExportedOrder {
            order_id: id.parse().unwrap_or_default(),
            order: placed.clone(),
        });
    }
    // their reviews: the review streams they wrote (a scan of the review events: an export is rare)
    let review_ids = eventlog::streams::stream_ids_by_event_field(
        pool,
        "review",
        "ReviewWritten",
        "author",
        &customer.to_string(),
    )
    .await?;
    let mut reviews = Vec::with_capacity(review_ids.len());
    for id in review_ids {
        let loaded = stores.reviews.load(&id).await?;
        let Some(review) = loaded.aggregate.written() else {
            continue;
        };
        reviews.push(ExportedReview {
            review_id: review.review_id.as_uuid(),
            sku: review.sku.to_string(),
            rating: review.rating.stars(),
            title: review.title.clone(),
            text: review.text.clone(),
            verified_purchase: review.verified_purchase,
            hidden: review.hidden,
            written_at: review.written_at,
            edited_at: review.edited_at,
            helpful_votes: review.helpful_voters.len(),
        });
    }
    let erased = match &stores.keyring {
        Some(_) => sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM data_keys WHERE subject = $1 AND erased_at IS NOT NULL)",
        )
        .bind(Subject::Customer(CustomerId::new(customer)).name())
        .fetch_one(pool)
        .await?,
        None => false,
    };
    Ok(DataExport {
        customer_id: customer,
        exported_at: Utc::now(),
        profile: profile.map(|p| ExportedProfile {
            email: p.email,
            name: p.name,
            role: p.role.as_str().to_owned(),
            created_at: p.created_at,
        }),
        addresses,
        orders,
        reviews,
        erased,
    })
}

/// Erases the customer's personal data: their data key, their account and the e-mails queued
/// or sent to them. Idempotent.
pub async fn erase(
    pool: &PgPool,
    keyring: Option<&Keyring>,
    customer: Uuid,
) -> Result<ErasureReport, PrivacyError> {
    let keyring = keyring.ok_or(PrivacyError::NotSealed)?;
    let account = customer_account(pool, customer).await?;
    let erasure = keyring
        .erase(&Subject::Customer(CustomerId::new(customer)))
        .await?;
    let mut tx = pool.begin().await?;
    let mut notifications_deleted = 0;
    // the notifier's outbox (a table of the sagas' migrations; absent where they are not run)
    let outbox: bool = sqlx::query_scalar("SELECT to_regclass('notification_outbox') IS NOT NULL")
        .fetch_one(&mut *tx)
        .await?;
    if let (Some(account), true) = (&account, outbox) {
        notifications_deleted = sqlx::query("DELETE FROM notification_outbox WHERE recipient = $1")
            .bind(&account.email)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    // refresh tokens go with the account (ON DELETE CASCADE): every session ends
    let account_deleted = accounts::delete_customer(&mut *tx, customer).await?;
    tx.commit().await?;
    let plaintext_events_kept = keyring
        .plaintext_events_of(CustomerId::new(customer))
        .await?;
    tracing::info!(
        %customer,
        key_destroyed = erasure.key_destroyed,
        account_deleted,
        notifications_deleted,
        plaintext_events_kept,
        "customer's personal data erased"
    );
    Ok(ErasureReport {
        customer_id: customer,
        key_destroyed: erasure.key_destroyed,
        account_deleted,
        notifications_deleted,
        plaintext_events_kept,
    })
}
