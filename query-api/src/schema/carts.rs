//! `cart(id)`: what the storefront reads on every page view, from the Redis cart documents. When
//! Redis is down, or behind the position the caller asked for, the cart is folded from its
//! events at once instead (the event store is always current, and one cart's stream is short),
//! so a cart read never waits or fails for the read model's sake.

use async_graphql::{Context, Enum, Object, SimpleObject};
use domain::cart::{CartOwner, CartStatus};
use domain::pricing::Discount;
use domain::Cart as CartState;
use uuid::Uuid;

use super::common::Money;
use crate::consistency::{required, ReadModel};
use crate::error::{IntoGraphql, QueryError, QueryResult};
use crate::viewer::Viewer;
use crate::ReadModels;

/// Where a cart is in its life.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CartLifecycle {
    Open,
    CheckedOut,
    /// Merged into the customer's cart at sign-in.
    Merged,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct CartLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_price: Money,
    pub line_total: Option<Money>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct AppliedCoupon {
    pub code: String,
    /// Percentage off the subtotal, when the coupon is a percentage.
    pub percent_off: Option<i32>,
    /// Fixed amount off, when the coupon is an amount.
    pub amount_off: Option<Money>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct CartTotals {
    pub subtotal: Money,
    pub discount: Money,
    pub total: Money,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct Cart {
    pub id: Uuid,
    pub status: CartLifecycle,
    /// The customer owning the cart; null for a guest cart.
    pub customer_id: Option<Uuid>,
    /// ISO 4217; null until the first line fixes it.
    pub currency: Option<String>,
    pub lines: Vec<CartLine>,
    pub item_count: i64,
    pub coupon: Option<AppliedCoupon>,
    /// Null while the cart is empty.
    pub totals: Option<CartTotals>,
    /// The order the cart became, once checked out.
    pub order_id: Option<Uuid>,
    /// Where the answer came from: `redis`, or `events` when the cart was folded from its
    /// events (Redis unavailable or behind).
    pub source: String,
}

/// The request's `Cart-Token` header: the secret of a guest cart.
#[derive(Clone, Debug, Default)]
pub struct CartToken(pub Option<String>);

#[derive(Default)]
pub struct CartQuery;

#[Object]
impl CartQuery {
    /// A cart: its customer's, or a guest cart for whoever sends its secret in the `Cart-Token`
    /// header (the one the command API gave or took when the cart was opened). Null if there is
    /// none.
    async fn cart(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        position: Option<String>,
    ) -> async_graphql::Result<Option<Cart>> {
        load_cart(ctx, id, position.as_deref()).await.gql()
    }
}

async fn load_cart(
    ctx: &Context<'_>,
    id: Uuid,
    position: Option<&str>,
) -> QueryResult<Option<Cart>> {
    let models = ctx.data_unchecked::<ReadModels>();
    let viewer = ctx.data_unchecked::<Viewer>();
    let required = required(ctx, position)?;
    let (state, source) = match from_redis(models, id, required).await {
        Some(state) => (state, "redis"),
        None => (from_events(models, id).await?, "events"),
    };
    if state.status() == CartStatus::New {
        return Ok(None);
    }
    match state.owner() {
        Some(CartOwner::Customer(owner)) => match viewer {
            _ if viewer.customer() == Some(owner.as_uuid()) => {}
            Viewer::Guest => {
                return Err(QueryError::Unauthorized("sign in to see this cart".into()))
            }
            Viewer::Account { .. } => {
                return Err(QueryError::Forbidden(
                    "this cart belongs to another customer".into(),
                ))
            }
        },
        // a guest cart: only for the holder of its secret, like in the command API
        _ => {
            let token = ctx.data_opt::<CartToken>().and_then(|t| t.0.as_deref());
            let holds = match token {
                Some(token) => accounts::cart_tokens::holds(&models.pool, id, token).await?,
                None => false,
            };
            if !holds {
                return Err(QueryError::Forbidden(
                    "a guest cart is read with its Cart-Token header".into(),
                ));
            }
        }
    }
    Ok(Some(view(id, &state, source)))
}

/// The Redis document, if Redis answers and has passed `required`.
async fn from_redis(
    models: &ReadModels,
    id: Uuid,
    required: Option<eventlog::LogPosition>,
) -> Option<CartState> {
    let redis = models.redis.as_ref()?;
    // behind the caller's position: the events answer at once (cheaper than waiting)
    if let Some(required) = required {
        match models.position(ReadModel::Carts).await {
            Ok(current) if current >= required => {}
            _ => return None,
        }
    }
    match redis.document("cart", &id.to_string()).await {
        Ok(Some((_, document))) => serde_json::from_value(document["state"].clone())
            .map_err(|error| tracing::warn!(%error, "unreadable cart document"))
            .ok(),
        // not in Redis: it may be newer than the projector; the events decide
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(%error, "Redis unavailable; reading the cart from its events");
            None
        }
    }
}

async fn from_events(models: &ReadModels, id: Uuid) -> QueryResult<CartState> {
    let events = eventlog::log::read_stream(&models.pool, "cart", &id.to_string()).await?;
    schemas::fold::fold::<CartState>(&events).map_err(QueryError::internal)
}

fn view(id: Uuid, cart: &CartState, source: &str) -> Cart {
    let (status, order_id) = match cart.status() {
        CartStatus::CheckedOut(order) => (CartLifecycle::CheckedOut, Some(order.as_uuid())),
        CartStatus::MergedInto(_) => (CartLifecycle::Merged, None),
        CartStatus::New | CartStatus::Open => (CartLifecycle::Open, None),
    };
    let totals = if cart.lines().is_empty() {
        None
    } else {
        cart.totals().ok().map(|t| CartTotals {
            subtotal: Money::of(t.subtotal),
            discount: Money::of(t.discount),
            total: Money::of(t.total),
        })
    };
    Cart {
        id,
        status,
        customer_id: match cart.owner() {
            Some(CartOwner::Customer(customer)) => Some(customer.as_uuid()),
            _ => None,
        },
        currency: cart.currency().map(|c| c.as_str().to_owned()),
        lines: cart
            .lines()
            .iter()
            .map(|line| CartLine {
                sku: line.sku.as_str().to_owned(),
                quantity: i64::from(line.quantity.get()),
                unit_price: Money::of(line.unit_price),
                line_total: line.line_total().ok().map(Money::of),
            })
            .collect(),
        item_count: cart
            .lines()
            .iter()
            .map(|line| i64::from(line.quantity.get()))
            .sum(),
        coupon: cart.coupon().map(|coupon| match coupon.discount {
            Discount::Percent(percent) => AppliedCoupon {
                code: coupon.code.clone(),
                percent_off: Some(i32::from(percent)),
                amount_off: None,
            },
            Discount::Fixed(amount) => AppliedCoupon {
                code: coupon.code.clone(),
                percent_off: None,
                amount_off: Some(Money::of(amount)),
            },
        }),
        totals,
        order_id,
        source: source.to_owned(),
    }
}
