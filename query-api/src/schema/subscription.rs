//! `orderStatus(orderId)` over WebSocket: the order's current status, then each change.
//!
//! One feed per process follows the log (gap-safe, order events only) and broadcasts; each
//! subscription folds its own order from the event store and applies the broadcast events with
//! a higher sequence, so a change is pushed exactly once whatever the timing of subscribe and
//! load. A subscriber that falls behind the broadcast reloads its order from the store.
//!
//! A subscription lives on after the connection's token was checked: it checks the
//! connection's [`Session`] when it starts, at the token's expiry and periodically, and ends
//! with `unauthorized` when the session is over.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_graphql::{Context, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::Order as OrderState;
use eventlog::{LogPosition, RecordedEvent};
use futures_util::Stream;
use sqlx::PgPool;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::orders::{may_read, OrderStatus};
use crate::error::{IntoGraphql, QueryError, QueryResult};
use crate::viewer::{Session, Viewer};
use crate::ReadModels;

/// A change of an order's status.
#[derive(SimpleObject, Clone, Debug)]
pub struct OrderStatusChange {
    pub order_id: Uuid,
    pub status: OrderStatus,
    /// Null on the first message (the status when subscribing).
    pub previous_status: Option<OrderStatus>,
    /// The event that changed it.
    pub event: String,
    pub at: DateTime<Utc>,
    /// The order stream's version after the event.
    pub version: i64,
}

/// The process's feed of order events.
#[derive(Clone)]
pub struct OrderEvents(Arc<broadcast::Sender<Arc<RecordedEvent>>>);

impl OrderEvents {
    /// Starts following the log from its current head; the feed stops when the last handle
    /// is dropped.
    pub fn start(pool: PgPool, poll: Duration) -> OrderEvents {
        let (sender, _) = broadcast::channel(4_096);
        let sender = Arc::new(sender);
        let weak = Arc::downgrade(&sender);
        tokio::spawn(follow(pool, weak, poll));
        OrderEvents(sender)
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<RecordedEvent>> {
        self.0.subscribe()
    }
}

async fn follow(pool: PgPool, sender: Weak<broadcast::Sender<Arc<RecordedEvent>>>, poll: Duration) {
    let mut position = loop {
        match eventlog::log::status(&pool).await {
            Ok(status) => break status.safe_head.unwrap_or(LogPosition::START),
            Err(error) => {
                tracing::warn!(%error, "order status feed: cannot read the log head; retrying");
                tokio::time::sleep(poll * 10).await;
                if sender.strong_count() == 0 {
                    return;
                }
            }
        }
    };
    loop {
        let Some(sender) = sender.upgrade() else {
            return;
        };
        let read = match eventlog::log::read_batch_for(
            &pool,
            position,
            1_000,
            &["order"],
            eventlog::log::Metadata::Skip,
        )
        .await
        {
            Ok(batch) => {
                if let Some(last) = batch.last {
                    position = last;
                }
                for event in batch.events {
                    // no subscriber is fine
                    let _ = sender.send(Arc::new(event));
                }
                batch.scanned
            }
            Err(error) => {
                tracing::warn!(%error, "order status feed: read failed; retrying");
                0
            }
        };
        drop(sender);
        if read < 1_000 {
            tokio::time::sleep(poll).await;
        }
    }
}

#[derive(Default)]
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// The caller's own order (or any, for staff): its status now, then every change. Ends
    /// with `unauthorized` when the access token the connection was opened with expires.
    async fn order_status(
        &self,
        ctx: &Context<'_>,
        order_id: Uuid,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<OrderStatusChange>>> {
        // a connection opened with a token that expired since is not a licence to subscribe
        let session = ctx.data_opt::<Session>().cloned();
        if let Some(session) = &session {
            session.check().await.gql()?;
        }
        let models = ctx.data_unchecked::<ReadModels>().clone();
        let viewer = *ctx.data_unchecked::<Viewer>();
        let feed = ctx.data_unchecked::<OrderEvents>().clone();
        // subscribe before loading: every event after the load is then in the receiver
        let receiver = feed.subscribe();
        let watch = Watch::load(&models, order_id).await.gql()?;
        match watch.state.placed() {
            None => {
                return Err(QueryError::NotFound(format!("no order {order_id}"))).gql();
            }
            Some(placed) => {
                may_read(&viewer, placed.customer.map(|c| c.as_uuid())).gql()?;
            }
        }
        let first = watch.change(None, watch.last_event.clone(), watch.last_at);
        let subscriber = Subscriber {
            pending: Some(first),
            watch,
            receiver,
            models,
            session,
            over: false,
        };
        Ok(futures_util::stream::unfold(subscriber, Subscriber::next))
    }
}

/// One running `orderStatus` subscription.
struct Subscriber {
    /// The first message, not sent yet.
    pending: Option<OrderStatusChange>,
    watch: Watch,
    receiver: broadcast::Receiver<Arc<RecordedEvent>>,
    models: ReadModels,
    /// The connection's session (none for a guest: nothing to expire).
    session: Option<Session>,
    /// The session ended and was reported: the stream ends.
    over: bool,
}

impl Subscriber {
    /// The next message: the order's next status change, or the end of the session.
    async fn next(mut self) -> Option<(async_graphql::Result<OrderStatusChange>, Subscriber)> {
        if self.over {
            return None;
        }
        if let Some(first) = self.pending.take() {
            return Some((Ok(first), self));
        }
        loop {
            let received = match &self.session {
                Some(session) => tokio::select! {
                    received = self.receiver.recv() => Some(received),
                    () = tokio::time::sleep(session.next_check()) => None,
                },
                None => Some(self.receiver.recv().await),
            };
            let change = match received {
                // time to check the session again
                None => {
                    let checked = match &self.session {
                        Some(session) => session.check().await,
                        None => Ok(()),
                    };
                    if let Err(error) = checked {
                        self.over = true;
                        return Some((Err(error).gql(), self));
                    }
                    None
                }
                Some(Ok(event)) => self.watch.apply(&event),
                Some(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    tracing::debug!(missed, "order status subscriber lagged; reloading");
                    self.watch.reload(&self.models).await
                }
                Some(Err(broadcast::error::RecvError::Closed)) => return None,
            };
            if let Some(change) = change {
                return Some((Ok(change), self));
            }
        }
    }
}

/// One subscription's view of its order.
struct Watch {
    order_id: Uuid,
    state: OrderState,
    version: i64,
    last_event: String,
    last_at: DateTime<Utc>,
}

impl Watch {
    async fn load(models: &ReadModels, order_id: Uuid) -> QueryResult<Watch> {
        let events =
            eventlog::log::read_stream(&models.pool, "order", &order_id.to_string()).await?;
        let state = schemas::fold::fold::<OrderState>(&events).map_err(QueryError::internal)?;
        let last = events.last();
        Ok(Watch {
            order_id,
            state,
            version: last.map_or(0, |e| e.sequence),
            last_event: last.map(|e| e.event_type.clone()).unwrap_or_default(),
            last_at: last.map_or_else(Utc::now, |e| e.recorded_at),
        })
    }

    fn status(&self) -> Option<OrderStatus> {
        self.state.status().map(OrderStatus::from)
    }

    fn change(
        &self,
        previous: Option<OrderStatus>,
        event: String,
        at: DateTime<Utc>,
    ) -> OrderStatusChange {
        OrderStatusChange {
            order_id: self.order_id,
            status: self.status().unwrap_or(OrderStatus::AwaitingStock),
            previous_status: previous,
            event,
            at,
            version: self.version,
        }
    }

    /// Applies a broadcast event if it is this order's next one; the change if the status moved.
    fn apply(&mut self, event: &RecordedEvent) -> Option<OrderStatusChange> {
        if event.aggregate_id != self.order_id.to_string() || event.sequence <= self.version {
            return None;
        }
        let before = self.status();
        let typed = match schemas::decode_ref(
            &event.aggregate_type,
            &event.event_type,
            &event.event_version,
            &event.payload,
        ) {
            Ok(schemas::AnyEvent::Order(typed)) => typed,
            other => {
                tracing::warn!(?other, "order status: undecodable order event");
                return None;
            }
        };
        self.state.apply(typed);
        self.version = event.sequence;
        let after = self.status();
        (after != before).then(|| self.change(before, event.event_type.clone(), event.recorded_at))
    }

    /// After missing broadcasts: reload from the store; the change if the status moved.
    async fn reload(&mut self, models: &ReadModels) -> Option<OrderStatusChange> {
        let before = self.status();
        match Watch::load(models, self.order_id).await {
            Ok(fresh) if fresh.version > self.version => {
                *self = fresh;
                let after = self.status();
                (after != before)
                    .then(|| self.change(before, self.last_event.clone(), self.last_at))
            }
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, "order status: reload failed");
                None
            }
        }
    }
}
