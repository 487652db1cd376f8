//! Payments: the [`PaymentGateway`] trait the checkout saga talks to, with two adapters —
//! [`stripe::StripeGateway`] (Stripe's real API through async-stripe) and
//! [`local::LocalGateway`] (Stripe's test-card behaviour, for development and tests) — and the
//! Stripe webhook's signature check.

pub mod local;
pub mod stripe;
pub mod webhook;

use async_trait::async_trait;
use uuid::Uuid;

/// An authorization (a hold on the card, captured later) for one order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizeRequest {
    /// The same key for every retry of this step: `{order id}:authorize`.
    pub idempotency_key: String,
    pub order_id: Uuid,
    pub amount_minor: i64,
    /// ISO 4217, upper case (`EUR`); adapters convert to what their provider wants.
    pub currency: String,
    /// A payment method reference, e.g. `pm_card_visa`.
    pub payment_method: String,
}

/// What the provider decided about an authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthorizeOutcome {
    /// The amount is held; capture or cancel it by `provider_ref` (a PaymentIntent id).
    Authorized { provider_ref: String },
    /// The provider refused; `reason` is fit to show the customer.
    Declined {
        provider_ref: Option<String>,
        reason: String,
        /// The provider's decline code, e.g. `insufficient_funds`.
        code: Option<String>,
    },
}

/// What became of a request to release an authorization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The hold is released (now, or it already was).
    Cancelled,
    /// The intent had been captured (e.g. by a capture whose answer was lost): the money was
    /// taken, so releasing is not possible and it must be refunded instead.
    AlreadyCaptured,
}

/// Why a gateway call did not get an answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Network trouble, timeouts, provider 5xx or 429 (after the adapter's own retries):
    /// the step may be retried with the same idempotency key.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the request itself (bad parameters, unknown intent, wrong state).
    #[error("payment provider refused the request: {0}")]
    Rejected(String),
}

/// A payment provider.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Creates and confirms a PaymentIntent with manual capture.
    async fn authorize(&self, request: AuthorizeRequest) -> Result<AuthorizeOutcome, GatewayError>;

    /// Captures `amount_minor` (at most what was authorized) of an authorized intent.
    async fn capture(
        &self,
        provider_ref: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<(), GatewayError>;

    /// Releases an uncaptured authorization; says so when the intent was captured instead.
    async fn cancel(
        &self,
        provider_ref: &str,
        idempotency_key: &str,
    ) -> Result<CancelOutcome, GatewayError>;

    /// Refunds part or all of a captured intent; returns the provider's refund id.
    async fn refund(
        &self,
        provider_ref: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<String, GatewayError>;
}
