//! Customer notifications through an outbox: a subscription turns order-confirmed, shipped and
//! refunded events into outbox rows — in the same transaction as its checkpoint, and keyed by the
//! event id, so each event enqueues exactly one message — and a sender delivers unsent rows over
//! SMTP (lettre), marking each sent. Delivery is at least once: a crash between the SMTP server's
//! acceptance and the mark sends that one message again, with the same `Message-ID`
//! (`<event id@shop>`) so mail systems can drop the duplicate.

use std::time::Duration;

use domain::order::OrderEvent;
use eventlog::{checkpoint, log, RecordedEvent};
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use schemas::AnyEvent;
use sqlx::{PgPool, Postgres, Row, Transaction};
use tokio::sync::watch;
use uuid::Uuid;

/// Outbox kinds whose body holds a secret and is blanked once sent: the password reset code
/// (enqueued by `accounts::password_reset`, not by this subscription).
pub const SECRET_KINDS: &[&str] = &["password-reset"];

/// The subscription name (its checkpoint row).
pub const SUBSCRIPTION: &str = "notifier";

#[derive(Clone, Debug)]
pub struct NotifierConfig {
    /// `smtp://host:port` (plain), `smtps://host` or `smtp://host?tls=required` (lettre's URL form).
    pub smtp_url: String,
    /// The sender address.
    pub from: String,
    pub idle: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event log: {0}")]
    Log(#[from] eventlog::Error),
    #[error("smtp: {0}")]
    Smtp(String),
}

/// One message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub event_id: Uuid,
    pub kind: &'static str,
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

pub struct Notifier {
    pool: PgPool,
    config: NotifierConfig,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Notifier {
    pub fn new(pool: PgPool, config: NotifierConfig) -> Result<Self, NotifierError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.smtp_url)
            .map_err(|e| NotifierError::Smtp(e.to_string()))?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        Ok(Self {
            pool,
            config,
            transport,
        })
    }

    /// Follows the log and sends, until `stop`.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) -> Result<(), NotifierError> {
        while !*stop.borrow() {
            let enqueued = self.enqueue_batch(500).await?;
            let sent = self.send_due(32).await?;
            if enqueued == 0 && sent == 0 {
                let _ = tokio::time::timeout(self.config.idle, stop.changed()).await;
            }
        }
        Ok(())
    }

    /// Reads the next batch of events and enqueues their notifications, with the checkpoint, in
    /// one transaction. Returns the number of events read.
    pub async fn enqueue_batch(&self, limit: i64) -> Result<usize, NotifierError> {
        let position = checkpoint::load(&self.pool, SUBSCRIPTION).await?;
        let batch = log::read_after(&self.pool, position, limit).await?;
        let Some(last) = batch.last() else {
            return Ok(0);
        };
        let mut tx = self.pool.begin().await?;
        for event in &batch {
            if let Some(notification) = notification_for(&mut tx, event).await? {
                sqlx::query(
                    "INSERT INTO notification_outbox (event_id, kind, recipient, subject, body)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
                )
                .bind(notification.event_id)
                .bind(notification.kind)
                .bind(&notification.recipient)
                .bind(&notification.subject)
                .bind(&notification.body)
                .execute(&mut *tx)
                .await?;
            }
        }
        checkpoint::save(&mut *tx, SUBSCRIPTION, last.position).await?;
        tx.commit().await?;
        Ok(batch.len())
    }

    /// Sends up to `limit` unsent messages; returns how many were sent.
    pub async fn send_due(&self, limit: i64) -> Result<usize, NotifierError> {
        let rows = sqlx::query(
            "UPDATE notification_outbox SET claimed_until = now() + interval '60 seconds', attempts = attempts + 1
              WHERE event_id IN (
                    SELECT event_id FROM notification_outbox
                     WHERE sent_at IS NULL AND (claimed_until IS NULL OR claimed_until < now())
                     ORDER BY created_at LIMIT $1
                     FOR UPDATE SKIP LOCKED)
             RETURNING event_id, recipient, subject, body",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut sent = 0;
        for row in rows {
            let event_id: Uuid = row.get("event_id");
            let result = self
                .send(
                    event_id,
                    row.get("recipient"),
                    row.get("subject"),
                    row.get("body"),
                )
                .await;
            match result {
                Ok(()) => {
                    // a message holding a secret (a password reset code) keeps no copy once delivered
                    sqlx::query(
                        "UPDATE notification_outbox SET sent_at = now(), last_error = NULL,
                                body = CASE WHEN kind = ANY($2) THEN '' ELSE body END
                          WHERE event_id = $1",
                    )
                    .bind(event_id)
                    .bind(SECRET_KINDS)
                    .execute(&self.pool)
                    .await?;
                    sent += 1;
                }
                Err(error) => {
                    tracing::warn!(%event_id, %error, "notification not sent; will retry");
                    sqlx::query(
                        "UPDATE notification_outbox SET last_error = $2,
                                claimed_until = now() + make_interval(secs => least(300, 2 ^ attempts))
                          WHERE event_id = $1",
                    )
                    .bind(event_id)
                    .bind(error.to_string())
                    .execute(&self.pool)
                    .await?;
                }
            }
        }
        Ok(sent)
    }

    async fn send(
        &self,
        event_id: Uuid,
        recipient: String,
        subject: String,
        body: String,
    ) -> Result<(), NotifierError> {
        let smtp = |e: &dyn std::fmt::Display| NotifierError::Smtp(e.to_string());
        let message = Message::builder()
            .from(self.config.from.parse().map_err(|e| smtp(&e))?)
            .to(recipient.parse().map_err(|e| smtp(&e))?)
            .message_id(Some(format!("<{event_id}@shop>")))
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| smtp(&e))?;
        self.transport.send(message).await.map_err(|e| smtp(&e))?;
        Ok(())
    }
}

/// The message an event warrants, if any (guests have no address on file: no message).
async fn notification_for(
    tx: &mut Transaction<'_, Postgres>,
    event: &RecordedEvent,
) -> Result<Option<Notification>, NotifierError> {
    if event.aggregate_type != "order" {
        return Ok(None);
    }
    let Ok(AnyEvent::Order(order_event)) = schemas::decode_ref(
        &event.aggregate_type,
        &event.event_type,
        &event.event_version,
        &event.payload,
    ) else {
        return Ok(None);
    };
    let (kind, subject, text) = match &order_event {
        OrderEvent::OrderConfirmed { .. } => (
            "order-confirmed",
            "Your order is confirmed",
            "Thank you! Your order is confirmed and will ship soon.".to_owned(),
        ),
        OrderEvent::OrderShipped { tracking, .. } => (
            "order-shipped",
            "Your order is on its way",
            match tracking {
                Some(tracking) => format!("Your order has shipped. Tracking number: {tracking}."),
                None => "Your order has shipped.".to_owned(),
            },
        ),
        OrderEvent::OrderRefunded { amount, .. } => (
            "order-refunded",
            "You have been refunded",
            format!(
                "We refunded {}.{:02} {} to your payment method.",
                amount.amount_minor / 100,
                amount.amount_minor % 100,
                amount.currency.as_str()
            ),
        ),
        _ => return Ok(None),
    };
    // the order's customer and number, from the order's first event
    let placed = eventlog::streams::first_event(&mut **tx, "order", &event.aggregate_id).await?;
    let placed = placed.as_ref().map(|e| &e.payload["OrderPlaced"]);
    let Some(customer) = placed
        .and_then(|p| p["customer"].as_str())
        .and_then(|c| c.parse::<Uuid>().ok())
    else {
        return Ok(None);
    };
    let number = placed
        .and_then(|p| p["order_number"].as_u64())
        .unwrap_or_default();
    let Some(contact) = accounts::contact_of(&mut **tx, customer).await? else {
        return Ok(None);
    };
    let name = contact.name;
    Ok(Some(Notification {
        event_id: event.event_id,
        kind,
        recipient: contact.email,
        subject: format!("{subject} (order #{number})"),
        body: format!("Hello {name},\n\n{text}\n\nOrder #{number}\n"),
    }))
}
