//! Stripe webhooks: the `Stripe-Signature` check ([`verify`]), a signer for tests ([`sign`]) and
//! the few fields of an event the Payment commands need ([`parse_event`]). Pure functions, no I/O:
//! the HTTP route passes in the raw body, the header, the endpoint secret and the clock.
//!
//! Stripe's scheme: the header is `t=TIMESTAMP,v1=HEX[,v1=HEX…][,v0=…]`; each `v1` is
//! `hex(HMAC-SHA256(endpoint secret, "{t}.{raw body}"))` (several while a secret is being rolled).
//! The body must be the bytes as received: re-serialized JSON does not verify.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// The header Stripe signs with.
pub const SIGNATURE_HEADER: &str = "Stripe-Signature";

/// How far (either way) a signature's timestamp may be from now: Stripe's default, 5 minutes.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a webhook was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The header has no `t=` element.
    #[error("Stripe-Signature has no timestamp")]
    MissingTimestamp,
    /// The header has no `v1=` signature.
    #[error("Stripe-Signature has no v1 signature")]
    NoSignatures,
    /// The signature is valid but its timestamp is too far from now (a replay, or a bad clock).
    #[error(
        "Stripe-Signature timestamp {timestamp} is more than {tolerance_secs} s from now ({now})"
    )]
    Stale {
        timestamp: i64,
        now: i64,
        tolerance_secs: i64,
    },
    /// No `v1` signature matches the payload and the secret.
    #[error("no Stripe-Signature signature matches the payload")]
    BadSignature,
    /// The header does not follow the `key=value,…` shape.
    #[error("malformed Stripe-Signature header: {0}")]
    Malformed(String),
    /// The (verified) body is not a Stripe event we can read.
    #[error("invalid Stripe event: {0}")]
    InvalidEvent(String),
}

struct SignatureHeader {
    timestamp: i64,
    v1: Vec<Vec<u8>>,
}

fn parse_header(header: &str) -> Result<SignatureHeader, WebhookError> {
    if header.trim().is_empty() {
        return Err(WebhookError::Malformed("empty header".into()));
    }
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for element in header.split(',') {
        let element = element.trim();
        let Some((key, value)) = element.split_once('=') else {
            return Err(WebhookError::Malformed(format!(
                "element without '=': {element:?}"
            )));
        };
        match key {
            "t" => {
                let t = value.parse::<i64>().map_err(|_| {
                    WebhookError::Malformed(format!("timestamp is not an integer: {value:?}"))
                })?;
                if timestamp.replace(t).is_some() {
                    return Err(WebhookError::Malformed("more than one timestamp".into()));
                }
            }
            "v1" => {
                let signature = hex::decode(value).map_err(|_| {
                    WebhookError::Malformed("a v1 signature is not hexadecimal".into())
                })?;
                v1.push(signature);
            }
            // v0 (test-mode legacy scheme) and any future scheme: not ours to check
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::MissingTimestamp)?;
    if v1.is_empty() {
        return Err(WebhookError::NoSignatures);
    }
    Ok(SignatureHeader { timestamp, v1 })
}

fn mac(payload: &[u8], secret: &str, timestamp: i64) -> HmacSha256 {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// Checks a webhook's `Stripe-Signature` header against the raw body and the endpoint secret
/// (`whsec_…`). Accepts when any `v1` signature matches (compared in constant time) and the
/// timestamp is within `tolerance_secs` of `now_unix` (either way; use [`TOLERANCE_SECS`]).
pub fn verify(
    payload: &[u8],
    signature_header: &str,
    secret: &str,
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), WebhookError> {
    let header = parse_header(signature_header)?;
    let expected = mac(payload, secret, header.timestamp);
    let matches = header
        .v1
        .iter()
        .any(|candidate| expected.clone().verify_slice(candidate).is_ok());
    if !matches {
        return Err(WebhookError::BadSignature);
    }
    let tolerance = u64::try_from(tolerance_secs).unwrap_or(0);
    if now_unix.abs_diff(header.timestamp) > tolerance {
        return Err(WebhookError::Stale {
            timestamp: header.timestamp,
            now: now_unix,
            tolerance_secs,
        });
    }
    Ok(())
}

/// A valid `Stripe-Signature` header for `payload` signed with `secret` at `timestamp`
/// (`t=…,v1=…`), as Stripe would send it.
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let signature = hex::encode(mac(payload, secret, timestamp).finalize().into_bytes());
    format!("t={timestamp},v1={signature}")
}

/// The event types the Payment aggregate reacts to; anything else is [`StripeEventKind::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StripeEventKind {
    /// `payment_intent.amount_capturable_updated`: an authorization is in place.
    AmountCapturableUpdated,
    /// `payment_intent.succeeded`: captured.
    Succeeded,
    /// `payment_intent.payment_failed`.
    PaymentFailed,
    /// `payment_intent.canceled`.
    Canceled,
    /// `charge.refunded`.
    ChargeRefunded,
    Other,
}

/// The fields of a Stripe event that shop uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StripeEvent {
    /// `evt_…`: deduplicate deliveries by it.
    pub id: String,
    /// `type`, e.g. `payment_intent.succeeded`.
    pub event_type: String,
    /// Unix seconds.
    pub created: i64,
    pub livemode: bool,
    /// `data.object`.
    pub object: StripeEventObject,
}

/// The fields of an event's `data.object` (a PaymentIntent for `payment_intent.*` events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StripeEventObject {
    /// `pi_…` (the `provider_ref`), `ch_…`, …
    pub id: String,
    /// `payment_intent`, `charge`, …
    pub object: Option<String>,
    pub status: Option<String>,
    pub amount: Option<i64>,
    pub amount_capturable: Option<i64>,
    pub amount_received: Option<i64>,
    /// `metadata.order_id`, as the Stripe adapter sets it.
    pub order_id: Option<String>,
    /// `last_payment_error.message`: why the payment failed, fit to show the customer.
    pub last_payment_error: Option<String>,
    /// `last_payment_error.decline_code`, else `last_payment_error.code`.
    pub last_payment_error_code: Option<String>,
}

impl StripeEvent {
    pub fn kind(&self) -> StripeEventKind {
        match self.event_type.as_str() {
            "payment_intent.amount_capturable_updated" => StripeEventKind::AmountCapturableUpdated,
            "payment_intent.succeeded" => StripeEventKind::Succeeded,
            "payment_intent.payment_failed" => StripeEventKind::PaymentFailed,
            "payment_intent.canceled" => StripeEventKind::Canceled,
            "charge.refunded" => StripeEventKind::ChargeRefunded,
            _ => StripeEventKind::Other,
        }
    }

    /// `metadata.order_id` as a UUID, when it is one.
    pub fn order_id(&self) -> Option<Uuid> {
        self.object
            .order_id
            .as_deref()
            .and_then(|id| Uuid::parse_str(id).ok())
    }
}

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    #[serde(default)]
    livemode: bool,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    object: RawObject,
}

#[derive(Deserialize)]
struct RawObject {
    id: String,
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    amount_capturable: Option<i64>,
    #[serde(default)]
    amount_received: Option<i64>,
    #[serde(default)]
    metadata: Option<RawMetadata>,
    #[serde(default)]
    last_payment_error: Option<RawPaymentError>,
}

#[derive(Deserialize)]
struct RawMetadata {
    #[serde(default)]
    order_id: Option<String>,
}

#[derive(Deserialize)]
struct RawPaymentError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
}

/// Reads the fields shop uses from a Stripe event body (verify it first). Unknown fields are
/// ignored, so new Stripe API versions keep parsing.
pub fn parse_event(payload: &[u8]) -> Result<StripeEvent, WebhookError> {
    let raw: RawEvent = serde_json::from_slice(payload)
        .map_err(|err| WebhookError::InvalidEvent(err.to_string()))?;
    let object = raw.data.object;
    let (last_payment_error, last_payment_error_code) = match object.last_payment_error {
        Some(error) => (error.message, error.decline_code.or(error.code)),
        None => (None, None),
    };
    Ok(StripeEvent {
        id: raw.id,
        event_type: raw.event_type,
        created: raw.created,
        livemode: raw.livemode,
        object: StripeEventObject {
            id: object.id,
            object: object.object,
            status: object.status,
            amount: object.amount,
            amount_capturable: object.amount_capturable,
            amount_received: object.amount_received,
            order_id: object.metadata.and_then(|metadata| metadata.order_id),
            last_payment_error,
            last_payment_error_code,
        },
    })
}
