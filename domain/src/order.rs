//! The order aggregate: placement with a full price snapshot, the fulfilment
//! status machine (stock, payment, shipping, delivery), cancellation, failure
//! and (partial) refunds.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::values::{
    Address, CartId, Currency, CustomerId, Money, OrderNumber, PaymentId, Quantity, RefundId, Sku,
    ValueError,
};

/// One ordered line, priced at placement time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderLine {
    pub sku: Sku,
    pub name: String,
    pub quantity: Quantity,
    pub unit_price: Money,
}

/// Money breakdown of an order: `total = subtotal - discount + tax + shipping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderTotals {
    pub subtotal: Money,
    pub discount: Money,
    pub tax: Money,
    pub shipping: Money,
    pub total: Money,
}

/// Where an order is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OrderStatus {
    AwaitingStock,
    AwaitingPayment,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
    Failed,
    Refunded,
}

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [OrderStatus; 8] = [
        OrderStatus::AwaitingStock,
        OrderStatus::AwaitingPayment,
        OrderStatus::Confirmed,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
        OrderStatus::Failed,
        OrderStatus::Refunded,
    ];

    /// The status's one text form (read models store it, APIs filter by it).
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::AwaitingStock => "awaiting_stock",
            OrderStatus::AwaitingPayment => "awaiting_payment",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Failed => "failed",
            OrderStatus::Refunded => "refunded",
        }
    }

    /// The status whose text form is `text`.
    pub fn parse(text: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Who cancelled an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CancelledBy {
    Customer,
    Staff,
    System,
}

/// Why an order failed before confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FailureReason {
    OutOfStock { sku: Sku },
    PaymentDeclined { message: String },
    PaymentTimedOut,
    Other(String),
}

/// Commands accepted by [`Order`].
// The snapshot variant is large by design; events are moved rarely and boxing
// would only complicate construction and matching.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum OrderCommand {
    Place {
        order_number: OrderNumber,
        customer: Option<CustomerId>,
        cart_id: CartId,
        lines: Vec<OrderLine>,
        currency: Currency,
        /// Coupon discount taken off the subtotal (zero when none).
        discount: Money,
        tax: Money,
        shipping: Money,
        shipping_address: Address,
        payment_method: String,
        placed_at: DateTime<Utc>,
    },
    MarkStockReserved {
        at: DateTime<Utc>,
    },
    /// Payment was authorized.
    Confirm {
        payment_id: PaymentId,
        at: DateTime<Utc>,
    },
    Ship {
        tracking: Option<String>,
        at: DateTime<Utc>,
    },
    Deliver {
        at: DateTime<Utc>,
    },
    Cancel {
        reason: String,
        by: CancelledBy,
        at: DateTime<Utc>,
    },
    Fail {
        reason: FailureReason,
        at: DateTime<Utc>,
    },
    Refund {
        refund_id: RefundId,
        amount: Money,
        reason: String,
        at: DateTime<Utc>,
    },
}

/// Events of an order stream (wire contract, version "1").
// The snapshot variant is large by design; events are moved rarely and boxing
// would only complicate construction and matching.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum OrderEvent {
    OrderPlaced {
        order_number: OrderNumber,
        customer: Option<CustomerId>,
        cart_id: CartId,
        lines: Vec<OrderLine>,
        currency: Currency,
        totals: OrderTotals,
        shipping_address: Address,
        payment_method: String,
        placed_at: DateTime<Utc>,
    },
    OrderStockReserved {
        at: DateTime<Utc>,
    },
    OrderConfirmed {
        payment_id: PaymentId,
        at: DateTime<Utc>,
    },
    OrderShipped {
        tracking: Option<String>,
        at: DateTime<Utc>,
    },
    OrderDelivered {
        at: DateTime<Utc>,
    },
    OrderCancelled {
        reason: String,
        by: CancelledBy,
        at: DateTime<Utc>,
    },
    OrderFailed {
        reason: FailureReason,
        at: DateTime<Utc>,
    },
    OrderRefunded {
        refund_id: RefundId,
        amount: Money,
        reason: String,
        /// Sum of all refunds including this one.
        refunded_total: Money,
        at: DateTime<Utc>,
    },
    OrderFullyRefunded {
        total: Money,
        at: DateTime<Utc>,
    },
}

/// Every [`OrderEvent`] variant name, as returned by `event_type()`.
pub const EVENT_TYPES: &[&str] = &[
    "OrderPlaced",
    "OrderStockReserved",
    "OrderConfirmed",
    "OrderShipped",
    "OrderDelivered",
    "OrderCancelled",
    "OrderFailed",
    "OrderRefunded",
    "OrderFullyRefunded",
];

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        match self {
            Self::OrderPlaced { .. } => "OrderPlaced",
            Self::OrderStockReserved { .. } => "OrderStockReserved",
            Self::OrderConfirmed { .. } => "OrderConfirmed",
            Self::OrderShipped { .. } => "OrderShipped",
            Self::OrderDelivered { .. } => "OrderDelivered",
            Self::OrderCancelled { .. } => "OrderCancelled",
            Self::OrderFailed { .. } => "OrderFailed",
            Self::OrderRefunded { .. } => "OrderRefunded",
            Self::OrderFullyRefunded { .. } => "OrderFullyRefunded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        crate::EVENT_VERSION.to_owned()
    }
}

/// Why an order command was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("order not found")]
    NotFound,
    #[error("order already placed")]
    AlreadyPlaced,
    #[error("an order needs at least one line")]
    NoLines,
    #[error("currency {got} does not match order currency {expected}")]
    CurrencyMismatch { expected: Currency, got: Currency },
    #[error("{field} must not be negative, got {amount}")]
    NegativeAmount { field: &'static str, amount: Money },
    #[error("discount {discount} exceeds subtotal {subtotal}")]
    DiscountExceedsSubtotal { discount: Money, subtotal: Money },
    #[error("payment method must not be empty")]
    EmptyPaymentMethod,
    #[error("reason must not be empty")]
    EmptyReason,
    #[error("cannot {action} an order that is {from:?}")]
    InvalidTransition {
        from: OrderStatus,
        action: &'static str,
    },
    #[error("refund amount must be positive, got {0}")]
    NonPositiveRefund(Money),
    #[error("refund of {requested} exceeds the refundable remainder {remaining}")]
    RefundExceedsRemaining { requested: Money, remaining: Money },
    #[error("amount error: {0}")]
    Amount(#[from] ValueError),
}

/// State of a placed order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacedOrder {
    pub order_number: OrderNumber,
    pub customer: Option<CustomerId>,
    pub cart_id: CartId,
    pub lines: Vec<OrderLine>,
    pub currency: Currency,
    pub totals: OrderTotals,
    pub shipping_address: Address,
    pub payment_method: String,
    pub placed_at: DateTime<Utc>,
    pub status: OrderStatus,
    pub stock_reserved: bool,
    pub payment_id: Option<PaymentId>,
    pub tracking: Option<String>,
    pub shipped: bool,
    pub delivered: bool,
    pub refunded_total: Money,
    pub refund_ids: BTreeSet<RefundId>,
    /// Why the order failed, once it has.
    #[serde(default)]
    pub failure: Option<FailureReason>,
}

/// The order aggregate; `None` until placed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    placed: Option<PlacedOrder>,
}

fn non_negative(field: &'static str, currency: Currency, amount: Money) -> Result<(), OrderError> {
    if amount.currency != currency {
        return Err(OrderError::CurrencyMismatch {
            expected: currency,
            got: amount.currency,
        });
    }
    if amount.is_negative() {
        return Err(OrderError::NegativeAmount { field, amount });
    }
    Ok(())
}

/// Computes the totals of an order from its parts, validating them.
pub fn order_totals(
    currency: Currency,
    lines: &[OrderLine],
    discount: Money,
    tax: Money,
    shipping: Money,
) -> Result<OrderTotals, OrderError> {
    let mut subtotal = Money::zero(currency);
    for line in lines {
        non_negative("unit price", currency, line.unit_price)?;
        subtotal = subtotal.checked_add(&line.unit_price.checked_mul(line.quantity)?)?;
    }
    non_negative("discount", currency, discount)?;
    non_negative("tax", currency, tax)?;
    non_negative("shipping", currency, shipping)?;
    if discount.amount_minor > subtotal.amount_minor {
        return Err(OrderError::DiscountExceedsSubtotal { discount, subtotal });
    }
    let total = subtotal
        .checked_sub(&discount)?
        .checked_add(&tax)?
        .checked_add(&shipping)?;
    Ok(OrderTotals {
        subtotal,
        discount,
        tax,
        shipping,
        total,
    })
}

impl Order {
    /// Why the order failed, if it did.
    pub fn failure(&self) -> Option<&FailureReason> {
        self.placed.as_ref()?.failure.as_ref()
    }

    pub fn placed(&self) -> Option<&PlacedOrder> {
        self.placed.as_ref()
    }

    pub fn status(&self) -> Option<OrderStatus> {
        self.placed.as_ref().map(|p| p.status)
    }

    /// Decides which events `command` produces against the current state.
    pub fn decide(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        use OrderCommand as C;
        use OrderEvent as E;
        use OrderStatus as S;

        let Some(order) = &self.placed else {
            let C::Place {
                order_number,
                customer,
                cart_id,
                lines,
                currency,
                discount,
                tax,
                shipping,
                shipping_address,
                payment_method,
                placed_at,
            } = command
            else {
                return Err(OrderError::NotFound);
            };
            if lines.is_empty() {
                return Err(OrderError::NoLines);
            }
            let payment_method = payment_method.trim().to_owned();
            if payment_method.is_empty() {
                return Err(OrderError::EmptyPaymentMethod);
            }
            let totals = order_totals(currency, &lines, discount, tax, shipping)?;
            return Ok(vec![E::OrderPlaced {
                order_number,
                customer,
                cart_id,
                lines,
                currency,
                totals,
                shipping_address,
                payment_method,
                placed_at,
            }]);
        };

        let status = order.status;
        let invalid = |action| OrderError::InvalidTransition {
            from: status,
            action,
        };
        // `done`: the transition already happened (repeat -> no events);
        // `allowed`: the current status permits it.
        let transition = |done: bool, allowed: bool, action, event| {
            if done {
                Ok(vec![])
            } else if allowed {
                Ok(vec![event])
            } else {
                Err(invalid(action))
            }
        };

        match command {
            C::Place { .. } => Err(OrderError::AlreadyPlaced),
            C::MarkStockReserved { at } => transition(
                order.stock_reserved,
                status == S::AwaitingStock,
                "mark stock reserved for",
                E::OrderStockReserved { at },
            ),
            C::Confirm { payment_id, at } => transition(
                order.payment_id.is_some(),
                status == S::AwaitingPayment,
                "confirm",
                E::OrderConfirmed { payment_id, at },
            ),
            C::Ship { tracking, at } => {
                let tracking = tracking
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty());
                transition(
                    order.shipped,
                    status == S::Confirmed,
                    "ship",
                    E::OrderShipped { tracking, at },
                )
            }
            C::Deliver { at } => transition(
                order.delivered,
                status == S::Shipped,
                "deliver",
                E::OrderDelivered { at },
            ),
            C::Cancel { reason, by, at } => {
                let reason = reason.trim().to_owned();
                if reason.is_empty() {
                    return Err(OrderError::EmptyReason);
                }
                transition(
                    status == S::Cancelled,
                    matches!(status, S::AwaitingStock | S::AwaitingPayment | S::Confirmed),
                    "cancel",
                    E::OrderCancelled { reason, by, at },
                )
            }
            C::Fail { reason, at } => transition(
                status == S::Failed,
                matches!(status, S::AwaitingStock | S::AwaitingPayment),
                "fail",
                E::OrderFailed { reason, at },
            ),
            C::Refund {
                refund_id,
                amount,
                reason,
                at,
            } => {
                if order.refund_ids.contains(&refund_id) {
                    return Ok(vec![]);
                }
                let paid = order.payment_id.is_some();
                if !paid
                    || !matches!(
                        status,
                        S::Confirmed | S::Shipped | S::Delivered | S::Cancelled
                    )
                {
                    return Err(invalid("refund"));
                }
                let reason = reason.trim().to_owned();
                if reason.is_empty() {
                    return Err(OrderError::EmptyReason);
                }
                if amount.currency != order.currency {
                    return Err(OrderError::CurrencyMismatch {
                        expected: order.currency,
                        got: amount.currency,
                    });
                }
                if !amount.is_positive() {
                    return Err(OrderError::NonPositiveRefund(amount));
                }
                let total = order.totals.total;
                let remaining = total.checked_sub(&order.refunded_total)?;
                if amount.amount_minor > remaining.amount_minor {
                    return Err(OrderError::RefundExceedsRemaining {
                        requested: amount,
                        remaining,
                    });
                }
                let refunded_total = order.refunded_total.checked_add(&amount)?;
                let mut events = vec![E::OrderRefunded {
                    refund_id,
                    amount,
                    reason,
                    refunded_total,
                    at,
                }];
                if refunded_total == total {
                    events.push(E::OrderFullyRefunded { total, at });
                }
                Ok(events)
            }
        }
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
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
        use OrderEvent as E;
        use OrderStatus as S;
        if let E::OrderPlaced {
            order_number,
            customer,
            cart_id,
            lines,
            currency,
            totals,
            shipping_address,
            payment_method,
            placed_at,
        } = event
        {
            self.placed = Some(PlacedOrder {
                order_number,
                customer,
                cart_id,
                lines,
                currency,
                totals,
                shipping_address,
                payment_method,
                placed_at,
                status: S::AwaitingStock,
                stock_reserved: false,
                payment_id: None,
                tracking: None,
                shipped: false,
                delivered: false,
                refunded_total: Money::zero(currency),
                refund_ids: BTreeSet::new(),
                failure: None,
            });
            return;
        }
        let Some(order) = self.placed.as_mut() else {
            return;
        };
        match event {
            E::OrderPlaced { .. } => {}
            E::OrderStockReserved { .. } => {
                order.stock_reserved = true;
                order.status = S::AwaitingPayment;
            }
            E::OrderConfirmed { payment_id, .. } => {
                order.payment_id = Some(payment_id);
                order.status = S::Confirmed;
            }
            E::OrderShipped { tracking, .. } => {
                order.tracking = tracking;
                order.shipped = true;
                order.status = S::Shipped;
            }
            E::OrderDelivered { .. } => {
                order.delivered = true;
                order.status = S::Delivered;
            }
            E::OrderCancelled { .. } => order.status = S::Cancelled,
            E::OrderFailed { reason, .. } => {
                order.status = S::Failed;
                order.failure = Some(reason);
            }
            E::OrderRefunded {
                refund_id,
                refunded_total,
                ..
            } => {
                order.refund_ids.insert(refund_id);
                order.refunded_total = refunded_total;
            }
            E::OrderFullyRefunded { .. } => order.status = S::Refunded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use cqrs_es::test::TestFramework;
    use OrderCommand as C;
    use OrderEvent as E;
    use OrderStatus as S;

    type F = TestFramework<Order>;

    #[test]
    fn every_status_has_one_text_form_that_parses_back() {
        let texts: std::collections::BTreeSet<_> = S::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(texts.len(), S::ALL.len());
        for status in S::ALL {
            assert_eq!(S::parse(status.as_str()), Some(status));
        }
        // ALL holds every variant (read from the type's JSON Schema, not listed again)
        let schema = serde_json::to_value(schemars::schema_for!(OrderStatus)).unwrap();
        let variants = schema["enum"].as_array().expect("a unit enum").len();
        assert_eq!(S::ALL.len(), variants);
        assert_eq!(S::parse("declined"), None);
    }

    fn address() -> Address {
        Address::new("Jane", "Main St 1", None, "Berlin", "10115", "DE").unwrap()
    }

    fn lines() -> Vec<OrderLine> {
        vec![
            OrderLine {
                sku: sku("MUG-1"),
                name: "Mug".into(),
                quantity: qty(2),
                unit_price: eur(1000),
            },
            OrderLine {
                sku: sku("CUP-2"),
                name: "Cup".into(),
                quantity: qty(1),
                unit_price: eur(500),
            },
        ]
    }

    fn place() -> C {
        C::Place {
            order_number: OrderNumber(42),
            customer: Some(CustomerId::new(uuid(7))),
            cart_id: CartId::new(uuid(8)),
            lines: lines(),
            currency: currency("EUR"),
            discount: eur(500),
            tax: eur(380),
            shipping: eur(495),
            shipping_address: address(),
            payment_method: " card ".into(),
            placed_at: t(0),
        }
    }

    fn with_place(f: impl FnOnce(&mut C)) -> C {
        let mut cmd = place();
        f(&mut cmd);
        cmd
    }

    fn totals() -> OrderTotals {
        OrderTotals {
            subtotal: eur(2500),
            discount: eur(500),
            tax: eur(380),
            shipping: eur(495),
            total: eur(2875),
        }
    }

    fn placed() -> E {
        E::OrderPlaced {
            order_number: OrderNumber(42),
            customer: Some(CustomerId::new(uuid(7))),
            cart_id: CartId::new(uuid(8)),
            lines: lines(),
            currency: currency("EUR"),
            totals: totals(),
            shipping_address: address(),
            payment_method: "card".into(),
            placed_at: t(0),
        }
    }

    fn payment() -> PaymentId {
        PaymentId::new(uuid(9))
    }

    fn stock_reserved() -> E {
        E::OrderStockReserved { at: t(1) }
    }
    fn confirmed() -> E {
        E::OrderConfirmed {
            payment_id: payment(),
            at: t(2),
        }
    }
    fn shipped() -> E {
        E::OrderShipped {
            tracking: Some("TRK1".into()),
            at: t(3),
        }
    }
    fn delivered() -> E {
        E::OrderDelivered { at: t(4) }
    }
    fn cancelled() -> E {
        E::OrderCancelled {
            reason: "changed mind".into(),
            by: CancelledBy::Customer,
            at: t(5),
        }
    }
    fn failed() -> E {
        E::OrderFailed {
            reason: FailureReason::PaymentTimedOut,
            at: t(5),
        }
    }
    fn refunded(id: u128, amount: i64, total: i64) -> E {
        E::OrderRefunded {
            refund_id: RefundId::new(uuid(id)),
            amount: eur(amount),
            reason: "damaged".into(),
            refunded_total: eur(total),
            at: t(6),
        }
    }
    fn refund(id: u128, amount: i64) -> C {
        C::Refund {
            refund_id: RefundId::new(uuid(id)),
            amount: eur(amount),
            reason: "damaged".into(),
            at: t(6),
        }
    }
    fn fully_refunded() -> E {
        E::OrderFullyRefunded {
            total: eur(2875),
            at: t(6),
        }
    }

    fn awaiting_stock() -> Vec<E> {
        vec![placed()]
    }
    fn awaiting_payment() -> Vec<E> {
        vec![placed(), stock_reserved()]
    }
    fn confirmed_order() -> Vec<E> {
        vec![placed(), stock_reserved(), confirmed()]
    }
    fn shipped_order() -> Vec<E> {
        vec![placed(), stock_reserved(), confirmed(), shipped()]
    }
    fn delivered_order() -> Vec<E> {
        vec![
            placed(),
            stock_reserved(),
            confirmed(),
            shipped(),
            delivered(),
        ]
    }
    fn with(mut events: Vec<E>, more: E) -> Vec<E> {
        events.push(more);
        events
    }

    fn invalid(from: OrderStatus, action: &'static str) -> OrderError {
        OrderError::InvalidTransition { from, action }
    }

    fn ship() -> C {
        C::Ship {
            tracking: Some(" TRK1 ".into()),
            at: t(3),
        }
    }
    fn cancel() -> C {
        C::Cancel {
            reason: "changed mind".into(),
            by: CancelledBy::Customer,
            at: t(5),
        }
    }
    fn fail() -> C {
        C::Fail {
            reason: FailureReason::PaymentTimedOut,
            at: t(5),
        }
    }
    fn confirm() -> C {
        C::Confirm {
            payment_id: payment(),
            at: t(2),
        }
    }

    #[test]
    fn place_computes_totals() {
        F::with(())
            .given_no_previous_events()
            .when(place())
            .then_expect_events(vec![placed()]);
        let mut order = Order::default();
        order.apply(placed());
        assert_eq!(order.status(), Some(S::AwaitingStock));
    }

    #[test]
    fn place_rejections() {
        let cases = [
            (place(), OrderError::AlreadyPlaced, true),
            (
                with_place(|c| {
                    if let C::Place { lines, .. } = c {
                        lines.clear()
                    }
                }),
                OrderError::NoLines,
                false,
            ),
            (
                with_place(|c| {
                    if let C::Place { payment_method, .. } = c {
                        *payment_method = "".into()
                    }
                }),
                OrderError::EmptyPaymentMethod,
                false,
            ),
            (
                with_place(|c| {
                    if let C::Place { tax, .. } = c {
                        *tax = usd(1)
                    }
                }),
                OrderError::CurrencyMismatch {
                    expected: currency("EUR"),
                    got: currency("USD"),
                },
                false,
            ),
            (
                with_place(|c| {
                    if let C::Place { shipping, .. } = c {
                        *shipping = eur(-1)
                    }
                }),
                OrderError::NegativeAmount {
                    field: "shipping",
                    amount: eur(-1),
                },
                false,
            ),
            (
                with_place(|c| {
                    if let C::Place { lines, .. } = c {
                        lines[0].unit_price = eur(-5)
                    }
                }),
                OrderError::NegativeAmount {
                    field: "unit price",
                    amount: eur(-5),
                },
                false,
            ),
            (
                with_place(|c| {
                    if let C::Place { discount, .. } = c {
                        *discount = eur(2501)
                    }
                }),
                OrderError::DiscountExceedsSubtotal {
                    discount: eur(2501),
                    subtotal: eur(2500),
                },
                false,
            ),
            (
                with_place(|c| {
                    if let C::Place { lines, .. } = c {
                        lines[0].unit_price = eur(i64::MAX)
                    }
                }),
                OrderError::Amount(ValueError::Overflow),
                false,
            ),
        ];
        for (cmd, error, already_placed) in cases {
            let given = if already_placed {
                vec![placed()]
            } else {
                vec![]
            };
            F::with(()).given(given).when(cmd).then_expect_error(error);
        }
    }

    #[test]
    fn commands_before_place_are_not_found() {
        for cmd in [
            C::MarkStockReserved { at: t(1) },
            confirm(),
            ship(),
            C::Deliver { at: t(1) },
            cancel(),
            fail(),
            refund(1, 1),
        ] {
            F::with(())
                .given_no_previous_events()
                .when(cmd)
                .then_expect_error(OrderError::NotFound);
        }
    }

    #[test]
    fn mark_stock_reserved() {
        F::with(())
            .given(awaiting_stock())
            .when(C::MarkStockReserved { at: t(1) })
            .then_expect_events(vec![stock_reserved()]);
        for given in [awaiting_payment(), confirmed_order(), delivered_order()] {
            F::with(())
                .given(given)
                .when(C::MarkStockReserved { at: t(9) })
                .then_expect_events(vec![]);
        }
        F::with(())
            .given(with(awaiting_stock(), cancelled()))
            .when(C::MarkStockReserved { at: t(9) })
            .then_expect_error(invalid(S::Cancelled, "mark stock reserved for"));
        F::with(())
            .given(with(awaiting_stock(), failed()))
            .when(C::MarkStockReserved { at: t(9) })
            .then_expect_error(invalid(S::Failed, "mark stock reserved for"));
    }

    #[test]
    fn confirm_transitions() {
        F::with(())
            .given(awaiting_payment())
            .when(confirm())
            .then_expect_events(vec![confirmed()]);
        for given in [confirmed_order(), shipped_order(), delivered_order()] {
            F::with(())
                .given(given)
                .when(confirm())
                .then_expect_events(vec![]);
        }
        F::with(())
            .given(awaiting_stock())
            .when(confirm())
            .then_expect_error(invalid(S::AwaitingStock, "confirm"));
        F::with(())
            .given(with(awaiting_payment(), cancelled()))
            .when(confirm())
            .then_expect_error(invalid(S::Cancelled, "confirm"));
        F::with(())
            .given(with(awaiting_payment(), failed()))
            .when(confirm())
            .then_expect_error(invalid(S::Failed, "confirm"));
    }

    #[test]
    fn ship_transitions() {
        F::with(())
            .given(confirmed_order())
            .when(ship())
            .then_expect_events(vec![shipped()]);
        F::with(())
            .given(confirmed_order())
            .when(C::Ship {
                tracking: Some("  ".into()),
                at: t(3),
            })
            .then_expect_events(vec![E::OrderShipped {
                tracking: None,
                at: t(3),
            }]);
        for given in [shipped_order(), delivered_order()] {
            F::with(())
                .given(given)
                .when(ship())
                .then_expect_events(vec![]);
        }
        F::with(())
            .given(awaiting_payment())
            .when(ship())
            .then_expect_error(invalid(S::AwaitingPayment, "ship"));
        F::with(())
            .given(with(confirmed_order(), cancelled()))
            .when(ship())
            .then_expect_error(invalid(S::Cancelled, "ship"));
    }

    #[test]
    fn deliver_transitions() {
        F::with(())
            .given(shipped_order())
            .when(C::Deliver { at: t(4) })
            .then_expect_events(vec![delivered()]);
        F::with(())
            .given(delivered_order())
            .when(C::Deliver { at: t(9) })
            .then_expect_events(vec![]);
        F::with(())
            .given(confirmed_order())
            .when(C::Deliver { at: t(4) })
            .then_expect_error(invalid(S::Confirmed, "deliver"));
    }

    #[test]
    fn cancel_allowed_before_shipping() {
        for given in [awaiting_stock(), awaiting_payment(), confirmed_order()] {
            F::with(())
                .given(given)
                .when(cancel())
                .then_expect_events(vec![cancelled()]);
        }
        F::with(())
            .given(confirmed_order())
            .when(C::Cancel {
                reason: "fraud".into(),
                by: CancelledBy::Staff,
                at: t(5),
            })
            .then_expect_events(vec![E::OrderCancelled {
                reason: "fraud".into(),
                by: CancelledBy::Staff,
                at: t(5),
            }]);
    }

    #[test]
    fn cancel_repeat_is_noop_and_rejections() {
        F::with(())
            .given(with(awaiting_stock(), cancelled()))
            .when(C::Cancel {
                reason: "timeout".into(),
                by: CancelledBy::System,
                at: t(9),
            })
            .then_expect_events(vec![]);
        F::with(())
            .given(shipped_order())
            .when(cancel())
            .then_expect_error(invalid(S::Shipped, "cancel"));
        F::with(())
            .given(delivered_order())
            .when(cancel())
            .then_expect_error(invalid(S::Delivered, "cancel"));
        F::with(())
            .given(with(awaiting_stock(), failed()))
            .when(cancel())
            .then_expect_error(invalid(S::Failed, "cancel"));
        F::with(())
            .given(awaiting_stock())
            .when(C::Cancel {
                reason: " ".into(),
                by: CancelledBy::Customer,
                at: t(5),
            })
            .then_expect_error(OrderError::EmptyReason);
    }

    #[test]
    fn fail_allowed_before_confirmation() {
        for given in [awaiting_stock(), awaiting_payment()] {
            F::with(())
                .given(given)
                .when(fail())
                .then_expect_events(vec![failed()]);
        }
        F::with(())
            .given(awaiting_stock())
            .when(C::Fail {
                reason: FailureReason::OutOfStock { sku: sku("MUG-1") },
                at: t(1),
            })
            .then_expect_events(vec![E::OrderFailed {
                reason: FailureReason::OutOfStock { sku: sku("MUG-1") },
                at: t(1),
            }]);
    }

    #[test]
    fn fail_repeat_is_noop_and_rejections() {
        F::with(())
            .given(with(awaiting_stock(), failed()))
            .when(C::Fail {
                reason: FailureReason::Other("again".into()),
                at: t(9),
            })
            .then_expect_events(vec![]);
        F::with(())
            .given(confirmed_order())
            .when(fail())
            .then_expect_error(invalid(S::Confirmed, "fail"));
        F::with(())
            .given(with(awaiting_stock(), cancelled()))
            .when(fail())
            .then_expect_error(invalid(S::Cancelled, "fail"));
    }

    #[test]
    fn partial_and_full_refunds() {
        for given in [
            confirmed_order(),
            shipped_order(),
            delivered_order(),
            with(confirmed_order(), cancelled()),
        ] {
            F::with(())
                .given(given)
                .when(refund(1, 1000))
                .then_expect_events(vec![refunded(1, 1000, 1000)]);
        }
        F::with(())
            .given(with(delivered_order(), refunded(1, 1000, 1000)))
            .when(refund(2, 1875))
            .then_expect_events(vec![refunded(2, 1875, 2875), fully_refunded()]);
        let mut order = Order::default();
        for e in with(
            with(delivered_order(), refunded(1, 2875, 2875)),
            fully_refunded(),
        ) {
            order.apply(e);
        }
        assert_eq!(order.status(), Some(S::Refunded));
    }

    #[test]
    fn repeated_refund_id_is_noop() {
        F::with(())
            .given(with(delivered_order(), refunded(1, 1000, 1000)))
            .when(refund(1, 1000))
            .then_expect_events(vec![]);
    }

    #[test]
    fn refund_rejections() {
        F::with(())
            .given(awaiting_payment())
            .when(refund(1, 100))
            .then_expect_error(invalid(S::AwaitingPayment, "refund"));
        F::with(())
            .given(with(awaiting_stock(), cancelled()))
            .when(refund(1, 100))
            .then_expect_error(invalid(S::Cancelled, "refund"));
        F::with(())
            .given(vec![
                placed(),
                stock_reserved(),
                confirmed(),
                refunded(1, 2875, 2875),
                fully_refunded(),
            ])
            .when(refund(2, 1))
            .then_expect_error(invalid(S::Refunded, "refund"));
        F::with(())
            .given(confirmed_order())
            .when(refund(1, 0))
            .then_expect_error(OrderError::NonPositiveRefund(eur(0)));
        F::with(())
            .given(confirmed_order())
            .when(C::Refund {
                refund_id: RefundId::new(uuid(1)),
                amount: usd(100),
                reason: "x".into(),
                at: t(6),
            })
            .then_expect_error(OrderError::CurrencyMismatch {
                expected: currency("EUR"),
                got: currency("USD"),
            });
        F::with(())
            .given(confirmed_order())
            .when(C::Refund {
                refund_id: RefundId::new(uuid(1)),
                amount: eur(100),
                reason: "".into(),
                at: t(6),
            })
            .then_expect_error(OrderError::EmptyReason);
        F::with(())
            .given(with(confirmed_order(), refunded(1, 2000, 2000)))
            .when(refund(2, 876))
            .then_expect_error(OrderError::RefundExceedsRemaining {
                requested: eur(876),
                remaining: eur(875),
            });
    }

    #[test]
    fn events_round_trip_and_types_are_listed() {
        let events = vec![
            placed(),
            stock_reserved(),
            confirmed(),
            shipped(),
            delivered(),
            cancelled(),
            failed(),
            E::OrderFailed {
                reason: FailureReason::OutOfStock { sku: sku("A") },
                at: t(1),
            },
            E::OrderFailed {
                reason: FailureReason::PaymentDeclined {
                    message: "no funds".into(),
                },
                at: t(1),
            },
            E::OrderFailed {
                reason: FailureReason::Other("x".into()),
                at: t(1),
            },
            refunded(1, 1, 1),
            fully_refunded(),
        ];
        assert_round_trip(&events, EVENT_TYPES);
    }
}
