//! What the command API's test files share: the API served on a random port over a test
//! database, and the problem+json assertion.

use std::net::SocketAddr;
use std::time::Duration;

use command_api::AppState;
use eventlog::testing::TestDatabase;
use reqwest::{Client, StatusCode};
use serde_json::Value;

/// The command API over `state`, listening on a random local port.
pub struct Served {
    pub base: String,
    pub client: Client,
    pub state: AppState,
    pub db: TestDatabase,
}

/// Serves `state` (built on `db`) on 127.0.0.1 at a port the system picks.
pub async fn serve(db: TestDatabase, state: AppState) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = command_api::router(state.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Served {
        base: format!("http://{addr}"),
        client: Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        state,
        db,
    }
}

/// A problem+json answer with this status and error code.
#[allow(dead_code)] // not every test file checks problems
pub fn assert_problem(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["code"], code, "{body}");
}
