//! `cart(id)`: its owner only (or the holder of a guest cart's Cart-Token); Redis first, the events when
//! Redis is behind the requested position.

use accounts::Role;
use domain::{CartCommand, Quantity, Sku};
use serde_json::{json, Value};

use crate::harness::{assert_snapshot, code, eur, meta, no_errors, Harness, GUEST_CART_TOKEN};

const CART: &str = "query($id: UUID!, $p: String) { cart(id: $id, position: $p) {
    id status customerId currency itemCount source orderId
    lines { sku quantity unitPrice { amountMinor currency } lineTotal { amountMinor } }
    coupon { code percentOff amountOff { amountMinor } }
    totals { subtotal { amountMinor } discount { amountMinor } total { amountMinor currency } }
} }";

#[tokio::test]
async fn a_cart_is_for_its_customer_and_a_guest_cart_for_the_holder_of_its_token() {
    let h = Harness::start().await;
    h.catalog().await;
    let (alice, alice_token) = h.account(Role::Customer).await;
    let (_, bob_token) = h.account(Role::Customer).await;
    let (_, staff_token) = h.account(Role::Staff).await;
    let (cart, _) = h.cart(Some(alice)).await;
    let (guest_cart, _) = h.cart(None).await;
    h.project().await;

    let mine = h.gql(Some(&alice_token), CART, json!({"id": cart})).await;
    no_errors(&mine);
    let view = &mine["data"]["cart"];
    assert_eq!(view["source"], "redis");
    assert_eq!(view["itemCount"], 2);
    assert_eq!(view["totals"]["subtotal"]["amountMinor"], 25_800);
    assert_eq!(view["totals"]["discount"]["amountMinor"], 2_580);
    assert_eq!(view["totals"]["total"]["amountMinor"], 23_220);
    assert_eq!(view["coupon"]["percentOff"], 10);
    assert_eq!(view["customerId"], alice.to_string());
    assert_snapshot("cart", &mine);

    for (token, expected) in [
        (Some(bob_token.as_str()), "forbidden"),
        (Some(staff_token.as_str()), "forbidden"),
        (None, "unauthorized"),
    ] {
        let refused = h.gql(token, CART, json!({"id": cart})).await;
        assert_eq!(code(&refused), expected, "{refused}");
        assert_eq!(refused["data"], Value::Null);
    }
    let (_, guest) = h
        .gql_with(
            None,
            CART,
            json!({"id": guest_cart}),
            &[("Cart-Token", GUEST_CART_TOKEN)],
        )
        .await;
    no_errors(&guest);
    assert_eq!(guest["data"]["cart"]["customerId"], Value::Null);
    // the id alone, or another secret, does not open a guest cart
    for headers in [
        &[][..],
        &[("Cart-Token", "not-the-secret-of-this-cart-0123456789")][..],
    ] {
        let (_, refused) = h
            .gql_with(None, CART, json!({"id": guest_cart}), headers)
            .await;
        assert_eq!(code(&refused), "forbidden", "{refused}");
        assert_eq!(refused["data"]["cart"], Value::Null);
    }
    let missing = h.gql(None, CART, json!({"id": uuid::Uuid::new_v4()})).await;
    no_errors(&missing);
    assert_eq!(missing["data"]["cart"], Value::Null);
    let malformed = h.gql(None, CART, json!({"id": "not-a-uuid"})).await;
    assert_eq!(code(&malformed), "validation");
    h.drop().await;
}

#[tokio::test]
async fn a_cart_read_right_after_a_command_sees_it_even_before_redis_does() {
    let h = Harness::start().await;
    h.catalog().await;
    let (alice, token) = h.account(Role::Customer).await;
    let (cart, _) = h.cart(Some(alice)).await;
    h.project().await;
    // a change the Redis projector has not seen (it is not running)
    let receipt = h
        .stores
        .carts
        .execute(
            &cart.to_string(),
            CartCommand::AddItem {
                sku: Sku::parse("MUG-1".to_owned()).unwrap(),
                quantity: Quantity::new(3).unwrap(),
                unit_price: eur(1_200),
            },
            &meta(),
        )
        .await
        .unwrap();
    let stale = h.gql(Some(&token), CART, json!({"id": cart})).await;
    assert_eq!(
        stale["data"]["cart"]["itemCount"], 2,
        "without a position: Redis as it is: {stale}"
    );
    let position = receipt.position.unwrap().to_string();
    let fresh = h
        .gql(Some(&token), CART, json!({"id": cart, "p": position}))
        .await;
    no_errors(&fresh);
    assert_eq!(fresh["data"]["cart"]["itemCount"], 5);
    assert_eq!(fresh["data"]["cart"]["source"], "events");
    // once Redis has it, Redis answers again
    h.project().await;
    let caught_up = h
        .gql(Some(&token), CART, json!({"id": cart, "p": position}))
        .await;
    assert_eq!(caught_up["data"]["cart"]["itemCount"], 5);
    assert_eq!(caught_up["data"]["cart"]["source"], "redis");
    h.drop().await;
}
