//! A customer's personal data: their export and their erasure, asked for by themselves
//! (`/api/me/...`) or by staff (`/api/customers/{id}/...`). See [`crate::privacy`].

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use uuid::Uuid;

use crate::context::RequestContext;
use crate::privacy::{self, DataExport, ErasureReport, PrivacyError};
use crate::AppState;
use accounts::Role;
use http_vocabulary::{ApiError, ApiResult, ErrorCode};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/me/data", get(my_data))
        .route("/api/me/erasure", post(erase_me))
        .route("/api/customers/{id}/data", get(customer_data))
        .route("/api/customers/{id}/erasure", post(erase_customer))
}

impl From<PrivacyError> for ApiError {
    fn from(error: PrivacyError) -> Self {
        match error {
            PrivacyError::NotSealed => ApiError::new(ErrorCode::Conflict, error.to_string()),
            PrivacyError::NotACustomer(..) => {
                ApiError::new(ErrorCode::Validation, error.to_string())
            }
            PrivacyError::Database(db) => ApiError::from(db),
            PrivacyError::Store(store) => ApiError::from(store),
            PrivacyError::Keyring(schemas::personal::KeyringError::Database(db)) => {
                ApiError::from(db)
            }
            other => ApiError::internal(other),
        }
    }
}

/// The signed-in customer's id.
fn me(context: &RequestContext) -> ApiResult<Uuid> {
    Ok(context.require(&[Role::Customer])?.sub)
}

async fn my_data(
    State(state): State<AppState>,
    context: RequestContext,
) -> ApiResult<Json<DataExport>> {
    let customer = me(&context)?;
    Ok(Json(
        privacy::export(&state.pool, &state.stores, customer).await?,
    ))
}

async fn erase_me(
    State(state): State<AppState>,
    context: RequestContext,
) -> ApiResult<Json<ErasureReport>> {
    let claims = context.require(&[Role::Customer])?;
    let report = erase(&state, claims.sub).await?;
    // this very session ends at once (the others within the session check's cache time)
    if let Some(session) = claims.sid {
        state.sessions.revoked(session);
    }
    Ok(report)
}

async fn customer_data(
    State(state): State<AppState>,
    context: RequestContext,
    Path(customer): Path<Uuid>,
) -> ApiResult<Json<DataExport>> {
    context.require(&[Role::Staff])?;
    Ok(Json(
        privacy::export(&state.pool, &state.stores, customer).await?,
    ))
}

async fn erase_customer(
    State(state): State<AppState>,
    context: RequestContext,
    Path(customer): Path<Uuid>,
) -> ApiResult<Json<ErasureReport>> {
    context.require(&[Role::Staff])?;
    erase(&state, customer).await
}

async fn erase(state: &AppState, customer: Uuid) -> ApiResult<Json<ErasureReport>> {
    let report = privacy::erase(&state.pool, state.stores.keyring.as_deref(), customer).await?;
    Ok(Json(report))
}
