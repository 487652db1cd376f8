//! The Stripe payment gateway: PaymentIntents with manual capture, capture, cancel and refunds
//! through async-stripe (1.0 rc), with the caller's idempotency key on every request and bounded
//! retries (same key) of transient failures.
//!
//! Mapping:
//! - authorize = `POST /v1/payment_intents` with `amount`, lower-case `currency`,
//!   `payment_method`, `confirm=true`, `capture_method=manual`, `metadata[order_id]`; status
//!   `requires_capture` → [`AuthorizeOutcome::Authorized`]; a card error (HTTP 402,
//!   `type=card_error`), `requires_action` or `requires_payment_method` →
//!   [`AuthorizeOutcome::Declined`].
//! - capture = `POST /v1/payment_intents/{id}/capture` with `amount_to_capture`;
//!   cancel = `POST /v1/payment_intents/{id}/cancel`; refund = `POST /v1/refunds` with
//!   `payment_intent` and `amount`.
//! - HTTP 5xx, 409 (a concurrent request holds the idempotency key), 429, timeouts, connection
//!   errors and unreadable responses are retried with the same `Idempotency-Key` (3 attempts,
//!   100 ms then 400 ms apart, by default), then [`GatewayError::Unavailable`]; other 4xx →
//!   [`GatewayError::Rejected`].
//!
//! async-stripe's own retry strategies (`Retry`, `ExponentialBackoff`) make up a random key, so
//! each attempt here is one `RequestStrategy::Idempotent(key)` request and this module loops.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use stripe::{
    ApiErrors, ApiErrorsCode, ApiErrorsType, Client, ClientBuilder, IdempotencyKey,
    RequestStrategy, StripeError, StripeRequest,
};
use stripe_core::payment_intent::{
    CancelPaymentIntent, CapturePaymentIntent, CreatePaymentIntent, RetrievePaymentIntent,
};
use stripe_core::refund::CreateRefund;
use stripe_core::{PaymentIntent, PaymentIntentCaptureMethod, PaymentIntentStatus};

use super::{AuthorizeOutcome, AuthorizeRequest, CancelOutcome, GatewayError, PaymentGateway};

/// Stripe's API.
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com/";

/// A Stripe secret key (`sk_…` or a restricted `rk_…`). Its `Debug` shows only the mode.
#[derive(Clone)]
pub struct StripeSecretKey(String);

impl StripeSecretKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, to hand to the HTTP client. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StripeSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.0.contains("_live_") {
            "live"
        } else if self.0.contains("_test_") {
            "test"
        } else {
            "unknown"
        };
        write!(f, "StripeSecretKey({mode}, redacted)")
    }
}

/// How transient failures are retried (each attempt carries the same idempotency key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, at least 1.
    pub max_attempts: u32,
    /// The wait before the second attempt; each later wait is 4 times the previous.
    pub first_backoff: Duration,
    /// How long one attempt may take (connect, send, read the whole response).
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            first_backoff: Duration::from_millis(100),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a [`StripeGateway`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StripeConfigError {
    #[error("Stripe base URL {url:?} is not an absolute http(s) URL")]
    InvalidBaseUrl { url: String },
    /// The message never contains the key.
    #[error("Stripe client configuration refused: {0}")]
    Client(String),
}

/// The Stripe adapter. Cheap to clone (the HTTP client is shared).
#[derive(Clone)]
pub struct StripeGateway {
    client: Client,
    base_url: String,
    retry: RetryPolicy,
}

impl fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeGateway")
            .field("base_url", &self.base_url)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl StripeGateway {
    /// A gateway talking to `base_url` ([`DEFAULT_BASE_URL`] in production; `http://127.0.0.1:PORT`
    /// for a local fake: plain http is allowed) with the default [`RetryPolicy`].
    pub fn new(secret_key: &StripeSecretKey, base_url: &str) -> Result<Self, StripeConfigError> {
        Self::with_retry(secret_key, base_url, RetryPolicy::default())
    }

    /// [`StripeGateway::new`] with another retry policy.
    pub fn with_retry(
        secret_key: &StripeSecretKey,
        base_url: &str,
        retry: RetryPolicy,
    ) -> Result<Self, StripeConfigError> {
        let base_url = normalize_base_url(base_url)?;
        let client = ClientBuilder::new(secret_key.expose())
            .url(base_url.clone())
            .request_strategy(RequestStrategy::Once)
            .timeout(retry.attempt_timeout)
            .app_info("shop", Some(env!("CARGO_PKG_VERSION").to_owned()), None)
            .build()
            .map_err(|err| StripeConfigError::Client(err.to_string()))?;
        let retry = RetryPolicy {
            max_attempts: retry.max_attempts.max(1),
            ..retry
        };
        Ok(Self {
            client,
            base_url,
            retry,
        })
    }

    /// The base URL requests go to (with its trailing `/`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Runs one request (`attempt` sends it once with `key`) with the retry policy.
    async fn send<T, F, Fut>(
        &self,
        operation: &'static str,
        key: &str,
        attempt: F,
    ) -> Result<T, StripeError>
    where
        F: Fn(RequestStrategy) -> Fut,
        Fut: Future<Output = Result<T, StripeError>>,
    {
        let key =
            IdempotencyKey::new(key).map_err(|err| StripeError::ConfigError(err.to_string()))?;
        let mut backoff = self.retry.first_backoff;
        let mut attempts = 1;
        loop {
            match attempt(RequestStrategy::Idempotent(key.clone())).await {
                Ok(value) => return Ok(value),
                Err(err) if attempts < self.retry.max_attempts && is_transient(&err) => {
                    tracing::warn!(
                        operation,
                        attempt = attempts,
                        error = %describe(&err),
                        "Stripe request failed, retrying with the same idempotency key"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(4);
                    attempts += 1;
                }
                Err(err) => {
                    if is_transient(&err) {
                        tracing::warn!(operation, attempts, error = %describe(&err), "Stripe unavailable");
                    }
                    return Err(err);
                }
            }
        }
    }
}

fn normalize_base_url(url: &str) -> Result<String, StripeConfigError> {
    let invalid = || StripeConfigError::InvalidBaseUrl {
        url: url.to_owned(),
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(invalid)?;
    if rest.is_empty() || rest.starts_with('/') || url.contains(['?', '#', ' ']) {
        return Err(invalid());
    }
    // async-stripe appends `v1/…` to the base as written, so it must end with `/`
    let mut url = url.to_owned();
    if !url.ends_with('/') {
        url.push('/');
    }
    Ok(url)
}

/// Worth another attempt with the same key?
fn is_transient(err: &StripeError) -> bool {
    match err {
        StripeError::Stripe(_, status) => matches!(status, 409 | 429 | 500..=599),
        // a connection error, or a response that was not Stripe's JSON (e.g. a proxy's 502 page,
        // whose status async-stripe does not keep): the same key replays Stripe's stored answer
        StripeError::ClientError(_) | StripeError::Timeout | StripeError::JSONDeserialize(_) => {
            true
        }
        StripeError::ConfigError(_) => false,
    }
}

/// A one-line description without the error's embedded objects (which can hold a client secret).
fn describe(err: &StripeError) -> String {
    match err {
        StripeError::Stripe(api, status) => format!(
            "HTTP {status}, {}{}: {}",
            api.type_.as_str(),
            api.code
                .as_ref()
                .map(|code| format!(" ({})", code.as_str()))
                .unwrap_or_default(),
            api.message.as_deref().unwrap_or("no message")
        ),
        StripeError::JSONDeserialize(msg) => format!("unreadable response: {msg}"),
        StripeError::ClientError(msg) => format!("connection: {msg}"),
        StripeError::ConfigError(msg) => format!("request: {msg}"),
        StripeError::Timeout => "timed out".to_owned(),
    }
}

fn to_gateway_error(err: &StripeError) -> GatewayError {
    if is_transient(err) {
        GatewayError::Unavailable(describe(err))
    } else {
        GatewayError::Rejected(describe(err))
    }
}

fn is_card_error(api: &ApiErrors, status: u16) -> bool {
    status == 402 || api.type_ == ApiErrorsType::CardError
}

/// The decline code when Stripe gives one (`insufficient_funds`), else the error code
/// (`card_declined`).
fn decline_code(api: &ApiErrors) -> Option<String> {
    api.decline_code
        .clone()
        .or_else(|| api.code.as_ref().map(|code| code.as_str().to_owned()))
}

fn authorize_outcome(intent: &PaymentIntent) -> Result<AuthorizeOutcome, GatewayError> {
    let provider_ref = intent.id.as_str().to_owned();
    match &intent.status {
        PaymentIntentStatus::RequiresCapture => Ok(AuthorizeOutcome::Authorized { provider_ref }),
        PaymentIntentStatus::RequiresAction => Ok(AuthorizeOutcome::Declined {
            provider_ref: Some(provider_ref),
            reason: "Your card requires authentication, which this checkout cannot complete. \
                     Please use another card."
                .to_owned(),
            code: Some("authentication_required".to_owned()),
        }),
        PaymentIntentStatus::RequiresPaymentMethod => {
            let error = intent.last_payment_error.as_deref();
            Ok(AuthorizeOutcome::Declined {
                provider_ref: Some(provider_ref),
                reason: error
                    .and_then(|error| error.message.clone())
                    .unwrap_or_else(|| "The payment method failed.".to_owned()),
                code: error
                    .and_then(decline_code)
                    .or_else(|| Some("payment_method_failed".to_owned())),
            })
        }
        other => Err(GatewayError::Rejected(format!(
            "PaymentIntent {provider_ref} is {} after a manual-capture confirmation",
            other.as_str()
        ))),
    }
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    async fn authorize(&self, request: AuthorizeRequest) -> Result<AuthorizeOutcome, GatewayError> {
        let currency = stripe_types::Currency::from_str(&request.currency.to_ascii_lowercase())
            .unwrap_or_else(|never| match never {});
        let create = CreatePaymentIntent::new(request.amount_minor, currency)
            .payment_method(request.payment_method.clone())
            .confirm(true)
            .capture_method(PaymentIntentCaptureMethod::Manual)
            .metadata([("order_id".to_owned(), request.order_id.to_string())]);
        let sent = self
            .send("authorize", &request.idempotency_key, |strategy| {
                create
                    .customize()
                    .request_strategy(strategy)
                    .send(&self.client)
            })
            .await;
        match sent {
            Ok(intent) => authorize_outcome(&intent),
            Err(StripeError::Stripe(api, status)) if is_card_error(&api, status) => {
                Ok(AuthorizeOutcome::Declined {
                    provider_ref: api
                        .payment_intent
                        .as_ref()
                        .map(|intent| intent.id.as_str().to_owned()),
                    reason: api
                        .message
                        .clone()
                        .unwrap_or_else(|| "Your card was declined.".to_owned()),
                    code: decline_code(&api),
                })
            }
            Err(err) => Err(to_gateway_error(&err)),
        }
    }

    async fn capture(
        &self,
        provider_ref: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<(), GatewayError> {
        let capture = CapturePaymentIntent::new(provider_ref).amount_to_capture(amount_minor);
        self.send("capture", idempotency_key, |strategy| {
            capture
                .customize()
                .request_strategy(strategy)
                .send(&self.client)
        })
        .await
        .map(drop)
        .map_err(|err| to_gateway_error(&err))
    }

    async fn cancel(
        &self,
        provider_ref: &str,
        idempotency_key: &str,
    ) -> Result<CancelOutcome, GatewayError> {
        let cancel = CancelPaymentIntent::new(provider_ref);
        let sent = self
            .send("cancel", idempotency_key, |strategy| {
                cancel
                    .customize()
                    .request_strategy(strategy)
                    .send(&self.client)
            })
            .await;
        match sent {
            Ok(_) => Ok(CancelOutcome::Cancelled),
            // Stripe refuses to cancel an intent that is captured or canceled already, with the
            // intent in the error (or not: then we ask for it)
            Err(StripeError::Stripe(api, 400))
                if api.code == Some(ApiErrorsCode::PaymentIntentUnexpectedState) =>
            {
                let status = match api.payment_intent {
                    Some(intent) => intent.status,
                    None => {
                        RetrievePaymentIntent::new(provider_ref)
                            .send(&self.client)
                            .await
                            .map_err(|err| to_gateway_error(&err))?
                            .status
                    }
                };
                match status {
                    PaymentIntentStatus::Succeeded => Ok(CancelOutcome::AlreadyCaptured),
                    PaymentIntentStatus::Canceled => Ok(CancelOutcome::Cancelled),
                    other => Err(GatewayError::Rejected(format!(
                        "PaymentIntent {provider_ref} cannot be canceled while {}",
                        other.as_str()
                    ))),
                }
            }
            Err(err) => Err(to_gateway_error(&err)),
        }
    }

    async fn refund(
        &self,
        provider_ref: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<String, GatewayError> {
        let refund = CreateRefund::new()
            .payment_intent(provider_ref)
            .amount(amount_minor);
        self.send("refund", idempotency_key, |strategy| {
            refund
                .customize()
                .request_strategy(strategy)
                .send(&self.client)
        })
        .await
        .map(|refund| refund.id.as_str().to_owned())
        .map_err(|err| to_gateway_error(&err))
    }
}
