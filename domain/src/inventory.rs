//! The inventory aggregate: stock on hand and per-order reservations of one
//! SKU (the aggregate id is the SKU). A shortfall is an event
//! (`ReservationRefused`), not an error, so a saga can react to it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::values::{OrderId, Quantity, Sku};

/// Reason recorded on reservations released by `ExpireReservations`.
pub const EXPIRED_REASON: &str = "expired";

/// Commands accepted by [`Inventory`].
#[derive(Debug, Clone, PartialEq)]
pub enum InventoryCommand {
    /// Goods arrived; the first receipt also fixes the stream's SKU.
    ReceiveStock {
        sku: Sku,
        quantity: Quantity,
    },
    /// Manual correction (stocktake, damage, ...); `reason` must be non-empty.
    AdjustStock {
        delta: i64,
        reason: String,
    },
    Reserve {
        order_id: OrderId,
        quantity: Quantity,
        expires_at: DateTime<Utc>,
    },
    CommitReservation {
        order_id: OrderId,
    },
    ReleaseReservation {
        order_id: OrderId,
        reason: String,
    },
    ExpireReservations {
        now: DateTime<Utc>,
    },
    /// Goods back after a committed order was cancelled or returned.
    ReturnStock {
        order_id: OrderId,
        quantity: Quantity,
    },
    SetLowStockThreshold {
        threshold: u64,
    },
}

/// Events of an inventory stream (wire contract, version "1").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum InventoryEvent {
    StockReceived {
        sku: Sku,
        quantity: Quantity,
    },
    StockAdjusted {
        delta: i64,
        reason: String,
    },
    StockReserved {
        order_id: OrderId,
        quantity: Quantity,
        expires_at: DateTime<Utc>,
    },
    ReservationRefused {
        order_id: OrderId,
        requested: Quantity,
        available: u64,
    },
    LowStock {
        available: u64,
    },
    ReservationCommitted {
        order_id: OrderId,
        quantity: Quantity,
    },
    ReservationReleased {
        order_id: OrderId,
        quantity: Quantity,
        reason: String,
    },
    StockReturned {
        order_id: OrderId,
        quantity: Quantity,
    },
    LowStockThresholdSet {
        threshold: u64,
    },
}

/// Every [`InventoryEvent`] variant name, as returned by `event_type()`.
pub const EVENT_TYPES: &[&str] = &[
    "StockReceived",
    "StockAdjusted",
    "StockReserved",
    "ReservationRefused",
    "LowStock",
    "ReservationCommitted",
    "ReservationReleased",
    "StockReturned",
    "LowStockThresholdSet",
];

impl DomainEvent for InventoryEvent {
    fn event_type(&self) -> String {
        match self {
            Self::StockReceived { .. } => "StockReceived",
            Self::StockAdjusted { .. } => "StockAdjusted",
            Self::StockReserved { .. } => "StockReserved",
            Self::ReservationRefused { .. } => "ReservationRefused",
            Self::LowStock { .. } => "LowStock",
            Self::ReservationCommitted { .. } => "ReservationCommitted",
            Self::ReservationReleased { .. } => "ReservationReleased",
            Self::StockReturned { .. } => "StockReturned",
            Self::LowStockThresholdSet { .. } => "LowStockThresholdSet",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        crate::EVENT_VERSION.to_owned()
    }
}

/// Why an inventory command was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("stock for sku {got} cannot be received into the stream of sku {expected}")]
    SkuMismatch { expected: Sku, got: Sku },
    #[error("adjustment reason must not be empty")]
    EmptyReason,
    #[error("adjustment delta must not be zero")]
    ZeroAdjustment,
    #[error("adjustment of {delta} would make stock negative (on hand {on_hand}, available {available})")]
    AdjustmentBelowZero {
        delta: i64,
        on_hand: u64,
        available: u64,
    },
    #[error("stock quantity overflow")]
    Overflow,
    #[error("order {0} has no committed stock to return")]
    NotCommitted(OrderId),
    #[error(
        "cannot return {requested} units for order {order_id}: only {committed} were committed"
    )]
    ReturnExceedsCommitted {
        order_id: OrderId,
        committed: Quantity,
        requested: Quantity,
    },
}

/// Stock held for one order until committed, released or expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub quantity: Quantity,
    pub expires_at: DateTime<Utc>,
}

/// The inventory aggregate of one SKU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    sku: Option<Sku>,
    on_hand: u64,
    reservations: BTreeMap<OrderId, Reservation>,
    committed: BTreeMap<OrderId, Quantity>,
    returned: BTreeSet<OrderId>,
    low_stock_threshold: u64,
}

impl Inventory {
    pub fn sku(&self) -> Option<&Sku> {
        self.sku.as_ref()
    }

    /// Units physically in stock (including reserved ones).
    pub fn on_hand(&self) -> u64 {
        self.on_hand
    }

    /// Units held by open reservations.
    pub fn reserved(&self) -> u64 {
        self.reservations
            .values()
            .map(|r| u64::from(r.quantity.get()))
            .sum()
    }

    /// Units that can still be reserved: `on_hand - reserved`, never negative.
    pub fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved())
    }

    pub fn reservations(&self) -> &BTreeMap<OrderId, Reservation> {
        &self.reservations
    }

    /// Units committed (sold) to `order_id` and not returned.
    pub fn committed(&self, order_id: &OrderId) -> Option<Quantity> {
        self.committed.get(order_id).copied()
    }

    pub fn reservation(&self, order_id: &OrderId) -> Option<&Reservation> {
        self.reservations.get(order_id)
    }

    pub fn low_stock_threshold(&self) -> u64 {
        self.low_stock_threshold
    }

    fn low_stock_after(&self, available: u64) -> Option<InventoryEvent> {
        (available <= self.low_stock_threshold).then_some(InventoryEvent::LowStock { available })
    }

    /// Decides which events `command` produces against the current state.
    pub fn decide(&self, command: InventoryCommand) -> Result<Vec<InventoryEvent>, InventoryError> {
        use InventoryCommand as C;
        use InventoryEvent as E;

        match command {
            C::ReceiveStock { sku, quantity } => {
                if let Some(expected) = &self.sku {
                    if *expected != sku {
                        return Err(InventoryError::SkuMismatch {
                            expected: expected.clone(),
                            got: sku,
                        });
                    }
                }
                self.on_hand
                    .checked_add(u64::from(quantity.get()))
                    .ok_or(InventoryError::Overflow)?;
                Ok(vec![E::StockReceived { sku, quantity }])
            }
            C::AdjustStock { delta, reason } => {
                let reason = reason.trim();
                if reason.is_empty() {
                    return Err(InventoryError::EmptyReason);
                }
                if delta == 0 {
                    return Err(InventoryError::ZeroAdjustment);
                }
                let available = self.available();
                let below_zero = || InventoryError::AdjustmentBelowZero {
                    delta,
                    on_hand: self.on_hand,
                    available,
                };
                let magnitude = delta.unsigned_abs();
                let available_after = if delta > 0 {
                    self.on_hand
                        .checked_add(magnitude)
                        .ok_or(InventoryError::Overflow)?;
                    available + magnitude
                } else {
                    available.checked_sub(magnitude).ok_or_else(below_zero)?
                };
                let mut events = vec![E::StockAdjusted {
                    delta,
                    reason: reason.to_owned(),
                }];
                if delta < 0 {
                    events.extend(self.low_stock_after(available_after));
                }
                Ok(events)
            }
            C::Reserve {
                order_id,
                quantity,
                expires_at,
            } => {
                if self.reservations.contains_key(&order_id)
                    || self.committed.contains_key(&order_id)
                {
                    return Ok(vec![]);
                }
                let available = self.available();
                let requested = u64::from(quantity.get());
                if available < requested {
                    return Ok(vec![E::ReservationRefused {
                        order_id,
                        requested: quantity,
                        available,
                    }]);
                }
                let mut events = vec![E::StockReserved {
                    order_id,
                    quantity,
                    expires_at,
                }];
                events.extend(self.low_stock_after(available - requested));
                Ok(events)
            }
            C::CommitReservation { order_id } => Ok(self
                .reservations
                .get(&order_id)
                .map(|r| E::ReservationCommitted {
                    order_id,
                    quantity: r.quantity,
                })
                .into_iter()
                .collect()),
            C::ReleaseReservation { order_id, reason } => {
                let reason = reason.trim();
                if reason.is_empty() {
                    return Err(InventoryError::EmptyReason);
                }
                Ok(self
                    .reservations
                    .get(&order_id)
                    .map(|r| E::ReservationReleased {
                        order_id,
                        quantity: r.quantity,
                        reason: reason.to_owned(),
                    })
                    .into_iter()
                    .collect())
            }
            C::ExpireReservations { now } => Ok(self
                .reservations
                .iter()
                .filter(|(_, r)| r.expires_at <= now)
                .map(|(order_id, r)| E::ReservationReleased {
                    order_id: *order_id,
                    quantity: r.quantity,
                    reason: EXPIRED_REASON.to_owned(),
                })
                .collect()),
            C::ReturnStock { order_id, quantity } => {
                if self.returned.contains(&order_id) {
                    return Ok(vec![]);
                }
                let committed = *self
                    .committed
                    .get(&order_id)
                    .ok_or(InventoryError::NotCommitted(order_id))?;
                if quantity > committed {
                    return Err(InventoryError::ReturnExceedsCommitted {
                        order_id,
                        committed,
                        requested: quantity,
                    });
                }
                self.on_hand
                    .checked_add(u64::from(quantity.get()))
                    .ok_or(InventoryError::Overflow)?;
                Ok(vec![E::StockReturned { order_id, quantity }])
            }
            C::SetLowStockThreshold { threshold } => Ok(if threshold == self.low_stock_threshold {
                vec![]
            } else {
                vec![E::LowStockThresholdSet { threshold }]
            }),
        }
    }
}

impl Aggregate for Inventory {
    const TYPE: &'static str = "inventory";
    type Command = InventoryCommand;
    type Event = InventoryEvent;
    type Error = InventoryError;
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
        use InventoryEvent as E;
        match event {
            E::StockReceived { sku, quantity } => {
                self.sku.get_or_insert(sku);
                self.on_hand = self.on_hand.saturating_add(u64::from(quantity.get()));
            }
            E::StockAdjusted { delta, .. } => {
                self.on_hand = self.on_hand.saturating_add_signed(delta);
            }
            E::StockReserved {
                order_id,
                quantity,
                expires_at,
            } => {
                self.reservations.insert(
                    order_id,
                    Reservation {
                        quantity,
                        expires_at,
                    },
                );
            }
            E::ReservationRefused { .. } | E::LowStock { .. } => {}
            E::ReservationCommitted { order_id, quantity } => {
                self.reservations.remove(&order_id);
                self.on_hand = self.on_hand.saturating_sub(u64::from(quantity.get()));
                self.committed.insert(order_id, quantity);
            }
            E::ReservationReleased { order_id, .. } => {
                self.reservations.remove(&order_id);
            }
            E::StockReturned { order_id, quantity } => {
                self.on_hand = self.on_hand.saturating_add(u64::from(quantity.get()));
                self.returned.insert(order_id);
            }
            E::LowStockThresholdSet { threshold } => self.low_stock_threshold = threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use cqrs_es::test::TestFramework;

    type F = TestFramework<Inventory>;
    use InventoryCommand as C;
    use InventoryEvent as E;

    fn order(n: u128) -> OrderId {
        OrderId::new(uuid(n))
    }

    fn received(n: u32) -> E {
        E::StockReceived {
            sku: sku("MUG-1"),
            quantity: qty(n),
        }
    }

    fn reserved(o: u128, n: u32, exp: i64) -> E {
        E::StockReserved {
            order_id: order(o),
            quantity: qty(n),
            expires_at: t(exp),
        }
    }

    fn committed(o: u128, n: u32) -> E {
        E::ReservationCommitted {
            order_id: order(o),
            quantity: qty(n),
        }
    }

    fn reserve(o: u128, n: u32, exp: i64) -> C {
        C::Reserve {
            order_id: order(o),
            quantity: qty(n),
            expires_at: t(exp),
        }
    }

    fn state(events: Vec<E>) -> Inventory {
        let mut inv = Inventory::default();
        for e in events {
            inv.apply(e);
        }
        inv
    }

    #[test]
    fn receive_stock() {
        F::with(())
            .given_no_previous_events()
            .when(C::ReceiveStock {
                sku: sku("MUG-1"),
                quantity: qty(10),
            })
            .then_expect_events(vec![received(10)]);
        F::with(())
            .given(vec![received(10)])
            .when(C::ReceiveStock {
                sku: sku("MUG-1"),
                quantity: qty(5),
            })
            .then_expect_events(vec![received(5)]);
        assert_eq!(state(vec![received(10), received(5)]).on_hand(), 15);
    }

    #[test]
    fn receive_stock_for_other_sku_is_rejected() {
        F::with(())
            .given(vec![received(10)])
            .when(C::ReceiveStock {
                sku: sku("CUP-2"),
                quantity: qty(5),
            })
            .then_expect_error(InventoryError::SkuMismatch {
                expected: sku("MUG-1"),
                got: sku("CUP-2"),
            });
    }

    #[test]
    fn receive_stock_overflow_is_rejected() {
        F::with(())
            .given(vec![E::StockAdjusted {
                delta: i64::MAX,
                reason: "x".into(),
            }])
            .and(vec![E::StockAdjusted {
                delta: i64::MAX,
                reason: "x".into(),
            }])
            .and(vec![received(1)])
            .when(C::ReceiveStock {
                sku: sku("MUG-1"),
                quantity: qty(1),
            })
            .then_expect_error(InventoryError::Overflow);
    }

    #[test]
    fn adjust_stock_up_and_down() {
        F::with(())
            .given(vec![received(10)])
            .when(C::AdjustStock {
                delta: 3,
                reason: " found in back ".into(),
            })
            .then_expect_events(vec![E::StockAdjusted {
                delta: 3,
                reason: "found in back".into(),
            }]);
        F::with(())
            .given(vec![received(10)])
            .when(C::AdjustStock {
                delta: -4,
                reason: "damaged".into(),
            })
            .then_expect_events(vec![E::StockAdjusted {
                delta: -4,
                reason: "damaged".into(),
            }]);
    }

    #[test]
    fn adjust_stock_down_to_threshold_signals_low_stock() {
        F::with(())
            .given(vec![
                received(10),
                E::LowStockThresholdSet { threshold: 5 },
                reserved(1, 2, 100),
            ])
            .when(C::AdjustStock {
                delta: -3,
                reason: "damaged".into(),
            })
            .then_expect_events(vec![
                E::StockAdjusted {
                    delta: -3,
                    reason: "damaged".into(),
                },
                E::LowStock { available: 5 },
            ]);
    }

    #[test]
    fn adjust_stock_rejections() {
        F::with(())
            .given(vec![received(10)])
            .when(C::AdjustStock {
                delta: -1,
                reason: "  ".into(),
            })
            .then_expect_error(InventoryError::EmptyReason);
        F::with(())
            .given(vec![received(10)])
            .when(C::AdjustStock {
                delta: 0,
                reason: "nothing".into(),
            })
            .then_expect_error(InventoryError::ZeroAdjustment);
        // would eat into reserved stock
        F::with(())
            .given(vec![received(10), reserved(1, 8, 100)])
            .when(C::AdjustStock {
                delta: -3,
                reason: "lost".into(),
            })
            .then_expect_error(InventoryError::AdjustmentBelowZero {
                delta: -3,
                on_hand: 10,
                available: 2,
            });
        // would make on hand negative
        F::with(())
            .given_no_previous_events()
            .when(C::AdjustStock {
                delta: i64::MIN,
                reason: "lost".into(),
            })
            .then_expect_error(InventoryError::AdjustmentBelowZero {
                delta: i64::MIN,
                on_hand: 0,
                available: 0,
            });
        F::with(())
            .given(vec![E::StockAdjusted {
                delta: i64::MAX,
                reason: "x".into(),
            }])
            .and(vec![E::StockAdjusted {
                delta: i64::MAX,
                reason: "x".into(),
            }])
            .when(C::AdjustStock {
                delta: i64::MAX,
                reason: "x".into(),
            })
            .then_expect_error(InventoryError::Overflow);
    }

    #[test]
    fn reserve_available_stock() {
        F::with(())
            .given(vec![received(10)])
            .when(reserve(1, 3, 100))
            .then_expect_events(vec![reserved(1, 3, 100)]);
        let inv = state(vec![received(10), reserved(1, 3, 100)]);
        assert_eq!(inv.available(), 7);
        assert_eq!(inv.reserved(), 3);
        assert_eq!(inv.on_hand(), 10);
    }

    #[test]
    fn reserve_twice_for_same_order_is_noop() {
        F::with(())
            .given(vec![received(10), reserved(1, 3, 100)])
            .when(reserve(1, 3, 200))
            .then_expect_events(vec![]);
    }

    #[test]
    fn reserve_after_commit_for_same_order_is_noop() {
        F::with(())
            .given(vec![received(10), reserved(1, 3, 100), committed(1, 3)])
            .when(reserve(1, 3, 200))
            .then_expect_events(vec![]);
    }

    #[test]
    fn reserve_shortfall_is_a_refusal_event() {
        F::with(())
            .given(vec![received(5), reserved(1, 3, 100)])
            .when(reserve(2, 3, 100))
            .then_expect_events(vec![E::ReservationRefused {
                order_id: order(2),
                requested: qty(3),
                available: 2,
            }]);
        F::with(())
            .given_no_previous_events()
            .when(reserve(2, 1, 100))
            .then_expect_events(vec![E::ReservationRefused {
                order_id: order(2),
                requested: qty(1),
                available: 0,
            }]);
    }

    #[test]
    fn reserve_down_to_threshold_signals_low_stock() {
        F::with(())
            .given(vec![received(10), E::LowStockThresholdSet { threshold: 3 }])
            .when(reserve(1, 7, 100))
            .then_expect_events(vec![reserved(1, 7, 100), E::LowStock { available: 3 }]);
        F::with(())
            .given(vec![received(10), E::LowStockThresholdSet { threshold: 3 }])
            .when(reserve(1, 6, 100))
            .then_expect_events(vec![reserved(1, 6, 100)]);
        // default threshold 0: selling out is signalled
        F::with(())
            .given(vec![received(2)])
            .when(reserve(1, 2, 100))
            .then_expect_events(vec![reserved(1, 2, 100), E::LowStock { available: 0 }]);
    }

    #[test]
    fn commit_reservation() {
        F::with(())
            .given(vec![received(10), reserved(1, 3, 100)])
            .when(C::CommitReservation { order_id: order(1) })
            .then_expect_events(vec![committed(1, 3)]);
        let inv = state(vec![received(10), reserved(1, 3, 100), committed(1, 3)]);
        assert_eq!(inv.on_hand(), 7);
        assert_eq!(inv.available(), 7);
        assert!(inv.reservation(&order(1)).is_none());
    }

    #[test]
    fn commit_unknown_or_committed_is_noop() {
        F::with(())
            .given(vec![received(10)])
            .when(C::CommitReservation { order_id: order(1) })
            .then_expect_events(vec![]);
        F::with(())
            .given(vec![received(10), reserved(1, 3, 100), committed(1, 3)])
            .when(C::CommitReservation { order_id: order(1) })
            .then_expect_events(vec![]);
    }

    #[test]
    fn release_reservation() {
        F::with(())
            .given(vec![received(10), reserved(1, 3, 100)])
            .when(C::ReleaseReservation {
                order_id: order(1),
                reason: "order cancelled".into(),
            })
            .then_expect_events(vec![E::ReservationReleased {
                order_id: order(1),
                quantity: qty(3),
                reason: "order cancelled".into(),
            }]);
    }

    #[test]
    fn release_unknown_is_noop_and_empty_reason_rejected() {
        F::with(())
            .given(vec![received(10)])
            .when(C::ReleaseReservation {
                order_id: order(1),
                reason: "cancelled".into(),
            })
            .then_expect_events(vec![]);
        F::with(())
            .given(vec![received(10), reserved(1, 3, 100)])
            .when(C::ReleaseReservation {
                order_id: order(1),
                reason: "".into(),
            })
            .then_expect_error(InventoryError::EmptyReason);
    }

    #[test]
    fn expire_reservations_releases_only_due_ones() {
        F::with(())
            .given(vec![
                received(10),
                reserved(1, 1, 100),
                reserved(2, 2, 50),
                reserved(3, 3, 101),
            ])
            .when(C::ExpireReservations { now: t(100) })
            .then_expect_events(vec![
                E::ReservationReleased {
                    order_id: order(1),
                    quantity: qty(1),
                    reason: EXPIRED_REASON.into(),
                },
                E::ReservationReleased {
                    order_id: order(2),
                    quantity: qty(2),
                    reason: EXPIRED_REASON.into(),
                },
            ]);
    }

    #[test]
    fn expire_with_nothing_due_is_noop() {
        F::with(())
            .given(vec![received(10), reserved(1, 1, 100)])
            .when(C::ExpireReservations { now: t(99) })
            .then_expect_events(vec![]);
    }

    #[test]
    fn return_stock() {
        F::with(())
            .given(vec![received(10), reserved(1, 3, 100), committed(1, 3)])
            .when(C::ReturnStock {
                order_id: order(1),
                quantity: qty(2),
            })
            .then_expect_events(vec![E::StockReturned {
                order_id: order(1),
                quantity: qty(2),
            }]);
    }

    #[test]
    fn return_stock_twice_is_noop() {
        F::with(())
            .given(vec![
                received(10),
                reserved(1, 3, 100),
                committed(1, 3),
                E::StockReturned {
                    order_id: order(1),
                    quantity: qty(3),
                },
            ])
            .when(C::ReturnStock {
                order_id: order(1),
                quantity: qty(3),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn return_stock_rejections() {
        F::with(())
            .given(vec![received(10), reserved(1, 3, 100)])
            .when(C::ReturnStock {
                order_id: order(1),
                quantity: qty(3),
            })
            .then_expect_error(InventoryError::NotCommitted(order(1)));
        F::with(())
            .given(vec![received(10), reserved(1, 3, 100), committed(1, 3)])
            .when(C::ReturnStock {
                order_id: order(1),
                quantity: qty(4),
            })
            .then_expect_error(InventoryError::ReturnExceedsCommitted {
                order_id: order(1),
                committed: qty(3),
                requested: qty(4),
            });
    }

    #[test]
    fn set_low_stock_threshold() {
        F::with(())
            .given(vec![received(10)])
            .when(C::SetLowStockThreshold { threshold: 4 })
            .then_expect_events(vec![E::LowStockThresholdSet { threshold: 4 }]);
        F::with(())
            .given(vec![received(10), E::LowStockThresholdSet { threshold: 4 }])
            .when(C::SetLowStockThreshold { threshold: 4 })
            .then_expect_events(vec![]);
        F::with(())
            .given_no_previous_events()
            .when(C::SetLowStockThreshold { threshold: 0 })
            .then_expect_events(vec![]);
    }

    #[test]
    fn events_round_trip_and_types_are_listed() {
        let events = vec![
            received(1),
            E::StockAdjusted {
                delta: -2,
                reason: "r".into(),
            },
            reserved(1, 1, 5),
            E::ReservationRefused {
                order_id: order(2),
                requested: qty(4),
                available: 1,
            },
            E::LowStock { available: 0 },
            committed(1, 1),
            E::ReservationReleased {
                order_id: order(3),
                quantity: qty(1),
                reason: EXPIRED_REASON.into(),
            },
            E::StockReturned {
                order_id: order(1),
                quantity: qty(1),
            },
            E::LowStockThresholdSet { threshold: 3 },
        ];
        assert_round_trip(&events, EVENT_TYPES);
        let back: Inventory = serde_json::from_value(
            serde_json::to_value(state(vec![received(3), reserved(1, 1, 5)])).unwrap(),
        )
        .unwrap();
        assert_eq!(back.available(), 2);
    }
}
