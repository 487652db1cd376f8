//! `/health/live` (the process answers) and `/health/ready` (it should get traffic: what that
//! means is the [`Readiness`] check each API passes).

use std::future::Future;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use sqlx::PgPool;

/// Whether this process should get traffic now.
pub trait Readiness: Clone + Send + Sync + 'static {
    /// `Err(reason)` while it should not; the reason is the 503's body.
    fn check(&self) -> impl Future<Output = Result<(), String>> + Send;
}

/// Ready while PostgreSQL answers.
impl Readiness for PgPool {
    async fn check(&self) -> Result<(), String> {
        match sqlx::query("SELECT 1").execute(self).await {
            Ok(_) => Ok(()),
            Err(_) => Err("database unavailable".to_owned()),
        }
    }
}

/// `/health/live` and `/health/ready`, the latter answering 200 `ready` or 503 with the reason.
pub fn router<S: Clone + Send + Sync + 'static, R: Readiness>(readiness: R) -> Router<S> {
    Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready::<R>))
        .with_state(readiness)
}

async fn ready<R: Readiness>(State(readiness): State<R>) -> (StatusCode, String) {
    match readiness.check().await {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::Request;
    use tower::ServiceExt;

    #[derive(Clone)]
    struct Fixed(Result<(), String>);

    impl Readiness for Fixed {
        async fn check(&self) -> Result<(), String> {
            self.0.clone()
        }
    }

    async fn get_status(readiness: Fixed, path: &str) -> (StatusCode, String) {
        let app: Router = router(readiness);
        let response = app
            .oneshot(Request::builder().uri(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn ready_answers_the_checks_reason_and_live_does_not_ask_it() {
        let lagging = Fixed(Err("read models lagging".into()));
        assert_eq!(
            get_status(lagging.clone(), "/health/ready").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "read models lagging".into()
            )
        );
        assert_eq!(
            get_status(lagging, "/health/live").await,
            (StatusCode::OK, "ok".into())
        );
        assert_eq!(
            get_status(Fixed(Ok(())), "/health/ready").await,
            (StatusCode::OK, "ready".into())
        );
    }
}
