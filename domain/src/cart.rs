//! The shopping cart aggregate: lines, a coupon, merging a guest cart into a
//! customer's cart on sign-in, and checkout into an order.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::pricing::{price_lines, CartTotals, Discount};
use crate::values::{
    Address, CartId, Currency, CustomerId, Money, OrderId, Quantity, Sku, ValueError,
};

/// Most distinct lines a cart may hold.
pub const MAX_LINES: usize = 100;
/// Largest quantity of one line.
pub const MAX_LINE_QUANTITY: u32 = 999;
/// Longest accepted coupon code, in characters.
pub const COUPON_CODE_MAX_LEN: usize = 64;

/// Who a cart belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CartOwner {
    Guest,
    Customer(CustomerId),
}

/// One line of a cart: a SKU, how many, and the unit price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CartLine {
    pub sku: Sku,
    pub quantity: Quantity,
    pub unit_price: Money,
}

impl CartLine {
    pub fn line_total(&self) -> Result<Money, ValueError> {
        self.unit_price.checked_mul(self.quantity)
    }
}

/// The coupon applied to a cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Coupon {
    pub code: String,
    pub discount: Discount,
}

/// Commands accepted by [`Cart`].
#[derive(Debug, Clone, PartialEq)]
pub enum CartCommand {
    /// Opens a cart in `currency`: [`CartCommand::Open`] with a currency.
    Create {
        owner: CartOwner,
        currency: Currency,
        created_at: DateTime<Utc>,
    },
    /// Opens a cart; without a currency, the first priced thing put in it (a line, a merged
    /// cart's lines, a fixed-amount coupon) decides it.
    Open {
        owner: CartOwner,
        currency: Option<Currency>,
        created_at: DateTime<Utc>,
    },
    /// Adds to the existing line of `sku` (taking the new unit price) or opens one.
    AddItem {
        sku: Sku,
        quantity: Quantity,
        unit_price: Money,
    },
    ChangeQuantity {
        sku: Sku,
        quantity: Quantity,
    },
    RemoveItem {
        sku: Sku,
    },
    ApplyCoupon {
        code: String,
        discount: Discount,
    },
    RemoveCoupon,
    /// Absorbs the lines of a guest cart (only into a customer cart).
    MergeFrom {
        source_cart_id: CartId,
        lines: Vec<CartLine>,
    },
    /// Marks this guest cart as absorbed; afterwards it accepts nothing.
    MarkMergedInto {
        target_cart_id: CartId,
    },
    /// Closes the cart; `priced_lines` are the current catalogue prices of
    /// exactly the cart's SKUs and quantities.
    CheckOut {
        order_id: OrderId,
        priced_lines: Vec<CartLine>,
        shipping_address: Address,
        payment_method: String,
        checked_out_at: DateTime<Utc>,
    },
}

/// Events of a cart stream (wire contract, version "1").
// The snapshot variant is large by design; events are moved rarely and boxing
// would only complicate construction and matching.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum CartEvent {
    CartCreated {
        owner: CartOwner,
        /// Absent when the cart was opened without one (the first line's decides). Always
        /// present in events written before that was possible, which load unchanged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        currency: Option<Currency>,
        created_at: DateTime<Utc>,
    },
    ItemAdded {
        sku: Sku,
        quantity: Quantity,
        unit_price: Money,
    },
    ItemQuantityChanged {
        sku: Sku,
        quantity: Quantity,
    },
    ItemRemoved {
        sku: Sku,
    },
    CouponApplied {
        code: String,
        discount: Discount,
    },
    CouponRemoved {
        code: String,
    },
    CartMerged {
        source_cart_id: CartId,
        lines: Vec<CartLine>,
    },
    CartMergedInto {
        target_cart_id: CartId,
    },
    CartCheckedOut {
        order_id: OrderId,
        lines: Vec<CartLine>,
        coupon: Option<Coupon>,
        totals: CartTotals,
        shipping_address: Address,
        payment_method: String,
        checked_out_at: DateTime<Utc>,
    },
}

/// Every [`CartEvent`] variant name, as returned by `event_type()`.
pub const EVENT_TYPES: &[&str] = &[
    "CartCreated",
    "ItemAdded",
    "ItemQuantityChanged",
    "ItemRemoved",
    "CouponApplied",
    "CouponRemoved",
    "CartMerged",
    "CartMergedInto",
    "CartCheckedOut",
];

impl DomainEvent for CartEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CartCreated { .. } => "CartCreated",
            Self::ItemAdded { .. } => "ItemAdded",
            Self::ItemQuantityChanged { .. } => "ItemQuantityChanged",
            Self::ItemRemoved { .. } => "ItemRemoved",
            Self::CouponApplied { .. } => "CouponApplied",
            Self::CouponRemoved { .. } => "CouponRemoved",
            Self::CartMerged { .. } => "CartMerged",
            Self::CartMergedInto { .. } => "CartMergedInto",
            Self::CartCheckedOut { .. } => "CartCheckedOut",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        crate::EVENT_VERSION.to_owned()
    }
}

/// Why a cart command was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    #[error("cart not found")]
    NotFound,
    #[error("cart already exists")]
    AlreadyExists,
    #[error("cart is already checked out")]
    AlreadyCheckedOut,
    #[error("cart was merged into another cart")]
    AlreadyMerged,
    #[error("cannot check out an empty cart")]
    EmptyCart,
    #[error("item {0} is not in the cart")]
    UnknownItem(Sku),
    #[error("currency {got} does not match cart currency {expected}")]
    CurrencyMismatch { expected: Currency, got: Currency },
    #[error("price must not be negative, got {0}")]
    NegativePrice(Money),
    #[error("a cart holds at most {max} lines", max = MAX_LINES)]
    TooManyLines,
    #[error("quantity of {sku} would exceed {max}", max = MAX_LINE_QUANTITY)]
    QuantityCapExceeded { sku: Sku },
    #[error("coupon code must be 1..={max} characters", max = COUPON_CODE_MAX_LEN)]
    InvalidCouponCode,
    #[error("percent discount must be 1..=100, got {0}")]
    InvalidPercent(u8),
    #[error("fixed discount must be positive, got {0}")]
    NonPositiveDiscount(Money),
    #[error("only a customer cart can absorb another cart")]
    NotACustomerCart,
    #[error("only a guest cart can be merged into another cart")]
    NotAGuestCart,
    #[error("priced lines do not match the cart lines")]
    PricedLinesMismatch,
    #[error("payment method must not be empty")]
    EmptyPaymentMethod,
    #[error("amount error: {0}")]
    Amount(#[from] ValueError),
}

/// Lifecycle of a cart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CartStatus {
    #[default]
    New,
    Open,
    CheckedOut(OrderId),
    MergedInto(CartId),
}

/// The cart aggregate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    status: CartStatus,
    owner: Option<CartOwner>,
    currency: Option<Currency>,
    lines: Vec<CartLine>,
    coupon: Option<Coupon>,
    merged_sources: Vec<CartId>,
}

impl Cart {
    pub fn status(&self) -> CartStatus {
        self.status
    }

    pub fn owner(&self) -> Option<CartOwner> {
        self.owner
    }

    pub fn currency(&self) -> Option<Currency> {
        self.currency
    }

    pub fn lines(&self) -> &[CartLine] {
        &self.lines
    }

    pub fn coupon(&self) -> Option<&Coupon> {
        self.coupon.as_ref()
    }

    pub fn line(&self, sku: &Sku) -> Option<&CartLine> {
        self.lines.iter().find(|l| &l.sku == sku)
    }

    /// Subtotal, discount and total at the cart's own line prices.
    pub fn totals(&self) -> Result<CartTotals, CartError> {
        let currency = self.currency.ok_or(CartError::NotFound)?;
        Ok(price_lines(
            currency,
            &self.lines,
            self.coupon.as_ref().map(|c| &c.discount),
        )?)
    }

    pub fn subtotal(&self) -> Result<Money, CartError> {
        Ok(self.totals()?.subtotal)
    }

    pub fn total(&self) -> Result<Money, CartError> {
        Ok(self.totals()?.total)
    }

    fn check_price(currency: Currency, price: &Money) -> Result<(), CartError> {
        if price.currency != currency {
            return Err(CartError::CurrencyMismatch {
                expected: currency,
                got: price.currency,
            });
        }
        if price.is_negative() {
            return Err(CartError::NegativePrice(*price));
        }
        Ok(())
    }

    /// Checks that adding `lines` to the current lines stays within the caps.
    fn check_additions(&self, currency: Currency, lines: &[CartLine]) -> Result<(), CartError> {
        let mut merged: Vec<(Sku, u64)> = self
            .lines
            .iter()
            .map(|l| (l.sku.clone(), u64::from(l.quantity.get())))
            .collect();
        for line in lines {
            Self::check_price(currency, &line.unit_price)?;
            match merged.iter_mut().find(|(sku, _)| sku == &line.sku) {
                Some((_, q)) => *q += u64::from(line.quantity.get()),
                None => merged.push((line.sku.clone(), u64::from(line.quantity.get()))),
            }
        }
        if let Some((sku, _)) = merged
            .iter()
            .find(|(_, q)| *q > u64::from(MAX_LINE_QUANTITY))
        {
            return Err(CartError::QuantityCapExceeded { sku: sku.clone() });
        }
        if merged.len() > MAX_LINES {
            return Err(CartError::TooManyLines);
        }
        Ok(())
    }

    /// Decides which events `command` produces against the current state.
    pub fn decide(&self, command: CartCommand) -> Result<Vec<CartEvent>, CartError> {
        use CartCommand as C;
        use CartEvent as E;

        match self.status {
            CartStatus::New => match command {
                C::Create {
                    owner,
                    currency,
                    created_at,
                } => Ok(vec![E::CartCreated {
                    owner,
                    currency: Some(currency),
                    created_at,
                }]),
                C::Open {
                    owner,
                    currency,
                    created_at,
                } => Ok(vec![E::CartCreated {
                    owner,
                    currency,
                    created_at,
                }]),
                _ => Err(CartError::NotFound),
            },
            _ if matches!(command, C::Create { .. } | C::Open { .. }) => {
                Err(CartError::AlreadyExists)
            }
            CartStatus::CheckedOut(done) => match command {
                C::CheckOut { order_id, .. } if order_id == done => Ok(vec![]),
                _ => Err(CartError::AlreadyCheckedOut),
            },
            CartStatus::MergedInto(done) => match command {
                C::MarkMergedInto { target_cart_id } if target_cart_id == done => Ok(vec![]),
                _ => Err(CartError::AlreadyMerged),
            },
            CartStatus::Open => match self.owner {
                Some(owner) => self.decide_open(owner, command),
                // An open cart always has an owner.
                None => Err(CartError::NotFound),
            },
        }
    }

    /// The cart's currency, or the one `price` would give a cart that has none yet.
    fn currency_or(&self, price: &Money) -> Currency {
        self.currency.unwrap_or(price.currency)
    }

    fn decide_open(
        &self,
        owner: CartOwner,
        command: CartCommand,
    ) -> Result<Vec<CartEvent>, CartError> {
        use CartCommand as C;
        use CartEvent as E;

        match command {
            C::Create { .. } | C::Open { .. } => Err(CartError::AlreadyExists),
            C::AddItem {
                sku,
                quantity,
                unit_price,
            } => {
                self.check_additions(
                    self.currency_or(&unit_price),
                    &[CartLine {
                        sku: sku.clone(),
                        quantity,
                        unit_price,
                    }],
                )?;
                Ok(vec![E::ItemAdded {
                    sku,
                    quantity,
                    unit_price,
                }])
            }
            C::ChangeQuantity { sku, quantity } => {
                let line = self.line(&sku).ok_or(CartError::UnknownItem(sku.clone()))?;
                if quantity.get() > MAX_LINE_QUANTITY {
                    return Err(CartError::QuantityCapExceeded { sku });
                }
                Ok(if line.quantity == quantity {
                    vec![]
                } else {
                    vec![E::ItemQuantityChanged { sku, quantity }]
                })
            }
            C::RemoveItem { sku } => {
                self.line(&sku).ok_or(CartError::UnknownItem(sku.clone()))?;
                Ok(vec![E::ItemRemoved { sku }])
            }
            C::ApplyCoupon { code, discount } => {
                let code = code.trim().to_owned();
                if code.is_empty() || code.chars().count() > COUPON_CODE_MAX_LEN {
                    return Err(CartError::InvalidCouponCode);
                }
                match discount {
                    Discount::Percent(p) if !(1..=100).contains(&p) => {
                        return Err(CartError::InvalidPercent(p))
                    }
                    Discount::Fixed(amount) => {
                        let currency = self.currency_or(&amount);
                        if amount.currency != currency {
                            return Err(CartError::CurrencyMismatch {
                                expected: currency,
                                got: amount.currency,
                            });
                        }
                        if !amount.is_positive() {
                            return Err(CartError::NonPositiveDiscount(amount));
                        }
                    }
                    Discount::Percent(_) => {}
                }
                let coupon = Coupon { code, discount };
                Ok(if self.coupon.as_ref() == Some(&coupon) {
                    vec![]
                } else {
                    vec![E::CouponApplied {
                        code: coupon.code,
                        discount: coupon.discount,
                    }]
                })
            }
            C::RemoveCoupon => Ok(self
                .coupon
                .as_ref()
                .map(|c| E::CouponRemoved {
                    code: c.code.clone(),
                })
                .into_iter()
                .collect()),
            C::MergeFrom {
                source_cart_id,
                lines,
            } => {
                if !matches!(owner, CartOwner::Customer(_)) {
                    return Err(CartError::NotACustomerCart);
                }
                if self.merged_sources.contains(&source_cart_id) {
                    return Ok(vec![]);
                }
                if let Some(first) = lines.first() {
                    self.check_additions(self.currency_or(&first.unit_price), &lines)?;
                }
                Ok(vec![E::CartMerged {
                    source_cart_id,
                    lines,
                }])
            }
            C::MarkMergedInto { target_cart_id } => {
                if owner != CartOwner::Guest {
                    return Err(CartError::NotAGuestCart);
                }
                Ok(vec![E::CartMergedInto { target_cart_id }])
            }
            C::CheckOut {
                order_id,
                priced_lines,
                shipping_address,
                payment_method,
                checked_out_at,
            } => {
                // a cart with lines has a currency (its first line's, if not before)
                let Some(currency) = self.currency.filter(|_| !self.lines.is_empty()) else {
                    return Err(CartError::EmptyCart);
                };
                let payment_method = payment_method.trim().to_owned();
                if payment_method.is_empty() {
                    return Err(CartError::EmptyPaymentMethod);
                }
                for line in &priced_lines {
                    Self::check_price(currency, &line.unit_price)?;
                }
                let same_lines = priced_lines.len() == self.lines.len()
                    && self.lines.iter().all(|l| {
                        priced_lines
                            .iter()
                            .filter(|p| p.sku == l.sku)
                            .map(|p| p.quantity)
                            .eq(std::iter::once(l.quantity))
                    });
                if !same_lines {
                    return Err(CartError::PricedLinesMismatch);
                }
                let totals = price_lines(
                    currency,
                    &priced_lines,
                    self.coupon.as_ref().map(|c| &c.discount),
                )?;
                Ok(vec![E::CartCheckedOut {
                    order_id,
                    lines: priced_lines,
                    coupon: self.coupon.clone(),
                    totals,
                    shipping_address,
                    payment_method,
                    checked_out_at,
                }])
            }
        }
    }

    fn add_line(&mut self, line: CartLine) {
        match self.lines.iter_mut().find(|l| l.sku == line.sku) {
            Some(existing) => {
                existing.quantity = existing
                    .quantity
                    .checked_add(line.quantity)
                    .unwrap_or(existing.quantity);
                existing.unit_price = line.unit_price;
            }
            None => self.lines.push(line),
        }
    }
}

impl Aggregate for Cart {
    const TYPE: &'static str = "cart";
    type Command = CartCommand;
    type Event = CartEvent;
    type Error = CartError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use CartEvent as E;
        match event {
            E::CartCreated {
                owner, currency, ..
            } => {
                self.status = CartStatus::Open;
                self.owner = Some(owner);
                self.currency = currency;
            }
            E::ItemAdded {
                sku,
                quantity,
                unit_price,
            } => {
                self.currency.get_or_insert(unit_price.currency);
                self.add_line(CartLine {
                    sku,
                    quantity,
                    unit_price,
                });
            }
            E::ItemQuantityChanged { sku, quantity } => {
                if let Some(line) = self.lines.iter_mut().find(|l| l.sku == sku) {
                    line.quantity = quantity;
                }
            }
            E::ItemRemoved { sku } => self.lines.retain(|l| l.sku != sku),
            E::CouponApplied { code, discount } => {
                if let Discount::Fixed(amount) = discount {
                    self.currency.get_or_insert(amount.currency);
                }
                self.coupon = Some(Coupon { code, discount });
            }
            E::CouponRemoved { .. } => self.coupon = None,
            E::CartMerged {
                source_cart_id,
                lines,
            } => {
                if let Some(first) = lines.first() {
                    self.currency.get_or_insert(first.unit_price.currency);
                }
                for line in lines {
                    self.add_line(line);
                }
                self.merged_sources.push(source_cart_id);
            }
            E::CartMergedInto { target_cart_id } => {
                self.status = CartStatus::MergedInto(target_cart_id);
            }
            E::CartCheckedOut {
                order_id, lines, ..
            } => {
                self.lines = lines;
                self.status = CartStatus::CheckedOut(order_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use cqrs_es::test::TestFramework;
    use CartCommand as C;
    use CartEvent as E;

    type F = TestFramework<Cart>;

    fn customer() -> CartOwner {
        CartOwner::Customer(CustomerId::new(uuid(7)))
    }

    fn created(owner: CartOwner) -> E {
        E::CartCreated {
            owner,
            currency: Some(currency("EUR")),
            created_at: t(0),
        }
    }

    /// A cart opened without a currency.
    fn opened(owner: CartOwner) -> E {
        E::CartCreated {
            owner,
            currency: None,
            created_at: t(0),
        }
    }

    fn usd_line(s: &str, q: u32, price: i64) -> CartLine {
        CartLine {
            sku: sku(s),
            quantity: qty(q),
            unit_price: usd(price),
        }
    }

    fn line(s: &str, q: u32, price: i64) -> CartLine {
        CartLine {
            sku: sku(s),
            quantity: qty(q),
            unit_price: eur(price),
        }
    }

    fn added(s: &str, q: u32, price: i64) -> E {
        E::ItemAdded {
            sku: sku(s),
            quantity: qty(q),
            unit_price: eur(price),
        }
    }

    fn add(s: &str, q: u32, price: i64) -> C {
        C::AddItem {
            sku: sku(s),
            quantity: qty(q),
            unit_price: eur(price),
        }
    }

    fn address() -> Address {
        Address::new("Jane", "Main St 1", None, "Berlin", "10115", "DE").unwrap()
    }

    fn order() -> OrderId {
        OrderId::new(uuid(100))
    }

    fn checkout(lines: Vec<CartLine>) -> C {
        C::CheckOut {
            order_id: order(),
            priced_lines: lines,
            shipping_address: address(),
            payment_method: "card".into(),
            checked_out_at: t(50),
        }
    }

    fn checked_out(lines: Vec<CartLine>, coupon: Option<Coupon>, totals: CartTotals) -> E {
        E::CartCheckedOut {
            order_id: order(),
            lines,
            coupon,
            totals,
            shipping_address: address(),
            payment_method: "card".into(),
            checked_out_at: t(50),
        }
    }

    fn totals(subtotal: i64, discount: i64, total: i64) -> CartTotals {
        CartTotals {
            subtotal: eur(subtotal),
            discount: eur(discount),
            total: eur(total),
        }
    }

    fn cart_of(events: Vec<E>) -> Cart {
        let mut cart = Cart::default();
        for e in events {
            cart.apply(e);
        }
        cart
    }

    fn merged_into() -> E {
        E::CartMergedInto {
            target_cart_id: CartId::new(uuid(2)),
        }
    }

    #[test]
    fn create() {
        F::with(())
            .given_no_previous_events()
            .when(C::Create {
                owner: CartOwner::Guest,
                currency: currency("EUR"),
                created_at: t(0),
            })
            .then_expect_events(vec![created(CartOwner::Guest)]);
    }

    #[test]
    fn create_twice_is_rejected() {
        F::with(())
            .given(vec![created(CartOwner::Guest)])
            .when(C::Create {
                owner: CartOwner::Guest,
                currency: currency("EUR"),
                created_at: t(0),
            })
            .then_expect_error(CartError::AlreadyExists);
    }

    #[test]
    fn commands_before_create_are_not_found() {
        for cmd in [
            add("A", 1, 100),
            C::ChangeQuantity {
                sku: sku("A"),
                quantity: qty(1),
            },
            C::RemoveItem { sku: sku("A") },
            C::ApplyCoupon {
                code: "X".into(),
                discount: Discount::Percent(10),
            },
            C::RemoveCoupon,
            C::MergeFrom {
                source_cart_id: CartId::new(uuid(1)),
                lines: vec![],
            },
            C::MarkMergedInto {
                target_cart_id: CartId::new(uuid(1)),
            },
            checkout(vec![line("A", 1, 100)]),
        ] {
            F::with(())
                .given_no_previous_events()
                .when(cmd)
                .then_expect_error(CartError::NotFound);
        }
    }

    #[test]
    fn add_item_new_and_existing_line() {
        F::with(())
            .given(vec![created(CartOwner::Guest)])
            .when(add("A", 2, 100))
            .then_expect_events(vec![added("A", 2, 100)]);
        F::with(())
            .given(vec![created(CartOwner::Guest), added("A", 2, 100)])
            .when(add("A", 3, 120))
            .then_expect_events(vec![added("A", 3, 120)]);
        let cart = cart_of(vec![
            created(CartOwner::Guest),
            added("A", 2, 100),
            added("A", 3, 120),
        ]);
        assert_eq!(cart.lines(), &[line("A", 5, 120)]);
    }

    #[test]
    fn add_item_rejections() {
        F::with(())
            .given(vec![created(CartOwner::Guest)])
            .when(C::AddItem {
                sku: sku("A"),
                quantity: qty(1),
                unit_price: usd(100),
            })
            .then_expect_error(CartError::CurrencyMismatch {
                expected: currency("EUR"),
                got: currency("USD"),
            });
        F::with(())
            .given(vec![created(CartOwner::Guest)])
            .when(add("A", 1, -1))
            .then_expect_error(CartError::NegativePrice(eur(-1)));
        F::with(())
            .given(vec![created(CartOwner::Guest), added("A", 990, 100)])
            .when(add("A", 10, 100))
            .then_expect_error(CartError::QuantityCapExceeded { sku: sku("A") });
        F::with(())
            .given(vec![created(CartOwner::Guest)])
            .when(add("A", MAX_LINE_QUANTITY + 1, 100))
            .then_expect_error(CartError::QuantityCapExceeded { sku: sku("A") });
        let mut full = vec![created(CartOwner::Guest)];
        full.extend((0..MAX_LINES).map(|i| added(&format!("S{i}"), 1, 100)));
        F::with(())
            .given(full.clone())
            .when(add("NEW", 1, 100))
            .then_expect_error(CartError::TooManyLines);
        // an existing line can still grow in a full cart
        F::with(())
            .given(full)
            .when(add("S0", 1, 100))
            .then_expect_events(vec![added("S0", 1, 100)]);
    }

    #[test]
    fn change_quantity() {
        F::with(())
            .given(vec![created(CartOwner::Guest), added("A", 2, 100)])
            .when(C::ChangeQuantity {
                sku: sku("A"),
                quantity: qty(5),
            })
            .then_expect_events(vec![E::ItemQuantityChanged {
                sku: sku("A"),
                quantity: qty(5),
            }]);
    }

    #[test]
    fn change_quantity_to_same_is_noop() {
        F::with(())
            .given(vec![created(CartOwner::Guest), added("A", 2, 100)])
            .when(C::ChangeQuantity {
                sku: sku("A"),
                quantity: qty(2),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn change_quantity_rejections() {
        F::with(())
            .given(vec![created(CartOwner::Guest)])
            .when(C::ChangeQuantity {
                sku: sku("A"),
                quantity: qty(2),
            })
            .then_expect_error(CartError::UnknownItem(sku("A")));
        F::with(())
            .given(vec![created(CartOwner::Guest), added("A", 2, 100)])
            .when(C::ChangeQuantity {
                sku: sku("A"),
                quantity: qty(MAX_LINE_QUANTITY + 1),
            })
            .then_expect_error(CartError::QuantityCapExceeded { sku: sku("A") });
    }

    #[test]
    fn open_without_a_currency() {
        F::with(())
            .given_no_previous_events()
            .when(C::Open {
                owner: CartOwner::Guest,
                currency: None,
                created_at: t(0),
            })
            .then_expect_events(vec![opened(CartOwner::Guest)]);
        F::with(())
            .given(vec![opened(CartOwner::Guest)])
            .when(C::Open {
                owner: CartOwner::Guest,
                currency: None,
                created_at: t(0),
            })
            .then_expect_error(CartError::AlreadyExists);
    }

    #[test]
    fn a_cart_without_a_currency_takes_its_first_lines() {
        let usd_item = |s: &str, q: u32, price: i64| E::ItemAdded {
            sku: sku(s),
            quantity: qty(q),
            unit_price: usd(price),
        };
        // given a cart opened without a currency, when a USD line is added, then it is added
        F::with(())
            .given(vec![opened(CartOwner::Guest)])
            .when(C::AddItem {
                sku: sku("A"),
                quantity: qty(2),
                unit_price: usd(150),
            })
            .then_expect_events(vec![usd_item("A", 2, 150)]);
        // and from then on the cart is in USD
        F::with(())
            .given(vec![opened(CartOwner::Guest), usd_item("A", 2, 150)])
            .when(add("B", 1, 100))
            .then_expect_error(CartError::CurrencyMismatch {
                expected: currency("USD"),
                got: currency("EUR"),
            });
        let cart = cart_of(vec![opened(CartOwner::Guest), usd_item("A", 2, 150)]);
        assert_eq!(cart.currency(), Some(currency("USD")));
        assert_eq!(cart.total(), Ok(usd(300)));
        // even after its last line goes
        let emptied = vec![
            opened(CartOwner::Guest),
            usd_item("A", 2, 150),
            E::ItemRemoved { sku: sku("A") },
        ];
        assert_eq!(cart_of(emptied.clone()).currency(), Some(currency("USD")));
        F::with(())
            .given(emptied)
            .when(add("B", 1, 100))
            .then_expect_error(CartError::CurrencyMismatch {
                expected: currency("USD"),
                got: currency("EUR"),
            });
        // a merge or a fixed-amount coupon decides it too
        let merged = cart_of(vec![
            opened(customer()),
            E::CartMerged {
                source_cart_id: CartId::new(uuid(1)),
                lines: vec![usd_line("A", 1, 100)],
            },
        ]);
        assert_eq!(merged.currency(), Some(currency("USD")));
        F::with(())
            .given(vec![opened(customer())])
            .when(C::MergeFrom {
                source_cart_id: CartId::new(uuid(1)),
                lines: vec![usd_line("A", 1, 100), line("B", 1, 100)],
            })
            .then_expect_error(CartError::CurrencyMismatch {
                expected: currency("USD"),
                got: currency("EUR"),
            });
        let couponed = cart_of(vec![
            opened(CartOwner::Guest),
            E::CouponApplied {
                code: "FIVE".into(),
                discount: Discount::Fixed(usd(500)),
            },
        ]);
        assert_eq!(couponed.currency(), Some(currency("USD")));
        // an empty cart without a currency has nothing to check out
        F::with(())
            .given(vec![opened(CartOwner::Guest)])
            .when(checkout(vec![]))
            .then_expect_error(CartError::EmptyCart);
        assert_eq!(cart_of(vec![opened(CartOwner::Guest)]).currency(), None);
    }

    #[test]
    fn cart_created_events_with_and_without_a_currency_load() {
        // as every CartCreated was written before a cart could be opened without a currency
        let stored = serde_json::json!({"CartCreated": {"owner": "Guest", "currency": "EUR",
                                        "created_at": "1970-01-01T00:00:00Z"}});
        let event: CartEvent = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(event, created(CartOwner::Guest));
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            stored,
            "written the same way"
        );
        let without = serde_json::json!({"CartCreated": {"owner": "Guest",
                                         "created_at": "1970-01-01T00:00:00Z"}});
        let event: CartEvent = serde_json::from_value(without.clone()).unwrap();
        assert_eq!(event, opened(CartOwner::Guest));
        assert_eq!(serde_json::to_value(&event).unwrap(), without);
    }

    #[test]
    fn remove_item() {
        F::with(())
            .given(vec![created(CartOwner::Guest), added("A", 2, 100)])
            .when(C::RemoveItem { sku: sku("A") })
            .then_expect_events(vec![E::ItemRemoved { sku: sku("A") }]);
        F::with(())
            .given(vec![created(CartOwner::Guest)])
            .when(C::RemoveItem { sku: sku("A") })
            .then_expect_error(CartError::UnknownItem(sku("A")));
    }

    #[test]
    fn apply_coupon() {
        F::with(())
            .given(vec![created(CartOwner::Guest)])
            .when(C::ApplyCoupon {
                code: " SAVE10 ".into(),
                discount: Discount::Percent(10),
            })
            .then_expect_events(vec![E::CouponApplied {
                code: "SAVE10".into(),
                discount: Discount::Percent(10),
            }]);
        // replacing one coupon with another
        F::with(())
            .given(vec![
                created(CartOwner::Guest),
                E::CouponApplied {
                    code: "SAVE10".into(),
                    discount: Discount::Percent(10),
                },
            ])
            .when(C::ApplyCoupon {
                code: "FIVE".into(),
                discount: Discount::Fixed(eur(500)),
            })
            .then_expect_events(vec![E::CouponApplied {
                code: "FIVE".into(),
                discount: Discount::Fixed(eur(500)),
            }]);
    }

    #[test]
    fn apply_same_coupon_is_noop() {
        F::with(())
            .given(vec![
                created(CartOwner::Guest),
                E::CouponApplied {
                    code: "SAVE10".into(),
                    discount: Discount::Percent(10),
                },
            ])
            .when(C::ApplyCoupon {
                code: "SAVE10".into(),
                discount: Discount::Percent(10),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn apply_coupon_rejections() {
        let cases = [
            ("", Discount::Percent(10), CartError::InvalidCouponCode),
            (
                &*"C".repeat(COUPON_CODE_MAX_LEN + 1),
                Discount::Percent(10),
                CartError::InvalidCouponCode,
            ),
            ("X", Discount::Percent(0), CartError::InvalidPercent(0)),
            ("X", Discount::Percent(101), CartError::InvalidPercent(101)),
            (
                "X",
                Discount::Fixed(eur(0)),
                CartError::NonPositiveDiscount(eur(0)),
            ),
            (
                "X",
                Discount::Fixed(usd(5)),
                CartError::CurrencyMismatch {
                    expected: currency("EUR"),
                    got: currency("USD"),
                },
            ),
        ];
        for (code, discount, error) in cases {
            F::with(())
                .given(vec![created(CartOwner::Guest)])
                .when(C::ApplyCoupon {
                    code: code.to_owned(),
                    discount,
                })
                .then_expect_error(error);
        }
    }

    #[test]
    fn remove_coupon() {
        F::with(())
            .given(vec![
                created(CartOwner::Guest),
                E::CouponApplied {
                    code: "SAVE10".into(),
                    discount: Discount::Percent(10),
                },
            ])
            .when(C::RemoveCoupon)
            .then_expect_events(vec![E::CouponRemoved {
                code: "SAVE10".into(),
            }]);
        F::with(())
            .given(vec![created(CartOwner::Guest)])
            .when(C::RemoveCoupon)
            .then_expect_events(vec![]);
    }

    #[test]
    fn merge_from_guest_cart() {
        let source = CartId::new(uuid(1));
        F::with(())
            .given(vec![created(customer()), added("A", 1, 100)])
            .when(C::MergeFrom {
                source_cart_id: source,
                lines: vec![line("A", 2, 100), line("B", 1, 50)],
            })
            .then_expect_events(vec![E::CartMerged {
                source_cart_id: source,
                lines: vec![line("A", 2, 100), line("B", 1, 50)],
            }]);
        let cart = cart_of(vec![
            created(customer()),
            added("A", 1, 100),
            E::CartMerged {
                source_cart_id: source,
                lines: vec![line("A", 2, 100), line("B", 1, 50)],
            },
        ]);
        assert_eq!(cart.lines(), &[line("A", 3, 100), line("B", 1, 50)]);
    }

    #[test]
    fn merge_same_source_twice_is_noop() {
        let source = CartId::new(uuid(1));
        F::with(())
            .given(vec![
                created(customer()),
                E::CartMerged {
                    source_cart_id: source,
                    lines: vec![line("A", 2, 100)],
                },
            ])
            .when(C::MergeFrom {
                source_cart_id: source,
                lines: vec![line("A", 2, 100)],
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn merge_rejections() {
        let source = CartId::new(uuid(1));
        F::with(())
            .given(vec![created(CartOwner::Guest)])
            .when(C::MergeFrom {
                source_cart_id: source,
                lines: vec![line("A", 1, 100)],
            })
            .then_expect_error(CartError::NotACustomerCart);
        F::with(())
            .given(vec![created(customer())])
            .when(C::MergeFrom {
                source_cart_id: source,
                lines: vec![CartLine {
                    sku: sku("A"),
                    quantity: qty(1),
                    unit_price: usd(1),
                }],
            })
            .then_expect_error(CartError::CurrencyMismatch {
                expected: currency("EUR"),
                got: currency("USD"),
            });
        F::with(())
            .given(vec![created(customer()), added("A", 999, 1)])
            .when(C::MergeFrom {
                source_cart_id: source,
                lines: vec![line("A", 1, 1)],
            })
            .then_expect_error(CartError::QuantityCapExceeded { sku: sku("A") });
        let many: Vec<CartLine> = (0..=MAX_LINES)
            .map(|i| line(&format!("S{i}"), 1, 1))
            .collect();
        F::with(())
            .given(vec![created(customer())])
            .when(C::MergeFrom {
                source_cart_id: source,
                lines: many,
            })
            .then_expect_error(CartError::TooManyLines);
    }

    #[test]
    fn mark_merged_into() {
        let target = CartId::new(uuid(2));
        F::with(())
            .given(vec![created(CartOwner::Guest), added("A", 1, 100)])
            .when(C::MarkMergedInto {
                target_cart_id: target,
            })
            .then_expect_events(vec![merged_into()]);
        // repeated: no-op
        F::with(())
            .given(vec![created(CartOwner::Guest), merged_into()])
            .when(C::MarkMergedInto {
                target_cart_id: target,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn mark_merged_into_rejections() {
        F::with(())
            .given(vec![created(customer())])
            .when(C::MarkMergedInto {
                target_cart_id: CartId::new(uuid(2)),
            })
            .then_expect_error(CartError::NotAGuestCart);
        F::with(())
            .given(vec![created(CartOwner::Guest), merged_into()])
            .when(C::MarkMergedInto {
                target_cart_id: CartId::new(uuid(3)),
            })
            .then_expect_error(CartError::AlreadyMerged);
    }

    #[test]
    fn merged_cart_accepts_nothing() {
        for cmd in [
            add("A", 1, 100),
            C::RemoveCoupon,
            checkout(vec![line("A", 1, 100)]),
        ] {
            F::with(())
                .given(vec![
                    created(CartOwner::Guest),
                    added("A", 1, 100),
                    merged_into(),
                ])
                .when(cmd)
                .then_expect_error(CartError::AlreadyMerged);
        }
        F::with(())
            .given(vec![created(CartOwner::Guest), merged_into()])
            .when(C::Create {
                owner: CartOwner::Guest,
                currency: currency("EUR"),
                created_at: t(0),
            })
            .then_expect_error(CartError::AlreadyExists);
    }

    #[test]
    fn check_out_with_repriced_lines_and_coupon() {
        let coupon = Coupon {
            code: "SAVE10".into(),
            discount: Discount::Percent(10),
        };
        F::with(())
            .given(vec![
                created(CartOwner::Guest),
                added("A", 2, 100),
                added("B", 1, 55),
                E::CouponApplied {
                    code: coupon.code.clone(),
                    discount: coupon.discount,
                },
            ])
            .when(checkout(vec![line("B", 1, 55), line("A", 2, 110)]))
            .then_expect_events(vec![checked_out(
                vec![line("B", 1, 55), line("A", 2, 110)],
                Some(coupon),
                totals(275, 27, 248),
            )]);
    }

    #[test]
    fn check_out_same_order_again_is_noop() {
        let done = checked_out(vec![line("A", 1, 100)], None, totals(100, 0, 100));
        F::with(())
            .given(vec![created(CartOwner::Guest), added("A", 1, 100), done])
            .when(checkout(vec![line("A", 1, 100)]))
            .then_expect_events(vec![]);
    }

    #[test]
    fn checked_out_cart_rejects_changes_and_other_orders() {
        let done = checked_out(vec![line("A", 1, 100)], None, totals(100, 0, 100));
        F::with(())
            .given(vec![
                created(CartOwner::Guest),
                added("A", 1, 100),
                done.clone(),
            ])
            .when(add("B", 1, 100))
            .then_expect_error(CartError::AlreadyCheckedOut);
        F::with(())
            .given(vec![created(CartOwner::Guest), added("A", 1, 100), done])
            .when(C::CheckOut {
                order_id: OrderId::new(uuid(999)),
                priced_lines: vec![line("A", 1, 100)],
                shipping_address: address(),
                payment_method: "card".into(),
                checked_out_at: t(60),
            })
            .then_expect_error(CartError::AlreadyCheckedOut);
    }

    #[test]
    fn check_out_rejections() {
        F::with(())
            .given(vec![created(CartOwner::Guest)])
            .when(checkout(vec![]))
            .then_expect_error(CartError::EmptyCart);
        let base = vec![created(CartOwner::Guest), added("A", 2, 100)];
        F::with(())
            .given(base.clone())
            .when(checkout(vec![line("A", 1, 100)]))
            .then_expect_error(CartError::PricedLinesMismatch);
        F::with(())
            .given(base.clone())
            .when(checkout(vec![line("B", 2, 100)]))
            .then_expect_error(CartError::PricedLinesMismatch);
        F::with(())
            .given(base.clone())
            .when(checkout(vec![line("A", 2, 100), line("A", 2, 100)]))
            .then_expect_error(CartError::PricedLinesMismatch);
        F::with(())
            .given(base.clone())
            .when(checkout(vec![CartLine {
                sku: sku("A"),
                quantity: qty(2),
                unit_price: usd(100),
            }]))
            .then_expect_error(CartError::CurrencyMismatch {
                expected: currency("EUR"),
                got: currency("USD"),
            });
        F::with(())
            .given(base.clone())
            .when(C::CheckOut {
                order_id: order(),
                priced_lines: vec![line("A", 2, 100)],
                shipping_address: address(),
                payment_method: " ".into(),
                checked_out_at: t(50),
            })
            .then_expect_error(CartError::EmptyPaymentMethod);
        F::with(())
            .given(base)
            .when(checkout(vec![line("A", 2, i64::MAX)]))
            .then_expect_error(CartError::Amount(ValueError::Overflow));
    }

    #[test]
    fn totals_apply_discount_and_never_go_below_zero() {
        let cart = cart_of(vec![
            created(CartOwner::Guest),
            added("A", 3, 333),
            E::CouponApplied {
                code: "P".into(),
                discount: Discount::Percent(15),
            },
        ]);
        assert_eq!(cart.subtotal(), Ok(eur(999)));
        // 15% of 999 = 149.85 -> 149
        assert_eq!(cart.totals(), Ok(totals(999, 149, 850)));
        let cart = cart_of(vec![
            created(CartOwner::Guest),
            added("A", 1, 300),
            E::CouponApplied {
                code: "F".into(),
                discount: Discount::Fixed(eur(500)),
            },
        ]);
        assert_eq!(cart.totals(), Ok(totals(300, 300, 0)));
        assert_eq!(cart.total(), Ok(eur(0)));
        let cart = cart_of(vec![
            created(CartOwner::Guest),
            added("A", 1, 300),
            E::CouponApplied {
                code: "ALL".into(),
                discount: Discount::Percent(100),
            },
        ]);
        assert_eq!(cart.total(), Ok(eur(0)));
        assert_eq!(Cart::default().total(), Err(CartError::NotFound));
        assert_eq!(
            cart_of(vec![created(CartOwner::Guest)]).totals(),
            Ok(totals(0, 0, 0))
        );
    }

    #[test]
    fn events_round_trip_and_types_are_listed() {
        let events = vec![
            created(customer()),
            created(CartOwner::Guest),
            opened(CartOwner::Guest),
            added("A", 1, 1),
            E::ItemQuantityChanged {
                sku: sku("A"),
                quantity: qty(3),
            },
            E::ItemRemoved { sku: sku("A") },
            E::CouponApplied {
                code: "F".into(),
                discount: Discount::Fixed(eur(5)),
            },
            E::CouponApplied {
                code: "P".into(),
                discount: Discount::Percent(5),
            },
            E::CouponRemoved { code: "F".into() },
            E::CartMerged {
                source_cart_id: CartId::new(uuid(1)),
                lines: vec![line("A", 1, 1)],
            },
            merged_into(),
            checked_out(
                vec![line("A", 1, 100)],
                Some(Coupon {
                    code: "P".into(),
                    discount: Discount::Percent(5),
                }),
                totals(100, 5, 95),
            ),
        ];
        assert_round_trip(&events, EVENT_TYPES);
    }
}
