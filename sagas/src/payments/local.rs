//! The local payment gateway: a [`PaymentGateway`] that follows Stripe's test cards, for
//! development, demos and tests (no network, no account).
//!
//! | payment method | outcome |
//! |---|---|
//! | `pm_card_visa`, `pm_card_mastercard` | authorized |
//! | `pm_card_chargeDeclined` | declined, `card_declined` |
//! | `pm_card_chargeDeclinedInsufficientFunds` | declined, `insufficient_funds` |
//! | `pm_card_slow` | authorized after a delay (2 s unless configured) |
//! | anything else | declined, `invalid_payment_method` |
//!
//! The rules follow Stripe's: capture only an authorized (`requires_capture`) intent and at most
//! its amount; cancel only an uncaptured one; refund only a captured one and at most what is left.
//! Every call is idempotent by its key, as Stripe's `Idempotency-Key` is: a key seen before
//! answers with the first result and changes nothing; a key reused with different parameters is
//! refused. Refused calls ([`GatewayError::Rejected`]) are not remembered (Stripe does not keep
//! results of requests that fail validation either).
//!
//! The state lives in one of two stores, behind the same rules:
//! - **in memory** ([`LocalGateway::new`], [`LocalGateway::with_slow_delay`]): gone with the
//!   process; for unit tests;
//! - **in PostgreSQL** ([`LocalGateway::persistent`], tables of migration 0301): kept outside the
//!   process as a real provider keeps it, so a restarted process (or another one) can capture,
//!   cancel or refund what an earlier one authorized. Every call is one transaction that first
//!   claims its idempotency key (a concurrent call with the same key waits for it, then answers
//!   from it) and locks the intent it changes (`SELECT … FOR UPDATE`); intent and refund ids are
//!   UUID-based, so processes never collide. The slow card's delay is spent before the
//!   transaction starts, so no writing transaction stays open while it waits.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres};
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

use super::{AuthorizeOutcome, AuthorizeRequest, CancelOutcome, GatewayError, PaymentGateway};

/// Authorizes.
pub const CARD_VISA: &str = "pm_card_visa";
/// Authorizes.
pub const CARD_MASTERCARD: &str = "pm_card_mastercard";
/// Declines: "Your card was declined." (`card_declined`).
pub const CARD_DECLINED: &str = "pm_card_chargeDeclined";
/// Declines: "Your card has insufficient funds." (`insufficient_funds`).
pub const CARD_INSUFFICIENT_FUNDS: &str = "pm_card_chargeDeclinedInsufficientFunds";
/// Authorizes after the gateway's slow delay.
pub const CARD_SLOW: &str = "pm_card_slow";

/// How long [`CARD_SLOW`] takes unless configured otherwise.
pub const DEFAULT_SLOW_DELAY: Duration = Duration::from_secs(2);

/// Where a local PaymentIntent stands (the Stripe statuses the local gateway uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalIntentStatus {
    /// Declined at authorization; nothing is held.
    RequiresPaymentMethod,
    /// Authorized: the amount is held, waiting for capture or cancel.
    RequiresCapture,
    /// Captured (possibly partly, possibly refunded since).
    Succeeded,
    /// Released without capture.
    Canceled,
}

/// A refund of a local intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalRefund {
    pub id: String,
    pub amount_minor: i64,
}

/// A PaymentIntent as the local gateway holds it (for tests and the development UI to inspect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalIntent {
    /// `pi_local_…` (a counter in memory, a UUID in PostgreSQL), the `provider_ref`.
    pub id: String,
    pub order_id: Uuid,
    /// What was authorized (or attempted).
    pub amount_minor: i64,
    /// As requested (upper case).
    pub currency: String,
    pub payment_method: String,
    pub status: LocalIntentStatus,
    /// What was captured (0 until captured).
    pub captured_minor: i64,
    /// The sum of the refunds.
    pub refunded_minor: i64,
    pub refunds: Vec<LocalRefund>,
}

/// How many calls of each kind reached the gateway, replays by idempotency key included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalCallCounts {
    pub authorize: u64,
    pub capture: u64,
    pub cancel: u64,
    pub refund: u64,
    /// Calls answered from an earlier call with the same idempotency key.
    pub replayed: u64,
}

impl LocalIntentStatus {
    /// Stripe's name for the status (what the PostgreSQL store keeps).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequiresPaymentMethod => "requires_payment_method",
            Self::RequiresCapture => "requires_capture",
            Self::Succeeded => "succeeded",
            Self::Canceled => "canceled",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Self::RequiresPaymentMethod,
            Self::RequiresCapture,
            Self::Succeeded,
            Self::Canceled,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

// ---------------------------------------------------------------------------------------------
// the gateway

/// The local gateway. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct LocalGateway {
    slow_delay: Duration,
    store: Store,
}

impl Default for LocalGateway {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalGateway {
    /// An in-memory gateway whose [`CARD_SLOW`] takes [`DEFAULT_SLOW_DELAY`].
    pub fn new() -> Self {
        Self::with_slow_delay(DEFAULT_SLOW_DELAY)
    }

    /// An in-memory gateway whose [`CARD_SLOW`] takes `slow_delay`.
    pub fn with_slow_delay(slow_delay: Duration) -> Self {
        Self {
            slow_delay,
            store: Store::Memory(Mutex::new(State::default())),
        }
    }

    /// A gateway keeping its intents, refunds and idempotency keys in `pool`'s database (the
    /// tables of `sagas::MIGRATIONS`' `local_payments`), whose [`CARD_SLOW`] takes `slow_delay`.
    /// Any number of gateways, in any number of processes, may share one database.
    pub fn persistent(pool: PgPool, slow_delay: Duration) -> Self {
        Self {
            slow_delay,
            store: Store::Postgres(pool),
        }
    }

    /// Whether the state is kept in PostgreSQL (rather than in this process's memory).
    pub fn is_persistent(&self) -> bool {
        matches!(self.store, Store::Postgres(_))
    }

    /// The intent `provider_ref`, as it stands now.
    pub async fn intent(&self, provider_ref: &str) -> Result<Option<LocalIntent>, GatewayError> {
        self.store.intent(provider_ref).await
    }

    /// Every intent, in creation order.
    pub async fn intents(&self) -> Result<Vec<LocalIntent>, GatewayError> {
        self.store.intents().await
    }

    /// The calls received so far (by every gateway sharing the store).
    pub async fn calls(&self) -> Result<LocalCallCounts, GatewayError> {
        self.store.calls().await
    }
}

#[async_trait]
impl PaymentGateway for LocalGateway {
    async fn authorize(&self, request: AuthorizeRequest) -> Result<AuthorizeOutcome, GatewayError> {
        self.store.count(Call::Authorize).await?;
        let keyed = Keyed::new(
            &request.idempotency_key,
            Call::Authorize,
            &format!(
                "{} {} {} {}",
                request.order_id, request.amount_minor, request.currency, request.payment_method
            ),
        )?;
        if let Some(answer) = self.store.peek(&keyed).await? {
            return answer.into_outcome();
        }
        check_amount(request.amount_minor)?;
        check_currency(&request.currency)?;

        let card = card(&request.payment_method);
        if let Card::Authorizes { slow: true } = card {
            tokio::time::sleep(self.slow_delay).await;
        }

        let mut tx = self.store.begin().await?;
        // a concurrent call with the same key may have finished while this one slept
        if let Some(answer) = tx.claim(&keyed).await? {
            tx.commit().await?;
            return answer.into_outcome();
        }
        let id = tx.new_intent_id();
        let (intent, outcome) = open_intent(id, &request, &card);
        tx.insert_intent(&intent).await?;
        tx.finish(&keyed, Answer::of_outcome(&outcome)).await?;
        Ok(outcome)
    }

    async fn capture(
        &self,
        provider_ref: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<(), GatewayError> {
        self.store.count(Call::Capture).await?;
        let keyed = Keyed::new(
            idempotency_key,
            Call::Capture,
            &format!("{provider_ref} {amount_minor}"),
        )?;
        let mut tx = self.store.begin().await?;
        if let Some(answer) = tx.claim(&keyed).await? {
            tx.commit().await?;
            return answer.into_done();
        }
        check_amount(amount_minor)?;
        let mut intent = tx.lock_intent(provider_ref).await?;
        apply_capture(&mut intent, amount_minor)?;
        tx.update_intent(&intent, None).await?;
        tx.finish(&keyed, Answer::Done).await
    }

    async fn cancel(
        &self,
        provider_ref: &str,
        idempotency_key: &str,
    ) -> Result<CancelOutcome, GatewayError> {
        self.store.count(Call::Cancel).await?;
        let keyed = Keyed::new(idempotency_key, Call::Cancel, provider_ref)?;
        let mut tx = self.store.begin().await?;
        if let Some(answer) = tx.claim(&keyed).await? {
            tx.commit().await?;
            return answer.into_cancel();
        }
        let mut intent = tx.lock_intent(provider_ref).await?;
        let outcome = apply_cancel(&mut intent)?;
        tx.update_intent(&intent, None).await?;
        let answer = match outcome {
            CancelOutcome::Cancelled => Answer::Done,
            CancelOutcome::AlreadyCaptured => Answer::AlreadyCaptured,
        };
        tx.finish(&keyed, answer).await?;
        Ok(outcome)
    }

    async fn refund(
        &self,
        provider_ref: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<String, GatewayError> {
        self.store.count(Call::Refund).await?;
        let keyed = Keyed::new(
            idempotency_key,
            Call::Refund,
            &format!("{provider_ref} {amount_minor}"),
        )?;
        let mut tx = self.store.begin().await?;
        if let Some(answer) = tx.claim(&keyed).await? {
            tx.commit().await?;
            return answer.into_refund();
        }
        check_amount(amount_minor)?;
        let mut intent = tx.lock_intent(provider_ref).await?;
        let refund = apply_refund(&mut intent, amount_minor, || tx.new_refund_id())?;
        tx.update_intent(&intent, Some(&refund)).await?;
        tx.finish(
            &keyed,
            Answer::Refund {
                id: refund.id.clone(),
            },
        )
        .await?;
        Ok(refund.id)
    }
}

// ---------------------------------------------------------------------------------------------
// the rules: what a card does and what a call may do to an intent, for both stores

/// What a test card does.
enum Card {
    Authorizes {
        slow: bool,
    },
    Declines {
        reason: &'static str,
        code: &'static str,
    },
}

fn card(payment_method: &str) -> Card {
    match payment_method {
        CARD_VISA | CARD_MASTERCARD => Card::Authorizes { slow: false },
        CARD_SLOW => Card::Authorizes { slow: true },
        CARD_DECLINED => Card::Declines {
            reason: "Your card was declined.",
            code: "card_declined",
        },
        CARD_INSUFFICIENT_FUNDS => Card::Declines {
            reason: "Your card has insufficient funds.",
            code: "insufficient_funds",
        },
        _ => Card::Declines {
            reason: "Unknown payment method.",
            code: "invalid_payment_method",
        },
    }
}

fn check_key(key: &str) -> Result<(), GatewayError> {
    // Stripe's limits
    if key.is_empty() || key.len() > 255 {
        return Err(GatewayError::Rejected(
            "an idempotency key must have 1 to 255 characters".into(),
        ));
    }
    Ok(())
}

fn check_amount(amount_minor: i64) -> Result<(), GatewayError> {
    if amount_minor <= 0 {
        return Err(GatewayError::Rejected(format!(
            "amount must be a positive number of minor units, not {amount_minor}"
        )));
    }
    Ok(())
}

fn check_currency(currency: &str) -> Result<(), GatewayError> {
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(GatewayError::Rejected(format!(
            "currency must be an ISO 4217 code, not {currency:?}"
        )));
    }
    Ok(())
}

/// The intent an authorization creates (authorized or declined by its card), and the answer.
fn open_intent(
    id: String,
    request: &AuthorizeRequest,
    card: &Card,
) -> (LocalIntent, AuthorizeOutcome) {
    let (status, outcome) = match card {
        Card::Authorizes { .. } => (
            LocalIntentStatus::RequiresCapture,
            AuthorizeOutcome::Authorized {
                provider_ref: id.clone(),
            },
        ),
        Card::Declines { reason, code } => (
            LocalIntentStatus::RequiresPaymentMethod,
            AuthorizeOutcome::Declined {
                provider_ref: Some(id.clone()),
                reason: (*reason).to_owned(),
                code: Some((*code).to_owned()),
            },
        ),
    };
    let intent = LocalIntent {
        id,
        order_id: request.order_id,
        amount_minor: request.amount_minor,
        currency: request.currency.clone(),
        payment_method: request.payment_method.clone(),
        status,
        captured_minor: 0,
        refunded_minor: 0,
        refunds: Vec::new(),
    };
    (intent, outcome)
}

/// Captures `amount_minor` of an authorized intent (at most what was authorized).
fn apply_capture(intent: &mut LocalIntent, amount_minor: i64) -> Result<(), GatewayError> {
    if intent.status != LocalIntentStatus::RequiresCapture {
        return Err(GatewayError::Rejected(format!(
            "payment intent {} cannot be captured in status {:?}",
            intent.id, intent.status
        )));
    }
    if amount_minor > intent.amount_minor {
        return Err(GatewayError::Rejected(format!(
            "cannot capture {amount_minor}: only {} was authorized",
            intent.amount_minor
        )));
    }
    intent.status = LocalIntentStatus::Succeeded;
    intent.captured_minor = amount_minor;
    Ok(())
}

/// Releases an uncaptured intent.
/// Stripe answers a cancel of a captured or canceled intent with `payment_intent_unexpected_state`
/// and the intent; the Stripe adapter reads its status, and so do we: a captured intent is
/// reported as such, a canceled one stays canceled.
fn apply_cancel(intent: &mut LocalIntent) -> Result<CancelOutcome, GatewayError> {
    match intent.status {
        LocalIntentStatus::RequiresCapture | LocalIntentStatus::RequiresPaymentMethod => {
            intent.status = LocalIntentStatus::Canceled;
            Ok(CancelOutcome::Cancelled)
        }
        LocalIntentStatus::Canceled => Ok(CancelOutcome::Cancelled),
        LocalIntentStatus::Succeeded => Ok(CancelOutcome::AlreadyCaptured),
    }
}

/// Refunds `amount_minor` of a captured intent (at most what is left); `new_id` names the refund
/// and is called only when the refund is allowed.
fn apply_refund(
    intent: &mut LocalIntent,
    amount_minor: i64,
    new_id: impl FnOnce() -> String,
) -> Result<LocalRefund, GatewayError> {
    if intent.status != LocalIntentStatus::Succeeded {
        return Err(GatewayError::Rejected(format!(
            "payment intent {} has nothing captured to refund (status {:?})",
            intent.id, intent.status
        )));
    }
    let left = intent.captured_minor - intent.refunded_minor;
    if amount_minor > left {
        return Err(GatewayError::Rejected(format!(
            "cannot refund {amount_minor}: only {left} is left to refund"
        )));
    }
    let refund = LocalRefund {
        id: new_id(),
        amount_minor,
    };
    intent.refunded_minor += amount_minor;
    intent.refunds.push(refund.clone());
    Ok(refund)
}

/// The kinds of call the gateway counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Authorize,
    Capture,
    Cancel,
    Refund,
    Replayed,
}

impl Call {
    const ALL: [Self; 5] = [
        Self::Authorize,
        Self::Capture,
        Self::Cancel,
        Self::Refund,
        Self::Replayed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Authorize => "authorize",
            Self::Capture => "capture",
            Self::Cancel => "cancel",
            Self::Refund => "refund",
            Self::Replayed => "replayed",
        }
    }

    fn counter(self, counts: &mut LocalCallCounts) -> &mut u64 {
        match self {
            Self::Authorize => &mut counts.authorize,
            Self::Capture => &mut counts.capture,
            Self::Cancel => &mut counts.cancel,
            Self::Refund => &mut counts.refund,
            Self::Replayed => &mut counts.replayed,
        }
    }
}

/// A call's idempotency key with the fingerprint of its request (operation and parameters).
struct Keyed<'a> {
    key: &'a str,
    operation: Call,
    request: Vec<u8>,
}

impl<'a> Keyed<'a> {
    /// Checks the key; `parameters` are everything the answer depends on.
    fn new(key: &'a str, operation: Call, parameters: &str) -> Result<Self, GatewayError> {
        check_key(key)?;
        let request = Sha256::new()
            .chain_update(operation.as_str())
            .chain_update(" ")
            .chain_update(parameters)
            .finalize()
            .to_vec();
        Ok(Self {
            key,
            operation,
            request,
        })
    }

    /// The answer a key remembered for `seen_request` gives this call: the same answer for the
    /// same request, a refusal for another.
    fn replay(&self, seen_request: &[u8], answer: Option<Answer>) -> Result<Answer, GatewayError> {
        if seen_request != self.request.as_slice() {
            return Err(GatewayError::Rejected(format!(
                "idempotency key {:?} was already used with different parameters",
                self.key
            )));
        }
        answer.ok_or_else(|| {
            GatewayError::Unavailable(format!(
                "idempotency key {:?} has no answer recorded",
                self.key
            ))
        })
    }
}

/// What an idempotency key produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
enum Answer {
    Authorized {
        provider_ref: String,
    },
    Declined {
        provider_ref: Option<String>,
        reason: String,
        code: Option<String>,
    },
    Done,
    /// A cancel found the intent captured.
    AlreadyCaptured,
    Refund {
        id: String,
    },
}

impl Answer {
    fn of_outcome(outcome: &AuthorizeOutcome) -> Self {
        match outcome.clone() {
            AuthorizeOutcome::Authorized { provider_ref } => Self::Authorized { provider_ref },
            AuthorizeOutcome::Declined {
                provider_ref,
                reason,
                code,
            } => Self::Declined {
                provider_ref,
                reason,
                code,
            },
        }
    }

    fn into_outcome(self) -> Result<AuthorizeOutcome, GatewayError> {
        match self {
            Self::Authorized { provider_ref } => Ok(AuthorizeOutcome::Authorized { provider_ref }),
            Self::Declined {
                provider_ref,
                reason,
                code,
            } => Ok(AuthorizeOutcome::Declined {
                provider_ref,
                reason,
                code,
            }),
            Self::Done | Self::AlreadyCaptured | Self::Refund { .. } => Err(unexpected_answer()),
        }
    }

    fn into_done(self) -> Result<(), GatewayError> {
        match self {
            Self::Done => Ok(()),
            _ => Err(unexpected_answer()),
        }
    }

    fn into_cancel(self) -> Result<CancelOutcome, GatewayError> {
        match self {
            Self::Done => Ok(CancelOutcome::Cancelled),
            Self::AlreadyCaptured => Ok(CancelOutcome::AlreadyCaptured),
            _ => Err(unexpected_answer()),
        }
    }

    fn into_refund(self) -> Result<String, GatewayError> {
        match self {
            Self::Refund { id } => Ok(id),
            _ => Err(unexpected_answer()),
        }
    }
}

fn unexpected_answer() -> GatewayError {
    GatewayError::Rejected("idempotency key was already used for another kind of request".into())
}

fn no_such_intent(provider_ref: &str) -> GatewayError {
    GatewayError::Rejected(format!("no such payment intent: {provider_ref:?}"))
}

// ---------------------------------------------------------------------------------------------
// the stores: where the state lives; they keep it, the rules above decide

#[derive(Debug)]
enum Store {
    Memory(Mutex<State>),
    Postgres(PgPool),
}

/// The in-memory state.
#[derive(Debug, Default)]
struct State {
    intents: HashMap<String, LocalIntent>,
    keys: HashMap<String, Remembered>,
    calls: LocalCallCounts,
    next_intent: u64,
    next_refund: u64,
}

/// What an idempotency key produced, with the fingerprint of the request it was first used with.
#[derive(Clone, Debug)]
struct Remembered {
    request: Vec<u8>,
    answer: Answer,
}

/// One call's unit of work: the state locked (memory) or a transaction (PostgreSQL). Dropping it
/// without [`Tx::finish`] or [`Tx::commit`] changes nothing.
enum Tx<'a> {
    Memory(MutexGuard<'a, State>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

fn store_error(error: sqlx::Error) -> GatewayError {
    GatewayError::Unavailable(format!("local payment store: {error}"))
}

type IntentRow = (String, Uuid, i64, String, String, String, i64, i64);

const SELECT_INTENT: &str = "SELECT id, order_id, amount_minor, currency, payment_method, status, \
     captured_minor, refunded_minor FROM local_payment_intents";

fn intent_of_row(row: IntentRow, refunds: Vec<LocalRefund>) -> Result<LocalIntent, GatewayError> {
    let (id, order_id, amount_minor, currency, payment_method, status, captured, refunded) = row;
    let status = LocalIntentStatus::parse(&status).ok_or_else(|| {
        GatewayError::Unavailable(format!(
            "local payment store: intent {id} has an unknown status {status:?}"
        ))
    })?;
    Ok(LocalIntent {
        id,
        order_id,
        amount_minor,
        currency,
        payment_method,
        status,
        captured_minor: captured,
        refunded_minor: refunded,
        refunds,
    })
}

async fn refunds_of(
    executor: impl sqlx::PgExecutor<'_>,
    intent_id: &str,
) -> Result<Vec<LocalRefund>, GatewayError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT id, amount_minor FROM local_payment_refunds WHERE intent_id = $1 ORDER BY seq",
    )
    .bind(intent_id)
    .fetch_all(executor)
    .await
    .map_err(store_error)?;
    Ok(rows
        .into_iter()
        .map(|(id, amount_minor)| LocalRefund { id, amount_minor })
        .collect())
}

async fn count_in(executor: impl sqlx::PgExecutor<'_>, call: Call) -> Result<(), GatewayError> {
    sqlx::query(
        "INSERT INTO local_payment_calls (kind, count) VALUES ($1, 1) \
         ON CONFLICT (kind) DO UPDATE SET count = local_payment_calls.count + 1",
    )
    .bind(call.as_str())
    .execute(executor)
    .await
    .map_err(store_error)?;
    Ok(())
}

impl Store {
    /// Counts a call that reached the gateway.
    async fn count(&self, call: Call) -> Result<(), GatewayError> {
        match self {
            Self::Memory(state) => {
                *call.counter(&mut state.lock().await.calls) += 1;
                Ok(())
            }
            Self::Postgres(pool) => count_in(pool, call).await,
        }
    }

    /// The answer remembered for `keyed`, without claiming the key when there is none.
    async fn peek(&self, keyed: &Keyed<'_>) -> Result<Option<Answer>, GatewayError> {
        match self {
            Self::Memory(state) => {
                let mut state = state.lock().await;
                let Some(seen) = state.keys.get(keyed.key) else {
                    return Ok(None);
                };
                let answer = keyed.replay(&seen.request, Some(seen.answer.clone()))?;
                state.calls.replayed += 1;
                Ok(Some(answer))
            }
            Self::Postgres(pool) => {
                let seen: Option<(Vec<u8>, Option<Json<Answer>>)> = sqlx::query_as(
                    "SELECT request_sha256, response FROM local_payment_idempotency WHERE key = $1",
                )
                .bind(keyed.key)
                .fetch_optional(pool)
                .await
                .map_err(store_error)?;
                let Some((request, response)) = seen else {
                    return Ok(None);
                };
                let answer = keyed.replay(&request, response.map(|json| json.0))?;
                count_in(pool, Call::Replayed).await?;
                Ok(Some(answer))
            }
        }
    }

    async fn begin(&self) -> Result<Tx<'_>, GatewayError> {
        Ok(match self {
            Self::Memory(state) => Tx::Memory(state.lock().await),
            Self::Postgres(pool) => Tx::Postgres(pool.begin().await.map_err(store_error)?),
        })
    }

    async fn intent(&self, provider_ref: &str) -> Result<Option<LocalIntent>, GatewayError> {
        match self {
            Self::Memory(state) => Ok(state.lock().await.intents.get(provider_ref).cloned()),
            Self::Postgres(pool) => {
                let row: Option<IntentRow> =
                    sqlx::query_as(&format!("{SELECT_INTENT} WHERE id = $1"))
                        .bind(provider_ref)
                        .fetch_optional(pool)
                        .await
                        .map_err(store_error)?;
                match row {
                    None => Ok(None),
                    Some(row) => {
                        let refunds = refunds_of(pool, provider_ref).await?;
                        intent_of_row(row, refunds).map(Some)
                    }
                }
            }
        }
    }

    async fn intents(&self) -> Result<Vec<LocalIntent>, GatewayError> {
        match self {
            Self::Memory(state) => {
                let mut all: Vec<LocalIntent> =
                    state.lock().await.intents.values().cloned().collect();
                all.sort_by_key(|intent| intent_number(&intent.id));
                Ok(all)
            }
            Self::Postgres(pool) => {
                // one snapshot for intents and refunds alike
                let mut tx = pool.begin().await.map_err(store_error)?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .execute(&mut *tx)
                    .await
                    .map_err(store_error)?;
                let rows: Vec<IntentRow> = sqlx::query_as(&format!("{SELECT_INTENT} ORDER BY seq"))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(store_error)?;
                let refunds: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT intent_id, id, amount_minor FROM local_payment_refunds ORDER BY seq",
                )
                .fetch_all(&mut *tx)
                .await
                .map_err(store_error)?;
                tx.commit().await.map_err(store_error)?;
                let mut by_intent: HashMap<String, Vec<LocalRefund>> = HashMap::new();
                for (intent_id, id, amount_minor) in refunds {
                    by_intent
                        .entry(intent_id)
                        .or_default()
                        .push(LocalRefund { id, amount_minor });
                }
                rows.into_iter()
                    .map(|row| {
                        let refunds = by_intent.remove(&row.0).unwrap_or_default();
                        intent_of_row(row, refunds)
                    })
                    .collect()
            }
        }
    }

    async fn calls(&self) -> Result<LocalCallCounts, GatewayError> {
        match self {
            Self::Memory(state) => Ok(state.lock().await.calls),
            Self::Postgres(pool) => {
                let rows: Vec<(String, i64)> =
                    sqlx::query_as("SELECT kind, count FROM local_payment_calls")
                        .fetch_all(pool)
                        .await
                        .map_err(store_error)?;
                let mut counts = LocalCallCounts::default();
                for (kind, count) in rows {
                    if let Some(call) = Call::ALL.into_iter().find(|call| call.as_str() == kind) {
                        *call.counter(&mut counts) = u64::try_from(count).unwrap_or(0);
                    }
                }
                Ok(counts)
            }
        }
    }
}

/// The number of an in-memory intent id (`pi_local_<n>`), for ordering.
fn intent_number(id: &str) -> u64 {
    id.strip_prefix("pi_local_")
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

impl Tx<'_> {
    /// The answer remembered for `keyed`, or `None` after claiming the key for this call (in
    /// PostgreSQL, a concurrent call with the same key then waits until this one ends).
    async fn claim(&mut self, keyed: &Keyed<'_>) -> Result<Option<Answer>, GatewayError> {
        match self {
            Self::Memory(state) => {
                let Some(seen) = state.keys.get(keyed.key) else {
                    return Ok(None);
                };
                let answer = keyed.replay(&seen.request, Some(seen.answer.clone()))?;
                state.calls.replayed += 1;
                Ok(Some(answer))
            }
            Self::Postgres(tx) => {
                let claimed = sqlx::query(
                    "INSERT INTO local_payment_idempotency (key, operation, request_sha256) \
                     VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
                )
                .bind(keyed.key)
                .bind(keyed.operation.as_str())
                .bind(&keyed.request)
                .execute(&mut **tx)
                .await
                .map_err(store_error)?
                .rows_affected();
                if claimed == 1 {
                    return Ok(None);
                }
                // the key's first call has committed (a concurrent one made the insert wait)
                let (request, response): (Vec<u8>, Option<Json<Answer>>) = sqlx::query_as(
                    "SELECT request_sha256, response FROM local_payment_idempotency WHERE key = $1",
                )
                .bind(keyed.key)
                .fetch_one(&mut **tx)
                .await
                .map_err(store_error)?;
                let answer = keyed.replay(&request, response.map(|json| json.0))?;
                count_in(&mut **tx, Call::Replayed).await?;
                Ok(Some(answer))
            }
        }
    }

    /// A new intent id, unique in the store.
    fn new_intent_id(&mut self) -> String {
        match self {
            Self::Memory(state) => {
                state.next_intent += 1;
                format!("pi_local_{}", state.next_intent)
            }
            Self::Postgres(_) => format!("pi_local_{}", Uuid::new_v4().simple()),
        }
    }

    /// A new refund id, unique in the store.
    fn new_refund_id(&mut self) -> String {
        match self {
            Self::Memory(state) => {
                state.next_refund += 1;
                format!("re_local_{}", state.next_refund)
            }
            Self::Postgres(_) => format!("re_local_{}", Uuid::new_v4().simple()),
        }
    }

    /// The intent `provider_ref`, locked until this unit of work ends.
    async fn lock_intent(&mut self, provider_ref: &str) -> Result<LocalIntent, GatewayError> {
        match self {
            Self::Memory(state) => state
                .intents
                .get(provider_ref)
                .cloned()
                .ok_or_else(|| no_such_intent(provider_ref)),
            Self::Postgres(tx) => {
                let row: Option<IntentRow> =
                    sqlx::query_as(&format!("{SELECT_INTENT} WHERE id = $1 FOR UPDATE"))
                        .bind(provider_ref)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(store_error)?;
                let row = row.ok_or_else(|| no_such_intent(provider_ref))?;
                let refunds = refunds_of(&mut **tx, provider_ref).await?;
                intent_of_row(row, refunds)
            }
        }
    }

    async fn insert_intent(&mut self, intent: &LocalIntent) -> Result<(), GatewayError> {
        match self {
            Self::Memory(state) => {
                state.intents.insert(intent.id.clone(), intent.clone());
            }
            Self::Postgres(tx) => {
                sqlx::query(
                    "INSERT INTO local_payment_intents (id, order_id, amount_minor, currency, \
                     payment_method, status, captured_minor, refunded_minor) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&intent.id)
                .bind(intent.order_id)
                .bind(intent.amount_minor)
                .bind(&intent.currency)
                .bind(&intent.payment_method)
                .bind(intent.status.as_str())
                .bind(intent.captured_minor)
                .bind(intent.refunded_minor)
                .execute(&mut **tx)
                .await
                .map_err(store_error)?;
            }
        }
        Ok(())
    }

    /// Stores `intent` as the rules left it; `new_refund` is the refund just added to it.
    async fn update_intent(
        &mut self,
        intent: &LocalIntent,
        new_refund: Option<&LocalRefund>,
    ) -> Result<(), GatewayError> {
        match self {
            Self::Memory(state) => {
                state.intents.insert(intent.id.clone(), intent.clone());
            }
            Self::Postgres(tx) => {
                sqlx::query(
                    "UPDATE local_payment_intents \
                     SET status = $2, captured_minor = $3, refunded_minor = $4 WHERE id = $1",
                )
                .bind(&intent.id)
                .bind(intent.status.as_str())
                .bind(intent.captured_minor)
                .bind(intent.refunded_minor)
                .execute(&mut **tx)
                .await
                .map_err(store_error)?;
                if let Some(refund) = new_refund {
                    sqlx::query(
                        "INSERT INTO local_payment_refunds (id, intent_id, amount_minor) \
                         VALUES ($1, $2, $3)",
                    )
                    .bind(&refund.id)
                    .bind(&intent.id)
                    .bind(refund.amount_minor)
                    .execute(&mut **tx)
                    .await
                    .map_err(store_error)?;
                }
            }
        }
        Ok(())
    }

    /// Remembers `answer` for the claimed key and makes the call's changes durable.
    async fn finish(self, keyed: &Keyed<'_>, answer: Answer) -> Result<(), GatewayError> {
        match self {
            Self::Memory(mut state) => {
                state.keys.insert(
                    keyed.key.to_owned(),
                    Remembered {
                        request: keyed.request.clone(),
                        answer,
                    },
                );
                Ok(())
            }
            Self::Postgres(mut tx) => {
                sqlx::query("UPDATE local_payment_idempotency SET response = $2 WHERE key = $1")
                    .bind(keyed.key)
                    .bind(Json(answer))
                    .execute(&mut *tx)
                    .await
                    .map_err(store_error)?;
                tx.commit().await.map_err(store_error)
            }
        }
    }

    /// Ends a call that changed nothing but the replay count.
    async fn commit(self) -> Result<(), GatewayError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Postgres(tx) => tx.commit().await.map_err(store_error),
        }
    }
}
