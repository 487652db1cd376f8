//! The checkout process manager's own state, event-sourced so a checkout is auditable like
//! everything else: what the saga did, in which order, and why it compensated.
//!
//! The saga is pure here: [`CheckoutProcess::next_step`] says what must happen next, the saga
//! runner (in `sagas`) does it — a command on another aggregate or a payment-gateway call — and
//! records the outcome with [`CheckoutCommand::Record`]. Recording an outcome twice changes
//! nothing, so a runner that crashes and replays a step records nothing new.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cart::CartLine;
use crate::derived_ids::cancellation_refund_id;
use crate::order::FailureReason;
use crate::values::{
    Address, CartId, Currency, CustomerId, Money, OrderId, OrderNumber, Quantity, RefundId, Sku,
};

/// Everything a checkout needs to know from the cart, snapshotted when it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckoutTerms {
    pub order_id: OrderId,
    pub cart_id: CartId,
    pub customer: Option<CustomerId>,
    pub lines: Vec<CartLine>,
    pub currency: Currency,
    pub discount: Money,
    pub tax: Money,
    pub shipping: Money,
    pub total: Money,
    pub shipping_address: Address,
    pub payment_method: String,
    pub started_at: DateTime<Utc>,
    /// The payment must be authorized by then, or the checkout fails (`PaymentTimedOut`).
    pub payment_deadline: DateTime<Utc>,
    /// When each stock reservation lapses unless committed.
    pub reservation_expiry: DateTime<Utc>,
}

/// Where one line's stock stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LineStock {
    Pending,
    Reserved,
    Refused,
    Committed,
    Released,
    Returned,
}

/// Where the payment stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PaymentProgress {
    NotRequested,
    Requested,
    /// The provider has not decided yet (e.g. the customer must authenticate); a webhook or the
    /// deadline settles it.
    Pending {
        provider_ref: String,
    },
    Authorized {
        provider_ref: String,
    },
    Declined,
    TimedOut,
    Captured {
        provider_ref: String,
    },
    Cancelled,
}

/// The overall phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CheckoutPhase {
    /// Moving forward: place, reserve, pay, confirm, commit, capture.
    Running,
    /// Something failed before confirmation: undoing, then failing the order.
    Compensating,
    /// Confirmed, stock committed, payment captured.
    Completed,
    /// Compensated; the order failed.
    Failed,
    /// The order was cancelled after confirmation: returning stock and money.
    Cancelling,
    /// The cancellation is fully compensated.
    Closed,
}

/// What the runner must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    PlaceOrder,
    Reserve {
        sku: Sku,
        quantity: Quantity,
    },
    MarkOrderStockReserved,
    RequestPayment,
    AuthorizePayment,
    /// The payment deadline passed before an authorization: record [`Outcome::PaymentTimedOut`].
    TimeOutPayment,
    ConfirmOrder,
    CommitReservation {
        sku: Sku,
    },
    CapturePayment {
        provider_ref: String,
    },
    // compensation
    CancelAuthorization {
        provider_ref: String,
    },
    ReleaseReservation {
        sku: Sku,
    },
    FailPayment {
        reason: String,
    },
    FailOrder {
        reason: FailureReason,
    },
    /// Compensation of an order that was already confirmed (it cannot fail any more): cancel
    /// it; record [`Outcome::OrderFailed`] once done.
    CancelOrder {
        reason: FailureReason,
    },
    // after a cancellation of a confirmed order
    ReturnStock {
        sku: Sku,
        quantity: Quantity,
    },
    Refund {
        refund_id: RefundId,
        amount: Money,
        provider_ref: String,
    },
    /// Nothing to do until an outside event or the deadline.
    WaitUntil(DateTime<Utc>),
    /// The saga reached the end of its current phase: record [`Outcome::Finished`].
    Finish,
    /// Nothing to do, ever (not started, or finished).
    Idle,
}

/// What happened when the runner did a step (or what it observed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    OrderPlaced {
        order_number: OrderNumber,
    },
    StockReserved {
        sku: Sku,
    },
    StockRefused {
        sku: Sku,
        available: u64,
    },
    OrderStockMarked,
    PaymentRequested,
    PaymentPending {
        provider_ref: String,
    },
    PaymentAuthorized {
        provider_ref: String,
    },
    PaymentDeclined {
        provider_ref: Option<String>,
        reason: String,
    },
    PaymentTimedOut,
    OrderConfirmed,
    ReservationCommitted {
        sku: Sku,
    },
    /// The reservation was gone when the saga came to commit it (it expired first).
    ReservationLapsed {
        sku: Sku,
    },
    PaymentCaptured,
    AuthorizationCancelled,
    ReservationReleased {
        sku: Sku,
    },
    PaymentFailed,
    OrderFailed,
    StockReturned {
        sku: Sku,
    },
    Refunded {
        refund_id: RefundId,
        provider_refund_id: String,
    },
    /// The order was cancelled (by the customer or staff).
    OrderCancelled,
    /// Staff refunded part of a confirmed order.
    RefundRequested {
        refund_id: RefundId,
        amount: Money,
    },
    Finished,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckoutCommand {
    Start(Box<CheckoutTerms>),
    Record(Outcome),
}

/// Events of a checkout stream (wire contract, version "1"). Aggregate type `checkout`, id =
/// the order id.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum CheckoutEvent {
    CheckoutStarted {
        terms: CheckoutTerms,
    },
    CheckoutOrderPlaced {
        order_number: OrderNumber,
    },
    CheckoutStockReserved {
        sku: Sku,
    },
    CheckoutStockRefused {
        sku: Sku,
        available: u64,
    },
    CheckoutOrderStockMarked {},
    CheckoutPaymentRequested {},
    CheckoutPaymentPending {
        provider_ref: String,
    },
    CheckoutPaymentAuthorized {
        provider_ref: String,
    },
    CheckoutPaymentDeclined {
        provider_ref: Option<String>,
        reason: String,
    },
    CheckoutPaymentTimedOut {},
    CheckoutOrderConfirmed {},
    CheckoutReservationCommitted {
        sku: Sku,
    },
    CheckoutReservationLapsed {
        sku: Sku,
    },
    CheckoutPaymentCaptured {},
    CheckoutAuthorizationCancelled {},
    CheckoutReservationReleased {
        sku: Sku,
    },
    CheckoutPaymentFailed {},
    CheckoutOrderFailed {},
    CheckoutStockReturned {
        sku: Sku,
    },
    CheckoutRefundRequested {
        refund_id: RefundId,
        amount: Money,
    },
    CheckoutRefunded {
        refund_id: RefundId,
        provider_refund_id: String,
    },
    CheckoutCancellationStarted {},
    CheckoutCompleted {},
    CheckoutFailed {
        reason: FailureReason,
    },
    CheckoutClosed {},
}

/// Every [`CheckoutEvent`] variant name.
pub const EVENT_TYPES: &[&str] = &[
    "CheckoutStarted",
    "CheckoutOrderPlaced",
    "CheckoutStockReserved",
    "CheckoutStockRefused",
    "CheckoutOrderStockMarked",
    "CheckoutPaymentRequested",
    "CheckoutPaymentPending",
    "CheckoutPaymentAuthorized",
    "CheckoutPaymentDeclined",
    "CheckoutPaymentTimedOut",
    "CheckoutOrderConfirmed",
    "CheckoutReservationCommitted",
    "CheckoutReservationLapsed",
    "CheckoutPaymentCaptured",
    "CheckoutAuthorizationCancelled",
    "CheckoutReservationReleased",
    "CheckoutPaymentFailed",
    "CheckoutOrderFailed",
    "CheckoutStockReturned",
    "CheckoutRefundRequested",
    "CheckoutRefunded",
    "CheckoutCancellationStarted",
    "CheckoutCompleted",
    "CheckoutFailed",
    "CheckoutClosed",
];

impl DomainEvent for CheckoutEvent {
    fn event_type(&self) -> String {
        let name = match self {
            Self::CheckoutStarted { .. } => "CheckoutStarted",
            Self::CheckoutOrderPlaced { .. } => "CheckoutOrderPlaced",
            Self::CheckoutStockReserved { .. } => "CheckoutStockReserved",
            Self::CheckoutStockRefused { .. } => "CheckoutStockRefused",
            Self::CheckoutOrderStockMarked {} => "CheckoutOrderStockMarked",
            Self::CheckoutPaymentRequested {} => "CheckoutPaymentRequested",
            Self::CheckoutPaymentPending { .. } => "CheckoutPaymentPending",
            Self::CheckoutPaymentAuthorized { .. } => "CheckoutPaymentAuthorized",
            Self::CheckoutPaymentDeclined { .. } => "CheckoutPaymentDeclined",
            Self::CheckoutPaymentTimedOut {} => "CheckoutPaymentTimedOut",
            Self::CheckoutOrderConfirmed {} => "CheckoutOrderConfirmed",
            Self::CheckoutReservationCommitted { .. } => "CheckoutReservationCommitted",
            Self::CheckoutReservationLapsed { .. } => "CheckoutReservationLapsed",
            Self::CheckoutPaymentCaptured {} => "CheckoutPaymentCaptured",
            Self::CheckoutAuthorizationCancelled {} => "CheckoutAuthorizationCancelled",
            Self::CheckoutReservationReleased { .. } => "CheckoutReservationReleased",
            Self::CheckoutPaymentFailed {} => "CheckoutPaymentFailed",
            Self::CheckoutOrderFailed {} => "CheckoutOrderFailed",
            Self::CheckoutStockReturned { .. } => "CheckoutStockReturned",
            Self::CheckoutRefundRequested { .. } => "CheckoutRefundRequested",
            Self::CheckoutRefunded { .. } => "CheckoutRefunded",
            Self::CheckoutCancellationStarted {} => "CheckoutCancellationStarted",
            Self::CheckoutCompleted {} => "CheckoutCompleted",
            Self::CheckoutFailed { .. } => "CheckoutFailed",
            Self::CheckoutClosed {} => "CheckoutClosed",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        crate::EVENT_VERSION.to_owned()
    }
}

/// Why a checkout command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckoutError {
    #[error("checkout not started")]
    NotStarted,
    #[error("a checkout needs at least one line")]
    NoLines,
    #[error("{0} is not a line of this checkout")]
    UnknownLine(Sku),
    #[error("outcome {outcome} does not fit a checkout that is {phase:?}")]
    OutOfOrder {
        outcome: &'static str,
        phase: CheckoutPhase,
    },
}

/// A staff refund of a confirmed order, and whether the money went back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundProgress {
    pub amount: Money,
    pub provider_refund_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkout {
    pub terms: CheckoutTerms,
    pub phase: CheckoutPhase,
    pub order_number: Option<OrderNumber>,
    pub order_stock_marked: bool,
    pub order_confirmed: bool,
    pub order_failed: bool,
    pub payment_failed: bool,
    pub stock: BTreeMap<Sku, LineStock>,
    pub payment: PaymentProgress,
    pub failure: Option<FailureReason>,
    pub refunds: BTreeMap<RefundId, RefundProgress>,
}

/// The checkout aggregate; `None` until started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckoutProcess {
    checkout: Option<Checkout>,
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::OrderPlaced { .. } => "OrderPlaced",
        Outcome::StockReserved { .. } => "StockReserved",
        Outcome::StockRefused { .. } => "StockRefused",
        Outcome::OrderStockMarked => "OrderStockMarked",
        Outcome::PaymentRequested => "PaymentRequested",
        Outcome::PaymentPending { .. } => "PaymentPending",
        Outcome::PaymentAuthorized { .. } => "PaymentAuthorized",
        Outcome::PaymentDeclined { .. } => "PaymentDeclined",
        Outcome::PaymentTimedOut => "PaymentTimedOut",
        Outcome::OrderConfirmed => "OrderConfirmed",
        Outcome::ReservationCommitted { .. } => "ReservationCommitted",
        Outcome::ReservationLapsed { .. } => "ReservationLapsed",
        Outcome::PaymentCaptured => "PaymentCaptured",
        Outcome::AuthorizationCancelled => "AuthorizationCancelled",
        Outcome::ReservationReleased { .. } => "ReservationReleased",
        Outcome::PaymentFailed => "PaymentFailed",
        Outcome::OrderFailed => "OrderFailed",
        Outcome::StockReturned { .. } => "StockReturned",
        Outcome::Refunded { .. } => "Refunded",
        Outcome::OrderCancelled => "OrderCancelled",
        Outcome::RefundRequested { .. } => "RefundRequested",
        Outcome::Finished => "Finished",
    }
}

impl CheckoutProcess {
    pub fn checkout(&self) -> Option<&Checkout> {
        self.checkout.as_ref()
    }

    /// What the runner must do next, at time `now`.
    pub fn next_step(&self, now: DateTime<Utc>) -> Step {
        let Some(c) = &self.checkout else {
            return Step::Idle;
        };
        // the first line (in cart order) whose stock is in `state`
        let line_in = |state: LineStock| {
            c.terms
                .lines
                .iter()
                .find(|l| c.stock.get(&l.sku) == Some(&state))
                .map(|l| (l.sku.clone(), l.quantity))
        };
        // staff refunds of a confirmed order go through whatever the phase
        if let PaymentProgress::Captured { provider_ref } = &c.payment {
            if let Some((refund_id, refund)) = c
                .refunds
                .iter()
                .find(|(_, r)| r.provider_refund_id.is_none())
            {
                return Step::Refund {
                    refund_id: *refund_id,
                    amount: refund.amount,
                    provider_ref: provider_ref.clone(),
                };
            }
        }
        match c.phase {
            CheckoutPhase::Running => {
                if c.order_number.is_none() {
                    return Step::PlaceOrder;
                }
                if let Some((sku, quantity)) = line_in(LineStock::Pending) {
                    return Step::Reserve { sku, quantity };
                }
                if !c.order_stock_marked {
                    return Step::MarkOrderStockReserved;
                }
                match &c.payment {
                    PaymentProgress::NotRequested => Step::RequestPayment,
                    PaymentProgress::Requested if now >= c.terms.payment_deadline => {
                        Step::TimeOutPayment
                    }
                    PaymentProgress::Requested => Step::AuthorizePayment,
                    PaymentProgress::Pending { .. } if now >= c.terms.payment_deadline => {
                        Step::TimeOutPayment
                    }
                    PaymentProgress::Pending { .. } => Step::WaitUntil(c.terms.payment_deadline),
                    PaymentProgress::Authorized { provider_ref } => {
                        if !c.order_confirmed {
                            Step::ConfirmOrder
                        } else if let Some((sku, _)) = line_in(LineStock::Reserved) {
                            Step::CommitReservation { sku }
                        } else {
                            Step::CapturePayment {
                                provider_ref: provider_ref.clone(),
                            }
                        }
                    }
                    PaymentProgress::Captured { .. } => Step::Finish,
                    // declines and timeouts move the phase to Compensating when recorded
                    PaymentProgress::Declined
                    | PaymentProgress::TimedOut
                    | PaymentProgress::Cancelled => Step::Finish,
                }
            }
            CheckoutPhase::Compensating => {
                if let PaymentProgress::Authorized { provider_ref }
                | PaymentProgress::Pending { provider_ref } = &c.payment
                {
                    return Step::CancelAuthorization {
                        provider_ref: provider_ref.clone(),
                    };
                }
                // lines committed before another line's reservation turned out lapsed
                if let Some((sku, quantity)) = line_in(LineStock::Committed) {
                    return Step::ReturnStock { sku, quantity };
                }
                if let Some((sku, _)) = line_in(LineStock::Reserved) {
                    return Step::ReleaseReservation { sku };
                }
                let reason = c
                    .failure
                    .clone()
                    .unwrap_or(FailureReason::Other("checkout failed".into()));
                if !c.payment_failed && c.payment != PaymentProgress::NotRequested {
                    return Step::FailPayment {
                        reason: failure_text(&reason),
                    };
                }
                if c.order_number.is_some() && !c.order_failed {
                    // a confirmed order cannot fail any more: it is cancelled instead
                    return if c.order_confirmed {
                        Step::CancelOrder { reason }
                    } else {
                        Step::FailOrder { reason }
                    };
                }
                Step::Finish
            }
            CheckoutPhase::Cancelling => {
                if let Some((sku, quantity)) = line_in(LineStock::Committed) {
                    return Step::ReturnStock { sku, quantity };
                }
                if let Some((sku, _)) = line_in(LineStock::Reserved) {
                    return Step::ReleaseReservation { sku };
                }
                match &c.payment {
                    PaymentProgress::Authorized { provider_ref } => Step::CancelAuthorization {
                        provider_ref: provider_ref.clone(),
                    },
                    PaymentProgress::Pending { provider_ref } => Step::CancelAuthorization {
                        provider_ref: provider_ref.clone(),
                    },
                    PaymentProgress::Requested if !c.payment_failed => Step::FailPayment {
                        reason: "the order was cancelled".to_owned(),
                    },
                    _ => Step::Finish,
                }
            }
            // an authorization that landed after the checkout ended is released
            CheckoutPhase::Failed | CheckoutPhase::Closed => match &c.payment {
                PaymentProgress::Authorized { provider_ref } => Step::CancelAuthorization {
                    provider_ref: provider_ref.clone(),
                },
                _ => Step::Idle,
            },
            CheckoutPhase::Completed => Step::Idle,
        }
    }

    /// The refund that returns everything not refunded yet (for a cancelled, captured order).
    pub fn remaining_refund(&self) -> Option<Money> {
        let c = self.checkout.as_ref()?;
        let refunded: i64 = c.refunds.values().map(|r| r.amount.amount_minor).sum();
        let remaining = c.terms.total.amount_minor - refunded;
        (remaining > 0).then(|| Money::new(remaining, c.terms.currency))
    }

    pub fn decide(&self, command: CheckoutCommand) -> Result<Vec<CheckoutEvent>, CheckoutError> {
        use CheckoutEvent as E;
        let terms = match command {
            CheckoutCommand::Start(terms) => {
                if self.checkout.is_some() {
                    return Ok(vec![]);
                }
                if terms.lines.is_empty() {
                    return Err(CheckoutError::NoLines);
                }
                return Ok(vec![E::CheckoutStarted { terms: *terms }]);
            }
            CheckoutCommand::Record(outcome) => outcome,
        };
        let outcome = terms;
        let Some(c) = &self.checkout else {
            return Err(CheckoutError::NotStarted);
        };
        let line = |sku: &Sku| {
            c.stock
                .get(sku)
                .copied()
                .ok_or_else(|| CheckoutError::UnknownLine(sku.clone()))
        };
        let out_of_order = || CheckoutError::OutOfOrder {
            outcome: outcome_name(&outcome),
            phase: c.phase,
        };
        let events = match &outcome {
            Outcome::OrderPlaced { order_number } => match c.order_number {
                Some(_) => vec![],
                None => vec![E::CheckoutOrderPlaced {
                    order_number: *order_number,
                }],
            },
            Outcome::StockReserved { sku } => match line(sku)? {
                LineStock::Pending => vec![E::CheckoutStockReserved { sku: sku.clone() }],
                _ => vec![],
            },
            Outcome::StockRefused { sku, available } => match line(sku)? {
                LineStock::Pending => vec![E::CheckoutStockRefused {
                    sku: sku.clone(),
                    available: *available,
                }],
                _ => vec![],
            },
            Outcome::OrderStockMarked => (!c.order_stock_marked)
                .then_some(E::CheckoutOrderStockMarked {})
                .into_iter()
                .collect(),
            Outcome::PaymentRequested => match c.payment {
                PaymentProgress::NotRequested => vec![E::CheckoutPaymentRequested {}],
                _ => vec![],
            },
            Outcome::PaymentPending { provider_ref } => match c.payment {
                PaymentProgress::Requested if c.phase == CheckoutPhase::Running => {
                    vec![E::CheckoutPaymentPending {
                        provider_ref: provider_ref.clone(),
                    }]
                }
                _ => vec![],
            },
            Outcome::PaymentAuthorized { provider_ref } => {
                let undecided = matches!(
                    c.payment,
                    PaymentProgress::Requested | PaymentProgress::Pending { .. }
                );
                let accepted = match c.phase {
                    CheckoutPhase::Running => {
                        undecided || c.payment == PaymentProgress::NotRequested
                    }
                    // a late authorization after the checkout gave up, was cancelled or ended:
                    // recorded, so the next step releases the hold
                    CheckoutPhase::Compensating
                    | CheckoutPhase::Cancelling
                    | CheckoutPhase::Failed
                    | CheckoutPhase::Closed => {
                        undecided
                            || matches!(
                                c.payment,
                                PaymentProgress::TimedOut | PaymentProgress::Declined
                            )
                    }
                    CheckoutPhase::Completed => false,
                };
                if accepted {
                    vec![E::CheckoutPaymentAuthorized {
                        provider_ref: provider_ref.clone(),
                    }]
                } else {
                    vec![]
                }
            }
            Outcome::PaymentDeclined {
                provider_ref,
                reason,
            } => match c.payment {
                PaymentProgress::NotRequested
                | PaymentProgress::Requested
                | PaymentProgress::Pending { .. }
                    if c.phase == CheckoutPhase::Running =>
                {
                    vec![E::CheckoutPaymentDeclined {
                        provider_ref: provider_ref.clone(),
                        reason: reason.clone(),
                    }]
                }
                _ => vec![],
            },
            Outcome::PaymentTimedOut => match c.payment {
                PaymentProgress::NotRequested
                | PaymentProgress::Requested
                | PaymentProgress::Pending { .. }
                    if c.phase == CheckoutPhase::Running =>
                {
                    vec![E::CheckoutPaymentTimedOut {}]
                }
                _ => vec![],
            },
            Outcome::OrderConfirmed => (!c.order_confirmed)
                .then_some(E::CheckoutOrderConfirmed {})
                .into_iter()
                .collect(),
            Outcome::ReservationCommitted { sku } => match line(sku)? {
                LineStock::Reserved => vec![E::CheckoutReservationCommitted { sku: sku.clone() }],
                _ => vec![],
            },
            Outcome::ReservationLapsed { sku } => match line(sku)? {
                LineStock::Reserved => vec![E::CheckoutReservationLapsed { sku: sku.clone() }],
                _ => vec![],
            },
            Outcome::PaymentCaptured => match &c.payment {
                PaymentProgress::Authorized { .. } | PaymentProgress::Pending { .. } => {
                    let mut events = vec![E::CheckoutPaymentCaptured {}];
                    // captured although the checkout no longer runs (a cancellation raced the
                    // capture, or a cancel found the intent captured): the money goes back
                    let refund_id = cancellation_refund_id(c.terms.order_id);
                    if c.phase != CheckoutPhase::Running && !c.refunds.contains_key(&refund_id) {
                        if let Some(amount) = self.remaining_refund() {
                            events.push(E::CheckoutRefundRequested { refund_id, amount });
                        }
                    }
                    events
                }
                _ => vec![],
            },
            Outcome::AuthorizationCancelled => match &c.payment {
                PaymentProgress::Authorized { .. } | PaymentProgress::Pending { .. } => {
                    vec![E::CheckoutAuthorizationCancelled {}]
                }
                _ => vec![],
            },
            Outcome::ReservationReleased { sku } => match line(sku)? {
                LineStock::Reserved | LineStock::Pending => {
                    vec![E::CheckoutReservationReleased { sku: sku.clone() }]
                }
                _ => vec![],
            },
            Outcome::PaymentFailed => (!c.payment_failed)
                .then_some(E::CheckoutPaymentFailed {})
                .into_iter()
                .collect(),
            Outcome::OrderFailed => (!c.order_failed)
                .then_some(E::CheckoutOrderFailed {})
                .into_iter()
                .collect(),
            Outcome::StockReturned { sku } => match line(sku)? {
                LineStock::Committed => vec![E::CheckoutStockReturned { sku: sku.clone() }],
                _ => vec![],
            },
            Outcome::Refunded {
                refund_id,
                provider_refund_id,
            } => match c.refunds.get(refund_id) {
                Some(RefundProgress {
                    provider_refund_id: None,
                    ..
                }) => vec![E::CheckoutRefunded {
                    refund_id: *refund_id,
                    provider_refund_id: provider_refund_id.clone(),
                }],
                _ => vec![],
            },
            Outcome::OrderCancelled => match c.phase {
                CheckoutPhase::Completed | CheckoutPhase::Running => {
                    let mut events = vec![E::CheckoutCancellationStarted {}];
                    // money already taken goes back in full
                    if let (PaymentProgress::Captured { .. }, Some(amount)) =
                        (&c.payment, self.remaining_refund())
                    {
                        events.push(E::CheckoutRefundRequested {
                            refund_id: cancellation_refund_id(c.terms.order_id),
                            amount,
                        });
                    }
                    events
                }
                _ => vec![],
            },
            Outcome::RefundRequested { refund_id, amount } => {
                // a refund of a confirmed order before its capture waits for the capture (the
                // refund step needs captured money); if the hold is cancelled instead, nothing
                // was taken and nothing is paid out
                let refundable = match c.payment {
                    PaymentProgress::Captured { .. } => true,
                    PaymentProgress::Authorized { .. } => c.order_confirmed,
                    _ => false,
                };
                if c.refunds.contains_key(refund_id) {
                    vec![]
                } else if refundable {
                    vec![E::CheckoutRefundRequested {
                        refund_id: *refund_id,
                        amount: *amount,
                    }]
                } else {
                    return Err(out_of_order());
                }
            }
            Outcome::Finished => {
                // only when there is nothing left to do in this phase (judged before the
                // deadline, which only matters to a payment still being requested)
                if self.next_step(c.terms.started_at) != Step::Finish {
                    return Err(out_of_order());
                }
                match c.phase {
                    CheckoutPhase::Running => vec![E::CheckoutCompleted {}],
                    CheckoutPhase::Compensating => vec![E::CheckoutFailed {
                        reason: c
                            .failure
                            .clone()
                            .unwrap_or(FailureReason::Other("checkout failed".into())),
                    }],
                    CheckoutPhase::Cancelling => vec![E::CheckoutClosed {}],
                    _ => vec![],
                }
            }
        };
        Ok(events)
    }
}

/// A failure reason as a customer reads it.
pub fn failure_text(reason: &FailureReason) -> String {
    match reason {
        FailureReason::OutOfStock { sku } => format!("{sku} is out of stock"),
        FailureReason::PaymentDeclined { message } => format!("payment declined: {message}"),
        FailureReason::PaymentTimedOut => "the payment was not confirmed in time".to_owned(),
        FailureReason::Other(text) => text.clone(),
    }
}

impl Aggregate for CheckoutProcess {
    const TYPE: &'static str = "checkout";
    type Command = CheckoutCommand;
    type Event = CheckoutEvent;
    type Error = CheckoutError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use CheckoutEvent as E;
        if let E::CheckoutStarted { terms } = event {
            let stock = terms
                .lines
                .iter()
                .map(|l| (l.sku.clone(), LineStock::Pending))
                .collect();
            self.checkout = Some(Checkout {
                terms,
                phase: CheckoutPhase::Running,
                order_number: None,
                order_stock_marked: false,
                order_confirmed: false,
                order_failed: false,
                payment_failed: false,
                stock,
                payment: PaymentProgress::NotRequested,
                failure: None,
                refunds: BTreeMap::new(),
            });
            return;
        }
        let Some(c) = self.checkout.as_mut() else {
            return;
        };
        let compensate = |c: &mut Checkout, reason: FailureReason| {
            if c.phase == CheckoutPhase::Running {
                c.phase = CheckoutPhase::Compensating;
                c.failure = Some(reason);
            }
        };
        match event {
            E::CheckoutStarted { .. } => {}
            E::CheckoutOrderPlaced { order_number } => c.order_number = Some(order_number),
            E::CheckoutStockReserved { sku } => {
                c.stock.insert(sku, LineStock::Reserved);
            }
            E::CheckoutStockRefused { sku, .. } => {
                c.stock.insert(sku.clone(), LineStock::Refused);
                compensate(c, FailureReason::OutOfStock { sku });
            }
            E::CheckoutOrderStockMarked {} => c.order_stock_marked = true,
            E::CheckoutPaymentRequested {} => c.payment = PaymentProgress::Requested,
            E::CheckoutPaymentPending { provider_ref } => {
                c.payment = PaymentProgress::Pending { provider_ref }
            }
            E::CheckoutPaymentAuthorized { provider_ref } => {
                c.payment = PaymentProgress::Authorized { provider_ref }
            }
            E::CheckoutPaymentDeclined { reason, .. } => {
                c.payment = PaymentProgress::Declined;
                compensate(c, FailureReason::PaymentDeclined { message: reason });
            }
            E::CheckoutPaymentTimedOut {} => {
                // an intent still pending at the provider stays known, so it gets cancelled
                if !matches!(c.payment, PaymentProgress::Pending { .. }) {
                    c.payment = PaymentProgress::TimedOut;
                }
                compensate(c, FailureReason::PaymentTimedOut);
            }
            E::CheckoutOrderConfirmed {} => c.order_confirmed = true,
            E::CheckoutReservationCommitted { sku } => {
                c.stock.insert(sku, LineStock::Committed);
            }
            E::CheckoutReservationLapsed { sku } => {
                c.stock.insert(sku.clone(), LineStock::Released);
                compensate(c, FailureReason::OutOfStock { sku });
            }
            E::CheckoutPaymentCaptured {} => {
                if let PaymentProgress::Authorized { provider_ref }
                | PaymentProgress::Pending { provider_ref } = &c.payment
                {
                    c.payment = PaymentProgress::Captured {
                        provider_ref: provider_ref.clone(),
                    };
                }
            }
            E::CheckoutAuthorizationCancelled {} => c.payment = PaymentProgress::Cancelled,
            E::CheckoutReservationReleased { sku } => {
                c.stock.insert(sku, LineStock::Released);
            }
            E::CheckoutPaymentFailed {} => c.payment_failed = true,
            E::CheckoutOrderFailed {} => c.order_failed = true,
            E::CheckoutStockReturned { sku } => {
                c.stock.insert(sku, LineStock::Returned);
            }
            E::CheckoutRefundRequested { refund_id, amount } => {
                c.refunds.insert(
                    refund_id,
                    RefundProgress {
                        amount,
                        provider_refund_id: None,
                    },
                );
            }
            E::CheckoutRefunded {
                refund_id,
                provider_refund_id,
            } => {
                if let Some(refund) = c.refunds.get_mut(&refund_id) {
                    refund.provider_refund_id = Some(provider_refund_id);
                }
            }
            E::CheckoutCancellationStarted {} => c.phase = CheckoutPhase::Cancelling,
            E::CheckoutCompleted {} => c.phase = CheckoutPhase::Completed,
            E::CheckoutFailed { .. } => c.phase = CheckoutPhase::Failed,
            E::CheckoutClosed {} => c.phase = CheckoutPhase::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use cqrs_es::test::TestFramework;

    type F = TestFramework<CheckoutProcess>;

    fn order() -> OrderId {
        OrderId::new(uuid(1))
    }

    fn terms() -> CheckoutTerms {
        CheckoutTerms {
            order_id: order(),
            cart_id: CartId::new(uuid(2)),
            customer: Some(CustomerId::new(uuid(3))),
            lines: vec![
                CartLine {
                    sku: sku("MUG-1"),
                    quantity: qty(2),
                    unit_price: eur(1200),
                },
                CartLine {
                    sku: sku("CUP-2"),
                    quantity: qty(1),
                    unit_price: eur(800),
                },
            ],
            currency: currency("EUR"),
            discount: eur(0),
            tax: eur(608),
            shipping: eur(499),
            total: eur(4307),
            shipping_address: Address::new("A", "1 Main St", None, "Berlin", "10115", "DE")
                .unwrap(),
            payment_method: "pm_card_visa".into(),
            started_at: t(0),
            payment_deadline: t(900),
            reservation_expiry: t(900),
        }
    }

    fn started() -> CheckoutProcess {
        let mut process = CheckoutProcess::default();
        process.apply(CheckoutEvent::CheckoutStarted { terms: terms() });
        process
    }

    fn record(process: &mut CheckoutProcess, outcome: Outcome) -> Vec<CheckoutEvent> {
        let events = process
            .decide(CheckoutCommand::Record(outcome))
            .expect("outcome accepted");
        for event in &events {
            process.apply(event.clone());
        }
        events
    }

    /// Plays the runner: does each step with `respond`'s outcome until there is nothing to do.
    fn drive(
        process: &mut CheckoutProcess,
        now: DateTime<Utc>,
        respond: impl Fn(&Step) -> Outcome,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        for _ in 0..50 {
            let step = process.next_step(now);
            if matches!(step, Step::Idle | Step::WaitUntil(_)) {
                return steps;
            }
            let outcome = if step == Step::Finish {
                Outcome::Finished
            } else {
                respond(&step)
            };
            steps.push(step);
            record(process, outcome);
        }
        panic!("the saga did not settle: {steps:?}");
    }

    /// The outcome of every step when everything goes well.
    fn success(step: &Step) -> Outcome {
        match step {
            Step::PlaceOrder => Outcome::OrderPlaced {
                order_number: OrderNumber(7),
            },
            Step::Reserve { sku, .. } => Outcome::StockReserved { sku: sku.clone() },
            Step::MarkOrderStockReserved => Outcome::OrderStockMarked,
            Step::RequestPayment => Outcome::PaymentRequested,
            Step::AuthorizePayment => Outcome::PaymentAuthorized {
                provider_ref: "pi_1".into(),
            },
            Step::TimeOutPayment => Outcome::PaymentTimedOut,
            Step::ConfirmOrder => Outcome::OrderConfirmed,
            Step::CommitReservation { sku } => Outcome::ReservationCommitted { sku: sku.clone() },
            Step::CapturePayment { .. } => Outcome::PaymentCaptured,
            Step::CancelAuthorization { .. } => Outcome::AuthorizationCancelled,
            Step::ReleaseReservation { sku } => Outcome::ReservationReleased { sku: sku.clone() },
            Step::FailPayment { .. } => Outcome::PaymentFailed,
            Step::FailOrder { .. } | Step::CancelOrder { .. } => Outcome::OrderFailed,
            Step::ReturnStock { sku, .. } => Outcome::StockReturned { sku: sku.clone() },
            Step::Refund { refund_id, .. } => Outcome::Refunded {
                refund_id: *refund_id,
                provider_refund_id: "re_1".into(),
            },
            Step::WaitUntil(_) | Step::Finish | Step::Idle => {
                unreachable!("not a step with an outcome")
            }
        }
    }

    /// Does successful steps until the next one is `stop` (not done).
    fn drive_until(
        process: &mut CheckoutProcess,
        now: DateTime<Utc>,
        stop: impl Fn(&Step) -> bool,
    ) {
        for _ in 0..50 {
            let step = process.next_step(now);
            if stop(&step) {
                return;
            }
            assert!(
                !matches!(step, Step::Idle | Step::WaitUntil(_) | Step::Finish),
                "never reached the step: {step:?}"
            );
            record(process, success(&step));
        }
        panic!("never reached the step");
    }

    fn before_capture() -> CheckoutProcess {
        let mut process = started();
        drive_until(&mut process, t(10), |step| {
            matches!(step, Step::CapturePayment { .. })
        });
        process
    }

    fn refunded_in_full(process: &CheckoutProcess) -> bool {
        let c = process.checkout().unwrap();
        let paid: i64 = c
            .refunds
            .values()
            .filter(|r| r.provider_refund_id.is_some())
            .map(|r| r.amount.amount_minor)
            .sum();
        paid == c.terms.total.amount_minor
    }

    #[test]
    fn a_capture_recorded_after_a_cancellation_is_refunded_in_full() {
        // the runner captured at the provider while the cancellation was being recorded
        let mut process = before_capture();
        let cancelled = record(&mut process, Outcome::OrderCancelled);
        assert_eq!(
            cancelled,
            vec![CheckoutEvent::CheckoutCancellationStarted {}]
        );
        let captured = record(&mut process, Outcome::PaymentCaptured);
        assert_eq!(
            captured,
            vec![
                CheckoutEvent::CheckoutPaymentCaptured {},
                CheckoutEvent::CheckoutRefundRequested {
                    refund_id: cancellation_refund_id(order()),
                    amount: eur(4307)
                }
            ]
        );
        let steps = drive(&mut process, t(20), success);
        assert_eq!(
            steps[0],
            Step::Refund {
                refund_id: cancellation_refund_id(order()),
                amount: eur(4307),
                provider_ref: "pi_1".into()
            }
        );
        assert_eq!(process.checkout().unwrap().phase, CheckoutPhase::Closed);
        assert!(
            refunded_in_full(&process),
            "the customer got everything back"
        );
    }

    #[test]
    fn a_cancel_that_finds_the_payment_captured_refunds_it() {
        // captured at the provider but not recorded (the runner died); then the order is
        // cancelled and the cancel of the authorization answers "already captured"
        let mut process = before_capture();
        record(&mut process, Outcome::OrderCancelled);
        let steps = drive(&mut process, t(20), |step| match step {
            Step::CancelAuthorization { .. } => Outcome::PaymentCaptured,
            other => success(other),
        });
        assert!(steps.contains(&Step::CancelAuthorization {
            provider_ref: "pi_1".into()
        }));
        assert!(steps.iter().any(|s| matches!(s, Step::Refund { .. })));
        assert!(refunded_in_full(&process), "the capture was refunded");
        assert_eq!(process.checkout().unwrap().phase, CheckoutPhase::Closed);
    }

    #[test]
    fn an_authorization_landing_after_a_cancellation_is_released() {
        let mut process = started();
        drive_until(&mut process, t(10), |step| *step == Step::AuthorizePayment);
        record(&mut process, Outcome::OrderCancelled);
        drive(&mut process, t(20), success);
        assert_eq!(process.checkout().unwrap().phase, CheckoutPhase::Closed);
        // the customer's bank answers late (a webhook)
        let late = Outcome::PaymentAuthorized {
            provider_ref: "pi_late".into(),
        };
        assert_eq!(record(&mut process, late.clone()).len(), 1);
        let steps = drive(&mut process, t(30), success);
        assert_eq!(
            steps,
            vec![Step::CancelAuthorization {
                provider_ref: "pi_late".into()
            }]
        );
        assert_eq!(
            process.checkout().unwrap().payment,
            PaymentProgress::Cancelled
        );
        assert!(
            record(&mut process, late).is_empty(),
            "once released, stays released"
        );
    }

    #[test]
    fn a_staff_refund_before_the_capture_is_paid_after_it() {
        let mut process = before_capture();
        let refund_id = RefundId::new(uuid(9));
        let requested = Outcome::RefundRequested {
            refund_id,
            amount: eur(500),
        };
        assert_eq!(record(&mut process, requested).len(), 1);
        let steps = drive(&mut process, t(20), success);
        assert_eq!(
            steps,
            vec![
                Step::CapturePayment {
                    provider_ref: "pi_1".into()
                },
                Step::Refund {
                    refund_id,
                    amount: eur(500),
                    provider_ref: "pi_1".into()
                },
                Step::Finish,
            ]
        );
        assert_eq!(process.checkout().unwrap().phase, CheckoutPhase::Completed);
        assert_eq!(process.remaining_refund(), Some(eur(3807)));
    }

    #[test]
    fn a_reservation_lapsed_before_its_commit_compensates_and_cancels_the_confirmed_order() {
        let mut process = started();
        let steps = drive(&mut process, t(10), |step| match step {
            Step::CommitReservation { sku } if sku.as_str() == "CUP-2" => {
                Outcome::ReservationLapsed { sku: sku.clone() }
            }
            other => success(other),
        });
        let reason = FailureReason::OutOfStock { sku: sku("CUP-2") };
        assert_eq!(
            steps[steps.len() - 5..],
            [
                Step::CancelAuthorization {
                    provider_ref: "pi_1".into()
                },
                Step::ReturnStock {
                    sku: sku("MUG-1"),
                    quantity: qty(2)
                },
                Step::FailPayment {
                    reason: failure_text(&reason)
                },
                Step::CancelOrder {
                    reason: reason.clone()
                },
                Step::Finish,
            ]
        );
        let checkout = process.checkout().unwrap();
        assert_eq!(checkout.phase, CheckoutPhase::Failed);
        assert_eq!(checkout.failure, Some(reason));
        assert!(!steps
            .iter()
            .any(|s| matches!(s, Step::CapturePayment { .. })));
    }

    #[test]
    fn start_snapshots_the_terms_once_and_needs_lines() {
        F::with(())
            .given_no_previous_events()
            .when(CheckoutCommand::Start(Box::new(terms())))
            .then_expect_events(vec![CheckoutEvent::CheckoutStarted { terms: terms() }]);
        F::with(())
            .given(vec![CheckoutEvent::CheckoutStarted { terms: terms() }])
            .when(CheckoutCommand::Start(Box::new(terms())))
            .then_expect_events(vec![]);
        let mut empty = terms();
        empty.lines.clear();
        F::with(())
            .given_no_previous_events()
            .when(CheckoutCommand::Start(Box::new(empty)))
            .then_expect_error(CheckoutError::NoLines);
        F::with(())
            .given_no_previous_events()
            .when(CheckoutCommand::Record(Outcome::OrderConfirmed))
            .then_expect_error(CheckoutError::NotStarted);
        assert_eq!(CheckoutProcess::default().next_step(t(0)), Step::Idle);
    }

    #[test]
    fn a_happy_checkout_places_reserves_pays_confirms_commits_and_captures() {
        let mut process = started();
        let steps = drive(&mut process, t(10), success);
        assert_eq!(
            steps,
            vec![
                Step::PlaceOrder,
                Step::Reserve {
                    sku: sku("MUG-1"),
                    quantity: qty(2)
                },
                Step::Reserve {
                    sku: sku("CUP-2"),
                    quantity: qty(1)
                },
                Step::MarkOrderStockReserved,
                Step::RequestPayment,
                Step::AuthorizePayment,
                Step::ConfirmOrder,
                Step::CommitReservation { sku: sku("MUG-1") },
                Step::CommitReservation { sku: sku("CUP-2") },
                Step::CapturePayment {
                    provider_ref: "pi_1".into()
                },
                Step::Finish,
            ]
        );
        assert_eq!(process.checkout().unwrap().phase, CheckoutPhase::Completed);
        assert_eq!(process.next_step(t(10)), Step::Idle);
    }

    #[test]
    fn a_refused_line_releases_what_was_reserved_and_fails_the_order_naming_the_sku() {
        let mut process = started();
        let steps = drive(&mut process, t(10), |step| match step {
            Step::Reserve { sku, .. } if sku.as_str() == "CUP-2" => Outcome::StockRefused {
                sku: sku.clone(),
                available: 0,
            },
            other => success(other),
        });
        assert_eq!(
            &steps[3..],
            &[
                Step::ReleaseReservation { sku: sku("MUG-1") },
                Step::FailOrder {
                    reason: FailureReason::OutOfStock { sku: sku("CUP-2") }
                },
                Step::Finish,
            ]
        );
        let checkout = process.checkout().unwrap();
        assert_eq!(checkout.phase, CheckoutPhase::Failed);
        assert_eq!(
            checkout.payment,
            PaymentProgress::NotRequested,
            "no payment was attempted"
        );
    }

    #[test]
    fn a_declined_card_releases_stock_fails_the_payment_and_the_order() {
        let mut process = started();
        let steps = drive(&mut process, t(10), |step| match step {
            Step::AuthorizePayment => Outcome::PaymentDeclined {
                provider_ref: Some("pi_1".into()),
                reason: "Your card was declined.".into(),
            },
            other => success(other),
        });
        assert_eq!(
            &steps[6..],
            &[
                Step::ReleaseReservation { sku: sku("MUG-1") },
                Step::ReleaseReservation { sku: sku("CUP-2") },
                Step::FailPayment {
                    reason: "payment declined: Your card was declined.".into()
                },
                Step::FailOrder {
                    reason: FailureReason::PaymentDeclined {
                        message: "Your card was declined.".into()
                    }
                },
                Step::Finish,
            ]
        );
        assert_eq!(process.checkout().unwrap().phase, CheckoutPhase::Failed);
    }

    #[test]
    fn a_payment_not_authorized_by_the_deadline_times_out_and_compensates() {
        let mut process = started();
        // the provider has not decided yet: the saga waits for a webhook or the deadline
        drive(&mut process, t(10), |step| match step {
            Step::AuthorizePayment => Outcome::PaymentPending {
                provider_ref: "pi_1".into(),
            },
            other => success(other),
        });
        assert_eq!(process.next_step(t(10)), Step::WaitUntil(t(900)));
        assert_eq!(process.next_step(t(900)), Step::TimeOutPayment);
        let steps = drive(&mut process, t(901), success);
        assert_eq!(
            steps,
            vec![
                Step::TimeOutPayment,
                Step::CancelAuthorization {
                    provider_ref: "pi_1".into()
                },
                Step::ReleaseReservation { sku: sku("MUG-1") },
                Step::ReleaseReservation { sku: sku("CUP-2") },
                Step::FailPayment {
                    reason: "the payment was not confirmed in time".into()
                },
                Step::FailOrder {
                    reason: FailureReason::PaymentTimedOut
                },
                Step::Finish,
            ]
        );
        let checkout = process.checkout().unwrap();
        assert_eq!(
            (checkout.phase, checkout.failure.clone()),
            (CheckoutPhase::Failed, Some(FailureReason::PaymentTimedOut))
        );
        // an authorization that arrives after giving up is a no-op once failed
        assert!(record(
            &mut process,
            Outcome::PaymentAuthorized {
                provider_ref: "pi_late".into()
            }
        )
        .is_empty());
    }

    #[test]
    fn a_late_authorization_while_compensating_is_cancelled() {
        let mut process = started();
        drive(&mut process, t(10), |step| match step {
            Step::AuthorizePayment => Outcome::PaymentPending {
                provider_ref: "pi_late".into(),
            },
            other => success(other),
        });
        record(&mut process, Outcome::PaymentTimedOut);
        // the authorization arrives (a webhook) while compensating
        let late = Outcome::PaymentAuthorized {
            provider_ref: "pi_late".into(),
        };
        assert_eq!(record(&mut process, late).len(), 1);
        assert_eq!(
            process.next_step(t(950)),
            Step::CancelAuthorization {
                provider_ref: "pi_late".into()
            }
        );
        drive(&mut process, t(950), success);
        let checkout = process.checkout().unwrap();
        assert_eq!(checkout.phase, CheckoutPhase::Failed);
        assert_eq!(
            checkout.payment,
            PaymentProgress::Cancelled,
            "the late hold was released"
        );
    }

    #[test]
    fn cancelling_a_captured_order_refunds_everything_and_returns_stock() {
        let mut process = started();
        drive(&mut process, t(10), success);
        let events = record(&mut process, Outcome::OrderCancelled);
        let refund_id = cancellation_refund_id(order());
        assert_eq!(
            events,
            vec![
                CheckoutEvent::CheckoutCancellationStarted {},
                CheckoutEvent::CheckoutRefundRequested {
                    refund_id,
                    amount: eur(4307)
                },
            ]
        );
        let steps = drive(&mut process, t(20), success);
        assert_eq!(
            steps,
            vec![
                Step::Refund {
                    refund_id,
                    amount: eur(4307),
                    provider_ref: "pi_1".into()
                },
                Step::ReturnStock {
                    sku: sku("MUG-1"),
                    quantity: qty(2)
                },
                Step::ReturnStock {
                    sku: sku("CUP-2"),
                    quantity: qty(1)
                },
                Step::Finish,
            ]
        );
        assert_eq!(process.checkout().unwrap().phase, CheckoutPhase::Closed);
        assert!(record(&mut process, Outcome::OrderCancelled).is_empty());
    }

    #[test]
    fn cancelling_before_payment_releases_stock_and_cancels_the_pending_payment() {
        let mut process = started();
        drive(&mut process, t(10), |step| match step {
            Step::AuthorizePayment => Outcome::PaymentPending {
                provider_ref: "pi_1".into(),
            },
            other => success(other),
        });
        record(&mut process, Outcome::OrderCancelled);
        let steps = drive(&mut process, t(20), success);
        assert_eq!(
            steps,
            vec![
                Step::ReleaseReservation { sku: sku("MUG-1") },
                Step::ReleaseReservation { sku: sku("CUP-2") },
                Step::CancelAuthorization {
                    provider_ref: "pi_1".into()
                },
                Step::Finish,
            ]
        );
    }

    #[test]
    fn staff_refunds_of_a_captured_order_are_paid_out_once() {
        let mut process = started();
        drive(&mut process, t(10), success);
        let refund_id = RefundId::new(uuid(9));
        let requested = Outcome::RefundRequested {
            refund_id,
            amount: eur(500),
        };
        assert_eq!(record(&mut process, requested.clone()).len(), 1);
        assert!(record(&mut process, requested).is_empty());
        assert_eq!(
            process.next_step(t(30)),
            Step::Refund {
                refund_id,
                amount: eur(500),
                provider_ref: "pi_1".into()
            }
        );
        let done = Outcome::Refunded {
            refund_id,
            provider_refund_id: "re_9".into(),
        };
        assert_eq!(record(&mut process, done.clone()).len(), 1);
        assert!(record(&mut process, done).is_empty());
        assert_eq!(process.next_step(t(30)), Step::Idle);
        assert_eq!(process.remaining_refund(), Some(eur(3807)));
    }

    #[test]
    fn outcomes_are_idempotent_and_out_of_place_ones_are_refused() {
        let mut process = started();
        assert_eq!(
            record(
                &mut process,
                Outcome::OrderPlaced {
                    order_number: OrderNumber(1)
                }
            )
            .len(),
            1
        );
        assert!(record(
            &mut process,
            Outcome::OrderPlaced {
                order_number: OrderNumber(2)
            }
        )
        .is_empty());
        assert_eq!(
            process.checkout().unwrap().order_number,
            Some(OrderNumber(1)),
            "the first number stays"
        );
        assert_eq!(
            process.decide(CheckoutCommand::Record(Outcome::StockReserved {
                sku: sku("NOPE-1")
            })),
            Err(CheckoutError::UnknownLine(sku("NOPE-1")))
        );
        assert!(matches!(
            process.decide(CheckoutCommand::Record(Outcome::Finished)),
            Err(CheckoutError::OutOfOrder {
                outcome: "Finished",
                ..
            })
        ));
        assert!(matches!(
            process.decide(CheckoutCommand::Record(Outcome::RefundRequested {
                refund_id: RefundId::new(uuid(5)),
                amount: eur(1)
            })),
            Err(CheckoutError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn checkout_events_round_trip() {
        let events = vec![
            CheckoutEvent::CheckoutStarted { terms: terms() },
            CheckoutEvent::CheckoutOrderPlaced {
                order_number: OrderNumber(1),
            },
            CheckoutEvent::CheckoutStockReserved { sku: sku("MUG-1") },
            CheckoutEvent::CheckoutStockRefused {
                sku: sku("MUG-1"),
                available: 1,
            },
            CheckoutEvent::CheckoutOrderStockMarked {},
            CheckoutEvent::CheckoutPaymentRequested {},
            CheckoutEvent::CheckoutPaymentPending {
                provider_ref: "pi".into(),
            },
            CheckoutEvent::CheckoutPaymentAuthorized {
                provider_ref: "pi".into(),
            },
            CheckoutEvent::CheckoutPaymentDeclined {
                provider_ref: None,
                reason: "no".into(),
            },
            CheckoutEvent::CheckoutPaymentTimedOut {},
            CheckoutEvent::CheckoutOrderConfirmed {},
            CheckoutEvent::CheckoutReservationCommitted { sku: sku("MUG-1") },
            CheckoutEvent::CheckoutReservationLapsed { sku: sku("CUP-2") },
            CheckoutEvent::CheckoutPaymentCaptured {},
            CheckoutEvent::CheckoutAuthorizationCancelled {},
            CheckoutEvent::CheckoutReservationReleased { sku: sku("MUG-1") },
            CheckoutEvent::CheckoutPaymentFailed {},
            CheckoutEvent::CheckoutOrderFailed {},
            CheckoutEvent::CheckoutStockReturned { sku: sku("MUG-1") },
            CheckoutEvent::CheckoutRefundRequested {
                refund_id: RefundId::new(uuid(4)),
                amount: eur(1),
            },
            CheckoutEvent::CheckoutRefunded {
                refund_id: RefundId::new(uuid(4)),
                provider_refund_id: "re".into(),
            },
            CheckoutEvent::CheckoutCancellationStarted {},
            CheckoutEvent::CheckoutCompleted {},
            CheckoutEvent::CheckoutFailed {
                reason: FailureReason::PaymentTimedOut,
            },
            CheckoutEvent::CheckoutClosed {},
        ];
        assert_round_trip(&events, EVENT_TYPES);
    }
}
