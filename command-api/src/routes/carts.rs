//! `/api/carts`: guest and customer carts. A customer's cart is usable by that customer only; a
//! guest cart by whoever holds its secret, sent as the `Cart-Token` header
//! ([`accounts::cart_tokens`]): the guest's client chooses it (needed for a create with an
//! Idempotency-Key: the token, not the key, says which guest is retrying) or the server makes
//! one and answers it once, with the new cart.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{patch, post};
use axum::Router;
use domain::cart::{CartLine, CartOwner, CartStatus};
use domain::pricing::Discount;
use domain::{
    Address, Cart, CartCommand, CartError, CartId, Currency, CustomerId, Money, OrderId,
    ProductError, Sku,
};
use eventlog::store::{ExecuteError, Refusal};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use super::inventory::parse_quantity;
use super::products::parse_sku;
use super::{position_text, written, OptionalJsonBody};
use crate::context::RequestContext;
use crate::json::JsonBody;
use crate::AppState;
use accounts::{cart_tokens, Role};
use http_vocabulary::domain_errors::Coded;
use http_vocabulary::{ApiError, ApiResult, ErrorCode};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/carts", post(create))
        .route("/api/carts/{id}/items", post(add_item))
        .route(
            "/api/carts/{id}/items/{sku}",
            patch(change_quantity).delete(remove_item),
        )
        .route("/api/carts/{id}/coupon", post(apply_coupon))
        .route("/api/carts/{id}/merge", post(merge))
        .route("/api/carts/{id}/checkout", post(checkout))
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCartBody {
    /// ISO 4217 code. When absent: the shop's default currency if it has one
    /// (`SHOP_DEFAULT_CURRENCY`), else the currency of the first line put in the cart.
    pub currency: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItemBody {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeQuantityBody {
    pub quantity: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CouponBody {
    pub code: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeBody {
    pub guest_cart_id: Uuid,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressBody {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    pub country: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    /// Where to ship. Or `shipping_address_id`; a signed-in customer who gives neither ships to
    /// their default shipping address.
    pub shipping_address: Option<AddressBody>,
    /// An address of the caller's address book (`/api/me/addresses`), instead of
    /// `shipping_address`.
    pub shipping_address_id: Option<Uuid>,
    /// A payment method reference, e.g. `pm_card_visa`.
    pub payment_method: String,
}

/// A new cart.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CartOpened {
    pub cart_id: Uuid,
    /// A guest cart's secret, when the server made it (the request had no `Cart-Token`): send it
    /// as the `Cart-Token` header with every later request for this cart. Answered only here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cart_token: Option<String>,
    pub position: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CartWritten {
    pub cart_id: Uuid,
    pub position: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CheckoutAccepted {
    pub order_id: Uuid,
    pub cart_id: Uuid,
    pub position: Option<String>,
}

/// Whether the request carries the token of the guest cart `cart_id`.
async fn holds_token(state: &AppState, context: &RequestContext, cart_id: Uuid) -> ApiResult<bool> {
    Ok(match &context.cart_token {
        Some(token) => cart_tokens::holds(&state.pool, cart_id, token).await?,
        None => false,
    })
}

/// Who may use a cart: its customer, or the holder of a guest cart's token (`holds_token`,
/// checked before: a cart's token never changes).
fn holder_of(
    context: &RequestContext,
    holds_token: bool,
) -> impl Fn(&Cart) -> Result<(), Refusal> + '_ {
    move |cart: &Cart| match cart.owner() {
        None => Err(Refusal::NotFound),
        Some(CartOwner::Guest) if holds_token => Ok(()),
        Some(CartOwner::Guest) => Err(Refusal::Forbidden),
        Some(CartOwner::Customer(owner)) => match context.account() {
            Some(account) if owner == CustomerId::new(account) => Ok(()),
            _ => Err(Refusal::Forbidden),
        },
    }
}

/// A refusal of the holder check, in words that say what to send.
fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::NotFound => ApiError::not_found("no such cart"),
        Refusal::Forbidden => ApiError::forbidden(
            "this cart is someone else's (a guest cart needs its Cart-Token header)",
        ),
    }
}

fn cart_error(error: ExecuteError<CartError>) -> ApiError {
    match error {
        ExecuteError::Refused(refusal) => refused(refusal),
        other => other.into(),
    }
}

async fn run(
    state: &AppState,
    context: &RequestContext,
    cart_id: Uuid,
    command: CartCommand,
) -> ApiResult<Response> {
    let holds_token = holds_token(state, context, cart_id).await?;
    let receipt = state
        .stores
        .carts
        .execute_if(
            &cart_id.to_string(),
            command,
            &context.metadata(),
            holder_of(context, holds_token),
        )
        .await
        .map_err(cart_error)?;
    Ok(written(
        StatusCode::OK,
        receipt.position,
        CartWritten {
            cart_id,
            position: position_text(receipt.position),
        },
    ))
}

/// The current price of a product that can be sold, in the currency of the cart it goes in
/// (`None`: a cart without a currency yet takes the product's base price).
async fn price_of(
    state: &AppState,
    sku: &Sku,
    cart_currency: Option<Currency>,
) -> ApiResult<Money> {
    let product = state.stores.products.load(sku.as_str()).await?.aggregate;
    product
        .price_for_cart(cart_currency)
        .map_err(|error| match error {
            ProductError::NotFound => ApiError::not_found(format!("no product {sku}")),
            ProductError::Discontinued => ApiError::conflict(format!("{sku} is discontinued")),
            ProductError::NoPriceInCurrency(currency) => ApiError::new(
                ErrorCode::NoPriceInCurrency,
                format!("{sku} has no price in {currency}"),
            ),
            other => ApiError::new(other.code(), other.to_string()),
        })
}

async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    OptionalJsonBody(body): OptionalJsonBody<CreateCartBody>,
) -> ApiResult<Response> {
    let owner = match &context.claims {
        None => CartOwner::Guest,
        Some(claims) if claims.role == Role::Customer => {
            CartOwner::Customer(CustomerId::new(claims.sub))
        }
        Some(_) => return Err(ApiError::forbidden("only guests and customers have carts")),
    };
    let currency = match body.currency.as_deref() {
        Some(code) => Some(
            Currency::parse(code).map_err(|e| ApiError::validation(format!("currency: {e}")))?,
        ),
        None => state.config.default_currency,
    };
    let cart_id = context.new_id("cart");
    let mut made_token = None;
    if owner == CartOwner::Guest {
        let token = match &context.cart_token {
            Some(token) => token.clone(),
            None if context.idempotency_key.is_some() => {
                return Err(ApiError::validation(format!(
                    "a guest's Idempotency-Key needs a Cart-Token header: a secret of {} to {} \
                     visible characters the client makes, which says whose retry it is",
                    cart_tokens::MIN_LEN,
                    cart_tokens::MAX_LEN
                )))
            }
            None => made_token.insert(cart_tokens::new_token()).clone(),
        };
        // before the cart exists: a cart is never usable without its token
        if !cart_tokens::register(&state.pool, cart_id, &cart_tokens::hash(&token)).await? {
            return Err(ApiError::conflict(
                "this cart exists with another Cart-Token",
            ));
        }
    }
    let receipt = state
        .stores
        .carts
        .execute(
            &cart_id.to_string(),
            CartCommand::Open {
                owner,
                currency,
                created_at: chrono::Utc::now(),
            },
            &context.metadata(),
        )
        .await?;
    Ok(written(
        StatusCode::CREATED,
        receipt.position,
        CartOpened {
            cart_id,
            cart_token: made_token,
            position: position_text(receipt.position),
        },
    ))
}

async fn add_item(
    State(state): State<AppState>,
    context: RequestContext,
    Path(cart_id): Path<Uuid>,
    JsonBody(body): JsonBody<AddItemBody>,
) -> ApiResult<Response> {
    let sku = parse_sku(&body.sku)?;
    let quantity = parse_quantity(body.quantity)?;
    let cart = state
        .stores
        .carts
        .load(&cart_id.to_string())
        .await?
        .aggregate;
    // whose cart it is before anything about it (its currency) shows
    let holds_token = holds_token(&state, &context, cart_id).await?;
    holder_of(&context, holds_token)(&cart).map_err(refused)?;
    let unit_price = price_of(&state, &sku, cart.currency()).await?;
    let command = CartCommand::AddItem {
        sku,
        quantity,
        unit_price,
    };
    run(&state, &context, cart_id, command).await
}

async fn change_quantity(
    State(state): State<AppState>,
    context: RequestContext,
    Path((cart_id, sku)): Path<(Uuid, String)>,
    JsonBody(body): JsonBody<ChangeQuantityBody>,
) -> ApiResult<Response> {
    let command = CartCommand::ChangeQuantity {
        sku: parse_sku(&sku)?,
        quantity: parse_quantity(body.quantity)?,
    };
    run(&state, &context, cart_id, command).await
}

async fn remove_item(
    State(state): State<AppState>,
    context: RequestContext,
    Path((cart_id, sku)): Path<(Uuid, String)>,
) -> ApiResult<Response> {
    let command = CartCommand::RemoveItem {
        sku: parse_sku(&sku)?,
    };
    run(&state, &context, cart_id, command).await
}

async fn apply_coupon(
    State(state): State<AppState>,
    context: RequestContext,
    Path(cart_id): Path<Uuid>,
    JsonBody(body): JsonBody<CouponBody>,
) -> ApiResult<Response> {
    let code = body.code.trim().to_uppercase();
    let row = sqlx::query(
        "SELECT percent_off, amount_off, currency FROM coupons WHERE code = $1 AND active",
    )
    .bind(&code)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no coupon {code}")))?;
    let discount = match (
        row.get::<Option<i16>, _>("percent_off"),
        row.get::<Option<i64>, _>("amount_off"),
    ) {
        (Some(percent), _) => Discount::Percent(u8::try_from(percent).map_err(ApiError::internal)?),
        (None, Some(amount)) => {
            let currency: String = row.get("currency");
            Discount::Fixed(Money::new(
                amount,
                Currency::parse(&currency).map_err(ApiError::internal)?,
            ))
        }
        (None, None) => return Err(ApiError::internal(format!("coupon {code} has no discount"))),
    };
    run(
        &state,
        &context,
        cart_id,
        CartCommand::ApplyCoupon { code, discount },
    )
    .await
}

async fn merge(
    State(state): State<AppState>,
    context: RequestContext,
    Path(cart_id): Path<Uuid>,
    JsonBody(body): JsonBody<MergeBody>,
) -> ApiResult<Response> {
    context.require(&[Role::Customer])?;
    if body.guest_cart_id == cart_id {
        return Err(ApiError::validation(
            "guest_cart_id: a cart cannot absorb itself",
        ));
    }
    let guest = state
        .stores
        .carts
        .load(&body.guest_cart_id.to_string())
        .await?
        .aggregate;
    let lines: Vec<CartLine> = match guest.owner() {
        None => return Err(ApiError::not_found("no such guest cart")),
        Some(CartOwner::Customer(_)) => {
            return Err(ApiError::conflict("only a guest cart can be merged"))
        }
        Some(CartOwner::Guest) => {
            if !holds_token(&state, &context, body.guest_cart_id).await? {
                return Err(ApiError::forbidden(
                    "merging a guest cart needs its Cart-Token header",
                ));
            }
            guest.lines().to_vec()
        }
    };
    match guest.status() {
        // its lines became an order: absorbing them would sell them twice, and closing it
        // would fail after the absorb was written
        CartStatus::CheckedOut(_) => {
            return Err(ApiError::conflict(
                "the guest cart was checked out; there is nothing to merge",
            ))
        }
        CartStatus::MergedInto(target) if target != CartId::new(cart_id) => {
            return Err(ApiError::conflict(
                "the guest cart was merged into another cart",
            ))
        }
        _ => {}
    }
    // absorb first, then close the guest cart: a failure in between leaves the lines in both
    // carts rather than in neither; the customer cart refuses to absorb the same cart twice.
    // (A checkout of the guest cart racing this merge, between the check above and the close,
    // still leaves its lines in both.)
    let receipt = state
        .stores
        .carts
        .execute_if(
            &cart_id.to_string(),
            CartCommand::MergeFrom {
                source_cart_id: CartId::new(body.guest_cart_id),
                lines,
            },
            &context.metadata_for_step("absorb"),
            holder_of(&context, false),
        )
        .await
        .map_err(cart_error)?;
    state
        .stores
        .carts
        .execute(
            &body.guest_cart_id.to_string(),
            CartCommand::MarkMergedInto {
                target_cart_id: CartId::new(cart_id),
            },
            &context.metadata_for_step("close-guest-cart"),
        )
        .await?;
    Ok(written(
        StatusCode::OK,
        receipt.position,
        CartWritten {
            cart_id,
            position: position_text(receipt.position),
        },
    ))
}

async fn checkout(
    State(state): State<AppState>,
    context: RequestContext,
    Path(cart_id): Path<Uuid>,
    JsonBody(body): JsonBody<CheckoutBody>,
) -> ApiResult<Response> {
    state
        .checkout_limiter
        .check(&context.rate_limit_key())
        .map_err(|seconds| {
            ApiError::new(ErrorCode::RateLimited, "too many checkouts; wait and retry")
                .with_retry_after(seconds)
        })?;
    let shipping_address = shipping_address_of(
        &state,
        &context,
        body.shipping_address,
        body.shipping_address_id,
    )
    .await?;
    let cart = state
        .stores
        .carts
        .load(&cart_id.to_string())
        .await?
        .aggregate;
    let holds_token = holds_token(&state, &context, cart_id).await?;
    holder_of(&context, holds_token)(&cart).map_err(refused)?;
    let mut priced_lines = Vec::with_capacity(cart.lines().len());
    for line in cart.lines() {
        priced_lines.push(CartLine {
            sku: line.sku.clone(),
            quantity: line.quantity,
            unit_price: price_of(&state, &line.sku, cart.currency()).await?,
        });
    }
    // one cart, one order, whoever retries
    let order_id = domain::derived_ids::order_id_of_cart(CartId::new(cart_id)).as_uuid();
    let command = CartCommand::CheckOut {
        order_id: OrderId::new(order_id),
        priced_lines,
        shipping_address,
        payment_method: body.payment_method,
        checked_out_at: chrono::Utc::now(),
    };
    let receipt = state
        .stores
        .carts
        .execute_if(
            &cart_id.to_string(),
            command,
            &context.metadata(),
            holder_of(&context, holds_token),
        )
        .await
        .map_err(cart_error)?;
    Ok(written(
        StatusCode::ACCEPTED,
        receipt.position,
        CheckoutAccepted {
            order_id,
            cart_id,
            position: position_text(receipt.position),
        },
    ))
}

/// The address a checkout ships to: the one given, or one of the caller's address book (the
/// given id, else the default shipping address).
async fn shipping_address_of(
    state: &AppState,
    context: &RequestContext,
    given: Option<AddressBody>,
    saved_id: Option<Uuid>,
) -> ApiResult<Address> {
    use accounts::address_book;
    let book_error = |e: address_book::AddressBookError| match e {
        address_book::AddressBookError::Database(db) => ApiError::from(db),
        other => ApiError::internal(other),
    };
    match (given, saved_id) {
        (Some(_), Some(_)) => Err(ApiError::validation(
            "shipping_address, shipping_address_id: give one of them, not both",
        )),
        (Some(address), None) => super::account::parse_address(address, "shipping_address"),
        (None, Some(id)) => {
            let Some(account) = context.account() else {
                return Err(ApiError::validation(
                    "shipping_address_id: a guest has no address book; send shipping_address",
                ));
            };
            address_book::find(&state.pool, account, id)
                .await
                .map_err(book_error)?
                .map(|saved| saved.address)
                .ok_or_else(|| {
                    ApiError::validation(
                        "shipping_address_id: no such address in your address book",
                    )
                })
        }
        (None, None) => {
            let saved = match context.account() {
                Some(account) => address_book::default_shipping(&state.pool, account)
                    .await
                    .map_err(book_error)?,
                None => None,
            };
            saved.map(|saved| saved.address).ok_or_else(|| {
                ApiError::validation(
                    "shipping_address: required (there is no default shipping address to use)",
                )
            })
        }
    }
}
