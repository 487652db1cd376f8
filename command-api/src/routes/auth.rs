//! `/api/auth/*`: register, login, refresh (rotating), logout. Rate-limited per caller (its
//! account when signed in, else its address) and per email address. Never kept by the
//! Idempotency-Key layer (`idempotency::keeps`): their responses hold secrets, and a replayed
//! refresh would bypass the detection of a refresh token's reuse.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use domain::Email;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::context::RequestContext;
use crate::json::JsonBody;
use crate::AppState;
use accounts::{passwords, AccountError, RefreshError, Role};
use http_vocabulary::{ApiError, ApiResult, ErrorCode};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/auth/logout", post(logout))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    pub email: String,
    /// 10 to 256 characters.
    pub password: String,
    pub name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    pub refresh_token: String,
}

/// Tokens for a signed-in account.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Session {
    /// The account id (a customer id for customers).
    pub customer_id: Uuid,
    pub role: Role,
    /// A JWT to send as `Authorization: Bearer ...`.
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Exchange at `/api/auth/refresh` for new tokens; single use.
    pub refresh_token: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct LoggedOut {
    pub logged_out: bool,
}

pub(super) fn limit(state: &AppState, key: String) -> ApiResult<()> {
    state.auth_limiter.check(&key).map_err(|seconds| {
        ApiError::new(ErrorCode::RateLimited, "too many attempts; wait and retry")
            .with_retry_after(seconds)
    })
}

/// The caller's own bucket: its account when signed in, else its address.
pub(super) fn limit_client(state: &AppState, context: &RequestContext) -> ApiResult<()> {
    limit(state, context.rate_limit_key())
}

/// Tokens of `session`: its access tokens carry it, and die with it.
async fn session(
    state: &AppState,
    account: Uuid,
    role: Role,
    session: accounts::Session,
) -> ApiResult<Session> {
    Ok(Session {
        customer_id: account,
        role,
        access_token: state
            .tokens
            .issue_for_session(account, role, session.family)
            .map_err(ApiError::internal)?,
        token_type: "Bearer",
        expires_in: state.config.access_ttl.as_secs(),
        refresh_token: session.refresh_token,
    })
}

fn refresh_ttl(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(state.config.refresh_ttl).unwrap_or(chrono::Duration::days(30))
}

async fn register(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RegisterBody>,
) -> ApiResult<Response> {
    limit_client(&state, &context)?;
    let email =
        Email::parse(&body.email).map_err(|e| ApiError::validation(format!("email: {e}")))?;
    limit(&state, format!("email:{}", email.as_str()))?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::validation("name: must be 1 to 100 characters"));
    }
    passwords::check_policy(&body.password)
        .map_err(|e| ApiError::validation(format!("password: {e}")))?;
    let hash = passwords::hash(body.password)
        .await
        .map_err(ApiError::internal)?;
    let account =
        match accounts::create(&state.pool, email.as_str(), name, &hash, Role::Customer).await {
            Ok(id) => id,
            Err(AccountError::EmailTaken) => {
                return Err(ApiError::conflict("an account with this email exists"))
            }
            Err(AccountError::Database(db)) => return Err(db.into()),
        };
    let device = super::account::device_of(&headers);
    let refresh =
        accounts::start_session_on(&state.pool, account, refresh_ttl(&state), device.as_deref())
            .await?;
    let session = session(&state, account, Role::Customer, refresh).await?;
    Ok((StatusCode::CREATED, Json(session)).into_response())
}

async fn login(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult<Json<Session>> {
    limit_client(&state, &context)?;
    let refused = || ApiError::unauthorized("invalid email or password");
    let Ok(email) = Email::parse(&body.email) else {
        return Err(refused());
    };
    limit(&state, format!("email:{}", email.as_str()))?;
    let account = accounts::find_by_email(&state.pool, email.as_str()).await?;
    // verify against a decoy for unknown emails, so timing does not reveal which exist
    let hash = match &account {
        Some(account) => account.password_hash.clone(),
        None => passwords::decoy_hash().await,
    };
    let matches = passwords::verify(body.password, hash).await;
    let Some(account) = account.filter(|_| matches) else {
        return Err(refused());
    };
    let device = super::account::device_of(&headers);
    let refresh = accounts::start_session_on(
        &state.pool,
        account.id,
        refresh_ttl(&state),
        device.as_deref(),
    )
    .await?;
    Ok(Json(
        session(&state, account.id, account.role, refresh).await?,
    ))
}

async fn refresh(
    State(state): State<AppState>,
    context: RequestContext,
    JsonBody(body): JsonBody<RefreshBody>,
) -> ApiResult<Json<Session>> {
    limit_client(&state, &context)?;
    match accounts::rotate(&state.pool, &body.refresh_token, refresh_ttl(&state)).await {
        Ok((account, role, next)) => Ok(Json(session(&state, account, role, next).await?)),
        Err(RefreshError::Invalid) => Err(ApiError::unauthorized("the refresh token is not valid")),
        Err(RefreshError::Reused { family }) => {
            state.sessions.revoked(family);
            Err(ApiError::new(
                ErrorCode::TokenReused,
                "the refresh token was already used; every session it belonged to is signed out",
            ))
        }
        Err(RefreshError::Database(db)) => Err(db.into()),
    }
}

async fn logout(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RefreshBody>,
) -> ApiResult<Json<LoggedOut>> {
    if let Some(family) = accounts::end_session(&state.pool, &body.refresh_token).await? {
        state.sessions.revoked(family);
    }
    Ok(Json(LoggedOut { logged_out: true }))
}
