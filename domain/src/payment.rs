//! The payment aggregate: one payment attempt for an order, driven by
//! payment-provider outcomes. Late or repeated provider outcomes are no-ops;
//! only real conflicts (e.g. cancelling a captured payment) are rejected.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::values::{Currency, Money, OrderId, RefundId, ValueError};

/// Reason recorded when a provider reports a failure without one.
pub const UNSPECIFIED_FAILURE: &str = "unspecified";

/// Commands accepted by [`Payment`].
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentCommand {
    Request {
        order_id: OrderId,
        amount: Money,
        method: String,
        requested_at: DateTime<Utc>,
    },
    Authorize {
        provider_ref: String,
        at: DateTime<Utc>,
    },
    Capture {
        amount: Money,
        at: DateTime<Utc>,
    },
    Refund {
        refund_id: RefundId,
        amount: Money,
        at: DateTime<Utc>,
    },
    Fail {
        reason: String,
        at: DateTime<Utc>,
    },
    Cancel {
        at: DateTime<Utc>,
    },
    Expire {
        at: DateTime<Utc>,
    },
}

/// Events of a payment stream (wire contract, version "1").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum PaymentEvent {
    PaymentRequested {
        order_id: OrderId,
        amount: Money,
        method: String,
        requested_at: DateTime<Utc>,
    },
    PaymentAuthorized {
        provider_ref: String,
        amount: Money,
        at: DateTime<Utc>,
    },
    PaymentCaptured {
        amount: Money,
        at: DateTime<Utc>,
    },
    PaymentRefunded {
        refund_id: RefundId,
        amount: Money,
        /// Sum of all refunds including this one.
        refunded_total: Money,
        at: DateTime<Utc>,
    },
    PaymentFailed {
        reason: String,
        at: DateTime<Utc>,
    },
    PaymentCancelled {
        at: DateTime<Utc>,
    },
    PaymentExpired {
        at: DateTime<Utc>,
    },
}

/// Every [`PaymentEvent`] variant name, as returned by `event_type()`.
pub const EVENT_TYPES: &[&str] = &[
    "PaymentRequested",
    "PaymentAuthorized",
    "PaymentCaptured",
    "PaymentRefunded",
    "PaymentFailed",
    "PaymentCancelled",
    "PaymentExpired",
];

impl DomainEvent for PaymentEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PaymentRequested { .. } => "PaymentRequested",
            Self::PaymentAuthorized { .. } => "PaymentAuthorized",
            Self::PaymentCaptured { .. } => "PaymentCaptured",
            Self::PaymentRefunded { .. } => "PaymentRefunded",
            Self::PaymentFailed { .. } => "PaymentFailed",
            Self::PaymentCancelled { .. } => "PaymentCancelled",
            Self::PaymentExpired { .. } => "PaymentExpired",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        crate::EVENT_VERSION.to_owned()
    }
}

/// Where a payment is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PaymentStatus {
    Requested,
    Authorized,
    Captured,
    /// Captured and refunded in full.
    Refunded,
    Failed,
    Cancelled,
    Expired,
}

/// Why a payment command was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("payment not found")]
    NotFound,
    #[error("payment already requested")]
    AlreadyRequested,
    #[error("payment amount must be positive, got {0}")]
    NonPositiveAmount(Money),
    #[error("payment method must not be empty")]
    EmptyMethod,
    #[error("provider reference must not be empty")]
    EmptyProviderRef,
    #[error("currency {got} does not match payment currency {expected}")]
    CurrencyMismatch { expected: Currency, got: Currency },
    #[error("payment is not authorized")]
    NotAuthorized,
    #[error("payment is not captured")]
    NotCaptured,
    #[error("payment is already captured; refund it instead")]
    AlreadyCaptured,
    #[error("payment is closed ({0:?})")]
    Closed(PaymentStatus),
    #[error("capture of {requested} exceeds the authorized {authorized}")]
    CaptureExceedsAuthorized { requested: Money, authorized: Money },
    #[error("refund of {requested} exceeds the refundable remainder {remaining}")]
    RefundExceedsCaptured { requested: Money, remaining: Money },
    #[error("amount error: {0}")]
    Amount(#[from] ValueError),
}

/// State of a requested payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestedPayment {
    pub order_id: OrderId,
    pub amount: Money,
    pub method: String,
    pub requested_at: DateTime<Utc>,
    pub status: PaymentStatus,
    pub provider_ref: Option<String>,
    pub authorized: Option<Money>,
    pub captured: Option<Money>,
    pub refunded_total: Money,
    pub refund_ids: BTreeSet<RefundId>,
}

/// The payment aggregate; `None` until requested.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    requested: Option<RequestedPayment>,
}

fn positive_in(currency: Currency, amount: Money) -> Result<(), PaymentError> {
    if amount.currency != currency {
        return Err(PaymentError::CurrencyMismatch {
            expected: currency,
            got: amount.currency,
        });
    }
    if !amount.is_positive() {
        return Err(PaymentError::NonPositiveAmount(amount));
    }
    Ok(())
}

impl Payment {
    pub fn details(&self) -> Option<&RequestedPayment> {
        self.requested.as_ref()
    }

    pub fn status(&self) -> Option<PaymentStatus> {
        self.requested.as_ref().map(|p| p.status)
    }

    /// Decides which events `command` produces against the current state.
    pub fn decide(&self, command: PaymentCommand) -> Result<Vec<PaymentEvent>, PaymentError> {
        use PaymentCommand as C;
        use PaymentEvent as E;
        use PaymentStatus as S;

        let Some(payment) = &self.requested else {
            let C::Request {
                order_id,
                amount,
                method,
                requested_at,
            } = command
            else {
                return Err(PaymentError::NotFound);
            };
            if !amount.is_positive() {
                return Err(PaymentError::NonPositiveAmount(amount));
            }
            let method = method.trim().to_owned();
            if method.is_empty() {
                return Err(PaymentError::EmptyMethod);
            }
            return Ok(vec![E::PaymentRequested {
                order_id,
                amount,
                method,
                requested_at,
            }]);
        };

        let currency = payment.amount.currency;
        let status = payment.status;
        match command {
            C::Request { .. } => Err(PaymentError::AlreadyRequested),
            C::Authorize { provider_ref, at } => {
                let provider_ref = provider_ref.trim().to_owned();
                if provider_ref.is_empty() {
                    return Err(PaymentError::EmptyProviderRef);
                }
                Ok(if status == S::Requested {
                    vec![E::PaymentAuthorized {
                        provider_ref,
                        amount: payment.amount,
                        at,
                    }]
                } else {
                    vec![]
                })
            }
            C::Capture { amount, at } => match status {
                S::Requested => Err(PaymentError::NotAuthorized),
                S::Captured | S::Refunded => Ok(vec![]),
                S::Failed | S::Cancelled | S::Expired => Err(PaymentError::Closed(status)),
                S::Authorized => {
                    positive_in(currency, amount)?;
                    let authorized = payment.authorized.unwrap_or(payment.amount);
                    if amount.amount_minor > authorized.amount_minor {
                        return Err(PaymentError::CaptureExceedsAuthorized {
                            requested: amount,
                            authorized,
                        });
                    }
                    Ok(vec![E::PaymentCaptured { amount, at }])
                }
            },
            C::Refund {
                refund_id,
                amount,
                at,
            } => {
                if payment.refund_ids.contains(&refund_id) {
                    return Ok(vec![]);
                }
                let Some(captured) = payment.captured else {
                    return Err(PaymentError::NotCaptured);
                };
                positive_in(currency, amount)?;
                let remaining = captured.checked_sub(&payment.refunded_total)?;
                if amount.amount_minor > remaining.amount_minor {
                    return Err(PaymentError::RefundExceedsCaptured {
                        requested: amount,
                        remaining,
                    });
                }
                Ok(vec![E::PaymentRefunded {
                    refund_id,
                    amount,
                    refunded_total: payment.refunded_total.checked_add(&amount)?,
                    at,
                }])
            }
            C::Fail { reason, at } => {
                let reason = match reason.trim() {
                    "" => UNSPECIFIED_FAILURE.to_owned(),
                    r => r.to_owned(),
                };
                Ok(if status == S::Requested {
                    vec![E::PaymentFailed { reason, at }]
                } else {
                    vec![]
                })
            }
            C::Cancel { at } => match status {
                S::Requested | S::Authorized => Ok(vec![E::PaymentCancelled { at }]),
                S::Captured | S::Refunded => Err(PaymentError::AlreadyCaptured),
                S::Failed | S::Cancelled | S::Expired => Ok(vec![]),
            },
            C::Expire { at } => Ok(match status {
                S::Requested | S::Authorized => vec![E::PaymentExpired { at }],
                _ => vec![],
            }),
        }
    }
}

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
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
        use PaymentEvent as E;
        use PaymentStatus as S;
        if let E::PaymentRequested {
            order_id,
            amount,
            method,
            requested_at,
        } = event
        {
            self.requested = Some(RequestedPayment {
                order_id,
                amount,
                method,
                requested_at,
                status: S::Requested,
                provider_ref: None,
                authorized: None,
                captured: None,
                refunded_total: Money::zero(amount.currency),
                refund_ids: BTreeSet::new(),
            });
            return;
        }
        let Some(p) = self.requested.as_mut() else {
            return;
        };
        match event {
            E::PaymentRequested { .. } => {}
            E::PaymentAuthorized {
                provider_ref,
                amount,
                ..
            } => {
                p.provider_ref = Some(provider_ref);
                p.authorized = Some(amount);
                p.status = S::Authorized;
            }
            E::PaymentCaptured { amount, .. } => {
                p.captured = Some(amount);
                p.status = S::Captured;
            }
            E::PaymentRefunded {
                refund_id,
                refunded_total,
                ..
            } => {
                p.refund_ids.insert(refund_id);
                p.refunded_total = refunded_total;
                if Some(refunded_total) == p.captured {
                    p.status = S::Refunded;
                }
            }
            E::PaymentFailed { .. } => p.status = S::Failed,
            E::PaymentCancelled { .. } => p.status = S::Cancelled,
            E::PaymentExpired { .. } => p.status = S::Expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use cqrs_es::test::TestFramework;
    use PaymentCommand as C;
    use PaymentEvent as E;

    type F = TestFramework<Payment>;

    fn order() -> OrderId {
        OrderId::new(uuid(1))
    }

    fn request() -> C {
        C::Request {
            order_id: order(),
            amount: eur(2875),
            method: " card ".into(),
            requested_at: t(0),
        }
    }

    fn requested() -> E {
        E::PaymentRequested {
            order_id: order(),
            amount: eur(2875),
            method: "card".into(),
            requested_at: t(0),
        }
    }
    fn authorized() -> E {
        E::PaymentAuthorized {
            provider_ref: "psp-1".into(),
            amount: eur(2875),
            at: t(1),
        }
    }
    fn captured(amount: i64) -> E {
        E::PaymentCaptured {
            amount: eur(amount),
            at: t(2),
        }
    }
    fn refunded(id: u128, amount: i64, total: i64) -> E {
        E::PaymentRefunded {
            refund_id: RefundId::new(uuid(id)),
            amount: eur(amount),
            refunded_total: eur(total),
            at: t(3),
        }
    }
    fn failed() -> E {
        E::PaymentFailed {
            reason: "declined".into(),
            at: t(1),
        }
    }
    fn cancelled() -> E {
        E::PaymentCancelled { at: t(4) }
    }
    fn expired() -> E {
        E::PaymentExpired { at: t(5) }
    }

    fn authorize() -> C {
        C::Authorize {
            provider_ref: "psp-1".into(),
            at: t(1),
        }
    }
    fn capture(amount: i64) -> C {
        C::Capture {
            amount: eur(amount),
            at: t(2),
        }
    }
    fn refund(id: u128, amount: i64) -> C {
        C::Refund {
            refund_id: RefundId::new(uuid(id)),
            amount: eur(amount),
            at: t(3),
        }
    }
    fn fail() -> C {
        C::Fail {
            reason: "declined".into(),
            at: t(1),
        }
    }

    fn s_requested() -> Vec<E> {
        vec![requested()]
    }
    fn s_authorized() -> Vec<E> {
        vec![requested(), authorized()]
    }
    fn s_captured() -> Vec<E> {
        vec![requested(), authorized(), captured(2875)]
    }
    fn s_refunded() -> Vec<E> {
        vec![
            requested(),
            authorized(),
            captured(2875),
            refunded(1, 2875, 2875),
        ]
    }
    fn s_failed() -> Vec<E> {
        vec![requested(), failed()]
    }
    fn s_cancelled() -> Vec<E> {
        vec![requested(), cancelled()]
    }
    fn s_expired() -> Vec<E> {
        vec![requested(), expired()]
    }

    #[test]
    fn request_emits_requested() {
        F::with(())
            .given_no_previous_events()
            .when(request())
            .then_expect_events(vec![requested()]);
    }

    #[test]
    fn request_rejections() {
        F::with(())
            .given(s_requested())
            .when(request())
            .then_expect_error(PaymentError::AlreadyRequested);
        F::with(())
            .given_no_previous_events()
            .when(C::Request {
                order_id: order(),
                amount: eur(0),
                method: "card".into(),
                requested_at: t(0),
            })
            .then_expect_error(PaymentError::NonPositiveAmount(eur(0)));
        F::with(())
            .given_no_previous_events()
            .when(C::Request {
                order_id: order(),
                amount: eur(10),
                method: "".into(),
                requested_at: t(0),
            })
            .then_expect_error(PaymentError::EmptyMethod);
    }

    #[test]
    fn commands_before_request_are_not_found() {
        for cmd in [
            authorize(),
            capture(1),
            refund(1, 1),
            fail(),
            C::Cancel { at: t(1) },
            C::Expire { at: t(1) },
        ] {
            F::with(())
                .given_no_previous_events()
                .when(cmd)
                .then_expect_error(PaymentError::NotFound);
        }
    }

    #[test]
    fn authorize_emits_authorized() {
        F::with(())
            .given(s_requested())
            .when(authorize_cmd())
            .then_expect_events(vec![authorized()]);
    }

    fn authorize_cmd() -> C {
        C::Authorize {
            provider_ref: " psp-1 ".into(),
            at: t(1),
        }
    }

    #[test]
    fn late_or_repeated_authorize_is_noop() {
        for given in [
            s_authorized(),
            s_captured(),
            s_refunded(),
            s_failed(),
            s_cancelled(),
            s_expired(),
        ] {
            F::with(())
                .given(given)
                .when(authorize_cmd())
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn authorize_rejects_empty_ref() {
        F::with(())
            .given(s_requested())
            .when(C::Authorize {
                provider_ref: " ".into(),
                at: t(1),
            })
            .then_expect_error(PaymentError::EmptyProviderRef);
    }

    #[test]
    fn capture_full_and_partial() {
        F::with(())
            .given(s_authorized())
            .when(capture(2875))
            .then_expect_events(vec![captured(2875)]);
        F::with(())
            .given(s_authorized())
            .when(capture(1000))
            .then_expect_events(vec![captured(1000)]);
    }

    #[test]
    fn repeated_capture_is_noop() {
        for given in [s_captured(), s_refunded()] {
            F::with(())
                .given(given)
                .when(capture(2875))
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn capture_rejections() {
        F::with(())
            .given(s_requested())
            .when(capture(1))
            .then_expect_error(PaymentError::NotAuthorized);
        for (given, status) in [
            (s_failed(), PaymentStatus::Failed),
            (s_cancelled(), PaymentStatus::Cancelled),
            (s_expired(), PaymentStatus::Expired),
        ] {
            F::with(())
                .given(given)
                .when(capture(1))
                .then_expect_error(PaymentError::Closed(status));
        }
        F::with(())
            .given(s_authorized())
            .when(capture(2876))
            .then_expect_error(PaymentError::CaptureExceedsAuthorized {
                requested: eur(2876),
                authorized: eur(2875),
            });
        F::with(())
            .given(s_authorized())
            .when(capture(0))
            .then_expect_error(PaymentError::NonPositiveAmount(eur(0)));
        F::with(())
            .given(s_authorized())
            .when(C::Capture {
                amount: usd(1),
                at: t(2),
            })
            .then_expect_error(PaymentError::CurrencyMismatch {
                expected: currency("EUR"),
                got: currency("USD"),
            });
    }

    #[test]
    fn partial_then_full_refund() {
        F::with(())
            .given(s_captured())
            .when(refund(1, 1000))
            .then_expect_events(vec![refunded(1, 1000, 1000)]);
        let mut given = s_captured();
        given.push(refunded(1, 1000, 1000));
        F::with(())
            .given(given.clone())
            .when(refund(2, 1875))
            .then_expect_events(vec![refunded(2, 1875, 2875)]);
        let mut p = Payment::default();
        for e in given {
            p.apply(e);
        }
        assert_eq!(p.status(), Some(PaymentStatus::Captured));
        p.apply(refunded(2, 1875, 2875));
        assert_eq!(p.status(), Some(PaymentStatus::Refunded));
    }

    #[test]
    fn repeated_refund_id_is_noop() {
        F::with(())
            .given(s_refunded())
            .when(refund(1, 2875))
            .then_expect_events(vec![]);
    }

    #[test]
    fn refund_rejections() {
        for given in [s_requested(), s_authorized(), s_cancelled()] {
            F::with(())
                .given(given)
                .when(refund(1, 1))
                .then_expect_error(PaymentError::NotCaptured);
        }
        F::with(())
            .given(vec![requested(), authorized(), captured(1000)])
            .when(refund(1, 1001))
            .then_expect_error(PaymentError::RefundExceedsCaptured {
                requested: eur(1001),
                remaining: eur(1000),
            });
        F::with(())
            .given(s_refunded())
            .when(refund(2, 1))
            .then_expect_error(PaymentError::RefundExceedsCaptured {
                requested: eur(1),
                remaining: eur(0),
            });
        F::with(())
            .given(s_captured())
            .when(refund(1, -5))
            .then_expect_error(PaymentError::NonPositiveAmount(eur(-5)));
    }

    #[test]
    fn fail_emits_failed() {
        F::with(())
            .given(s_requested())
            .when(fail_cmd())
            .then_expect_events(vec![failed()]);
        F::with(())
            .given(s_requested())
            .when(C::Fail {
                reason: "".into(),
                at: t(1),
            })
            .then_expect_events(vec![E::PaymentFailed {
                reason: UNSPECIFIED_FAILURE.into(),
                at: t(1),
            }]);
    }

    fn fail_cmd() -> C {
        C::Fail {
            reason: "declined".into(),
            at: t(1),
        }
    }

    #[test]
    fn late_fail_is_noop() {
        for given in [
            s_authorized(),
            s_captured(),
            s_refunded(),
            s_failed(),
            s_cancelled(),
            s_expired(),
        ] {
            F::with(())
                .given(given)
                .when(fail_cmd())
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn cancel() {
        for given in [s_requested(), s_authorized()] {
            F::with(())
                .given(given)
                .when(C::Cancel { at: t(4) })
                .then_expect_events(vec![cancelled()]);
        }
        for given in [s_cancelled(), s_failed(), s_expired()] {
            F::with(())
                .given(given)
                .when(C::Cancel { at: t(4) })
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn cancel_after_capture_is_rejected() {
        for given in [s_captured(), s_refunded()] {
            F::with(())
                .given(given)
                .when(C::Cancel { at: t(4) })
                .then_expect_error(PaymentError::AlreadyCaptured);
        }
    }

    #[test]
    fn expire() {
        for given in [s_requested(), s_authorized()] {
            F::with(())
                .given(given)
                .when(C::Expire { at: t(5) })
                .then_expect_events(vec![expired()]);
        }
        for given in [
            s_captured(),
            s_refunded(),
            s_failed(),
            s_cancelled(),
            s_expired(),
        ] {
            F::with(())
                .given(given)
                .when(C::Expire { at: t(5) })
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn events_round_trip_and_types_are_listed() {
        let events = vec![
            requested(),
            authorized(),
            captured(1),
            refunded(1, 1, 1),
            failed(),
            cancelled(),
            expired(),
        ];
        assert_round_trip(&events, EVENT_TYPES);
    }
}
