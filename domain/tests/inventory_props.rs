//! Property test of the inventory aggregate: arbitrary command sequences
//! (valid and invalid) never break the stock invariants.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::inventory::{Inventory, InventoryCommand, InventoryEvent};
use domain::{OrderId, Quantity, Sku};
use proptest::prelude::*;

fn time(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).expect("valid timestamp")
}

fn order(n: u8) -> OrderId {
    OrderId::new(uuid::Uuid::from_u128(u128::from(n)))
}

fn quantity() -> impl Strategy<Value = Quantity> {
    (1u32..=20).prop_map(|n| Quantity::new(n).expect("positive"))
}

fn command() -> impl Strategy<Value = InventoryCommand> {
    let order_id = (0u8..6).prop_map(order);
    let reason = prop_oneof![Just(String::new()), Just("stocktake".to_owned())];
    prop_oneof![
        (
            prop_oneof![4 => Just("MUG-1"), 1 => Just("CUP-2")],
            quantity()
        )
            .prop_map(|(s, quantity)| {
                InventoryCommand::ReceiveStock {
                    sku: Sku::parse(s).expect("valid sku"),
                    quantity,
                }
            }),
        (-30i64..=30, reason.clone())
            .prop_map(|(delta, reason)| InventoryCommand::AdjustStock { delta, reason }),
        (order_id.clone(), quantity(), 0i64..10).prop_map(|(order_id, quantity, exp)| {
            InventoryCommand::Reserve {
                order_id,
                quantity,
                expires_at: time(exp),
            }
        }),
        order_id
            .clone()
            .prop_map(|order_id| InventoryCommand::CommitReservation { order_id }),
        (order_id.clone(), reason).prop_map(|(order_id, reason)| {
            InventoryCommand::ReleaseReservation { order_id, reason }
        }),
        (0i64..10).prop_map(|now| InventoryCommand::ExpireReservations { now: time(now) }),
        (order_id, quantity())
            .prop_map(|(order_id, quantity)| InventoryCommand::ReturnStock { order_id, quantity }),
        (0u64..15).prop_map(|threshold| InventoryCommand::SetLowStockThreshold { threshold }),
    ]
}

#[derive(Default)]
struct Totals {
    received: u64,
    positive_adjustments: u64,
    negative_adjustments: u64,
    returned: u64,
    committed: u64,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn stock_invariants_hold(commands in prop::collection::vec(command(), 0..60)) {
        let mut inventory = Inventory::default();
        let mut totals = Totals::default();

        for command in commands {
            let before = inventory.clone();
            let Ok(events) = inventory.decide(command) else {
                continue;
            };
            for event in events {
                match &event {
                    InventoryEvent::StockReceived { quantity, .. } => totals.received += u64::from(quantity.get()),
                    InventoryEvent::StockAdjusted { delta, .. } if *delta > 0 => totals.positive_adjustments += delta.unsigned_abs(),
                    InventoryEvent::StockAdjusted { delta, .. } => totals.negative_adjustments += delta.unsigned_abs(),
                    InventoryEvent::StockReturned { quantity, .. } => totals.returned += u64::from(quantity.get()),
                    InventoryEvent::ReservationCommitted { quantity, .. } => totals.committed += u64::from(quantity.get()),
                    InventoryEvent::ReservationRefused { requested, available, .. } => {
                        prop_assert!(u64::from(requested.get()) > *available);
                        prop_assert_eq!(*available, before.available());
                    }
                    InventoryEvent::LowStock { available } => {
                        prop_assert!(*available <= before.low_stock_threshold());
                    }
                    _ => {}
                }
                inventory.apply(event);
            }

            let reserved = inventory.reserved();
            // available >= 0: the reservations never exceed what is on hand
            prop_assert!(reserved <= inventory.on_hand(),
                "reserved {} > on hand {}", reserved, inventory.on_hand());
            prop_assert_eq!(inventory.available(), inventory.on_hand() - reserved);
            // stock is conserved
            let expected_on_hand = i128::from(totals.received) + i128::from(totals.positive_adjustments)
                - i128::from(totals.negative_adjustments) - i128::from(totals.committed)
                + i128::from(totals.returned);
            prop_assert_eq!(i128::from(inventory.on_hand()), expected_on_hand);
            // nothing leaves that never came in (returned goods may be sold again)
            prop_assert!(totals.committed + totals.negative_adjustments
                <= totals.received + totals.positive_adjustments + totals.returned);
            prop_assert!(totals.committed <= totals.received + totals.positive_adjustments + totals.returned);
        }
    }
}
