//! shop's command API: every write over HTTP (axum). Auth (argon2 + JWT with rotating refresh
//! tokens), roles, `Idempotency-Key` on POST, rate limits, problem+json errors with stable codes,
//! and an OpenAPI document generated from the request/response types.
//!
//! Build a router with [`router`] from an [`AppState`]; `shop serve` and `shop command-api`
//! serve it.

pub mod client_ip;
pub mod context;
pub mod idempotency;
pub mod json;
pub mod openapi;
pub mod privacy;
pub mod rate_limit;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use http_vocabulary::{ApiError, ErrorCode};
use sqlx::PgPool;

pub use schemas::stores::Stores;

/// The largest request body accepted, in bytes (but see [`body_limit`]).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The largest body accepted at `path`: an image upload's limit on the image routes, else
/// [`BODY_LIMIT`].
pub fn body_limit(path: &str) -> usize {
    if routes::products::is_image_upload(path) {
        media::MAX_UPLOAD_BYTES + 1
    } else {
        BODY_LIMIT
    }
}

/// Migrations of the command API's tables (versions 100–199).
pub const MIGRATIONS: &[eventlog::migrate::Migration] = &[
    eventlog::migrate::Migration {
        version: 100,
        name: "accounts",
        sql: include_str!("../migrations/0100_accounts.sql"),
    },
    eventlog::migrate::Migration {
        version: 101,
        name: "idempotency_expiry",
        sql: include_str!("../migrations/0101_idempotency_expiry.sql"),
    },
    eventlog::migrate::Migration {
        version: 102,
        name: "guest_cart_tokens",
        sql: include_str!("../migrations/0102_guest_cart_tokens.sql"),
    },
    // the `accounts` crate's customer data: address book, phone, session devices, password
    // reset tokens (110–119 kept for it)
    eventlog::migrate::Migration {
        version: 110,
        name: "customer_data",
        sql: include_str!("../migrations/0110_customer_data.sql"),
    },
    // product reviews (130–139): the verified-purchase check finds a customer's orders
    eventlog::migrate::Migration {
        version: 130,
        name: "order_placements_by_customer",
        sql: include_str!("../migrations/0130_order_placements_by_customer.sql"),
    },
];

/// Settings of the command API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// Auth requests per minute per client IP and per account (burst allowed: a fifth of it).
    pub auth_per_minute: u32,
    /// Checkouts per minute per client.
    pub checkout_per_minute: u32,
    /// Proxies whose forwarding header names the client (`SHOP_TRUSTED_PROXIES`).
    pub trusted_proxies: client_ip::TrustedProxies,
    /// The header those proxies append the client's address to.
    pub forwarded_header: client_ip::ForwardedHeader,
    /// How long an Idempotency-Key's response is kept and replayed; older keys run again.
    pub idempotency_ttl: Duration,
    /// The currency of a cart opened without one (`SHOP_DEFAULT_CURRENCY`); `None`: its first
    /// line's.
    pub default_currency: Option<domain::Currency>,
    /// How long a live session is believed before it is read again (a logout on another
    /// replica takes this long to reach this one).
    pub session_check_ttl: Duration,
    /// Where uploaded product images go (`shop` configures a directory or S3; the default
    /// keeps them in memory, for tests).
    pub images: media::ImageStore,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            auth_per_minute: 30,
            checkout_per_minute: 60,
            trusted_proxies: client_ip::TrustedProxies::none(),
            forwarded_header: client_ip::ForwardedHeader::XForwardedFor,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            default_currency: None,
            session_check_ttl: Duration::from_secs(5),
            images: media::ImageStore::in_memory(),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub pool: PgPool,
    pub stores: Stores,
    pub tokens: accounts::tokens::TokenKeys,
    pub config: ApiConfig,
    pub auth_limiter: rate_limit::RateLimiter,
    pub checkout_limiter: rate_limit::RateLimiter,
    /// Whether access tokens' sessions are revoked.
    pub sessions: accounts::sessions::SessionCheck,
    /// When this process last purged expired idempotency keys (seconds since the epoch).
    pub idempotency_purged_at: std::sync::atomic::AtomicU64,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(pool: PgPool, secret: &accounts::tokens::Secret, config: ApiConfig) -> Self {
        Self::with_keyring(pool, secret, config, None)
    }

    /// [`AppState::new`], sealing personal fields with `keyring` (see `schemas::personal`);
    /// `None`: they are stored in plaintext and cannot be erased.
    pub fn with_keyring(
        pool: PgPool,
        secret: &accounts::tokens::Secret,
        config: ApiConfig,
        keyring: Option<Arc<schemas::personal::Keyring>>,
    ) -> Self {
        let burst = |per_minute: u32| (per_minute / 5).max(3);
        Self(Arc::new(Inner {
            stores: match keyring {
                Some(keyring) => Stores::sealed(&pool, keyring),
                None => Stores::new(&pool),
            },
            tokens: accounts::tokens::TokenKeys::new(secret, config.access_ttl),
            auth_limiter: rate_limit::RateLimiter::new(
                config.auth_per_minute,
                burst(config.auth_per_minute),
            ),
            checkout_limiter: rate_limit::RateLimiter::new(
                config.checkout_per_minute,
                burst(config.checkout_per_minute),
            ),
            idempotency_purged_at: std::sync::atomic::AtomicU64::new(0),
            sessions: accounts::sessions::SessionCheck::new(config.session_check_ttl),
            pool,
            config,
        }))
    }
}

/// The command API's routes, with its middleware.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .merge(routes::router())
        .route("/api/openapi.json", get(openapi::serve))
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "this route does not take that method",
            )
        })
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            context::establish,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    // the request span is outermost: authentication and idempotency log inside it
    http_vocabulary::with_request_span(routes)
        // ready while PostgreSQL answers
        .merge(http_vocabulary::health::router(state.pool.clone()))
        .with_state(state)
}
