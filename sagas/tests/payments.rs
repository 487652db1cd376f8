//! Payments: the local gateway's test cards and rules, the Stripe adapter against a local HTTP
//! server speaking Stripe's wire format (form-encoded requests, Stripe-shaped JSON and errors),
//! and the webhook signature check and event parsing.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use sagas::payments::local::{LocalGateway, LocalIntentStatus};
use sagas::payments::stripe::{RetryPolicy, StripeConfigError, StripeGateway, StripeSecretKey};
use sagas::payments::webhook::{self, StripeEventKind, WebhookError, TOLERANCE_SECS};
use sagas::payments::{
    AuthorizeOutcome, AuthorizeRequest, CancelOutcome, GatewayError, PaymentGateway,
};
use serde_json::{json, Value};
use uuid::Uuid;

fn request(key: &str, amount_minor: i64, payment_method: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        idempotency_key: key.to_owned(),
        order_id: Uuid::from_u128(0x1234),
        amount_minor,
        currency: "EUR".to_owned(),
        payment_method: payment_method.to_owned(),
    }
}

fn authorized_ref(outcome: AuthorizeOutcome) -> String {
    match outcome {
        AuthorizeOutcome::Authorized { provider_ref } => provider_ref,
        other => panic!("expected Authorized, got {other:?}"),
    }
}

fn is_rejected<T: std::fmt::Debug>(result: Result<T, GatewayError>) -> bool {
    matches!(result, Err(GatewayError::Rejected(_)))
}

// ---------------------------------------------------------------------------------------------
// the local gateway

mod local {
    //! Every scenario runs against both stores (`in_memory::…` and `in_postgres::…`); the
    //! PostgreSQL store also has tests of its own: surviving a restart, and one effect per key
    //! across gateways.

    use super::*;
    use eventlog::testing::TestDatabase;
    use sqlx::PgPool;

    /// Where a scenario's gateways keep their state.
    enum Backend {
        Memory,
        Postgres(PgPool),
    }

    impl Backend {
        /// A gateway on this backend whose slow card takes `slow_delay`.
        fn gateway_with(&self, slow_delay: Duration) -> LocalGateway {
            match self {
                Self::Memory => LocalGateway::with_slow_delay(slow_delay),
                Self::Postgres(pool) => LocalGateway::persistent(pool.clone(), slow_delay),
            }
        }

        fn gateway(&self) -> LocalGateway {
            self.gateway_with(Duration::from_secs(2))
        }
    }

    async fn fresh_database() -> TestDatabase {
        TestDatabase::create(
            eventlog::migrate::MIGRATIONS
                .iter()
                .chain(sagas::MIGRATIONS),
            4,
        )
        .await
    }

    /// One test per scenario and backend.
    macro_rules! on_both_backends {
        ($($scenario:ident),+ $(,)?) => {
            mod in_memory {
                use super::*;
                $(
                    #[tokio::test]
                    async fn $scenario() {
                        super::$scenario(Backend::Memory).await;
                    }
                )+
            }

            mod in_postgres {
                use super::*;
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $scenario() {
                        let db = fresh_database().await;
                        super::$scenario(Backend::Postgres(db.pool.clone())).await;
                        db.drop().await;
                    }
                )+
            }
        };
    }

    on_both_backends!(
        visa_and_mastercard_authorize_and_hold_the_amount,
        declining_cards_decline_with_stripes_reason_and_code,
        the_slow_card_authorizes_after_the_configured_delay,
        concurrent_slow_authorizations_with_one_key_create_one_intent,
        concurrent_calls_with_one_key_have_one_effect,
        concurrent_refunds_never_refund_more_than_was_captured,
        bad_amounts_and_currencies_are_rejected,
        capture_takes_at_most_the_authorized_amount_of_an_authorized_intent,
        cancel_releases_only_an_uncaptured_intent,
        refund_takes_at_most_what_is_left_of_a_captured_intent,
        every_call_is_idempotent_by_its_key,
    );

    async fn visa_and_mastercard_authorize_and_hold_the_amount(backend: Backend) {
        let gateway = backend.gateway();
        for (key, card) in [("a", "pm_card_visa"), ("b", "pm_card_mastercard")] {
            let id = authorized_ref(gateway.authorize(request(key, 1000, card)).await.unwrap());
            assert!(id.starts_with("pi_local_"), "{id}");
            let intent = gateway.intent(&id).await.unwrap().unwrap();
            assert_eq!(intent.status, LocalIntentStatus::RequiresCapture);
            assert_eq!(intent.amount_minor, 1000);
            assert_eq!(intent.currency, "EUR");
            assert_eq!(intent.payment_method, card);
            assert_eq!(intent.order_id, Uuid::from_u128(0x1234));
            assert_eq!((intent.captured_minor, intent.refunded_minor), (0, 0));
            assert!(intent.refunds.is_empty());
        }
        let intents = gateway.intents().await.unwrap();
        assert_eq!(intents.len(), 2);
        assert_eq!(
            (
                intents[0].payment_method.as_str(),
                intents[1].payment_method.as_str()
            ),
            ("pm_card_visa", "pm_card_mastercard"),
            "in creation order"
        );
        assert_eq!(gateway.intent("pi_local_nope").await.unwrap(), None);
    }

    async fn declining_cards_decline_with_stripes_reason_and_code(backend: Backend) {
        let gateway = backend.gateway();
        let cases = [
            (
                "pm_card_chargeDeclined",
                "Your card was declined.",
                "card_declined",
            ),
            (
                "pm_card_chargeDeclinedInsufficientFunds",
                "Your card has insufficient funds.",
                "insufficient_funds",
            ),
            (
                "pm_card_nonsense",
                "Unknown payment method.",
                "invalid_payment_method",
            ),
        ];
        for (i, (card, expected_reason, expected_code)) in cases.into_iter().enumerate() {
            let outcome = gateway
                .authorize(request(&format!("k{i}"), 1000, card))
                .await
                .unwrap();
            let AuthorizeOutcome::Declined {
                provider_ref,
                reason,
                code,
            } = outcome
            else {
                panic!("{card} should decline, got {outcome:?}");
            };
            assert_eq!(reason, expected_reason);
            assert_eq!(code.as_deref(), Some(expected_code));
            let intent = gateway
                .intent(&provider_ref.unwrap())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(intent.status, LocalIntentStatus::RequiresPaymentMethod);
        }
    }

    async fn the_slow_card_authorizes_after_the_configured_delay(backend: Backend) {
        let gateway = backend.gateway_with(Duration::from_millis(150));
        let started = Instant::now();
        let outcome = gateway
            .authorize(request("slow", 500, "pm_card_slow"))
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(150));
        authorized_ref(outcome);
    }

    async fn concurrent_slow_authorizations_with_one_key_create_one_intent(backend: Backend) {
        let gateway = backend.gateway_with(Duration::from_millis(50));
        let (a, b) = tokio::join!(
            gateway.authorize(request("same", 500, "pm_card_slow")),
            gateway.authorize(request("same", 500, "pm_card_slow")),
        );
        assert_eq!(a.unwrap(), b.unwrap());
        assert_eq!(gateway.intents().await.unwrap().len(), 1);
    }

    async fn concurrent_calls_with_one_key_have_one_effect(backend: Backend) {
        // two gateways on one store (in memory: one gateway shared), eight calls per key at once
        let first = Arc::new(backend.gateway());
        let second = match backend {
            Backend::Memory => first.clone(),
            Backend::Postgres(_) => Arc::new(backend.gateway()),
        };
        let gateways = [first.clone(), second];
        async fn all<T: Send + 'static>(
            calls: impl IntoIterator<Item = tokio::task::JoinHandle<T>>,
        ) -> Vec<T> {
            let mut results = Vec::new();
            for call in calls {
                results.push(call.await.unwrap());
            }
            results
        }
        let authorizations = all((0..8).map(|i| {
            let gateway = gateways[i % 2].clone();
            tokio::spawn(async move {
                gateway
                    .authorize(request("auth", 1000, "pm_card_visa"))
                    .await
            })
        }))
        .await;
        let first_outcome = authorizations[0].clone().unwrap();
        assert!(authorizations
            .iter()
            .all(|o| o == &Ok(first_outcome.clone())));
        let id = authorized_ref(first_outcome);
        assert_eq!(first.intents().await.unwrap().len(), 1);

        let captures = all((0..8).map(|i| {
            let (gateway, id) = (gateways[i % 2].clone(), id.clone());
            tokio::spawn(async move { gateway.capture(&id, 1000, "cap").await })
        }))
        .await;
        assert!(captures.iter().all(Result::is_ok), "{captures:?}");

        let refunds = all((0..8).map(|i| {
            let (gateway, id) = (gateways[i % 2].clone(), id.clone());
            tokio::spawn(async move { gateway.refund(&id, 400, "ref").await })
        }))
        .await;
        let refund_id = refunds[0].clone().unwrap();
        assert!(refunds.iter().all(|r| r == &Ok(refund_id.clone())));

        let intent = first.intent(&id).await.unwrap().unwrap();
        assert_eq!(intent.status, LocalIntentStatus::Succeeded);
        assert_eq!(intent.captured_minor, 1000);
        assert_eq!(
            intent.refunded_minor, 400,
            "eight refunds with one key refund once"
        );
        assert_eq!(intent.refunds.len(), 1);
        assert_eq!(intent.refunds[0].id, refund_id);
        let calls = first.calls().await.unwrap();
        assert_eq!(
            (calls.authorize, calls.capture, calls.refund),
            (8, 8, 8),
            "every call counted, by both gateways"
        );
        assert_eq!(calls.replayed, 3 * 7);
    }

    async fn concurrent_refunds_never_refund_more_than_was_captured(backend: Backend) {
        let gateway = Arc::new(backend.gateway());
        let id = authorized_ref(
            gateway
                .authorize(request("a", 1000, "pm_card_visa"))
                .await
                .unwrap(),
        );
        gateway.capture(&id, 1000, "c").await.unwrap();
        let mut refunds = Vec::new();
        for i in 0..6 {
            let (gateway, id) = (gateway.clone(), id.clone());
            refunds.push(tokio::spawn(async move {
                gateway.refund(&id, 300, &format!("r{i}")).await
            }));
        }
        let mut refunded = 0;
        for refund in refunds {
            match refund.await.unwrap() {
                Ok(_) => refunded += 1,
                Err(GatewayError::Rejected(_)) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(refunded, 3, "three refunds of 3.00 fit in 10.00");
        let intent = gateway.intent(&id).await.unwrap().unwrap();
        assert_eq!(intent.refunded_minor, 900);
        assert_eq!(intent.refunds.len(), 3);
    }

    async fn bad_amounts_and_currencies_are_rejected(backend: Backend) {
        let gateway = backend.gateway();
        assert!(is_rejected(
            gateway.authorize(request("zero", 0, "pm_card_visa")).await
        ));
        let mut bad_currency = request("cur", 100, "pm_card_visa");
        bad_currency.currency = "EURO".into();
        assert!(is_rejected(gateway.authorize(bad_currency).await));
        assert!(is_rejected(
            gateway.authorize(request("", 100, "pm_card_visa")).await
        ));
        assert!(is_rejected(
            gateway
                .authorize(request(&"k".repeat(256), 100, "pm_card_visa"))
                .await
        ));
        assert!(gateway.intents().await.unwrap().is_empty());
        // refused calls are not remembered: the key works with corrected parameters
        authorized_ref(
            gateway
                .authorize(request("zero", 100, "pm_card_visa"))
                .await
                .unwrap(),
        );
    }

    async fn capture_takes_at_most_the_authorized_amount_of_an_authorized_intent(backend: Backend) {
        let gateway = backend.gateway();
        let id = authorized_ref(
            gateway
                .authorize(request("a", 1000, "pm_card_visa"))
                .await
                .unwrap(),
        );
        assert!(is_rejected(gateway.capture(&id, 1001, "c1").await));
        assert!(is_rejected(gateway.capture(&id, 0, "c0").await));
        assert!(is_rejected(gateway.capture("pi_nope", 100, "c2").await));
        gateway.capture(&id, 800, "c3").await.unwrap();
        let intent = gateway.intent(&id).await.unwrap().unwrap();
        assert_eq!(intent.status, LocalIntentStatus::Succeeded);
        assert_eq!(intent.captured_minor, 800);
        // captured once: another capture (another key) is refused, and a cancel says the
        // money was taken (it must be refunded instead)
        assert!(is_rejected(gateway.capture(&id, 100, "c4").await));
        assert_eq!(
            gateway.cancel(&id, "x1").await,
            Ok(CancelOutcome::AlreadyCaptured)
        );
        assert_eq!(
            gateway.intent(&id).await.unwrap().unwrap().status,
            LocalIntentStatus::Succeeded
        );

        let declined = gateway
            .authorize(request("d", 1000, "pm_card_chargeDeclined"))
            .await
            .unwrap();
        let AuthorizeOutcome::Declined {
            provider_ref: Some(declined),
            ..
        } = declined
        else {
            panic!("expected a declined intent");
        };
        assert!(is_rejected(gateway.capture(&declined, 1000, "c5").await));
    }

    async fn cancel_releases_only_an_uncaptured_intent(backend: Backend) {
        let gateway = backend.gateway();
        let id = authorized_ref(
            gateway
                .authorize(request("a", 1000, "pm_card_visa"))
                .await
                .unwrap(),
        );
        assert_eq!(
            gateway.cancel(&id, "x1").await,
            Ok(CancelOutcome::Cancelled)
        );
        assert_eq!(
            gateway.intent(&id).await.unwrap().unwrap().status,
            LocalIntentStatus::Canceled
        );
        assert!(is_rejected(gateway.capture(&id, 1000, "c1").await));
        // canceling a canceled intent again: it stays canceled
        assert_eq!(
            gateway.cancel(&id, "x2").await,
            Ok(CancelOutcome::Cancelled)
        );
        assert!(is_rejected(gateway.refund(&id, 1, "r1").await));
        assert!(is_rejected(gateway.cancel("pi_nope", "x3").await));
    }

    async fn refund_takes_at_most_what_is_left_of_a_captured_intent(backend: Backend) {
        let gateway = backend.gateway();
        let id = authorized_ref(
            gateway
                .authorize(request("a", 1000, "pm_card_visa"))
                .await
                .unwrap(),
        );
        assert!(
            is_rejected(gateway.refund(&id, 100, "r0").await),
            "nothing captured yet"
        );
        gateway.capture(&id, 900, "c").await.unwrap();
        let first = gateway.refund(&id, 400, "r1").await.unwrap();
        assert!(is_rejected(gateway.refund(&id, 501, "r2").await));
        let second = gateway.refund(&id, 500, "r3").await.unwrap();
        assert_ne!(first, second);
        assert!(is_rejected(gateway.refund(&id, 1, "r4").await));
        let intent = gateway.intent(&id).await.unwrap().unwrap();
        assert_eq!(intent.refunded_minor, 900);
        assert_eq!(intent.refunds.len(), 2);
        assert_eq!(intent.refunds[0].id, first);
        assert_eq!(gateway.intents().await.unwrap()[0].refunds, intent.refunds);
    }

    async fn every_call_is_idempotent_by_its_key(backend: Backend) {
        let gateway = backend.gateway();
        let first = gateway
            .authorize(request("auth", 1000, "pm_card_visa"))
            .await
            .unwrap();
        let again = gateway
            .authorize(request("auth", 1000, "pm_card_visa"))
            .await
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(gateway.intents().await.unwrap().len(), 1);
        let id = authorized_ref(first);

        gateway.capture(&id, 1000, "cap").await.unwrap();
        gateway.capture(&id, 1000, "cap").await.unwrap(); // replayed, not refused as "already captured"

        let refund = gateway.refund(&id, 300, "ref").await.unwrap();
        assert_eq!(gateway.refund(&id, 300, "ref").await.unwrap(), refund);
        let intent = gateway.intent(&id).await.unwrap().unwrap();
        assert_eq!(
            intent.refunded_minor, 300,
            "two refunds with one key refund once"
        );
        assert_eq!(intent.refunds.len(), 1);

        // a key reused for different parameters is refused and changes nothing
        assert!(is_rejected(gateway.refund(&id, 200, "ref").await));
        assert!(is_rejected(
            gateway
                .authorize(request("auth", 999, "pm_card_visa"))
                .await
        ));
        // as is a key reused for another kind of call
        assert!(is_rejected(gateway.cancel(&id, "ref").await));
        assert_eq!(
            gateway.intent(&id).await.unwrap().unwrap().refunded_minor,
            300
        );

        // declines replay too
        let declined = gateway
            .authorize(request("dec", 1000, "pm_card_chargeDeclined"))
            .await
            .unwrap();
        assert_eq!(
            gateway
                .authorize(request("dec", 1000, "pm_card_chargeDeclined"))
                .await
                .unwrap(),
            declined
        );

        let other = authorized_ref(
            gateway
                .authorize(request("auth2", 50, "pm_card_visa"))
                .await
                .unwrap(),
        );
        gateway.cancel(&other, "can").await.unwrap();
        gateway.cancel(&other, "can").await.unwrap();

        let calls = gateway.calls().await.unwrap();
        assert_eq!(
            (calls.authorize, calls.capture, calls.cancel, calls.refund),
            (6, 2, 3, 3)
        );
        assert_eq!(calls.replayed, 5);
        assert_eq!(gateway.intents().await.unwrap().len(), 3);
    }

    // -- the PostgreSQL store only

    /// A second pool on the same database, as a new process would open.
    async fn another_process(db: &TestDatabase) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&db.url)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_process_carries_on_with_the_intents_of_the_first() {
        let db = fresh_database().await;
        let before = LocalGateway::persistent(db.pool.clone(), Duration::from_millis(10));
        assert!(before.is_persistent() && !LocalGateway::new().is_persistent());
        let to_capture = authorized_ref(
            before
                .authorize(request("order-1:authorize", 2599, "pm_card_visa"))
                .await
                .unwrap(),
        );
        let to_cancel = authorized_ref(
            before
                .authorize(request("order-2:authorize", 990, "pm_card_slow"))
                .await
                .unwrap(),
        );
        let half_refunded = authorized_ref(
            before
                .authorize(request("order-3:authorize", 1000, "pm_card_visa"))
                .await
                .unwrap(),
        );
        before
            .capture(&half_refunded, 1000, "order-3:capture")
            .await
            .unwrap();
        let first_refund = before
            .refund(&half_refunded, 500, "order-3:refund-1")
            .await
            .unwrap();
        drop(before);

        // the "restarted process": a new pool, a new gateway, nothing shared in memory
        let pool = another_process(&db).await;
        let after = LocalGateway::persistent(pool.clone(), Duration::from_millis(10));
        let intents = after.intents().await.unwrap();
        let ids: Vec<&str> = intents.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, [&to_capture, &to_cancel, &half_refunded]);

        after
            .capture(&to_capture, 2599, "order-1:capture")
            .await
            .unwrap();
        let refund = after
            .refund(&to_capture, 2599, "order-1:refund")
            .await
            .unwrap();
        after.cancel(&to_cancel, "order-2:cancel").await.unwrap();
        assert!(is_rejected(
            after.refund(&half_refunded, 501, "order-3:refund-2").await
        ));
        let second_refund = after
            .refund(&half_refunded, 500, "order-3:refund-2")
            .await
            .unwrap();
        assert_ne!(first_refund, second_refund);

        // the keys of the first process still answer, and still change nothing
        assert_eq!(
            after
                .authorize(request("order-1:authorize", 2599, "pm_card_visa"))
                .await
                .unwrap(),
            AuthorizeOutcome::Authorized {
                provider_ref: to_capture.clone()
            }
        );
        assert_eq!(
            after
                .refund(&half_refunded, 500, "order-3:refund-1")
                .await
                .unwrap(),
            first_refund
        );
        assert!(is_rejected(
            after.capture(&half_refunded, 999, "order-3:capture").await
        ));

        let captured = after.intent(&to_capture).await.unwrap().unwrap();
        assert_eq!(captured.status, LocalIntentStatus::Succeeded);
        assert_eq!(
            (captured.captured_minor, captured.refunded_minor),
            (2599, 2599)
        );
        assert_eq!(captured.refunds[0].id, refund);
        assert_eq!(
            after.intent(&to_cancel).await.unwrap().unwrap().status,
            LocalIntentStatus::Canceled
        );
        let halves = after.intent(&half_refunded).await.unwrap().unwrap();
        assert_eq!(halves.refunded_minor, 1000);
        let refund_ids: Vec<&str> = halves.refunds.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(refund_ids, [&first_refund, &second_refund]);

        let calls = after.calls().await.unwrap();
        assert_eq!(
            (calls.authorize, calls.capture, calls.cancel, calls.refund),
            (4, 3, 1, 5),
            "both processes' calls"
        );
        assert_eq!(calls.replayed, 2);
        pool.close().await;
        db.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gateways_on_one_database_never_share_an_id_and_apply_each_key_once() {
        let db = fresh_database().await;
        let other_pool = another_process(&db).await;
        let one = Arc::new(LocalGateway::persistent(
            db.pool.clone(),
            Duration::from_millis(20),
        ));
        let two = Arc::new(LocalGateway::persistent(
            other_pool.clone(),
            Duration::from_millis(20),
        ));

        // distinct keys from both at once: distinct ids
        let mut calls = Vec::new();
        for i in 0..10 {
            let gateway = if i % 2 == 0 { one.clone() } else { two.clone() };
            calls.push(tokio::spawn(async move {
                gateway
                    .authorize(request(&format!("k{i}"), 100, "pm_card_visa"))
                    .await
            }));
        }
        let mut ids = std::collections::HashSet::new();
        for call in calls {
            ids.insert(authorized_ref(call.await.unwrap().unwrap()));
        }
        assert_eq!(ids.len(), 10);

        // one key from both at once, for every kind of call: one effect each
        for round in 0..5 {
            let key = format!("order-{round}");
            let (a, b) = tokio::join!(
                one.authorize(request(&format!("{key}:authorize"), 1000, "pm_card_slow")),
                two.authorize(request(&format!("{key}:authorize"), 1000, "pm_card_slow")),
            );
            let id = authorized_ref(a.unwrap());
            assert_eq!(authorized_ref(b.unwrap()), id);
            let capture_key = format!("{key}:capture");
            let (a, b) = tokio::join!(
                one.capture(&id, 1000, &capture_key),
                two.capture(&id, 1000, &capture_key),
            );
            a.unwrap();
            b.unwrap();
            let refund_key = format!("{key}:refund");
            let (a, b) = tokio::join!(
                one.refund(&id, 600, &refund_key),
                two.refund(&id, 600, &refund_key),
            );
            assert_eq!(a.unwrap(), b.unwrap());
            let intent = two.intent(&id).await.unwrap().unwrap();
            assert_eq!((intent.captured_minor, intent.refunded_minor), (1000, 600));
            assert_eq!(intent.refunds.len(), 1);
        }
        assert_eq!(one.intents().await.unwrap().len(), 15);
        let calls = two.calls().await.unwrap();
        assert_eq!(
            (calls.authorize, calls.capture, calls.refund, calls.replayed),
            (20, 10, 10, 15)
        );
        other_pool.close().await;
        db.drop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// the Stripe adapter against a local server speaking Stripe's wire format

const SECRET: &str = "sk_test_51Fake0000000000000000secret";

#[derive(Clone, Debug)]
struct Recorded {
    method: Method,
    path: String,
    form: Vec<(String, String)>,
    idempotency_key: Option<String>,
    authorization: Option<String>,
    content_type: Option<String>,
}

impl Recorded {
    fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// How the fake answers before it answers normally.
#[derive(Clone, Copy, Debug)]
enum Failure {
    /// `{"error":{"type":"api_error",…}}` with this status.
    Stripe(u16),
    /// An HTML 502 page, as a proxy would send.
    ProxyPage,
}

struct FakeState {
    requests: Mutex<Vec<Recorded>>,
    failures_left: AtomicU32,
    failure: Failure,
    next_id: AtomicU64,
}

struct FakeStripe {
    base_url: String,
    state: Arc<FakeState>,
}

impl FakeStripe {
    async fn start() -> Self {
        Self::failing(0, Failure::Stripe(500)).await
    }

    /// Answers `failure` to the first `times` requests.
    async fn failing(times: u32, failure: Failure) -> Self {
        let state = Arc::new(FakeState {
            requests: Mutex::new(Vec::new()),
            failures_left: AtomicU32::new(times),
            failure,
            next_id: AtomicU64::new(1),
        });
        let app = Router::new()
            .fallback(fake_stripe)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base_url: format!("http://{address}"),
            state,
        }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    fn gateway(&self) -> StripeGateway {
        StripeGateway::with_retry(
            &StripeSecretKey::new(SECRET),
            &self.base_url,
            fast_retries(),
        )
        .unwrap()
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        first_backoff: Duration::from_millis(10),
        attempt_timeout: Duration::from_secs(10),
    }
}

fn json_response(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn stripe_error(status: u16, error: Value) -> Response {
    json_response(status, json!({ "error": error }))
}

/// A PaymentIntent with every field async-stripe's deserializer requires (and a few more).
fn payment_intent(id: &str, amount: i64, currency: &str, status: &str, order_id: &str) -> Value {
    json!({
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": if status == "requires_capture" { amount } else { 0 },
        "amount_received": if status == "succeeded" { amount } else { 0 },
        "capture_method": "manual",
        "client_secret": format!("{id}_secret_fake"),
        "confirmation_method": "automatic",
        "created": 1_763_700_000,
        "currency": currency,
        "livemode": false,
        "metadata": { "order_id": order_id },
        "payment_method": "pm_1Fake",
        "payment_method_types": ["card"],
        "status": status,
        "last_payment_error": null,
        "next_action": null
    })
}

async fn fake_stripe(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let recorded = Recorded {
        method: method.clone(),
        path: uri.path().to_owned(),
        form,
        idempotency_key: header("idempotency-key"),
        authorization: header("authorization"),
        content_type: header("content-type"),
    };
    state.requests.lock().unwrap().push(recorded.clone());

    if state
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return match state.failure {
            Failure::Stripe(status) => stripe_error(
                status,
                json!({"type": "api_error", "message": "An unknown error occurred"}),
            ),
            Failure::ProxyPage => (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response(),
        };
    }

    // route on what follows `/v1/`, so a base URL with a path prefix works too
    let Some((_, route)) = recorded.path.split_once("/v1/") else {
        return stripe_error(
            404,
            json!({"type": "invalid_request_error", "message": "Unrecognized request URL"}),
        );
    };
    let segments: Vec<&str> = route.split('/').collect();
    let form = |name: &str| recorded.param(name).unwrap_or_default().to_owned();
    let amount = |name: &str| form(name).parse::<i64>().unwrap_or(0);
    match (method, segments.as_slice()) {
        (Method::POST, ["payment_intents"]) => {
            let id = format!("pi_fake_{}", state.next_id.fetch_add(1, Ordering::SeqCst));
            let (amount, currency, order_id) = (
                amount("amount"),
                form("currency"),
                form("metadata[order_id]"),
            );
            match form("payment_method").as_str() {
                "pm_card_visa" => json_response(
                    200,
                    payment_intent(&id, amount, &currency, "requires_capture", &order_id),
                ),
                "pm_card_authenticationRequired" => json_response(
                    200,
                    payment_intent(&id, amount, &currency, "requires_action", &order_id),
                ),
                "pm_card_chargeDeclinedInsufficientFunds" => {
                    let error = json!({
                        "type": "card_error",
                        "code": "card_declined",
                        "decline_code": "insufficient_funds",
                        "message": "Your card has insufficient funds.",
                        "doc_url": "https://stripe.com/docs/error-codes/card-declined",
                    });
                    let mut intent = payment_intent(
                        &id,
                        amount,
                        &currency,
                        "requires_payment_method",
                        &order_id,
                    );
                    intent["last_payment_error"] = error.clone();
                    let mut error = error;
                    error["payment_intent"] = intent;
                    stripe_error(402, error)
                }
                "pm_card_chargeDeclined" => stripe_error(
                    402,
                    json!({
                        "type": "card_error",
                        "code": "card_declined",
                        "decline_code": "generic_decline",
                        "message": "Your card was declined.",
                    }),
                ),
                other => stripe_error(
                    400,
                    json!({
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "param": "payment_method",
                        "message": format!("No such PaymentMethod: '{other}'"),
                    }),
                ),
            }
        }
        (Method::POST, ["payment_intents", "pi_missing", _]) => stripe_error(
            404,
            json!({
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": "intent",
                "message": "No such payment_intent: 'pi_missing'",
            }),
        ),
        (Method::POST, ["payment_intents", id, "capture"]) => json_response(
            200,
            payment_intent(id, amount("amount_to_capture"), "eur", "succeeded", "o"),
        ),
        // Stripe refuses to cancel a captured intent, with the intent in the error ("_bare":
        // without it, so the adapter must retrieve it)
        (Method::POST, ["payment_intents", id, "cancel"]) if id.starts_with("pi_captured") => {
            let mut error = json!({
                "type": "invalid_request_error",
                "code": "payment_intent_unexpected_state",
                "message": "You cannot cancel this PaymentIntent because it has a status of succeeded.",
            });
            if !id.ends_with("_bare") {
                error["payment_intent"] = payment_intent(id, 1000, "eur", "succeeded", "o");
            }
            stripe_error(400, error)
        }
        (Method::GET, ["payment_intents", id]) => {
            json_response(200, payment_intent(id, 1000, "eur", "succeeded", "o"))
        }
        (Method::POST, ["payment_intents", id, "cancel"]) => {
            json_response(200, payment_intent(id, 1000, "eur", "canceled", "o"))
        }
        (Method::POST, ["refunds"]) => json_response(
            200,
            json!({
                "id": format!("re_fake_{}", state.next_id.fetch_add(1, Ordering::SeqCst)),
                "object": "refund",
                "amount": amount("amount"),
                "currency": "eur",
                "created": 1_763_700_100,
                "payment_intent": form("payment_intent"),
                "status": "succeeded",
                "metadata": {},
            }),
        ),
        _ => stripe_error(
            404,
            json!({"type": "invalid_request_error", "message": "Unrecognized request URL"}),
        ),
    }
}

mod stripe {
    use super::*;

    #[tokio::test]
    async fn authorize_creates_a_confirmed_manual_capture_intent_with_the_idempotency_key() {
        let fake = FakeStripe::start().await;
        let order_id = Uuid::from_u128(0x1234);
        let outcome = fake
            .gateway()
            .authorize(request(
                &format!("{order_id}:authorize"),
                1000,
                "pm_card_visa",
            ))
            .await;
        assert_eq!(
            outcome,
            Ok(AuthorizeOutcome::Authorized {
                provider_ref: "pi_fake_1".into()
            })
        );

        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        let sent = &requests[0];
        assert_eq!(sent.method, Method::POST);
        assert_eq!(sent.path, "/v1/payment_intents");
        assert_eq!(
            sent.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            sent.authorization.as_deref(),
            Some(format!("Bearer {SECRET}").as_str())
        );
        assert_eq!(
            sent.idempotency_key.as_deref(),
            Some(format!("{order_id}:authorize").as_str())
        );
        assert_eq!(sent.param("amount"), Some("1000"));
        assert_eq!(sent.param("currency"), Some("eur"));
        assert_eq!(sent.param("confirm"), Some("true"));
        assert_eq!(sent.param("capture_method"), Some("manual"));
        assert_eq!(sent.param("payment_method"), Some("pm_card_visa"));
        assert_eq!(
            sent.param("metadata[order_id]"),
            Some(order_id.to_string().as_str())
        );
    }

    #[tokio::test]
    async fn a_card_error_is_a_decline_with_stripes_message_and_decline_code() {
        let fake = FakeStripe::start().await;
        let outcome = fake
            .gateway()
            .authorize(request(
                "k",
                1000,
                "pm_card_chargeDeclinedInsufficientFunds",
            ))
            .await;
        assert_eq!(
            outcome,
            Ok(AuthorizeOutcome::Declined {
                provider_ref: Some("pi_fake_1".into()),
                reason: "Your card has insufficient funds.".into(),
                code: Some("insufficient_funds".into()),
            })
        );
        assert_eq!(
            fake.requests().len(),
            1,
            "a decline is an answer, not retried"
        );

        let outcome = fake
            .gateway()
            .authorize(request("k2", 1000, "pm_card_chargeDeclined"))
            .await;
        assert_eq!(
            outcome,
            Ok(AuthorizeOutcome::Declined {
                provider_ref: None,
                reason: "Your card was declined.".into(),
                code: Some("generic_decline".into()),
            })
        );
    }

    #[tokio::test]
    async fn an_intent_that_requires_authentication_is_declined() {
        let fake = FakeStripe::start().await;
        let outcome = fake
            .gateway()
            .authorize(request("k", 1000, "pm_card_authenticationRequired"))
            .await;
        let Ok(AuthorizeOutcome::Declined {
            provider_ref,
            reason,
            code,
        }) = outcome
        else {
            panic!("expected a decline, got {outcome:?}");
        };
        assert_eq!(provider_ref.as_deref(), Some("pi_fake_1"));
        assert!(reason.contains("authentication"), "{reason}");
        assert_eq!(code.as_deref(), Some("authentication_required"));
    }

    #[tokio::test]
    async fn other_client_errors_are_rejected_without_retry() {
        let fake = FakeStripe::start().await;
        let outcome = fake
            .gateway()
            .authorize(request("k", 1000, "pm_unknown"))
            .await;
        assert!(
            matches!(&outcome, Err(GatewayError::Rejected(msg)) if msg.contains("No such PaymentMethod")),
            "{outcome:?}"
        );
        assert!(is_rejected(
            fake.gateway().capture("pi_missing", 100, "c").await
        ));
        assert_eq!(fake.requests().len(), 2);
    }

    #[tokio::test]
    async fn a_server_error_is_retried_with_the_same_idempotency_key() {
        let fake = FakeStripe::failing(1, Failure::Stripe(500)).await;
        let outcome = fake
            .gateway()
            .authorize(request("order-1:authorize", 1000, "pm_card_visa"))
            .await;
        assert!(
            matches!(outcome, Ok(AuthorizeOutcome::Authorized { .. })),
            "{outcome:?}"
        );
        let requests = fake.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(
            requests[0].idempotency_key.as_deref(),
            Some("order-1:authorize")
        );
        assert_eq!(requests[1].idempotency_key, requests[0].idempotency_key);
        assert_eq!(requests[1].form, requests[0].form);
    }

    #[tokio::test]
    async fn rate_limits_and_proxy_pages_are_retried_too() {
        let fake = FakeStripe::failing(2, Failure::Stripe(429)).await;
        let outcome = fake.gateway().capture("pi_1", 500, "cap-key").await;
        assert_eq!(outcome, Ok(()));
        let keys: Vec<_> = fake
            .requests()
            .into_iter()
            .map(|r| r.idempotency_key)
            .collect();
        assert_eq!(keys, vec![Some("cap-key".to_owned()); 3]);

        let fake = FakeStripe::failing(1, Failure::ProxyPage).await;
        let outcome = fake
            .gateway()
            .authorize(request("k", 1000, "pm_card_visa"))
            .await;
        assert!(
            matches!(outcome, Ok(AuthorizeOutcome::Authorized { .. })),
            "{outcome:?}"
        );
        assert_eq!(fake.requests().len(), 2);
    }

    #[tokio::test]
    async fn a_server_that_keeps_failing_is_unavailable_after_bounded_retries() {
        let fake = FakeStripe::failing(u32::MAX, Failure::Stripe(500)).await;
        // the default policy: 3 attempts, 100 ms then 400 ms apart
        let gateway = StripeGateway::new(&StripeSecretKey::new(SECRET), &fake.base_url).unwrap();
        let started = Instant::now();
        let outcome = gateway.authorize(request("k", 1000, "pm_card_visa")).await;
        assert!(
            matches!(outcome, Err(GatewayError::Unavailable(_))),
            "{outcome:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(500));
        let requests = fake.requests();
        assert_eq!(requests.len(), 3);
        assert!(requests
            .iter()
            .all(|r| r.idempotency_key.as_deref() == Some("k")));
    }

    #[tokio::test]
    async fn a_connection_failure_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let gateway = StripeGateway::with_retry(
            &StripeSecretKey::new(SECRET),
            &format!("http://{address}"),
            fast_retries(),
        )
        .unwrap();
        let outcome = gateway.cancel("pi_1", "k").await;
        assert!(
            matches!(outcome, Err(GatewayError::Unavailable(_))),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn capture_sends_amount_to_capture() {
        let fake = FakeStripe::start().await;
        fake.gateway()
            .capture("pi_123", 750, "order-1:capture")
            .await
            .unwrap();
        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, Method::POST);
        assert_eq!(requests[0].path, "/v1/payment_intents/pi_123/capture");
        assert_eq!(requests[0].param("amount_to_capture"), Some("750"));
        assert_eq!(
            requests[0].idempotency_key.as_deref(),
            Some("order-1:capture")
        );
    }

    #[tokio::test]
    async fn cancel_hits_the_cancel_endpoint() {
        let fake = FakeStripe::start().await;
        fake.gateway()
            .cancel("pi_123", "order-1:cancel")
            .await
            .unwrap();
        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, Method::POST);
        assert_eq!(requests[0].path, "/v1/payment_intents/pi_123/cancel");
        assert_eq!(
            requests[0].idempotency_key.as_deref(),
            Some("order-1:cancel")
        );
    }

    #[tokio::test]
    async fn cancel_of_a_captured_intent_says_it_was_captured() {
        let fake = FakeStripe::start().await;
        let gateway = fake.gateway();
        assert_eq!(
            gateway.cancel("pi_captured", "order-1:cancel").await,
            Ok(CancelOutcome::AlreadyCaptured)
        );
        assert_eq!(
            gateway.cancel("pi_captured_bare", "order-2:cancel").await,
            Ok(CancelOutcome::AlreadyCaptured)
        );
        let requests = fake.requests();
        let paths: Vec<_> = requests
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(
            paths,
            [
                "POST /v1/payment_intents/pi_captured/cancel",
                "POST /v1/payment_intents/pi_captured_bare/cancel",
                "GET /v1/payment_intents/pi_captured_bare",
            ]
        );
        assert_eq!(
            gateway.cancel("pi_123", "order-3:cancel").await,
            Ok(CancelOutcome::Cancelled)
        );
    }

    #[tokio::test]
    async fn refund_creates_a_refund_of_the_intent_and_returns_its_id() {
        let fake = FakeStripe::start().await;
        let refund = fake
            .gateway()
            .refund("pi_123", 300, "order-1:refund:1")
            .await
            .unwrap();
        assert_eq!(refund, "re_fake_1");
        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].path, "/v1/refunds");
        assert_eq!(requests[0].param("payment_intent"), Some("pi_123"));
        assert_eq!(requests[0].param("amount"), Some("300"));
        assert_eq!(
            requests[0].idempotency_key.as_deref(),
            Some("order-1:refund:1")
        );
    }

    #[tokio::test]
    async fn a_base_url_with_a_path_prefix_keeps_it() {
        let fake = FakeStripe::start().await;
        let gateway = StripeGateway::with_retry(
            &StripeSecretKey::new(SECRET),
            &format!("{}/stripe", fake.base_url),
            fast_retries(),
        )
        .unwrap();
        assert!(gateway.base_url().ends_with("/stripe/"));
        gateway.cancel("pi_1", "k").await.unwrap();
        assert_eq!(
            fake.requests()[0].path,
            "/stripe/v1/payment_intents/pi_1/cancel"
        );
    }

    #[test]
    fn configuration_is_checked_and_the_secret_never_shows() {
        let key = StripeSecretKey::new(SECRET);
        assert!(!format!("{key:?}").contains("sk_test_51"));
        let gateway = StripeGateway::new(&key, "https://api.stripe.com").unwrap();
        assert_eq!(gateway.base_url(), "https://api.stripe.com/");
        assert!(!format!("{gateway:?}").contains("Fake0000"));
        for bad in ["api.stripe.com", "ftp://x", "http://", "http:///v1"] {
            assert!(
                matches!(
                    StripeGateway::new(&key, bad),
                    Err(StripeConfigError::InvalidBaseUrl { .. })
                ),
                "{bad}"
            );
        }
        let refused = StripeGateway::new(
            &StripeSecretKey::new("sk_test_bad\nkey"),
            "https://api.stripe.com",
        );
        let Err(StripeConfigError::Client(msg)) = refused else {
            panic!("a key with a newline")
        };
        assert!(!msg.contains("bad"), "{msg}");
    }
}

// ---------------------------------------------------------------------------------------------
// webhooks

mod webhooks {
    use super::*;

    const WHSEC: &str = "whsec_test_3f1c2a";
    const NOW: i64 = 1_763_700_000;
    const PAYLOAD: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;

    #[test]
    fn a_valid_signature_is_accepted() {
        let header = webhook::sign(PAYLOAD, WHSEC, NOW - 10);
        assert!(header.starts_with(&format!("t={},v1=", NOW - 10)));
        assert_eq!(
            webhook::verify(PAYLOAD, &header, WHSEC, NOW, TOLERANCE_SECS),
            Ok(())
        );
    }

    #[test]
    fn the_signature_matches_stripes_published_algorithm() {
        // hex(HMAC-SHA256("whsec_test_3f1c2a", "1763700000." + payload)), computed independently:
        // printf '%s' '1763700000.{"id":"evt_1","type":"payment_intent.succeeded"}' |
        //   openssl dgst -sha256 -hmac whsec_test_3f1c2a
        let header = webhook::sign(PAYLOAD, WHSEC, NOW);
        let expected = "cd17aafa7dc0d4eeef05f0ba510da92a15b3ae305eea50d48871a25f42db5e8f";
        assert_eq!(header, format!("t={NOW},v1={expected}"));
    }

    #[test]
    fn one_valid_signature_among_several_is_enough() {
        let valid = webhook::sign(PAYLOAD, WHSEC, NOW);
        let valid_v1 = valid.split_once(",v1=").unwrap().1;
        let other = webhook::sign(PAYLOAD, "whsec_old", NOW);
        let other_v1 = other.split_once(",v1=").unwrap().1;
        let header = format!("t={NOW},v1={other_v1},v1={valid_v1},v0=deadbeef");
        assert_eq!(
            webhook::verify(PAYLOAD, &header, WHSEC, NOW, TOLERANCE_SECS),
            Ok(())
        );
        let header = format!("t={NOW}, v0=00, v1={valid_v1}");
        assert_eq!(
            webhook::verify(PAYLOAD, &header, WHSEC, NOW, TOLERANCE_SECS),
            Ok(())
        );
    }

    #[test]
    fn a_wrong_secret_or_a_tampered_payload_is_a_bad_signature() {
        let header = webhook::sign(PAYLOAD, "whsec_someone_else", NOW);
        assert_eq!(
            webhook::verify(PAYLOAD, &header, WHSEC, NOW, TOLERANCE_SECS),
            Err(WebhookError::BadSignature)
        );
        let header = webhook::sign(PAYLOAD, WHSEC, NOW);
        let tampered = br#"{"id":"evt_1","type":"payment_intent.succeeded" }"#;
        assert_eq!(
            webhook::verify(tampered, &header, WHSEC, NOW, TOLERANCE_SECS),
            Err(WebhookError::BadSignature)
        );
        // the timestamp is signed too
        let moved = header.replace(&format!("t={NOW}"), &format!("t={}", NOW + 1));
        assert_eq!(
            webhook::verify(PAYLOAD, &moved, WHSEC, NOW, TOLERANCE_SECS),
            Err(WebhookError::BadSignature)
        );
        let v0_only = format!("t={NOW},v1={},v0=ab", "00".repeat(32));
        assert_eq!(
            webhook::verify(PAYLOAD, &v0_only, WHSEC, NOW, TOLERANCE_SECS),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_stale_either_way() {
        let old = NOW - TOLERANCE_SECS - 1;
        let header = webhook::sign(PAYLOAD, WHSEC, old);
        assert_eq!(
            webhook::verify(PAYLOAD, &header, WHSEC, NOW, TOLERANCE_SECS),
            Err(WebhookError::Stale {
                timestamp: old,
                now: NOW,
                tolerance_secs: TOLERANCE_SECS
            })
        );
        let future = NOW + TOLERANCE_SECS + 1;
        let header = webhook::sign(PAYLOAD, WHSEC, future);
        assert!(matches!(
            webhook::verify(PAYLOAD, &header, WHSEC, NOW, TOLERANCE_SECS),
            Err(WebhookError::Stale { .. })
        ));
        // at the edge: accepted
        for edge in [NOW - TOLERANCE_SECS, NOW + TOLERANCE_SECS] {
            let header = webhook::sign(PAYLOAD, WHSEC, edge);
            assert_eq!(
                webhook::verify(PAYLOAD, &header, WHSEC, NOW, TOLERANCE_SECS),
                Ok(())
            );
        }
        // an absurd timestamp does not overflow
        let header = webhook::sign(PAYLOAD, WHSEC, i64::MIN);
        assert!(matches!(
            webhook::verify(PAYLOAD, &header, WHSEC, i64::MAX, TOLERANCE_SECS),
            Err(WebhookError::Stale { .. })
        ));
    }

    #[test]
    fn malformed_headers_are_refused_with_their_reason() {
        let signature = "ab".repeat(32);
        let cases = [
            (format!("v1={signature}"), WebhookError::MissingTimestamp),
            (format!("t={NOW}"), WebhookError::NoSignatures),
            (
                format!("t={NOW},v0={signature}"),
                WebhookError::NoSignatures,
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(
                webhook::verify(PAYLOAD, &header, WHSEC, NOW, TOLERANCE_SECS),
                Err(expected),
                "{header}"
            );
        }
        for header in [
            String::new(),
            "garbage".to_owned(),
            format!("t=yesterday,v1={signature}"),
            format!("t={NOW},t={NOW},v1={signature}"),
            format!("t={NOW},v1=not-hex"),
            format!("t={NOW};v1={signature}"),
        ] {
            assert!(
                matches!(
                    webhook::verify(PAYLOAD, &header, WHSEC, NOW, TOLERANCE_SECS),
                    Err(WebhookError::Malformed(_))
                ),
                "{header:?}"
            );
        }
    }

    fn event(event_type: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": "evt_3QxYz2Fake",
            "object": "event",
            "api_version": "2025-09-30.clover",
            "created": 1_763_700_123,
            "data": { "object": object },
            "livemode": false,
            "pending_webhooks": 1,
            "request": { "id": "req_Fake", "idempotency_key": "order:authorize" },
            "type": event_type,
        }))
        .unwrap()
    }

    fn intent(status: &str, amount_capturable: i64, amount_received: i64, error: Value) -> Value {
        json!({
            "id": "pi_3QxYz2Fake",
            "object": "payment_intent",
            "amount": 2599,
            "amount_capturable": amount_capturable,
            "amount_details": { "tip": {} },
            "amount_received": amount_received,
            "capture_method": "manual",
            "client_secret": "pi_3QxYz2Fake_secret_abc",
            "created": 1_763_700_100,
            "currency": "eur",
            "last_payment_error": error,
            "latest_charge": "ch_3QxYz2Fake",
            "livemode": false,
            "metadata": { "order_id": "0191f1d2-7c3e-7a4b-9c1d-2e3f4a5b6c7d", "cart": "x" },
            "payment_method": "pm_1QxYz2Fake",
            "payment_method_types": ["card"],
            "status": status,
        })
    }

    #[test]
    fn parses_an_amount_capturable_updated_event() {
        let payload = event(
            "payment_intent.amount_capturable_updated",
            intent("requires_capture", 2599, 0, Value::Null),
        );
        let event = webhook::parse_event(&payload).unwrap();
        assert_eq!(event.id, "evt_3QxYz2Fake");
        assert_eq!(event.event_type, "payment_intent.amount_capturable_updated");
        assert_eq!(event.kind(), StripeEventKind::AmountCapturableUpdated);
        assert_eq!(event.created, 1_763_700_123);
        assert!(!event.livemode);
        assert_eq!(event.object.id, "pi_3QxYz2Fake");
        assert_eq!(event.object.object.as_deref(), Some("payment_intent"));
        assert_eq!(event.object.status.as_deref(), Some("requires_capture"));
        assert_eq!(event.object.amount, Some(2599));
        assert_eq!(event.object.amount_capturable, Some(2599));
        assert_eq!(event.object.amount_received, Some(0));
        assert_eq!(
            event.object.order_id.as_deref(),
            Some("0191f1d2-7c3e-7a4b-9c1d-2e3f4a5b6c7d")
        );
        assert_eq!(
            event.order_id(),
            Some(Uuid::parse_str("0191f1d2-7c3e-7a4b-9c1d-2e3f4a5b6c7d").unwrap())
        );
        assert_eq!(event.object.last_payment_error, None);
    }

    #[test]
    fn parses_a_succeeded_event() {
        let payload = event(
            "payment_intent.succeeded",
            intent("succeeded", 0, 2599, Value::Null),
        );
        let event = webhook::parse_event(&payload).unwrap();
        assert_eq!(event.kind(), StripeEventKind::Succeeded);
        assert_eq!(event.object.status.as_deref(), Some("succeeded"));
        assert_eq!(event.object.amount_received, Some(2599));
    }

    #[test]
    fn parses_a_payment_failed_event() {
        let error = json!({
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
            "payment_method": { "id": "pm_1QxYz2Fake", "object": "payment_method", "type": "card" },
        });
        let payload = event(
            "payment_intent.payment_failed",
            intent("requires_payment_method", 0, 0, error),
        );
        let event = webhook::parse_event(&payload).unwrap();
        assert_eq!(event.kind(), StripeEventKind::PaymentFailed);
        assert_eq!(
            event.object.status.as_deref(),
            Some("requires_payment_method")
        );
        assert_eq!(
            event.object.last_payment_error.as_deref(),
            Some("Your card has insufficient funds.")
        );
        assert_eq!(
            event.object.last_payment_error_code.as_deref(),
            Some("insufficient_funds")
        );
    }

    #[test]
    fn other_events_and_bad_payloads() {
        let charge = json!({ "id": "ch_1", "object": "charge", "amount": 100, "metadata": {} });
        let event = webhook::parse_event(&event("charge.dispute.created", charge)).unwrap();
        assert_eq!(event.kind(), StripeEventKind::Other);
        assert_eq!(event.object.order_id, None);
        assert_eq!(event.order_id(), None);
        for bad in [
            &b"not json"[..],
            br#"{"id":"evt_1","type":"x","created":1}"#,
            br#"{"id":"evt_1","type":"x","created":1,"data":{"object":{}}}"#,
        ] {
            assert!(matches!(
                webhook::parse_event(bad),
                Err(WebhookError::InvalidEvent(_))
            ));
        }
    }

    #[test]
    fn a_signed_event_verifies_and_parses_end_to_end() {
        let payload = event(
            "payment_intent.succeeded",
            intent("succeeded", 0, 2599, Value::Null),
        );
        let header = webhook::sign(&payload, WHSEC, NOW);
        webhook::verify(&payload, &header, WHSEC, NOW + 5, TOLERANCE_SECS).unwrap();
        assert_eq!(
            webhook::parse_event(&payload).unwrap().object.id,
            "pi_3QxYz2Fake"
        );
        assert_eq!(webhook::SIGNATURE_HEADER, "Stripe-Signature");
    }
}
