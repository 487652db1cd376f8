//! The local payment gateway: an in-memory [`PaymentGateway`] that follows Stripe's test cards,
//! for development, demos and tests (no network, no account).
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

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::{AuthorizeOutcome, AuthorizeRequest, GatewayError, PaymentGateway};

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
    /// `pi_local_…`, the `provider_ref`.
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

/// What an idempotency key produced, with the parameters it was first used with.
#[derive(Clone, Debug)]
struct Remembered {
    request: String,
    result: Answer,
}

#[derive(Clone, Debug)]
enum Answer {
    Authorize(AuthorizeOutcome),
    Done,
    Refund(String),
}

#[derive(Debug, Default)]
struct State {
    intents: HashMap<String, LocalIntent>,
    keys: HashMap<String, Remembered>,
    calls: LocalCallCounts,
    next_intent: u64,
    next_refund: u64,
}

impl State {
    /// The remembered answer for `key`, if any; `Err` when the key was used for another request.
    fn replay(&mut self, key: &str, request: &str) -> Result<Option<Answer>, GatewayError> {
        match self.keys.get(key) {
            None => Ok(None),
            Some(seen) if seen.request == request => {
                self.calls.replayed += 1;
                Ok(Some(seen.result.clone()))
            }
            Some(_) => Err(GatewayError::Rejected(format!(
                "idempotency key {key:?} was already used with different parameters"
            ))),
        }
    }

    fn remember(&mut self, key: &str, request: String, result: Answer) {
        self.keys
            .insert(key.to_owned(), Remembered { request, result });
    }

    fn intent_mut(&mut self, provider_ref: &str) -> Result<&mut LocalIntent, GatewayError> {
        self.intents.get_mut(provider_ref).ok_or_else(|| {
            GatewayError::Rejected(format!("no such payment intent: {provider_ref:?}"))
        })
    }
}

/// The in-memory gateway. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct LocalGateway {
    slow_delay: Duration,
    state: Mutex<State>,
}

impl Default for LocalGateway {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalGateway {
    /// A gateway whose [`CARD_SLOW`] takes [`DEFAULT_SLOW_DELAY`].
    pub fn new() -> Self {
        Self::with_slow_delay(DEFAULT_SLOW_DELAY)
    }

    /// A gateway whose [`CARD_SLOW`] takes `slow_delay`.
    pub fn with_slow_delay(slow_delay: Duration) -> Self {
        Self {
            slow_delay,
            state: Mutex::new(State::default()),
        }
    }

    /// The intent `provider_ref`, as it stands now.
    pub fn intent(&self, provider_ref: &str) -> Option<LocalIntent> {
        self.lock().intents.get(provider_ref).cloned()
    }

    /// Every intent, in creation order.
    pub fn intents(&self) -> Vec<LocalIntent> {
        let mut all: Vec<LocalIntent> = self.lock().intents.values().cloned().collect();
        all.sort_by_key(|intent| intent_number(&intent.id));
        all
    }

    /// The calls received so far.
    pub fn calls(&self) -> LocalCallCounts {
        self.lock().calls
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // the state stays consistent between statements, so a panic elsewhere cannot corrupt it
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn intent_number(id: &str) -> u64 {
    id.strip_prefix("pi_local_")
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

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

fn unexpected_answer() -> GatewayError {
    GatewayError::Rejected("idempotency key was already used for another kind of request".into())
}

#[async_trait]
impl PaymentGateway for LocalGateway {
    async fn authorize(&self, request: AuthorizeRequest) -> Result<AuthorizeOutcome, GatewayError> {
        let key = request.idempotency_key.as_str();
        let fingerprint = format!(
            "authorize {} {} {} {}",
            request.order_id, request.amount_minor, request.currency, request.payment_method
        );
        let replay = {
            let mut state = self.lock();
            state.calls.authorize += 1;
            check_key(key)?;
            state.replay(key, &fingerprint)?
        };
        if let Some(answer) = replay {
            return match answer {
                Answer::Authorize(outcome) => Ok(outcome),
                _ => Err(unexpected_answer()),
            };
        }
        check_amount(request.amount_minor)?;
        if request.currency.len() != 3 || !request.currency.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return Err(GatewayError::Rejected(format!(
                "currency must be an ISO 4217 code, not {:?}",
                request.currency
            )));
        }

        let card = card(&request.payment_method);
        if let Card::Authorizes { slow: true } = card {
            tokio::time::sleep(self.slow_delay).await;
        }

        let mut state = self.lock();
        // a concurrent call with the same key may have finished while this one slept
        if let Some(answer) = state.replay(key, &fingerprint)? {
            return match answer {
                Answer::Authorize(outcome) => Ok(outcome),
                _ => Err(unexpected_answer()),
            };
        }
        state.next_intent += 1;
        let id = format!("pi_local_{}", state.next_intent);
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
                    reason: reason.to_owned(),
                    code: Some(code.to_owned()),
                },
            ),
        };
        state.intents.insert(
            id.clone(),
            LocalIntent {
                id,
                order_id: request.order_id,
                amount_minor: request.amount_minor,
                currency: request.currency.clone(),
                payment_method: request.payment_method.clone(),
                status,
                captured_minor: 0,
                refunded_minor: 0,
                refunds: Vec::new(),
            },
        );
        state.remember(key, fingerprint, Answer::Authorize(outcome.clone()));
        Ok(outcome)
    }

    async fn capture(
        &self,
        provider_ref: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<(), GatewayError> {
        let fingerprint = format!("capture {provider_ref} {amount_minor}");
        let mut state = self.lock();
        state.calls.capture += 1;
        check_key(idempotency_key)?;
        if let Some(answer) = state.replay(idempotency_key, &fingerprint)? {
            return match answer {
                Answer::Done => Ok(()),
                _ => Err(unexpected_answer()),
            };
        }
        check_amount(amount_minor)?;
        let intent = state.intent_mut(provider_ref)?;
        if intent.status != LocalIntentStatus::RequiresCapture {
            return Err(GatewayError::Rejected(format!(
                "payment intent {provider_ref} cannot be captured in status {:?}",
                intent.status
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
        state.remember(idempotency_key, fingerprint, Answer::Done);
        Ok(())
    }

    async fn cancel(&self, provider_ref: &str, idempotency_key: &str) -> Result<(), GatewayError> {
        let fingerprint = format!("cancel {provider_ref}");
        let mut state = self.lock();
        state.calls.cancel += 1;
        check_key(idempotency_key)?;
        if let Some(answer) = state.replay(idempotency_key, &fingerprint)? {
            return match answer {
                Answer::Done => Ok(()),
                _ => Err(unexpected_answer()),
            };
        }
        let intent = state.intent_mut(provider_ref)?;
        match intent.status {
            LocalIntentStatus::RequiresCapture | LocalIntentStatus::RequiresPaymentMethod => {
                intent.status = LocalIntentStatus::Canceled;
            }
            status @ (LocalIntentStatus::Succeeded | LocalIntentStatus::Canceled) => {
                return Err(GatewayError::Rejected(format!(
                    "payment intent {provider_ref} cannot be canceled in status {status:?}"
                )));
            }
        }
        state.remember(idempotency_key, fingerprint, Answer::Done);
        Ok(())
    }

    async fn refund(
        &self,
        provider_ref: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<String, GatewayError> {
        let fingerprint = format!("refund {provider_ref} {amount_minor}");
        let mut state = self.lock();
        state.calls.refund += 1;
        check_key(idempotency_key)?;
        if let Some(answer) = state.replay(idempotency_key, &fingerprint)? {
            return match answer {
                Answer::Refund(id) => Ok(id),
                _ => Err(unexpected_answer()),
            };
        }
        check_amount(amount_minor)?;
        let refund_number = state.next_refund + 1;
        let intent = state.intent_mut(provider_ref)?;
        if intent.status != LocalIntentStatus::Succeeded {
            return Err(GatewayError::Rejected(format!(
                "payment intent {provider_ref} has nothing captured to refund (status {:?})",
                intent.status
            )));
        }
        let left = intent.captured_minor - intent.refunded_minor;
        if amount_minor > left {
            return Err(GatewayError::Rejected(format!(
                "cannot refund {amount_minor}: only {left} is left to refund"
            )));
        }
        let id = format!("re_local_{refund_number}");
        intent.refunded_minor += amount_minor;
        intent.refunds.push(LocalRefund {
            id: id.clone(),
            amount_minor,
        });
        state.next_refund = refund_number;
        state.remember(idempotency_key, fingerprint, Answer::Refund(id.clone()));
        Ok(id)
    }
}
