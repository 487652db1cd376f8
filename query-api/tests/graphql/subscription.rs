//! `orderStatus` over WebSocket (graphql-transport-ws): the current status, then each change of
//! the caller's own order; someone else's order is refused.

use std::time::Duration;

use accounts::Role;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::Harness;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(h: &Harness, token: &str) -> Socket {
    let mut request = h.ws_url().into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    send(
        &mut socket,
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}}),
    )
    .await;
    assert_eq!(next(&mut socket).await["type"], "connection_ack");
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next protocol message (pings answered), within 10 s.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == "ping" {
                send(socket, json!({"type": "pong"})).await;
                continue;
            }
            return value;
        }
    }
}

const SUBSCRIBE: &str =
    "subscription($id: UUID!) { orderStatus(orderId: $id) { orderId status previousStatus event version } }";

#[tokio::test]
async fn a_customer_receives_each_status_change_of_their_order() {
    let h = Harness::start().await;
    h.catalog().await;
    let (alice, alice_token) = h.account(Role::Customer).await;
    let (_, bob_token) = h.account(Role::Customer).await;
    let (order, _) = h.confirmed_order(Some(alice), 1).await;

    let mut socket = connect(&h, &alice_token).await;
    send(
        &mut socket,
        json!({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": {"id": order}}}),
    )
    .await;
    let first = next(&mut socket).await;
    assert_eq!(first["type"], "next", "{first}");
    let change = &first["payload"]["data"]["orderStatus"];
    assert_eq!(change["status"], "CONFIRMED");
    assert_eq!(change["previousStatus"], Value::Null);
    assert_eq!(change["version"], 3);

    h.ship(order).await;
    let shipped = next(&mut socket).await;
    let change = &shipped["payload"]["data"]["orderStatus"];
    assert_eq!(change["status"], "SHIPPED", "{shipped}");
    assert_eq!(change["previousStatus"], "CONFIRMED");
    assert_eq!(change["event"], "OrderShipped");
    assert_eq!(change["version"], 4);
    send(&mut socket, json!({"id": "1", "type": "complete"})).await;

    // someone else's order: an error with its code, nothing streamed
    let mut other = connect(&h, &bob_token).await;
    send(
        &mut other,
        json!({"id": "9", "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": {"id": order}}}),
    )
    .await;
    let refused = next(&mut other).await;
    assert_eq!(refused["type"], "next", "{refused}");
    assert_eq!(refused["payload"]["data"], Value::Null);
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"],
        "forbidden"
    );
    assert_eq!(next(&mut other).await["type"], "complete");
    h.drop().await;
}

#[tokio::test]
async fn a_bad_token_closes_the_connection() {
    let h = Harness::start().await;
    let mut request = h.ws_url().into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    send(
        &mut socket,
        json!({"type": "connection_init", "payload": {"Authorization": "Bearer forged"}}),
    )
    .await;
    let closed = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap();
    match closed {
        // refused before `connection_ack`: the server closes the socket
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_ne!(u16::from(frame.code), 1000, "{frame:?}");
            assert!(frame.reason.contains("invalid or expired"), "{frame:?}");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    h.drop().await;
}

#[tokio::test]
async fn a_subscription_ends_when_its_access_token_expires() {
    let h = Harness::start().await;
    h.catalog().await;
    let (alice, _) = h.account(Role::Customer).await;
    let (order, _) = h.confirmed_order(Some(alice), 1).await;
    let token = h.token_expiring_in(alice, Role::Customer, Duration::from_secs(2));

    let mut socket = connect(&h, &token).await;
    send(
        &mut socket,
        json!({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": {"id": order}}}),
    )
    .await;
    let first = next(&mut socket).await;
    assert_eq!(
        first["payload"]["data"]["orderStatus"]["status"], "CONFIRMED",
        "{first}"
    );

    // the token expires: the subscription ends with `unauthorized`, without any new event
    let ended = next(&mut socket).await;
    assert_eq!(
        (&ended["type"], &ended["id"]),
        (&json!("next"), &json!("1")),
        "{ended}"
    );
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"], "unauthorized",
        "{ended}"
    );
    let complete = next(&mut socket).await;
    assert_eq!(
        (&complete["type"], &complete["id"]),
        (&json!("complete"), &json!("1"))
    );

    // the connection was opened with that token: a new subscription on it is refused
    send(
        &mut socket,
        json!({"id": "2", "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": {"id": order}}}),
    )
    .await;
    let refused = next(&mut socket).await;
    assert_eq!(refused["payload"]["data"], Value::Null, "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "unauthorized",
        "{refused}"
    );
    assert_eq!(next(&mut socket).await["type"], "complete");
    h.drop().await;
}

#[tokio::test]
async fn a_signed_out_sessions_token_is_refused_before_it_expires() {
    let h = Harness::start().await;
    let (_, token, refresh) = h.account_in_session(Role::Customer).await;
    let me = h.gql(Some(&token), "{ me { id } }", json!({})).await;
    assert!(me["data"]["me"]["id"].is_string(), "{me}");

    accounts::end_session(&h.db.pool, &refresh).await.unwrap();
    // a live session is trusted for a few seconds per replica; then the logout counts
    tokio::time::sleep(Duration::from_millis(5_200)).await;
    let (status, refused) = h
        .gql_with(Some(&token), "{ me { id } }", json!({}), &[])
        .await;
    assert_eq!(status, 401, "{refused}");
    assert_eq!(refused["errors"][0]["extensions"]["code"], "unauthorized");

    // nor does it open a subscription connection
    let mut request = h.ws_url().into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket
        .send(Message::text(
            json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}})
                .to_string(),
        ))
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("an answer");
    let acknowledged =
        matches!(&answer, Some(Ok(Message::Text(text))) if text.contains("connection_ack"));
    assert!(
        !acknowledged,
        "a signed-out token opened a connection: {answer:?}"
    );
    h.drop().await;
}
