//! The checkout saga's runner: it starts a checkout when a cart is checked out, and drives it —
//! doing each [`Step`] the pure [`CheckoutProcess`] asks for (a command on an order, inventory or
//! payment stream, or a payment-gateway call) and recording the outcome — until it waits or ends.
//!
//! Every command it sends has a natural key (`checkout:{order}:{step}`) as its command id, and
//! every gateway call an idempotency key (`{order}:{step}`): a runner killed at any point and
//! restarted redoes the interrupted step, and the event store and the provider recognise it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::cart::CartEvent;
use domain::checkout::{failure_text, CheckoutTerms, Outcome, Step};
use domain::derived_ids::{cancellation_refund_id, payment_id_of_order};
use domain::inventory::InventoryEvent;
use domain::order::OrderLine;
use domain::payment::PaymentEvent;
use domain::pricing::tax_and_shipping;
use domain::{
    CheckoutCommand, CheckoutProcess, InventoryCommand, Money, OrderCommand, OrderError,
    OrderEvent, OrderId, PaymentCommand, RefundId,
};
use eventlog::store::ExecuteError;
use eventlog::{Actor, EventMetadata, RecordedEvent, UnitOfWork};
use schemas::stores::Stores;
use schemas::AnyEvent;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::order_numbers::{OrderNumberError, OrderNumbers};
use crate::payments::{
    AuthorizeOutcome, AuthorizeRequest, CancelOutcome, GatewayError, PaymentGateway,
};
use crate::timers::{self, Timer};

/// Checkout events after which a checkout normally has nothing left to do (the sweep folds
/// streams that end otherwise, to be sure).
const SETTLING_EVENTS: &[&str] = &[
    "CheckoutCompleted",
    "CheckoutFailed",
    "CheckoutClosed",
    "CheckoutRefunded",
    "CheckoutAuthorizationCancelled",
];

/// Times a unit of work whose streams keep moving under it is decided again before the step
/// is left to the timer's retry.
const UNIT_ATTEMPTS: u32 = 6;

/// Commands staged in one unit of work before it is written (the rest go in the next).
const MAX_UNIT_COMMANDS: usize = 24;

/// Timer kinds.
pub const DRIVE: &str = "checkout";
pub const RESERVATION_EXPIRY: &str = "reservation-expiry";

/// Settings of the checkout saga.
#[derive(Clone, Debug)]
pub struct CheckoutConfig {
    /// How long a customer has to get the payment authorized.
    pub payment_timeout: Duration,
    /// How long stock stays reserved beyond the payment deadline before it lapses.
    pub reservation_margin: Duration,
    /// Failed attempts of a timer's work before it is parked for staff. With the backoff capped
    /// at 30 s, the default 240 is about two hours: well inside the 24 h for which Stripe keeps
    /// an idempotency key, so a step resumed by staff the same day is still recognised.
    pub max_attempts: i32,
}

impl Default for CheckoutConfig {
    fn default() -> Self {
        Self {
            payment_timeout: Duration::from_secs(15 * 60),
            reservation_margin: Duration::from_secs(5 * 60),
            max_attempts: 240,
        }
    }
}

/// Why a step could not be done now (it is retried later).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("payment provider unavailable: {0}")]
    Gateway(String),
    #[error("concurrent writers; retry")]
    Conflict,
    #[error("database: {0}")]
    Database(String),
    #[error("unexpected refusal: {0}")]
    Refused(String),
}

impl<E: std::error::Error> From<ExecuteError<E>> for StepError {
    fn from(error: ExecuteError<E>) -> Self {
        match error {
            ExecuteError::Conflict { .. } => StepError::Conflict,
            ExecuteError::Store(e) => StepError::Database(e.to_string()),
            other => StepError::Refused(other.to_string()),
        }
    }
}

impl From<OrderNumberError> for StepError {
    fn from(error: OrderNumberError) -> Self {
        StepError::Database(error.to_string())
    }
}

impl From<eventlog::Error> for StepError {
    fn from(error: eventlog::Error) -> Self {
        match error {
            eventlog::Error::Conflict => StepError::Conflict,
            other => StepError::Database(other.to_string()),
        }
    }
}

/// Whether a step calls the payment provider: what was decided before it is written first, so
/// the provider is only asked on durable state.
fn calls_gateway(step: &Step) -> bool {
    matches!(
        step,
        Step::AuthorizePayment
            | Step::CapturePayment { .. }
            | Step::CancelAuthorization { .. }
            | Step::Refund { .. }
    )
}

/// A short jittered pause before a unit of work is decided again.
async fn unit_backoff(attempt: u32) {
    let base = 1u64 << attempt.min(6);
    let jitter = (Uuid::new_v4().as_u128() % u128::from(base)) as u64;
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

impl From<sqlx::Error> for StepError {
    fn from(error: sqlx::Error) -> Self {
        StepError::Database(error.to_string())
    }
}

/// The metadata of one checkout's commands; [`Conversation::step`] names each command.
struct Conversation {
    order_id: OrderId,
    metadata: EventMetadata,
}

impl Conversation {
    fn step(&self, step: &str) -> EventMetadata {
        let mut metadata = self.metadata.clone();
        metadata.command_id = format!("checkout:{}:{step}", self.order_id);
        metadata
    }
}

/// The checkout saga.
#[derive(Clone)]
pub struct CheckoutSaga {
    pool: PgPool,
    stores: Arc<Stores>,
    gateway: Arc<dyn PaymentGateway>,
    config: CheckoutConfig,
    order_numbers: OrderNumbers,
}

/// Where a drive left the checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driven {
    /// Nothing more to do unless something happens.
    Settled,
    /// Drive again at this time (a deadline).
    WakeAt(DateTime<Utc>),
}

impl CheckoutSaga {
    pub fn new(
        pool: PgPool,
        stores: Arc<Stores>,
        gateway: Arc<dyn PaymentGateway>,
        config: CheckoutConfig,
    ) -> Self {
        Self {
            order_numbers: OrderNumbers::new(pool.clone()),
            pool,
            stores,
            gateway,
            config,
        }
    }

    fn metadata(
        &self,
        order_id: OrderId,
        step: &str,
        cause: Option<&RecordedEvent>,
    ) -> EventMetadata {
        let mut metadata = EventMetadata::new(Actor::system("saga:checkout"));
        metadata.command_id = format!("checkout:{order_id}:{step}");
        if let Some(cause) = cause {
            metadata.causation_id = Some(cause.event_id.to_string());
            if let Some(correlation) = cause.metadata["correlation_id"]
                .as_str()
                .and_then(|c| c.parse().ok())
            {
                metadata.correlation_id = correlation;
            }
        }
        metadata
    }

    /// The metadata every command of this checkout carries: the correlation id the checkout
    /// started with (read once per drive).
    async fn conversation(&self, order_id: OrderId) -> Result<Conversation, StepError> {
        let mut metadata = self.metadata(order_id, "", None);
        let started =
            eventlog::streams::first_event(&self.pool, "checkout", &order_id.to_string()).await?;
        if let Some(correlation) = started
            .as_ref()
            .and_then(|e| e.metadata["correlation_id"].as_str())
            .and_then(|c| c.parse().ok())
        {
            metadata.correlation_id = correlation;
        }
        metadata.causation_id = Some(format!("checkout:{order_id}"));
        Ok(Conversation { order_id, metadata })
    }

    /// Reacts to one event of the log: starts checkouts, and tells running ones what happened
    /// elsewhere (a cancellation, a staff refund, a payment settled by webhook). Idempotent.
    pub async fn on_event(&self, event: &RecordedEvent) -> Result<(), StepError> {
        use tracing::Instrument;
        // one span per handled event, carrying the conversation's correlation id, so a saga's
        // commands are found with the HTTP request that started them
        let span = tracing::info_span!(
            "saga.event",
            saga = "checkout",
            event_type = %event.event_type,
            aggregate = %event.aggregate_type,
            aggregate_id = %event.aggregate_id,
            position = %event.position,
            correlation_id = event.metadata["correlation_id"].as_str().unwrap_or_default(),
        );
        self.handle_event(event).instrument(span).await
    }

    async fn handle_event(&self, event: &RecordedEvent) -> Result<(), StepError> {
        // a cart's check-out carries the shipping address the order needs: opened with its key
        // (read models see it redacted)
        let decoded =
            if schemas::personal::carries_personal_data(&event.aggregate_type, &event.event_type) {
                self.stores
                    .decode_personal(event)
                    .await
                    .map_err(|e| match e {
                        schemas::personal::KeyringError::Decode(e) => {
                            StepError::Refused(e.to_string())
                        }
                        other => StepError::Database(other.to_string()),
                    })
            } else {
                schemas::decode_ref(
                    &event.aggregate_type,
                    &event.event_type,
                    &event.event_version,
                    &event.payload,
                )
                .map_err(|e| StepError::Refused(e.to_string()))
            };
        let decoded = match decoded {
            Ok(decoded) => decoded,
            Err(StepError::Database(e)) => return Err(StepError::Database(e)),
            Err(_) => return Ok(()), // not ours to understand (or a newer type): skip
        };
        match decoded {
            AnyEvent::Cart(CartEvent::CartCheckedOut {
                order_id,
                lines,
                totals,
                shipping_address,
                payment_method,
                checked_out_at,
                ..
            }) => {
                let cart = self.stores.carts.load(&event.aggregate_id).await?.aggregate;
                let customer = match cart.owner() {
                    Some(domain::cart::CartOwner::Customer(customer)) => Some(customer),
                    _ => None,
                };
                let (tax, shipping) =
                    tax_and_shipping(totals.total, shipping_address.country().as_str())
                        .map_err(|e| StepError::Refused(e.to_string()))?;
                let total = totals
                    .total
                    .checked_add(&tax)
                    .and_then(|t| t.checked_add(&shipping))
                    .map_err(|e| StepError::Refused(e.to_string()))?;
                let started_at = checked_out_at;
                let payment_deadline = started_at
                    + chrono::Duration::from_std(self.config.payment_timeout).unwrap_or_default();
                let terms = CheckoutTerms {
                    order_id,
                    cart_id: domain::CartId::new(event.aggregate_id.parse().unwrap_or_default()),
                    customer,
                    lines,
                    currency: totals.total.currency,
                    discount: totals.discount,
                    tax,
                    shipping,
                    total,
                    shipping_address,
                    payment_method,
                    started_at,
                    payment_deadline,
                    reservation_expiry: payment_deadline
                        + chrono::Duration::from_std(self.config.reservation_margin)
                            .unwrap_or_default(),
                };
                let metadata = self.metadata(order_id, "start", Some(event));
                // the checkout and its first wake-up in one transaction
                let id = order_id.to_string();
                let mut attempt = 0;
                loop {
                    let mut unit = self.unit();
                    self.stores
                        .checkouts
                        .stage(
                            &mut unit,
                            &id,
                            CheckoutCommand::Start(Box::new(terms.clone())),
                            &metadata,
                        )
                        .await?;
                    timers::schedule_in(&mut unit, DRIVE, &id, Utc::now(), &json!({}));
                    match unit.commit().await.map_err(StepError::from) {
                        Err(StepError::Conflict) if attempt < UNIT_ATTEMPTS => {
                            attempt += 1;
                            unit_backoff(attempt).await;
                        }
                        other => return other.map(|_| ()),
                    }
                }
            }
            AnyEvent::Order(OrderEvent::OrderCancelled { .. }) => {
                self.observe(event, Outcome::OrderCancelled, "observe-cancellation")
                    .await
            }
            AnyEvent::Order(OrderEvent::OrderRefunded {
                refund_id, amount, ..
            }) => {
                let order_id = OrderId::new(event.aggregate_id.parse().unwrap_or_default());
                if refund_id == cancellation_refund_id(order_id) {
                    return Ok(()); // the saga's own refund of a cancellation
                }
                self.observe(
                    event,
                    Outcome::RefundRequested { refund_id, amount },
                    &format!("observe-refund:{refund_id}"),
                )
                .await
            }
            AnyEvent::Payment(PaymentEvent::PaymentAuthorized { provider_ref, .. }) => {
                self.observe_payment(
                    event,
                    Outcome::PaymentAuthorized { provider_ref },
                    "observe-authorization",
                )
                .await
            }
            AnyEvent::Payment(PaymentEvent::PaymentFailed { reason, .. }) => {
                let outcome = Outcome::PaymentDeclined {
                    provider_ref: None,
                    reason,
                };
                self.observe_payment(event, outcome, "observe-payment-failure")
                    .await
            }
            _ => Ok(()),
        }
    }

    async fn observe(
        &self,
        event: &RecordedEvent,
        outcome: Outcome,
        step: &str,
    ) -> Result<(), StepError> {
        let order_id = OrderId::new(event.aggregate_id.parse().unwrap_or_default());
        self.record_observation(order_id, event, outcome, step)
            .await
    }

    async fn observe_payment(
        &self,
        event: &RecordedEvent,
        outcome: Outcome,
        step: &str,
    ) -> Result<(), StepError> {
        let payment = self
            .stores
            .payments
            .load(&event.aggregate_id)
            .await?
            .aggregate;
        let Some(order_id) = payment.details().map(|p| p.order_id) else {
            return Ok(());
        };
        self.record_observation(order_id, event, outcome, step)
            .await
    }

    async fn record_observation(
        &self,
        order_id: OrderId,
        event: &RecordedEvent,
        outcome: Outcome,
        step: &str,
    ) -> Result<(), StepError> {
        let id = order_id.to_string();
        let checkout = self.stores.checkouts.load(&id).await?;
        if checkout.aggregate.checkout().is_none() {
            return Ok(()); // not a checkout this saga runs (e.g. an order placed by a test)
        }
        let metadata = self.metadata(order_id, &format!("{step}:{}", event.event_id), Some(event));
        // the recording and the wake-up it calls for in one transaction
        let mut attempt = 0;
        loop {
            let mut unit = self.unit();
            match self
                .stores
                .checkouts
                .stage(
                    &mut unit,
                    &id,
                    CheckoutCommand::Record(outcome.clone()),
                    &metadata,
                )
                .await
            {
                // recorded now, or before (a redelivery): the checkout is driven
                Ok(staged) if !staged.events.is_empty() => {
                    timers::schedule_in(&mut unit, DRIVE, &id, Utc::now(), &json!({}));
                }
                Ok(_) | Err(ExecuteError::Domain(_)) => return Ok(()),
                Err(other) => return Err(other.into()),
            }
            match unit.commit().await.map_err(StepError::from) {
                Err(StepError::Conflict) if attempt < UNIT_ATTEMPTS => {
                    attempt += 1;
                    unit_backoff(attempt).await;
                }
                other => return other.map(|_| ()),
            }
        }
    }

    /// A unit of work through the process's group committer: concurrent checkouts' steps share
    /// transactions.
    fn unit(&self) -> UnitOfWork {
        UnitOfWork::new(&self.pool)
    }

    async fn wake(&self, order_id: OrderId, at: DateTime<Utc>) -> Result<(), StepError> {
        timers::schedule(&self.pool, DRIVE, &order_id.to_string(), at, &json!({})).await?;
        Ok(())
    }

    /// Handles a fired timer: drives a checkout, or releases a reservation that lapsed.
    pub async fn fire(&self, timer: &Timer) -> Result<(), StepError> {
        use tracing::Instrument;
        let span = tracing::info_span!("saga.timer", kind = %timer.kind, key = %timer.key);
        self.fire_timer(timer).instrument(span).await
    }

    async fn fire_timer(&self, timer: &Timer) -> Result<(), StepError> {
        match timer.kind.as_str() {
            DRIVE => {
                let order_id = OrderId::new(
                    timer
                        .key
                        .parse()
                        .map_err(|_| StepError::Refused(format!("bad timer key {}", timer.key)))?,
                );
                // the timer is completed or rescheduled in the transaction of the drive's last step
                if let Err(error) = self.drive_timer(order_id, Some(timer)).await {
                    self.failed(timer, &error).await?;
                }
                Ok(())
            }
            RESERVATION_EXPIRY => {
                let (sku, order) = timer
                    .key
                    .split_once('/')
                    .ok_or_else(|| StepError::Refused(format!("bad timer key {}", timer.key)))?;
                let order_id = OrderId::new(
                    order
                        .parse()
                        .map_err(|_| StepError::Refused(format!("bad timer key {}", timer.key)))?,
                );
                let mut metadata = self.metadata(order_id, &format!("expire:{sku}"), None);
                metadata.actor = Actor::system("timer:reservation-expiry");
                let command = InventoryCommand::ReleaseReservation {
                    order_id,
                    reason: domain::inventory::EXPIRED_REASON.to_owned(),
                };
                // a reservation that was committed in time is not there any more: a no-op. The
                // release and the timer's completion in one transaction.
                let mut attempt = 0;
                let released = loop {
                    let mut unit = self.unit();
                    if let Err(error) = self
                        .stores
                        .inventory
                        .stage(&mut unit, sku, command.clone(), &metadata)
                        .await
                    {
                        break Err(StepError::from(error));
                    }
                    timers::complete_in(&mut unit, timer);
                    match unit.commit().await.map_err(StepError::from) {
                        Err(StepError::Conflict) if attempt < UNIT_ATTEMPTS => {
                            attempt += 1;
                            unit_backoff(attempt).await;
                        }
                        other => break other.map(|_| ()),
                    }
                };
                if let Err(error) = released {
                    self.failed(timer, &error).await?;
                }
                Ok(())
            }
            other => {
                tracing::error!(kind = other, "unknown timer kind; dropping it");
                timers::complete(&self.pool, timer).await?;
                Ok(())
            }
        }
    }

    /// A timer's work failed: retried later with backoff, or parked for staff once it failed
    /// `max_attempts` times.
    async fn failed(&self, timer: &Timer, error: &StepError) -> Result<(), StepError> {
        if timer.attempts >= self.config.max_attempts {
            tracing::error!(
                kind = %timer.kind,
                key = %timer.key,
                attempts = timer.attempts,
                %error,
                "saga work keeps failing; parked for staff (shop saga parked / resume)"
            );
            metrics::counter!("shop_saga_parked_total", "kind" => timer.kind.clone()).increment(1);
            timers::park(&self.pool, timer, &error.to_string()).await?;
        } else {
            tracing::warn!(kind = %timer.kind, key = %timer.key, attempts = timer.attempts, %error, "saga work failed; retrying later");
            timers::retry_later(&self.pool, timer).await?;
        }
        Ok(())
    }

    /// Finds checkouts that have work left but no timer to drive them (a lost wake-up, a timer
    /// removed by hand) and schedules a drive for each; returns how many. Parked checkouts stay
    /// parked. A safety net run now and then by the runner: it reads every checkout stream's
    /// head once, then folds only the streams whose last event is not one that ends a phase.
    pub async fn sweep(&self) -> Result<u64, StepError> {
        let unsettled =
            eventlog::streams::streams_not_ending_with(&self.pool, "checkout", SETTLING_EVENTS)
                .await?;
        // those with a timer (due or parked) will be driven, or wait for staff
        let timed: Vec<String> = sqlx::query_scalar(
            "SELECT key FROM timers WHERE kind = $1 AND key = ANY($2)
             UNION SELECT key FROM parked_timers WHERE kind = $1 AND key = ANY($2)",
        )
        .bind(DRIVE)
        .bind(&unsettled)
        .fetch_all(&self.pool)
        .await?;
        let timed: std::collections::HashSet<String> = timed.into_iter().collect();
        let candidates = unsettled.into_iter().filter(|id| !timed.contains(id));
        let mut scheduled = 0;
        let now = Utc::now();
        for id in candidates {
            let process = self.stores.checkouts.load(&id).await?.aggregate;
            if process.next_step(now) == Step::Idle {
                continue;
            }
            let order_id = OrderId::new(
                id.parse()
                    .map_err(|_| StepError::Refused(format!("bad checkout id {id}")))?,
            );
            tracing::warn!(%order_id, "checkout had work left but no timer; driving it again");
            self.wake(order_id, now).await?;
            scheduled += 1;
        }
        Ok(scheduled)
    }

    /// Does the checkout's steps until it waits or settles.
    pub async fn drive(&self, order_id: OrderId) -> Result<Driven, StepError> {
        self.drive_timer(order_id, None).await
    }

    /// [`drive`](Self::drive) for a fired `timer`, which is completed (settled) or rescheduled
    /// (waiting) in the transaction of the last step. Each step's command, its recording on the
    /// checkout and its timer changes are written in one unit of work, and consecutive steps
    /// share a unit until a step calls the payment provider (what came before is written first)
    /// or [`MAX_UNIT_COMMANDS`] are staged. A unit whose streams moved under it (another runner,
    /// an observation, a concurrent reservation) is decided again on what they are now.
    async fn drive_timer(
        &self,
        order_id: OrderId,
        timer: Option<&Timer>,
    ) -> Result<Driven, StepError> {
        let conversation = self.conversation(order_id).await?;
        let mut attempt = 0;
        loop {
            match self.drive_units(order_id, timer, &conversation).await {
                Err(StepError::Conflict) if attempt < UNIT_ATTEMPTS => {
                    attempt += 1;
                    metrics::counter!("shop_saga_unit_conflicts_total").increment(1);
                    unit_backoff(attempt).await;
                }
                other => return other,
            }
        }
    }

    async fn drive_units(
        &self,
        order_id: OrderId,
        timer: Option<&Timer>,
        conversation: &Conversation,
    ) -> Result<Driven, StepError> {
        let id = order_id.to_string();
        let mut unit = self.unit();
        let mut process = self.stores.checkouts.load_latest(&id).await?.aggregate;
        for _ in 0..200 {
            let now = Utc::now();
            let step = process.next_step(now);
            let wake_at = match step {
                Step::Idle => {
                    if let Some(timer) = timer {
                        timers::complete_in(&mut unit, timer);
                    }
                    unit.commit().await?;
                    return Ok(Driven::Settled);
                }
                Step::WaitUntil(at) => Some(at),
                _ => None,
            };
            if let Some(at) = wake_at {
                if let Some(timer) = timer {
                    timers::reschedule_in(&mut unit, timer, at);
                }
                unit.commit().await?;
                return Ok(Driven::WakeAt(at));
            }
            if calls_gateway(&step) && !unit.is_empty() {
                std::mem::replace(&mut unit, self.unit()).commit().await?;
            }
            let outcome = match step {
                Step::Finish => Outcome::Finished,
                step => match self
                    .perform(&mut unit, &process, &step, conversation)
                    .await?
                {
                    Some(outcome) => outcome,
                    None => {
                        let at = now + chrono::Duration::seconds(1);
                        if let Some(timer) = timer {
                            timers::reschedule_in(&mut unit, timer, at);
                        }
                        unit.commit().await?;
                        return Ok(Driven::WakeAt(at));
                    }
                },
            };
            // each recording is its own command: give it its own id (written with the step's
            // command, so a replayed step records again only if its command was not written)
            let metadata = conversation.step(&format!("record:{}", Uuid::now_v7()));
            let recorded = self
                .stores
                .checkouts
                .stage(&mut unit, &id, CheckoutCommand::Record(outcome), &metadata)
                .await
                .map_err(StepError::from)?;
            process = recorded.aggregate;
            if unit.staged_commands() >= MAX_UNIT_COMMANDS {
                std::mem::replace(&mut unit, self.unit()).commit().await?;
            }
        }
        Err(StepError::Refused(format!(
            "checkout {order_id} did not settle in 200 steps"
        )))
    }

    /// Does one step; `None` when it cannot be done yet (try again shortly).
    async fn perform(
        &self,
        unit: &mut UnitOfWork,
        process: &CheckoutProcess,
        step: &Step,
        conversation: &Conversation,
    ) -> Result<Option<Outcome>, StepError> {
        let checkout = process
            .checkout()
            .ok_or_else(|| StepError::Refused("checkout not started".into()))?;
        let terms = &checkout.terms;
        let order_id = terms.order_id;
        let order = order_id.to_string();
        let payment_id = payment_id_of_order(order_id);
        let payment = payment_id.to_string();
        let now = Utc::now();
        let outcome = match step {
            Step::PlaceOrder => {
                let order_number = self.order_numbers.assign(order_id).await?;
                let mut lines = Vec::with_capacity(terms.lines.len());
                for line in &terms.lines {
                    let product = self
                        .stores
                        .products
                        .load(line.sku.as_str())
                        .await?
                        .aggregate;
                    let name = product
                        .details()
                        .map_or_else(|| line.sku.to_string(), |d| d.name.clone());
                    lines.push(OrderLine {
                        sku: line.sku.clone(),
                        name,
                        quantity: line.quantity,
                        unit_price: line.unit_price,
                    });
                }
                let command = OrderCommand::Place {
                    order_number,
                    customer: terms.customer,
                    cart_id: terms.cart_id,
                    lines,
                    currency: terms.currency,
                    discount: terms.discount,
                    tax: terms.tax,
                    shipping: terms.shipping,
                    shipping_address: terms.shipping_address.clone(),
                    payment_method: terms.payment_method.clone(),
                    placed_at: now,
                };
                let metadata = conversation.step("place");
                match self
                    .stores
                    .orders
                    .stage(unit, &order, command, &metadata)
                    .await
                {
                    Ok(_) | Err(ExecuteError::Domain(OrderError::AlreadyPlaced)) => {}
                    Err(other) => return Err(other.into()),
                }
                Outcome::OrderPlaced { order_number }
            }
            Step::Reserve { sku, quantity } => {
                let command = InventoryCommand::Reserve {
                    order_id,
                    quantity: *quantity,
                    expires_at: terms.reservation_expiry,
                };
                let metadata = conversation.step(&format!("reserve:{sku}"));
                let receipt = self
                    .stores
                    .inventory
                    .stage(unit, sku.as_str(), command, &metadata)
                    .await?;
                let refused = receipt.events.iter().find_map(|e| match e {
                    InventoryEvent::ReservationRefused { available, .. } => Some(*available),
                    _ => None,
                });
                match refused {
                    Some(available) => Outcome::StockRefused {
                        sku: sku.clone(),
                        available,
                    },
                    None => {
                        let key = format!("{sku}/{order_id}");
                        timers::schedule_in(
                            unit,
                            RESERVATION_EXPIRY,
                            &key,
                            terms.reservation_expiry,
                            &json!({}),
                        );
                        Outcome::StockReserved { sku: sku.clone() }
                    }
                }
            }
            Step::MarkOrderStockReserved => {
                let metadata = conversation.step("mark-stock-reserved");
                self.order_command(
                    unit,
                    &order,
                    OrderCommand::MarkStockReserved { at: now },
                    &metadata,
                )
                .await?;
                Outcome::OrderStockMarked
            }
            Step::RequestPayment => {
                let command = PaymentCommand::Request {
                    order_id,
                    amount: terms.total,
                    method: terms.payment_method.clone(),
                    requested_at: now,
                };
                let metadata = conversation.step("request-payment");
                match self
                    .stores
                    .payments
                    .stage(unit, &payment, command, &metadata)
                    .await
                {
                    Ok(_) | Err(ExecuteError::Domain(domain::PaymentError::AlreadyRequested)) => {}
                    Err(other) => return Err(other.into()),
                }
                Outcome::PaymentRequested
            }
            Step::AuthorizePayment => {
                let request = AuthorizeRequest {
                    idempotency_key: format!("{order_id}:authorize"),
                    order_id: order_id.as_uuid(),
                    amount_minor: terms.total.amount_minor,
                    currency: terms.currency.as_str().to_owned(),
                    payment_method: terms.payment_method.clone(),
                };
                let remaining = (terms.payment_deadline - now).to_std().unwrap_or_default();
                match tokio::time::timeout(remaining, self.gateway.authorize(request)).await {
                    Err(_) => Outcome::PaymentTimedOut,
                    Ok(Err(GatewayError::Unavailable(reason))) => {
                        return Err(StepError::Gateway(reason))
                    }
                    Ok(Err(GatewayError::Rejected(reason))) => Outcome::PaymentDeclined {
                        provider_ref: None,
                        reason,
                    },
                    Ok(Ok(AuthorizeOutcome::Authorized { provider_ref })) => {
                        let metadata = conversation.step("authorize");
                        let command = PaymentCommand::Authorize {
                            provider_ref: provider_ref.clone(),
                            at: Utc::now(),
                        };
                        self.stores
                            .payments
                            .stage(unit, &payment, command, &metadata)
                            .await?;
                        Outcome::PaymentAuthorized { provider_ref }
                    }
                    Ok(Ok(AuthorizeOutcome::Declined {
                        provider_ref,
                        reason,
                        ..
                    })) => Outcome::PaymentDeclined {
                        provider_ref,
                        reason,
                    },
                }
            }
            Step::TimeOutPayment => Outcome::PaymentTimedOut,
            Step::ConfirmOrder => {
                let metadata = conversation.step("confirm");
                let command = OrderCommand::Confirm {
                    payment_id,
                    at: now,
                };
                match self
                    .stores
                    .orders
                    .stage(unit, &order, command, &metadata)
                    .await
                {
                    Ok(_) => Outcome::OrderConfirmed,
                    // cancelled in the meantime: the saga moves on to undo
                    Err(ExecuteError::Domain(OrderError::InvalidTransition { .. })) => {
                        Outcome::OrderCancelled
                    }
                    Err(other) => return Err(other.into()),
                }
            }
            Step::CommitReservation { sku } => {
                let metadata = conversation.step(&format!("commit:{sku}"));
                let receipt = self
                    .stores
                    .inventory
                    .stage(
                        unit,
                        sku.as_str(),
                        InventoryCommand::CommitReservation { order_id },
                        &metadata,
                    )
                    .await?;
                let committed = receipt
                    .events
                    .iter()
                    .any(|e| matches!(e, InventoryEvent::ReservationCommitted { .. }))
                    || receipt.aggregate.committed(&order_id).is_some();
                if committed {
                    Outcome::ReservationCommitted { sku: sku.clone() }
                } else {
                    // the reservation lapsed before the commit: never sell stock we do not
                    // hold; the checkout compensates (and cancels the confirmed order)
                    tracing::warn!(%sku, %order_id, "reservation lapsed before its commit");
                    Outcome::ReservationLapsed { sku: sku.clone() }
                }
            }
            Step::CapturePayment { provider_ref } => {
                self.gateway
                    .capture(
                        provider_ref,
                        terms.total.amount_minor,
                        &format!("{order_id}:capture"),
                    )
                    .await
                    .map_err(|e| StepError::Gateway(e.to_string()))?;
                let metadata = conversation.step("capture");
                self.stores
                    .payments
                    .stage(
                        unit,
                        &payment,
                        PaymentCommand::Capture {
                            amount: terms.total,
                            at: Utc::now(),
                        },
                        &metadata,
                    )
                    .await?;
                Outcome::PaymentCaptured
            }
            Step::CancelAuthorization { provider_ref } => {
                match self
                    .gateway
                    .cancel(provider_ref, &format!("{order_id}:cancel"))
                    .await
                {
                    Ok(CancelOutcome::Cancelled) => {}
                    Ok(CancelOutcome::AlreadyCaptured) => {
                        // the money was taken (a capture whose answer was lost, or one that
                        // raced a cancellation): book it; the checkout then refunds it
                        self.book_capture(unit, &payment, provider_ref, terms.total, conversation)
                            .await?;
                        return Ok(Some(Outcome::PaymentCaptured));
                    }
                    // not a cancellation that happened: never treated as done (bounded retries,
                    // then the checkout is parked for staff)
                    Err(GatewayError::Rejected(reason)) => {
                        return Err(StepError::Refused(format!(
                            "the provider refused to cancel {provider_ref}: {reason}"
                        )))
                    }
                    Err(GatewayError::Unavailable(reason)) => {
                        return Err(StepError::Gateway(reason))
                    }
                }
                let metadata = conversation.step("cancel-payment");
                // a payment that was never authorized in our books has nothing to cancel there
                let _ = self
                    .stores
                    .payments
                    .stage(
                        unit,
                        &payment,
                        PaymentCommand::Cancel { at: Utc::now() },
                        &metadata,
                    )
                    .await;
                Outcome::AuthorizationCancelled
            }
            Step::ReleaseReservation { sku } => {
                let metadata = conversation.step(&format!("release:{sku}"));
                let reason = checkout
                    .failure
                    .as_ref()
                    .map_or_else(|| "order cancelled".to_owned(), failure_text);
                self.stores
                    .inventory
                    .stage(
                        unit,
                        sku.as_str(),
                        InventoryCommand::ReleaseReservation { order_id, reason },
                        &metadata,
                    )
                    .await?;
                Outcome::ReservationReleased { sku: sku.clone() }
            }
            Step::FailPayment { reason } => {
                let metadata = conversation.step("fail-payment");
                match self
                    .stores
                    .payments
                    .stage(
                        unit,
                        &payment,
                        PaymentCommand::Fail {
                            reason: reason.clone(),
                            at: Utc::now(),
                        },
                        &metadata,
                    )
                    .await
                {
                    Ok(_) | Err(ExecuteError::Domain(_)) => {}
                    Err(other) => return Err(other.into()),
                }
                Outcome::PaymentFailed
            }
            Step::FailOrder { reason } => {
                let metadata = conversation.step("fail-order");
                let command = OrderCommand::Fail {
                    reason: reason.clone(),
                    at: Utc::now(),
                };
                match self
                    .stores
                    .orders
                    .stage(unit, &order, command, &metadata)
                    .await
                {
                    // an order cancelled meanwhile is already final
                    Ok(_) | Err(ExecuteError::Domain(OrderError::InvalidTransition { .. })) => {}
                    Err(other) => return Err(other.into()),
                }
                Outcome::OrderFailed
            }
            Step::CancelOrder { reason } => {
                let metadata = conversation.step("cancel-order");
                let command = OrderCommand::Cancel {
                    reason: failure_text(reason),
                    by: domain::order::CancelledBy::System,
                    at: Utc::now(),
                };
                // an order cancelled meanwhile is already final
                self.order_command(unit, &order, command, &metadata).await?;
                Outcome::OrderFailed
            }
            Step::ReturnStock { sku, quantity } => {
                let metadata = conversation.step(&format!("return:{sku}"));
                let command = InventoryCommand::ReturnStock {
                    order_id,
                    quantity: *quantity,
                };
                match self
                    .stores
                    .inventory
                    .stage(unit, sku.as_str(), command, &metadata)
                    .await
                {
                    Ok(_)
                    | Err(ExecuteError::Domain(domain::InventoryError::ReturnExceedsCommitted {
                        ..
                    })) => {}
                    Err(other) => return Err(other.into()),
                }
                Outcome::StockReturned { sku: sku.clone() }
            }
            Step::Refund {
                refund_id,
                amount,
                provider_ref,
            } => {
                let provider_refund_id = self
                    .gateway
                    .refund(
                        provider_ref,
                        amount.amount_minor,
                        &format!("{order_id}:refund:{refund_id}"),
                    )
                    .await
                    .map_err(|e| StepError::Gateway(e.to_string()))?;
                let metadata = conversation.step(&format!("refund:{refund_id}"));
                self.stores
                    .payments
                    .stage(
                        unit,
                        &payment,
                        PaymentCommand::Refund {
                            refund_id: *refund_id,
                            amount: *amount,
                            at: Utc::now(),
                        },
                        &metadata,
                    )
                    .await?;
                if *refund_id == cancellation_refund_id(order_id) {
                    self.record_cancellation_refund(
                        unit,
                        conversation,
                        order_id,
                        *refund_id,
                        *amount,
                    )
                    .await?;
                }
                Outcome::Refunded {
                    refund_id: *refund_id,
                    provider_refund_id,
                }
            }
            Step::Finish | Step::Idle | Step::WaitUntil(_) => return Ok(None),
        };
        Ok(Some(outcome))
    }

    /// Books a capture the provider reports (authorizing first when the books never saw the
    /// authorization), so the refund that follows finds captured money.
    async fn book_capture(
        &self,
        unit: &mut UnitOfWork,
        payment: &str,
        provider_ref: &str,
        amount: Money,
        conversation: &Conversation,
    ) -> Result<(), StepError> {
        let at = Utc::now();
        let authorize = PaymentCommand::Authorize {
            provider_ref: provider_ref.to_owned(),
            at,
        };
        self.stores
            .payments
            .stage(unit, payment, authorize, &conversation.step("authorize"))
            .await?;
        let capture = PaymentCommand::Capture { amount, at };
        match self
            .stores
            .payments
            .stage(unit, payment, capture, &conversation.step("capture"))
            .await
        {
            Ok(_) => Ok(()),
            Err(ExecuteError::Domain(error)) => Err(StepError::Refused(format!(
                "the provider captured {provider_ref}, but the books refuse it: {error}"
            ))),
            Err(other) => Err(other.into()),
        }
    }

    async fn order_command(
        &self,
        unit: &mut UnitOfWork,
        order: &str,
        command: OrderCommand,
        metadata: &EventMetadata,
    ) -> Result<(), StepError> {
        match self
            .stores
            .orders
            .stage(unit, order, command, metadata)
            .await
        {
            Ok(_) => Ok(()),
            Err(ExecuteError::Domain(OrderError::InvalidTransition { .. })) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }

    /// The order's history shows the money that went back on cancellation.
    async fn record_cancellation_refund(
        &self,
        unit: &mut UnitOfWork,
        conversation: &Conversation,
        order_id: OrderId,
        refund_id: RefundId,
        amount: Money,
    ) -> Result<(), StepError> {
        let metadata = conversation.step("refund-on-order");
        let command = OrderCommand::Refund {
            refund_id,
            amount,
            reason: "order cancelled".to_owned(),
            at: Utc::now(),
        };
        match self
            .stores
            .orders
            .stage(unit, &order_id.to_string(), command, &metadata)
            .await
        {
            Ok(_) | Err(ExecuteError::Domain(_)) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }
}
