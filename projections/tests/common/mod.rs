//! The random workload the projection suites share: products, stock, carts, orders, payments
//! and reviews, with rejected commands simply skipped.

use chrono::Utc;
use domain::cart::CartOwner;
use domain::order::OrderLine;
use domain::{
    Address, CartCommand, CartId, Currency, CustomerId, ImageFormat, ImageId, InventoryCommand,
    Money, OrderCommand, OrderId, OrderNumber, PaymentCommand, PaymentId, ProductCommand,
    ProductImage, Quantity, Rating, RefundId, ReviewCommand, Sku,
};
use eventlog::{Actor, EventMetadata};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schemas::stores::Stores;
use uuid::Uuid;

pub fn meta() -> EventMetadata {
    EventMetadata::new(Actor::system("test"))
}

pub fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap())
}

pub fn qty(n: u32) -> Quantity {
    Quantity::new(n).unwrap()
}

/// Writes `rounds` random commands of every kind; rejected ones are simply skipped.
pub async fn random_workload(stores: &Stores, seed: u64, rounds: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let skus: Vec<String> = (0..8).map(|n| format!("SKU-{seed}-{n}")).collect();
    let mut orders: Vec<(OrderId, PaymentId, String)> = Vec::new();
    for sku in &skus {
        let create = ProductCommand::Create {
            sku: Sku::parse(sku.clone()).unwrap(),
            name: format!("Product {sku}"),
            description: "random".into(),
            category: ["audio", "home", "toys"][rng.random_range(0..3)].into(),
            price: eur(rng.random_range(100..10_000)),
            created_at: Utc::now(),
        };
        stores.products.execute(sku, create, &meta()).await.unwrap();
    }
    // the first product comes in two sizes: variants, each a product of its own
    let parent = Sku::parse(skus[0].clone()).unwrap();
    let sizes = domain::product::ProductOption {
        name: "size".into(),
        values: vec!["S".into(), "M".into()],
    };
    let declare = ProductCommand::DeclareOptions {
        options: vec![sizes],
    };
    stores
        .products
        .execute(&skus[0], declare, &meta())
        .await
        .unwrap();
    for size in ["S", "M"] {
        let variant = Sku::parse(format!("{}-{size}", skus[0])).unwrap();
        let option_values: domain::product::OptionValues =
            [("size".to_owned(), size.to_owned())].into();
        let add = ProductCommand::AddVariant {
            sku: variant.clone(),
            option_values: option_values.clone(),
        };
        stores
            .products
            .execute(&skus[0], add, &meta())
            .await
            .unwrap();
        let create = ProductCommand::CreateVariant {
            sku: variant.clone(),
            parent: parent.clone(),
            option_values,
            name: format!("Product {} {size}", skus[0]),
            description: "a variant".into(),
            category: "toys".into(),
            prices: vec![eur(500), Money::new(600, Currency::parse("USD").unwrap())],
            created_at: Utc::now(),
        };
        stores
            .products
            .execute(variant.as_str(), create, &meta())
            .await
            .unwrap();
    }
    // a category tree (the products' categories are slugs of it), reshaped, and a featured list
    let category = |slug: &str, parent: Option<&str>| domain::CatalogCommand::CreateCategory {
        slug: slug.into(),
        name: slug.to_uppercase(),
        parent: parent.map(str::to_owned),
    };
    for command in [
        category("all", None),
        category("audio", Some("all")),
        category("home", Some("all")),
        category("toys", None),
        domain::CatalogCommand::MoveCategory {
            slug: "toys".into(),
            parent: Some("home".into()),
        },
        domain::CatalogCommand::RenameCategory {
            slug: "audio".into(),
            name: "Sound".into(),
        },
        domain::CatalogCommand::SetFeaturedProducts {
            skus: vec![parent.clone(), Sku::parse(skus[1].clone()).unwrap()],
        },
        domain::CatalogCommand::MoveCategory {
            slug: "home".into(),
            parent: None,
        },
    ] {
        // a second workload on the same store finds the tree there already
        let _ = stores
            .catalog
            .execute(domain::catalog::CATALOG_STREAM, command, &meta())
            .await;
    }
    let mut carts: Vec<String> = Vec::new();
    // images are shown and taken down on a random stream of their own, so the other commands
    // stay what they were for a seed
    let mut image_rng = StdRng::seed_from_u64(seed ^ 0x1_3A6E);
    for _ in 0..rounds {
        if image_rng.random_bool(0.2) {
            image_step(stores, &mut image_rng, &skus).await;
        }
        if rng.random_bool(0.4) {
            cart_step(stores, &mut rng, &skus, &mut carts).await;
            continue;
        }
        let sku = skus[rng.random_range(0..skus.len())].clone();
        let sku_value = Sku::parse(sku.clone()).unwrap();
        let picked = if orders.is_empty() {
            None
        } else {
            Some(orders[rng.random_range(0..orders.len())].clone())
        };
        match rng.random_range(0..10) {
            0 => {
                // the base price, or a price in another currency set or removed
                let other = Currency::parse(["USD", "GBP"][rng.random_range(0..2)]).unwrap();
                let command = match rng.random_range(0..4) {
                    0 | 1 => ProductCommand::Reprice {
                        price: eur(rng.random_range(100..10_000)),
                    },
                    2 => ProductCommand::SetPrice {
                        price: Money::new(rng.random_range(100..10_000), other),
                    },
                    _ => ProductCommand::RemovePrice { currency: other },
                };
                let _ = stores.products.execute(&sku, command, &meta()).await;
            }
            1 => {
                let command = ProductCommand::Rename {
                    name: format!("Renamed {}", rng.random_range(0..1000)),
                };
                let _ = stores.products.execute(&sku, command, &meta()).await;
            }
            2 | 3 => {
                let command = InventoryCommand::ReceiveStock {
                    sku: sku_value.clone(),
                    quantity: qty(rng.random_range(1..20)),
                };
                let _ = stores.inventory.execute(&sku, command, &meta()).await;
            }
            4 => {
                let command = InventoryCommand::AdjustStock {
                    delta: rng.random_range(-3..3),
                    reason: "count".into(),
                };
                let _ = stores.inventory.execute(&sku, command, &meta()).await;
            }
            5 | 6 => {
                // an order: stock reserved, placed, payment requested
                let order = OrderId::new(Uuid::new_v4());
                let payment = PaymentId::new(Uuid::new_v4());
                let quantity = qty(rng.random_range(1..3));
                let reserve = InventoryCommand::Reserve {
                    order_id: order,
                    quantity,
                    expires_at: Utc::now() + chrono::Duration::minutes(5),
                };
                let _ = stores.inventory.execute(&sku, reserve, &meta()).await;
                let place = OrderCommand::Place {
                    order_number: OrderNumber(orders.len() as u64 + 1),
                    customer: Some(CustomerId::new(Uuid::new_v4())),
                    cart_id: CartId::new(Uuid::new_v4()),
                    lines: vec![OrderLine {
                        sku: sku_value.clone(),
                        name: sku.clone(),
                        quantity,
                        unit_price: eur(1500),
                    }],
                    currency: Currency::parse("EUR").unwrap(),
                    discount: eur(0),
                    tax: eur(285 * i64::from(quantity.get())),
                    shipping: eur(499),
                    shipping_address: Address::new("A", "1 Main St", None, "Berlin", "10115", "DE")
                        .unwrap(),
                    payment_method: "pm_card_visa".into(),
                    placed_at: Utc::now(),
                };
                stores
                    .orders
                    .execute(&order.to_string(), place, &meta())
                    .await
                    .unwrap();
                let request = PaymentCommand::Request {
                    order_id: order,
                    amount: eur(2284),
                    method: "pm".into(),
                    requested_at: Utc::now(),
                };
                stores
                    .payments
                    .execute(&payment.to_string(), request, &meta())
                    .await
                    .unwrap();
                orders.push((order, payment, sku.clone()));
            }
            7 => {
                if let Some((order, payment, sku)) = picked {
                    let id = order.to_string();
                    let pay = payment.to_string();
                    let now = Utc::now();
                    let _ = stores
                        .orders
                        .execute(&id, OrderCommand::MarkStockReserved { at: now }, &meta())
                        .await;
                    let authorize = PaymentCommand::Authorize {
                        provider_ref: "pi".into(),
                        at: now,
                    };
                    let _ = stores.payments.execute(&pay, authorize, &meta()).await;
                    let confirm = OrderCommand::Confirm {
                        payment_id: payment,
                        at: now,
                    };
                    let _ = stores.orders.execute(&id, confirm, &meta()).await;
                    let commit = InventoryCommand::CommitReservation { order_id: order };
                    let _ = stores.inventory.execute(&sku, commit, &meta()).await;
                    let capture = PaymentCommand::Capture {
                        amount: eur(2284),
                        at: now,
                    };
                    let _ = stores.payments.execute(&pay, capture, &meta()).await;
                }
            }
            8 => {
                if let Some((order, payment, _)) = picked {
                    let id = order.to_string();
                    if rng.random_bool(0.5) {
                        let ship = OrderCommand::Ship {
                            tracking: Some("T".into()),
                            at: Utc::now(),
                        };
                        let _ = stores.orders.execute(&id, ship, &meta()).await;
                    } else {
                        let refund_id = RefundId::new(Uuid::new_v4());
                        let refund = OrderCommand::Refund {
                            refund_id,
                            amount: eur(500),
                            reason: "r".into(),
                            at: Utc::now(),
                        };
                        let _ = stores.orders.execute(&id, refund, &meta()).await;
                        let refund = PaymentCommand::Refund {
                            refund_id,
                            amount: eur(500),
                            at: Utc::now(),
                        };
                        let _ = stores
                            .payments
                            .execute(&payment.to_string(), refund, &meta())
                            .await;
                    }
                }
            }
            _ => {
                if let Some((order, _, sku)) = picked {
                    let cancel = OrderCommand::Cancel {
                        reason: "changed mind".into(),
                        by: domain::order::CancelledBy::Customer,
                        at: Utc::now(),
                    };
                    let _ = stores
                        .orders
                        .execute(&order.to_string(), cancel, &meta())
                        .await;
                    let release = InventoryCommand::ReleaseReservation {
                        order_id: order,
                        reason: "cancelled".into(),
                    };
                    let _ = stores.inventory.execute(&sku, release, &meta()).await;
                }
            }
        }
    }
    review_steps(stores, seed, rounds / 3, &skus).await;
}

/// `rounds` random review commands on `skus` by a few customers, from their own random
/// sequence (so the rest of the workload stays what it was): writes (refused when the customer
/// reviewed the product already), edits, helpful votes (refused twice or by the author), staff
/// hiding and publishing.
async fn review_steps(stores: &Stores, seed: u64, rounds: usize, skus: &[String]) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7265_7669_6577);
    let customers: Vec<CustomerId> = (0..6)
        .map(|n| CustomerId::new(Uuid::from_u128(u128::from(seed) << 8 | n)))
        .collect();
    let mut written: Vec<(String, CustomerId)> = Vec::new();
    for _ in 0..rounds {
        let customer = customers[rng.random_range(0..customers.len())];
        let rating = Rating::new(rng.random_range(1..=5)).unwrap();
        let picked =
            (!written.is_empty()).then(|| written[rng.random_range(0..written.len())].clone());
        let (id, command) = match (rng.random_range(0..10), picked) {
            (0..=3, _) | (_, None) => {
                let sku = Sku::parse(skus[rng.random_range(0..skus.len())].clone()).unwrap();
                let review_id = domain::derived_ids::review_id_of(customer, &sku);
                written.push((review_id.to_string(), customer));
                let command = ReviewCommand::Write {
                    review_id,
                    author: customer,
                    sku,
                    rating,
                    title: format!("{} stars", rating.stars()),
                    text: "random".into(),
                    verified_purchase: rng.random_bool(0.5),
                    at: Utc::now(),
                };
                (review_id.to_string(), command)
            }
            (4 | 5, Some((id, author))) => {
                let command = ReviewCommand::Edit {
                    author,
                    rating,
                    title: format!("now {} stars", rating.stars()),
                    text: "edited".into(),
                    verified_purchase: rng.random_bool(0.3),
                    at: Utc::now(),
                };
                (id, command)
            }
            (6 | 7, Some((id, _))) => {
                let command = ReviewCommand::VoteHelpful {
                    voter: customer,
                    at: Utc::now(),
                };
                (id, command)
            }
            (8, Some((id, _))) => {
                let command = ReviewCommand::Hide {
                    reason: "spam".into(),
                    at: Utc::now(),
                };
                (id, command)
            }
            (_, Some((id, _))) => {
                let command = ReviewCommand::Publish {
                    reason: "fine after all".into(),
                    at: Utc::now(),
                };
                (id, command)
            }
        };
        let _ = stores.reviews.execute(&id, command, &meta()).await;
    }
}

/// One random cart command: open a cart, add, change, remove, a coupon, or check out.
async fn cart_step(stores: &Stores, rng: &mut StdRng, skus: &[String], carts: &mut Vec<String>) {
    let sku = Sku::parse(skus[rng.random_range(0..skus.len())].clone()).unwrap();
    if carts.is_empty() || rng.random_bool(0.15) {
        let id = Uuid::new_v4().to_string();
        let owner = if rng.random_bool(0.5) {
            CartOwner::Customer(CustomerId::new(Uuid::new_v4()))
        } else {
            CartOwner::Guest
        };
        let create = CartCommand::Create {
            owner,
            currency: Currency::parse("EUR").unwrap(),
            created_at: Utc::now(),
        };
        stores.carts.execute(&id, create, &meta()).await.unwrap();
        carts.push(id);
        return;
    }
    let cart = carts[rng.random_range(0..carts.len())].clone();
    let command = match rng.random_range(0..10) {
        0..=4 => CartCommand::AddItem {
            sku,
            quantity: qty(rng.random_range(1..4)),
            unit_price: eur(rng.random_range(100..5_000)),
        },
        5 => CartCommand::ChangeQuantity {
            sku,
            quantity: qty(rng.random_range(1..6)),
        },
        6 => CartCommand::RemoveItem { sku },
        7 => CartCommand::ApplyCoupon {
            code: "TENOFF".into(),
            discount: domain::pricing::Discount::Percent(10),
        },
        8 => CartCommand::RemoveCoupon,
        _ => CartCommand::CheckOut {
            order_id: OrderId::new(Uuid::new_v4()),
            // the cart's own lines at its own prices (the catalogue check is the API's)
            priced_lines: stores
                .carts
                .load(&cart)
                .await
                .unwrap()
                .aggregate
                .lines()
                .to_vec(),
            shipping_address: Address::new("A", "1 Main St", None, "Berlin", "10115", "DE")
                .unwrap(),
            payment_method: "pm_card_visa".into(),
            checked_out_at: Utc::now(),
        },
    };
    // refusals (an unknown line, an empty or closed cart) are part of the workload
    let _ = stores.carts.execute(&cart, command, &meta()).await;
}

/// Shows one of four images on a product, or takes one down; refusals are skipped.
async fn image_step(stores: &Stores, rng: &mut StdRng, skus: &[String]) {
    let sku = &skus[rng.random_range(0..skus.len())];
    let image_id = ImageId::parse(format!("{:064x}", rng.random_range(1..5u32))).unwrap();
    let command = if rng.random_bool(0.7) {
        ProductCommand::AddImage {
            image: ProductImage {
                image_id,
                format: if rng.random_bool(0.5) {
                    ImageFormat::Png
                } else {
                    ImageFormat::Jpeg
                },
                width: rng.random_range(1..4_000),
                height: rng.random_range(1..4_000),
                alt: format!("alt {}", rng.random_range(0..100)),
            },
        }
    } else {
        ProductCommand::RemoveImage { image_id }
    };
    let _ = stores.products.execute(sku, command, &meta()).await;
}
