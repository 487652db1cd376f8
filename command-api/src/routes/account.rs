//! The signed-in account's own data: `/api/me/*` (profile, address book) and the session
//! routes under `/api/auth/*` (sign out everywhere, revoke one session, password reset by
//! e-mail). Reads (profile, addresses, sessions) are GraphQL fields of `me`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use axum::{Json, Router};
use domain::{Address, Email};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::{limit, limit_client};
use super::carts::AddressBody;
use crate::context::RequestContext;
use crate::json::JsonBody;
use crate::AppState;
use accounts::address_book::{self, AddressBookError, AddressLabel, Defaults};
use accounts::password_reset::{self, ResetError};
use accounts::passwords;
use accounts::profile::{self, PersonName, PhoneNumber};
use http_vocabulary::{ApiError, ApiResult};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/me/profile", put(update_profile))
        .route("/api/me/addresses", post(add_address))
        .route(
            "/api/me/addresses/{id}",
            put(replace_address).delete(remove_address),
        )
        .route("/api/me/addresses/{id}/default", post(set_default))
        .route("/api/auth/logout-all", post(logout_all))
        .route("/api/auth/sessions/{id}", delete(revoke_session))
        .route("/api/auth/password-reset", post(request_password_reset))
        .route(
            "/api/auth/password-reset/confirm",
            post(confirm_password_reset),
        )
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    /// 1 to 100 characters.
    pub name: String,
    /// Digits with an optional leading `+` (6 to 15 digits); absent or null removes it.
    pub phone: Option<String>,
}

/// The account's profile after the change.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProfileWritten {
    pub customer_id: Uuid,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SavedAddressBody {
    /// The customer's name for it, e.g. `Home` (1 to 50 characters).
    pub label: Option<String>,
    pub address: AddressBody,
    /// `true`: the default shipping address from now on; `false`: not any more.
    pub default_shipping: Option<bool>,
    /// `true`: the default billing address from now on; `false`: not any more.
    pub default_billing: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultsBody {
    /// `true`: the default shipping address from now on; `false`: not any more.
    pub shipping: Option<bool>,
    /// `true`: the default billing address from now on; `false`: not any more.
    pub billing: Option<bool>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AddressWritten {
    pub address_id: Uuid,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionsEnded {
    /// How many sessions were signed out.
    pub ended: usize,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetBody {
    pub email: String,
}

/// The same answer whether or not the address has an account.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PasswordResetRequested {
    pub accepted: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirmBody {
    /// The code from the e-mail.
    pub token: String,
    /// 10 to 256 characters.
    pub new_password: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PasswordChanged {
    pub changed: bool,
    /// Sessions signed out by the change (all of the account's).
    pub ended_sessions: usize,
}

/// The signed-in caller's account id (any role).
fn signed_in(context: &RequestContext) -> ApiResult<Uuid> {
    context
        .account()
        .ok_or_else(|| ApiError::unauthorized("sign in to do this"))
}

fn book_error(error: AddressBookError) -> ApiError {
    match error {
        AddressBookError::Full => ApiError::conflict(error.to_string()),
        AddressBookError::NotFound => ApiError::not_found(error.to_string()),
        AddressBookError::Corrupt(_) => ApiError::internal(error),
        AddressBookError::Database(db) => db.into(),
    }
}

/// A postal address from its wire form; `field` names it in errors.
pub fn parse_address(body: AddressBody, field: &str) -> ApiResult<Address> {
    Address::new(
        &body.name,
        &body.line1,
        body.line2,
        &body.city,
        &body.postal_code,
        &body.country,
    )
    .map_err(|e| ApiError::validation(format!("{field}: {e}")))
}

async fn update_profile(
    State(state): State<AppState>,
    context: RequestContext,
    JsonBody(body): JsonBody<ProfileBody>,
) -> ApiResult<Json<ProfileWritten>> {
    let account = signed_in(&context)?;
    let name =
        PersonName::parse(&body.name).map_err(|e| ApiError::validation(format!("name: {e}")))?;
    let phone = body
        .phone
        .as_deref()
        .map(PhoneNumber::parse)
        .transpose()
        .map_err(|e| ApiError::validation(format!("phone: {e}")))?;
    if !profile::update(&state.pool, account, &name, phone.as_ref()).await? {
        return Err(ApiError::not_found("the account no longer exists"));
    }
    let profile = profile::load(&state.pool, account)
        .await?
        .ok_or_else(|| ApiError::not_found("the account no longer exists"))?;
    Ok(Json(ProfileWritten {
        customer_id: profile.id,
        email: profile.email,
        name: profile.name,
        phone: profile.phone,
    }))
}

fn parse_saved(body: SavedAddressBody) -> ApiResult<(Option<AddressLabel>, Address, Defaults)> {
    let label = body
        .label
        .as_deref()
        .map(AddressLabel::parse)
        .transpose()
        .map_err(|e| ApiError::validation(format!("label: {e}")))?;
    let address = parse_address(body.address, "address")?;
    let defaults = Defaults {
        shipping: body.default_shipping,
        billing: body.default_billing,
    };
    Ok((label, address, defaults))
}

async fn add_address(
    State(state): State<AppState>,
    context: RequestContext,
    JsonBody(body): JsonBody<SavedAddressBody>,
) -> ApiResult<Response> {
    let account = signed_in(&context)?;
    let (label, address, defaults) = parse_saved(body)?;
    let id = address_book::add(&state.pool, account, label.as_ref(), &address, defaults)
        .await
        .map_err(book_error)?;
    Ok((StatusCode::CREATED, Json(AddressWritten { address_id: id })).into_response())
}

async fn replace_address(
    State(state): State<AppState>,
    context: RequestContext,
    Path(id): Path<Uuid>,
    JsonBody(body): JsonBody<SavedAddressBody>,
) -> ApiResult<Json<AddressWritten>> {
    let account = signed_in(&context)?;
    let (label, address, defaults) = parse_saved(body)?;
    address_book::replace(&state.pool, account, id, label.as_ref(), &address, defaults)
        .await
        .map_err(book_error)?;
    Ok(Json(AddressWritten { address_id: id }))
}

async fn remove_address(
    State(state): State<AppState>,
    context: RequestContext,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<AddressWritten>> {
    let account = signed_in(&context)?;
    address_book::remove(&state.pool, account, id)
        .await
        .map_err(book_error)?;
    Ok(Json(AddressWritten { address_id: id }))
}

async fn set_default(
    State(state): State<AppState>,
    context: RequestContext,
    Path(id): Path<Uuid>,
    JsonBody(body): JsonBody<DefaultsBody>,
) -> ApiResult<Json<AddressWritten>> {
    let account = signed_in(&context)?;
    if body.shipping.is_none() && body.billing.is_none() {
        return Err(ApiError::validation(
            "shipping, billing: give at least one of them",
        ));
    }
    let defaults = Defaults {
        shipping: body.shipping,
        billing: body.billing,
    };
    address_book::set_defaults(&state.pool, account, id, defaults)
        .await
        .map_err(book_error)?;
    Ok(Json(AddressWritten { address_id: id }))
}

async fn logout_all(
    State(state): State<AppState>,
    context: RequestContext,
) -> ApiResult<Json<SessionsEnded>> {
    let account = signed_in(&context)?;
    limit_client(&state, &context)?;
    let families = accounts::revoke_all_sessions(&state.pool, account).await?;
    for family in &families {
        state.sessions.revoked(*family);
    }
    Ok(Json(SessionsEnded {
        ended: families.len(),
    }))
}

async fn revoke_session(
    State(state): State<AppState>,
    context: RequestContext,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<SessionsEnded>> {
    let account = signed_in(&context)?;
    limit_client(&state, &context)?;
    if !accounts::revoke_session(&state.pool, account, id).await? {
        return Err(ApiError::not_found("no such live session of yours"));
    }
    state.sessions.revoked(id);
    Ok(Json(SessionsEnded { ended: 1 }))
}

async fn request_password_reset(
    State(state): State<AppState>,
    context: RequestContext,
    JsonBody(body): JsonBody<PasswordResetBody>,
) -> ApiResult<Response> {
    limit_client(&state, &context)?;
    let email =
        Email::parse(&body.email).map_err(|e| ApiError::validation(format!("email: {e}")))?;
    limit(&state, format!("reset:{}", email.as_str()))?;
    // The answer does not wait for the lookup: the same answer, in the same time, whether or
    // not the address has an account.
    let pool = state.pool.clone();
    tokio::spawn(async move {
        if let Err(error) = password_reset::request(&pool, email.as_str()).await {
            tracing::error!(%error, "password reset not issued");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(PasswordResetRequested { accepted: true }),
    )
        .into_response())
}

async fn confirm_password_reset(
    State(state): State<AppState>,
    context: RequestContext,
    JsonBody(body): JsonBody<PasswordResetConfirmBody>,
) -> ApiResult<Json<PasswordChanged>> {
    limit_client(&state, &context)?;
    passwords::check_policy(&body.new_password)
        .map_err(|e| ApiError::validation(format!("new_password: {e}")))?;
    if body.token.len() > 128 {
        return Err(ApiError::unauthorized(ResetError::Invalid.to_string()));
    }
    let hash = passwords::hash(body.new_password)
        .await
        .map_err(ApiError::internal)?;
    match password_reset::reset(&state.pool, &body.token, &hash).await {
        Ok(reset) => {
            for family in &reset.ended_sessions {
                state.sessions.revoked(*family);
            }
            Ok(Json(PasswordChanged {
                changed: true,
                ended_sessions: reset.ended_sessions.len(),
            }))
        }
        Err(ResetError::Invalid) => Err(ApiError::unauthorized(ResetError::Invalid.to_string())),
        Err(ResetError::Database(db)) => Err(db.into()),
    }
}

/// The User-Agent of a request, for the list of sessions (at most 256 characters).
pub fn device_of(headers: &HeaderMap) -> Option<String> {
    let text = headers.get("user-agent")?.to_str().ok()?.trim();
    let text: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(256)
        .collect();
    (!text.is_empty()).then_some(text)
}
