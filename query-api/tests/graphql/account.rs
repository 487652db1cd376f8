//! `me`'s own data: profile, address book (with defaults) and live sessions, each only the
//! caller's.

use accounts::address_book::{self, AddressLabel, Defaults};
use accounts::profile::{PersonName, PhoneNumber};
use accounts::Role;
use domain::Address;
use serde_json::json;

use crate::harness::{code, no_errors, Harness};

const ME: &str = "{ me { name phone
    addresses { id label address { name line1 line2 city postalCode country }
                defaultShipping defaultBilling }
    defaultShippingAddress { id } defaultBillingAddress { id }
    sessions { id device createdAt lastUsedAt expiresAt } } }";

#[tokio::test]
async fn me_shows_my_profile_addresses_and_sessions_and_nobody_elses() {
    let h = Harness::start().await;
    let (alice, alice_token, _refresh) = h.account_in_session(Role::Customer).await;
    let (bob, bob_token) = h.account(Role::Customer).await;
    accounts::profile::update(
        &h.db.pool,
        alice,
        &PersonName::parse("Alice").unwrap(),
        Some(&PhoneNumber::parse("+4930123456").unwrap()),
    )
    .await
    .unwrap();
    let home = address_book::add(
        &h.db.pool,
        alice,
        Some(&AddressLabel::parse("Home").unwrap()),
        &Address::new(
            "Alice",
            "1 Main St",
            Some("Apt 2".into()),
            "Berlin",
            "10115",
            "DE",
        )
        .unwrap(),
        Defaults {
            shipping: Some(true),
            billing: None,
        },
    )
    .await
    .unwrap();
    let office = address_book::add(
        &h.db.pool,
        alice,
        None,
        &Address::new("Alice", "9 Work Rd", None, "Paris", "75001", "FR").unwrap(),
        Defaults {
            shipping: None,
            billing: Some(true),
        },
    )
    .await
    .unwrap();
    address_book::add(
        &h.db.pool,
        bob,
        None,
        &Address::new("Bob", "5 Elm St", None, "Rome", "00100", "IT").unwrap(),
        Defaults::default(),
    )
    .await
    .unwrap();

    let response = h.gql(Some(&alice_token), ME, json!({})).await;
    no_errors(&response);
    let me = &response["data"]["me"];
    assert_eq!(
        (&me["name"], &me["phone"]),
        (&json!("Alice"), &json!("+4930123456"))
    );
    let addresses = me["addresses"].as_array().unwrap();
    assert_eq!(addresses.len(), 2, "{me}");
    assert_eq!(addresses[0]["id"], home.to_string());
    assert_eq!(addresses[0]["label"], "Home");
    assert_eq!(
        addresses[0]["address"],
        json!({"name": "Alice", "line1": "1 Main St", "line2": "Apt 2", "city": "Berlin",
               "postalCode": "10115", "country": "DE"})
    );
    assert_eq!(addresses[1]["address"]["city"], "Paris");
    assert_eq!(me["defaultShippingAddress"]["id"], home.to_string());
    assert_eq!(me["defaultBillingAddress"]["id"], office.to_string());
    let sessions = me["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{me}");

    // bob sees his own book only, and no session (his token is outside any)
    let response = h.gql(Some(&bob_token), ME, json!({})).await;
    no_errors(&response);
    let me = &response["data"]["me"];
    assert_eq!(me["addresses"].as_array().unwrap().len(), 1);
    assert_eq!(me["addresses"][0]["address"]["name"], "Bob");
    assert_eq!(me["defaultShippingAddress"], json!(null));
    assert_eq!(me["phone"], json!(null));
    assert_eq!(me["sessions"], json!([]));

    // a guest has no `me`
    let response = h.gql(None, ME, json!({})).await;
    assert_eq!(code(&response), "unauthorized", "{response}");

    // a revoked session leaves the list
    accounts::revoke_session(
        &h.db.pool,
        alice,
        sessions[0]["id"].as_str().unwrap().parse().unwrap(),
    )
    .await
    .unwrap();
    assert!(accounts::list_sessions(&h.db.pool, alice)
        .await
        .unwrap()
        .is_empty());
    h.drop().await;
}
