//! The feed's per-SKU state: product fields, stock level and rating, folded from product,
//! inventory and review events, and the document each SKU should have in the index.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use domain::{InventoryEvent, Money, OrderId, ProductEvent, ReviewEvent};

/// The product fields the index needs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ProductFacts {
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: Money,
    pub created_at: DateTime<Utc>,
}

/// What determines availability, folded like [`domain::Inventory`] does (without the history of
/// committed and returned orders, which availability does not need and which grows with every
/// order).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct StockLevel {
    on_hand: u64,
    reservations: BTreeMap<OrderId, u64>,
}

impl StockLevel {
    /// On hand minus reserved, never negative (as `Inventory::available`).
    pub(crate) fn available(&self) -> u64 {
        let reserved: u64 = self.reservations.values().sum();
        self.on_hand.saturating_sub(reserved)
    }

    pub(crate) fn apply(&mut self, event: &InventoryEvent) {
        use InventoryEvent as E;
        match event {
            E::StockReceived { quantity, .. } => {
                self.on_hand = self.on_hand.saturating_add(u64::from(quantity.get()));
            }
            E::StockAdjusted { delta, .. } => {
                self.on_hand = self.on_hand.saturating_add_signed(*delta);
            }
            E::StockReserved {
                order_id, quantity, ..
            } => {
                self.reservations
                    .insert(*order_id, u64::from(quantity.get()));
            }
            E::ReservationCommitted { order_id, quantity } => {
                self.reservations.remove(order_id);
                self.on_hand = self.on_hand.saturating_sub(u64::from(quantity.get()));
            }
            E::ReservationReleased { order_id, .. } => {
                self.reservations.remove(order_id);
            }
            E::StockReturned { quantity, .. } => {
                self.on_hand = self.on_hand.saturating_add(u64::from(quantity.get()));
            }
            E::ReservationRefused { .. } | E::LowStock { .. } | E::LowStockThresholdSet { .. } => {}
        }
    }
}

/// The visible reviews of a SKU: how many and their stars in total (as the reviews read model's
/// summary counts them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RatingTally {
    pub count: u64,
    pub total: u64,
}

impl RatingTally {
    /// The average in thousandths of a star (0 without reviews): an integer sort key.
    pub(crate) fn average_milli(&self) -> i64 {
        (self.total * 1_000)
            .checked_div(self.count)
            .map_or(0, |milli| i64::try_from(milli).unwrap_or(i64::MAX))
    }

    fn add(&mut self, stars: Option<u8>) {
        if let Some(stars) = stars {
            self.count += 1;
            self.total += u64::from(stars);
        }
    }

    fn remove(&mut self, stars: Option<u8>) {
        if let Some(stars) = stars {
            self.count = self.count.saturating_sub(1);
            self.total = self.total.saturating_sub(u64::from(stars));
        }
    }
}

/// What the feed remembers of one review: enough to move its stars when it changes.
#[derive(Clone, Debug)]
struct ReviewFacts {
    sku: String,
    stars: u8,
    hidden: bool,
}

impl ReviewFacts {
    fn counted(&self) -> Option<u8> {
        (!self.hidden).then_some(self.stars)
    }
}

/// One SKU as the feed knows it.
#[derive(Clone, Debug, Default)]
pub(crate) struct SkuState {
    /// `None` until created, and again once discontinued (the fields are not needed any more).
    pub product: Option<ProductFacts>,
    pub discontinued: bool,
    pub stock: StockLevel,
    pub rating: RatingTally,
    /// What the index holds for this SKU as far as the feed knows: `None` = no document,
    /// `Some(in_stock)` = a document with that stock flag. Lets stock events that do not flip
    /// the flag skip the write.
    pub indexed: Option<bool>,
}

impl SkuState {
    /// The document this SKU should have: `Some(in_stock)` when listed, `None` when not.
    pub(crate) fn listing(&self) -> Option<bool> {
        match (&self.product, self.discontinued) {
            (Some(_), false) => Some(self.stock.available() > 0),
            _ => None,
        }
    }
}

/// What an event did to a SKU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Touched {
    /// The product's fields or listing changed: rewrite its document.
    Product,
    /// Only the stock level changed: rewrite only if the in-stock flag flipped.
    Stock,
}

/// Every SKU seen in product, inventory or review events.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    skus: HashMap<String, SkuState>,
    /// Every review, by review id.
    reviews: HashMap<String, ReviewFacts>,
}

impl Catalog {
    pub(crate) fn get_mut(&mut self, sku: &str) -> Option<&mut SkuState> {
        self.skus.get_mut(sku)
    }

    pub(crate) fn len(&self) -> usize {
        self.skus.len()
    }

    pub(crate) fn apply_product(&mut self, sku: &str, event: &ProductEvent) -> Touched {
        use ProductEvent as E;
        let state = self.skus.entry(sku.to_owned()).or_default();
        match event {
            E::ProductCreated {
                name,
                description,
                category,
                price,
                created_at,
                ..
            } => {
                if !state.discontinued {
                    state.product = Some(ProductFacts {
                        name: name.clone(),
                        description: description.clone(),
                        category: category.clone(),
                        price: *price,
                        created_at: *created_at,
                    });
                }
            }
            E::ProductDiscontinued { .. } => {
                state.discontinued = true;
                state.product = None;
            }
            E::ProductRenamed { name } => {
                if let Some(product) = &mut state.product {
                    product.name = name.clone();
                }
            }
            E::ProductDescribed { description } => {
                if let Some(product) = &mut state.product {
                    product.description = description.clone();
                }
            }
            E::ProductRepriced { price } => {
                if let Some(product) = &mut state.product {
                    product.price = *price;
                }
            }
            E::ProductCategorised { category } => {
                if let Some(product) = &mut state.product {
                    product.category = category.clone();
                }
            }
            // nothing the index holds (it keeps the base price; a variant is a product of its
            // own): the document stays unless its listing changed
            E::ProductPriceSet { .. }
            | E::ProductPriceRemoved { .. }
            | E::ProductOptionsDeclared { .. }
            | E::ProductVariantAdded { .. }
            | E::ProductVariantOf { .. } => return Touched::Stock,
            // images are not searched: the catalog read model serves them
            E::ProductImageAdded { .. } | E::ProductImageRemoved { .. } => {}
        }
        Touched::Product
    }

    /// Folds a review event; returns the SKU whose rating changed, if any.
    pub(crate) fn apply_review(&mut self, review_id: &str, event: &ReviewEvent) -> Option<String> {
        use ReviewEvent as E;
        let (before, after, sku) = match event {
            E::ReviewWritten { sku, rating, .. } => {
                let facts = ReviewFacts {
                    sku: sku.to_string(),
                    stars: rating.stars(),
                    hidden: false,
                };
                let before = self
                    .reviews
                    .insert(review_id.to_owned(), facts.clone())
                    .and_then(|old| old.counted());
                (before, facts.counted(), facts.sku)
            }
            E::ReviewVotedHelpful { .. } => return None,
            other => {
                let facts = self.reviews.get_mut(review_id)?;
                let before = facts.counted();
                match other {
                    E::ReviewEdited { rating, .. } => facts.stars = rating.stars(),
                    E::ReviewHidden { .. } => facts.hidden = true,
                    E::ReviewPublished { .. } => facts.hidden = false,
                    E::ReviewWritten { .. } | E::ReviewVotedHelpful { .. } => {}
                }
                (before, facts.counted(), facts.sku.clone())
            }
        };
        if before == after {
            return None;
        }
        let tally = &mut self.skus.entry(sku.clone()).or_default().rating;
        tally.remove(before);
        tally.add(after);
        Some(sku)
    }

    pub(crate) fn apply_inventory(&mut self, sku: &str, event: &InventoryEvent) -> Touched {
        self.skus
            .entry(sku.to_owned())
            .or_default()
            .stock
            .apply(event);
        Touched::Stock
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::Aggregate;
    use domain::{Inventory, Quantity, Sku};

    fn order(n: u128) -> OrderId {
        OrderId::new(uuid::Uuid::from_u128(n))
    }

    fn qty(n: u32) -> Quantity {
        Quantity::new(n).expect("positive")
    }

    #[test]
    fn availability_agrees_with_the_inventory_aggregate() {
        use InventoryEvent as E;
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let sku = Sku::parse("MUG-1").expect("valid sku");
        let events = vec![
            E::StockReceived {
                sku,
                quantity: qty(10),
            },
            E::StockReserved {
                order_id: order(1),
                quantity: qty(4),
                expires_at: at,
            },
            E::StockReserved {
                order_id: order(2),
                quantity: qty(5),
                expires_at: at,
            },
            E::ReservationCommitted {
                order_id: order(1),
                quantity: qty(4),
            },
            E::ReservationReleased {
                order_id: order(2),
                quantity: qty(5),
                reason: "expired".to_owned(),
            },
            E::StockAdjusted {
                delta: -3,
                reason: "damage".to_owned(),
            },
            E::StockReturned {
                order_id: order(1),
                quantity: qty(2),
            },
            E::StockReserved {
                order_id: order(3),
                quantity: qty(5),
                expires_at: at,
            },
        ];
        let mut aggregate = Inventory::default();
        let mut level = StockLevel::default();
        for event in events {
            level.apply(&event);
            aggregate.apply(event);
            assert_eq!(level.available(), aggregate.available());
        }
        assert_eq!(level.available(), 0);
    }
}
