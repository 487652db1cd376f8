//! What every shop HTTP API speaks alike, so a client handles the command API, the query API and
//! the Stripe webhook with one vocabulary:
//!
//! - [`problem`]: the error codes ([`ErrorCode`]), the `application/problem+json` body
//!   ([`Problem`]) and the error a handler returns ([`ApiError`]);
//! - [`domain_errors`]: every domain refusal and event-store failure as an [`ApiError`];
//! - [`headers`]: the `Shop-Position` and `X-Request-Id` headers;
//! - [`request_span`]: the middleware that names each request and runs it in its span;
//! - [`health`]: `/health/live` and `/health/ready` over a [`health::Readiness`] check.

pub mod domain_errors;
pub mod headers;
pub mod health;
pub mod problem;
pub mod request_span;

pub use headers::{POSITION_HEADER, REQUEST_ID_HEADER};
pub use problem::{ApiError, ApiResult, ErrorCode, Problem};
pub use request_span::{with_request_span, RequestId};
