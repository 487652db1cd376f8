//! `order(id)`, `me { orders }` and the staff's `orders`, `inventory`, `salesByDay`: fields,
//! pagination and who may read what.

use accounts::Role;
use serde_json::{json, Value};

use crate::harness::{assert_snapshot, code, no_errors, Harness};

const ORDER: &str = "query($id: UUID!) { order(id: $id) {
    id number customerId status failure tracking placedAt
    totals { subtotal { amountMinor } tax { amountMinor } shipping { amountMinor }
             total { amountMinor currency } refunded { amountMinor } }
    lines { line sku name quantity unitPrice { amountMinor } lineTotal { amountMinor } }
    timeline { event status detail at }
    payments { status amount { amountMinor } captured { amountMinor } }
    paymentStatus
} }";

#[tokio::test]
async fn an_order_is_for_its_customer_and_staff() {
    let h = Harness::start().await;
    h.catalog().await;
    let (alice, alice_token) = h.account(Role::Customer).await;
    let (_, bob_token) = h.account(Role::Customer).await;
    let (_, staff_token) = h.account(Role::Staff).await;
    let (_, auditor_token) = h.account(Role::Auditor).await;
    let (order, _) = h.confirmed_order(Some(alice), 1).await;
    let (guest_order, _) = h.confirmed_order(None, 2).await;
    h.project().await;

    let mine = h.gql(Some(&alice_token), ORDER, json!({"id": order})).await;
    no_errors(&mine);
    let view = &mine["data"]["order"];
    assert_eq!(view["status"], "CONFIRMED");
    assert_eq!(view["totals"]["total"]["amountMinor"], 12_900 + 2_451 + 499);
    assert_eq!(view["lines"][0]["lineTotal"]["amountMinor"], 12_900);
    assert_eq!(view["paymentStatus"], "authorized");
    let statuses: Vec<&str> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["AWAITING_STOCK", "AWAITING_PAYMENT", "CONFIRMED"]
    );
    assert_snapshot("order", &mine);

    let staff = h.gql(Some(&staff_token), ORDER, json!({"id": order})).await;
    no_errors(&staff);
    assert_eq!(staff["data"]["order"]["id"], order.to_string());
    for (token, expected) in [
        (Some(bob_token.as_str()), "forbidden"),
        (Some(auditor_token.as_str()), "forbidden"),
        (None, "unauthorized"),
    ] {
        let refused = h.gql(token, ORDER, json!({"id": order})).await;
        assert_eq!(code(&refused), expected, "{refused}");
    }
    // a guest's order: whoever holds its id
    let guest = h.gql(None, ORDER, json!({"id": guest_order})).await;
    no_errors(&guest);
    assert_eq!(guest["data"]["order"]["customerId"], Value::Null);
    let missing = h
        .gql(None, ORDER, json!({"id": uuid::Uuid::new_v4()}))
        .await;
    assert_eq!(missing["data"]["order"], Value::Null);
    h.drop().await;
}

#[tokio::test]
async fn my_orders_page_newest_first_and_staff_see_everything() {
    let h = Harness::start().await;
    h.catalog().await;
    let (alice, alice_token) = h.account(Role::Customer).await;
    let (bob, _) = h.account(Role::Customer).await;
    let (_, staff_token) = h.account(Role::Staff).await;
    let mut alices = Vec::new();
    for number in 1..=3 {
        alices.push(h.confirmed_order(Some(alice), number).await.0);
    }
    let (bobs, _) = h.confirmed_order(Some(bob), 4).await;
    h.ship(alices[0]).await;
    h.project().await;

    let me = "query($after: String) { me { id role email
        orders(first: 2, after: $after) { totalCount
          pageInfo { hasNextPage hasPreviousPage endCursor } edges { node { id number } } } } }";
    let page1 = h.gql(Some(&alice_token), me, json!({})).await;
    no_errors(&page1);
    assert_eq!(page1["data"]["me"]["id"], alice.to_string());
    assert_eq!(page1["data"]["me"]["role"], "customer");
    assert!(page1["data"]["me"]["email"]
        .as_str()
        .unwrap()
        .ends_with("@example.com"));
    let orders = &page1["data"]["me"]["orders"];
    assert_eq!(orders["totalCount"], 3);
    let numbers = |page: &Value| -> Vec<i64> {
        page["data"]["me"]["orders"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["number"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(numbers(&page1), [3, 2]);
    assert_eq!(orders["pageInfo"]["hasNextPage"], true);
    let after = orders["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
    let page2 = h.gql(Some(&alice_token), me, json!({"after": after})).await;
    assert_eq!(numbers(&page2), [1]);
    assert_eq!(
        page2["data"]["me"]["orders"]["pageInfo"]["hasNextPage"],
        false
    );
    assert_eq!(
        page2["data"]["me"]["orders"]["pageInfo"]["hasPreviousPage"],
        true
    );
    let bad = h
        .gql(Some(&alice_token), me, json!({"after": "00ff"}))
        .await;
    assert_eq!(code(&bad), "validation");
    let guest = h.gql(None, "{ me { id } }", json!({})).await;
    assert_eq!(code(&guest), "unauthorized");

    // staff: every order, filtered
    let staff_orders = "query($filter: OrderFilter) { orders(filter: $filter, first: 10) {
        totalCount edges { node { number status customerId } } } }";
    let all = h.gql(Some(&staff_token), staff_orders, json!({})).await;
    no_errors(&all);
    assert_eq!(all["data"]["orders"]["totalCount"], 4);
    let shipped = h
        .gql(
            Some(&staff_token),
            staff_orders,
            json!({"filter": {"status": "SHIPPED"}}),
        )
        .await;
    assert_eq!(shipped["data"]["orders"]["totalCount"], 1);
    assert_eq!(shipped["data"]["orders"]["edges"][0]["node"]["number"], 1);
    let of_bob = h
        .gql(
            Some(&staff_token),
            staff_orders,
            json!({"filter": {"customerId": bob}}),
        )
        .await;
    assert_eq!(of_bob["data"]["orders"]["totalCount"], 1);
    let _ = bobs;
    let refused = h.gql(Some(&alice_token), staff_orders, json!({})).await;
    assert_eq!(code(&refused), "forbidden");

    // staff: stock with its reservations, and sales by day
    let inventory = "{ inventory(sku: \"HP-1\") { sku onHand reserved available
        reservations { orderId quantity expiresAt } } }";
    let stock = h.gql(Some(&staff_token), inventory, json!({})).await;
    no_errors(&stock);
    assert_eq!(stock["data"]["inventory"]["onHand"], 5);
    assert_eq!(stock["data"]["inventory"]["reserved"], 4);
    assert_eq!(stock["data"]["inventory"]["available"], 1);
    assert_eq!(
        stock["data"]["inventory"]["reservations"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        code(&h.gql(Some(&alice_token), inventory, json!({})).await),
        "forbidden"
    );
    assert_eq!(
        code(&h.gql(None, inventory, json!({})).await),
        "unauthorized"
    );

    let today = chrono::Utc::now().date_naive();
    let sales = "query($from: NaiveDate!, $to: NaiveDate!) { salesByDay(from: $from, to: $to) {
        day units revenue { amountMinor currency } products { sku units revenue { amountMinor } } } }";
    let range =
        json!({"from": today - chrono::Duration::days(1), "to": today + chrono::Duration::days(1)});
    let by_day = h.gql(Some(&staff_token), sales, range.clone()).await;
    no_errors(&by_day);
    let days = by_day["data"]["salesByDay"].as_array().unwrap();
    let units: i64 = days.iter().map(|d| d["units"].as_i64().unwrap()).sum();
    assert_eq!(units, 4, "four confirmed orders of one unit: {by_day}");
    let reversed = json!({"from": today, "to": today - chrono::Duration::days(1)});
    assert_eq!(
        code(&h.gql(Some(&staff_token), sales, reversed).await),
        "validation"
    );
    let too_long = json!({"from": today - chrono::Duration::days(400), "to": today});
    assert_eq!(
        code(&h.gql(Some(&staff_token), sales, too_long).await),
        "validation"
    );
    assert_eq!(
        code(&h.gql(Some(&alice_token), sales, range).await),
        "forbidden"
    );
    h.drop().await;
}
