//! Who is asking, and under which ids: the request context every handler gets, and that travels
//! into every event's metadata (actor, request id, correlation id, idempotency key).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use eventlog::{Actor, EventMetadata};
use http_vocabulary::headers::header_text;
use http_vocabulary::RequestId;
use uuid::Uuid;

use crate::AppState;
use accounts::cart_tokens;
use accounts::tokens::Claims;
use accounts::Role;
use http_vocabulary::{ApiError, ApiResult};

pub const CORRELATION_ID: &str = "x-correlation-id";
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The caller and the ids of this request.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// `None` for a guest.
    pub claims: Option<Claims>,
    pub request_id: String,
    pub correlation_id: Uuid,
    pub idempotency_key: Option<String>,
    /// The `Cart-Token` header: the secret of the guest cart this request uses.
    pub cart_token: Option<String>,
    pub traceparent: Option<String>,
    /// The client's address: the TCP peer, or the address a trusted proxy forwarded for
    /// (see [`crate::client_ip`]).
    pub client_ip: Option<IpAddr>,
}

impl RequestContext {
    pub fn actor(&self) -> Actor {
        match &self.claims {
            Some(claims) => Actor {
                id: claims.sub.to_string(),
                role: claims.role.as_str().to_owned(),
            },
            None => Actor {
                id: "guest".to_owned(),
                role: "guest".to_owned(),
            },
        }
    }

    /// Whom an idempotency key belongs to: the account, or for a guest the cart secret it
    /// holds (a guest has nothing else that is its own: two guests' clients may send the same
    /// key). Guests without a cart token share one scope, in which nothing is kept that a
    /// guest would need a secret for.
    pub fn idempotency_scope(&self) -> String {
        match (&self.claims, &self.cart_token) {
            (Some(claims), _) => claims.sub.to_string(),
            (None, Some(token)) => format!("guest:{}", hex::encode(cart_tokens::hash(token))),
            (None, None) => "guest".to_owned(),
        }
    }

    /// Metadata for the events of this request's command. With an Idempotency-Key the command
    /// id is derived from it, so a retry is recognised by the event store even if the first
    /// response was lost.
    pub fn metadata(&self) -> EventMetadata {
        let mut metadata = EventMetadata::new(self.actor());
        metadata.correlation_id = self.correlation_id;
        metadata.causation_id = Some(format!("request:{}", self.request_id));
        metadata.request_id = Some(self.request_id.clone());
        metadata.traceparent = self.traceparent.clone();
        if let Some(key) = &self.idempotency_key {
            metadata.command_id = format!("{}:{key}", self.idempotency_scope());
        }
        metadata
    }

    /// Metadata for the `step`-th command of a request that sends several (e.g. a cart merge).
    pub fn metadata_for_step(&self, step: &str) -> EventMetadata {
        let mut metadata = self.metadata();
        metadata.command_id = format!("{}#{step}", metadata.command_id);
        metadata
    }

    /// A stable id for something this request creates: derived from the Idempotency-Key in the
    /// caller's scope when there is one (so a retried create targets the same stream; a guest's
    /// scope is the hash of its secret cart token, so the id is as unguessable as the token),
    /// random otherwise — and always random for a guest without a cart token, whose key alone
    /// is not its own.
    pub fn new_id(&self, what: &str) -> Uuid {
        match &self.idempotency_key {
            Some(key) if self.claims.is_some() || self.cart_token.is_some() => Uuid::new_v5(
                &Uuid::NAMESPACE_OID,
                format!("shop:{what}:{}:{key}", self.idempotency_scope()).as_bytes(),
            ),
            _ => Uuid::new_v4(),
        }
    }

    /// Whose bucket a rate limit takes from: a signed-in caller's account (wherever it connects
    /// from: many customers share an office's or a carrier's address), else the client address.
    pub fn rate_limit_key(&self) -> String {
        match (&self.claims, self.client_ip) {
            (Some(claims), _) => format!("account:{}", claims.sub),
            (None, Some(ip)) => format!("ip:{ip}"),
            (None, None) => "ip:unknown".to_owned(),
        }
    }

    pub fn role(&self) -> Option<Role> {
        self.claims.as_ref().map(|c| c.role)
    }

    pub fn account(&self) -> Option<Uuid> {
        self.claims.as_ref().map(|c| c.sub)
    }

    /// Refuses unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> ApiResult<&Claims> {
        match &self.claims {
            None => Err(ApiError::unauthorized("sign in to do this")),
            Some(claims) if roles.contains(&claims.role) => Ok(claims),
            Some(_) => Err(ApiError::forbidden("your role may not do this")),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .ok_or_else(|| ApiError::internal("request context middleware is missing"))
    }
}

/// Middleware (inside [`http_vocabulary::with_request_span`], whose request id it takes):
/// authenticates the bearer token (an invalid one, or one of a revoked session, is a 401, not a
/// guest) and puts the [`RequestContext`] into the request's extensions.
pub async fn establish(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let claims = match headers.get(axum::http::header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            match token.and_then(|t| state.tokens.verify(t)) {
                Some(claims) => {
                    // a token of a session that was signed out (or whose refresh token was
                    // reused) is dead, however long it had to live
                    if let Some(session) = claims.sid {
                        match state.sessions.is_revoked(&state.pool, session).await {
                            Ok(false) => {}
                            Ok(true) => {
                                return ApiError::unauthorized(
                                    "the access token's session was signed out",
                                )
                                .into_response()
                            }
                            Err(error) => return ApiError::from(error).into_response(),
                        }
                    }
                    Some(claims)
                }
                None => {
                    return ApiError::unauthorized("the access token is invalid or expired")
                        .into_response()
                }
            }
        }
    };
    if headers.contains_key(IDEMPOTENCY_KEY) && header_text(headers, IDEMPOTENCY_KEY, 255).is_none()
    {
        return ApiError::validation("Idempotency-Key must be 1 to 255 visible ASCII characters")
            .into_response();
    }
    let cart_token = header_text(headers, cart_tokens::HEADER, cart_tokens::MAX_LEN);
    if headers.contains_key(cart_tokens::HEADER)
        && !cart_token
            .as_deref()
            .is_some_and(cart_tokens::is_well_formed)
    {
        return ApiError::validation(format!(
            "Cart-Token must be {} to {} visible ASCII characters",
            cart_tokens::MIN_LEN,
            cart_tokens::MAX_LEN
        ))
        .into_response();
    }
    let Some(RequestId(request_id)) = request.extensions().get::<RequestId>().cloned() else {
        return ApiError::internal("the request span layer is missing").into_response();
    };
    let context = RequestContext {
        claims,
        correlation_id: header_text(headers, CORRELATION_ID, 64)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(Uuid::now_v7),
        idempotency_key: header_text(headers, IDEMPOTENCY_KEY, 255),
        cart_token,
        traceparent: header_text(headers, "traceparent", 128),
        client_ip: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| {
                crate::client_ip::client_ip(
                    info.0.ip(),
                    headers,
                    &state.config.trusted_proxies,
                    state.config.forwarded_header,
                )
            }),
        request_id,
    };
    request.extensions_mut().insert(context);
    next.run(request).await
}
