//! `Product.reviews` and `Product.ratingSummary` from the reviews read model, and the
//! `RATING` sort of `products` from the search index: hidden reviews only for staff, the summary
//! following edits and moderation, pages, and typed errors.

use accounts::Role;
use chrono::Utc;
use domain::derived_ids::review_id_of;
use domain::{CustomerId, Rating, ReviewCommand, Sku};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{code, meta, no_errors, Harness};

const REVIEWS: &str = "query($sku: String!, $first: Int, $after: String, $sort: ReviewSort) {
  product(sku: $sku) {
    ratingSummary { average count histogram { stars count } }
    reviews(first: $first, after: $after, sort: $sort) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage }
      edges { node { id rating title text verifiedPurchase helpfulCount hidden } }
    }
  }
}";

/// Writes `customer`'s review of `sku`; its id.
async fn write(h: &Harness, customer: u128, sku: &str, stars: i64, verified: bool) -> String {
    let author = CustomerId::new(Uuid::from_u128(customer));
    let sku = Sku::parse(sku.to_owned()).unwrap();
    let review_id = review_id_of(author, &sku);
    let command = ReviewCommand::Write {
        review_id,
        author,
        sku,
        rating: Rating::new(stars).unwrap(),
        title: format!("{stars} stars"),
        text: "text".into(),
        verified_purchase: verified,
        at: Utc::now(),
    };
    let id = review_id.to_string();
    h.stores
        .reviews
        .execute(&id, command, &meta())
        .await
        .unwrap();
    id
}

async fn run(h: &Harness, id: &str, command: ReviewCommand) {
    h.stores
        .reviews
        .execute(id, command, &meta())
        .await
        .unwrap();
}

fn histogram(response: &Value) -> Vec<i64> {
    response["data"]["product"]["ratingSummary"]["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["count"].as_i64().unwrap())
        .collect()
}

fn titles(response: &Value) -> Vec<String> {
    response["data"]["product"]["reviews"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn reviews_and_the_rating_summary_follow_edits_votes_and_moderation() {
    let h = Harness::start().await;
    h.catalog().await;
    let five = write(&h, 1, "MUG-1", 5, true).await;
    let three = write(&h, 2, "MUG-1", 3, false).await;
    let _four = write(&h, 3, "MUG-1", 4, false).await;
    write(&h, 1, "HP-1", 2, false).await;
    run(
        &h,
        &three,
        ReviewCommand::VoteHelpful {
            voter: CustomerId::new(Uuid::from_u128(1)),
            at: Utc::now(),
        },
    )
    .await;
    h.project().await;

    let all = h.gql(None, REVIEWS, json!({"sku": "MUG-1"})).await;
    no_errors(&all);
    let summary = &all["data"]["product"]["ratingSummary"];
    assert_eq!(summary["count"], 3);
    assert_eq!(summary["average"], 4.0);
    assert_eq!(histogram(&all), [0, 0, 1, 1, 1]);
    assert_eq!(all["data"]["product"]["reviews"]["totalCount"], 3);
    let helpful = h
        .gql(
            None,
            REVIEWS,
            json!({"sku": "MUG-1", "sort": "MOST_HELPFUL"}),
        )
        .await;
    let top = &helpful["data"]["product"]["reviews"]["edges"][0]["node"];
    assert_eq!(
        (top["title"].as_str(), &top["helpfulCount"]),
        (Some("3 stars"), &json!(1))
    );
    let best = h
        .gql(
            None,
            REVIEWS,
            json!({"sku": "MUG-1", "sort": "HIGHEST_RATED"}),
        )
        .await;
    assert_eq!(titles(&best), ["5 stars", "4 stars", "3 stars"]);
    assert_eq!(
        best["data"]["product"]["reviews"]["edges"][0]["node"]["verifiedPurchase"],
        true
    );

    // an edit moves the review from 5 to 1 star; staff hide the 3-star one
    run(
        &h,
        &five,
        ReviewCommand::Edit {
            author: CustomerId::new(Uuid::from_u128(1)),
            rating: Rating::new(1).unwrap(),
            title: "1 star now".into(),
            text: "broke".into(),
            verified_purchase: false,
            at: Utc::now(),
        },
    )
    .await;
    run(
        &h,
        &three,
        ReviewCommand::Hide {
            reason: "spam".into(),
            at: Utc::now(),
        },
    )
    .await;
    h.project().await;
    let after = h
        .gql(
            None,
            REVIEWS,
            json!({"sku": "MUG-1", "sort": "LOWEST_RATED"}),
        )
        .await;
    no_errors(&after);
    let summary = &after["data"]["product"]["ratingSummary"];
    assert_eq!(summary["count"], 2);
    assert_eq!(summary["average"], 2.5);
    assert_eq!(histogram(&after), [1, 0, 0, 1, 0]);
    assert_eq!(titles(&after), ["1 star now", "4 stars"]);

    // staff see the hidden review too, marked
    let (_, staff) = h.account(Role::Staff).await;
    let moderated = h
        .gql(
            Some(&staff),
            REVIEWS,
            json!({"sku": "MUG-1", "sort": "LOWEST_RATED"}),
        )
        .await;
    no_errors(&moderated);
    assert_eq!(moderated["data"]["product"]["reviews"]["totalCount"], 3);
    let hidden: Vec<bool> = moderated["data"]["product"]["reviews"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["hidden"].as_bool().unwrap())
        .collect();
    // lowest rated first: 1 star, the hidden 3 stars, 4 stars
    assert_eq!(hidden, [false, true, false]);
    // ... and the summary still counts only visible reviews
    assert_eq!(moderated["data"]["product"]["ratingSummary"]["count"], 2);

    // pages
    let first = h
        .gql(
            None,
            REVIEWS,
            json!({"sku": "MUG-1", "first": 1, "sort": "LOWEST_RATED"}),
        )
        .await;
    assert_eq!(titles(&first), ["1 star now"]);
    assert_eq!(
        first["data"]["product"]["reviews"]["pageInfo"]["hasNextPage"],
        true
    );

    // a product without reviews
    let none = h.gql(None, REVIEWS, json!({"sku": "SPK-1"})).await;
    no_errors(&none);
    let summary = &none["data"]["product"]["ratingSummary"];
    assert_eq!(summary["count"], 0);
    assert!(summary["average"].is_null());
    assert_eq!(histogram(&none), [0, 0, 0, 0, 0]);
    assert_eq!(none["data"]["product"]["reviews"]["totalCount"], 0);

    // bad paging is a typed error
    let bad = h
        .gql(None, REVIEWS, json!({"sku": "MUG-1", "first": 1000}))
        .await;
    assert_eq!(code(&bad), "validation");
    h.drop().await;
}

#[tokio::test]
async fn products_sort_by_rating_with_their_summaries() {
    let h = Harness::start().await;
    h.catalog().await;
    // MUG-1: 4.5 over 2; HP-1: 4.5 over 4 (more reviews first); SPK-1: none (last)
    write(&h, 1, "MUG-1", 5, false).await;
    write(&h, 2, "MUG-1", 4, false).await;
    for (customer, stars) in [(1, 5), (2, 5), (3, 4), (4, 4)] {
        write(&h, customer, "HP-1", stars, false).await;
    }
    let hidden = write(&h, 5, "MUG-1", 1, false).await;
    run(
        &h,
        &hidden,
        ReviewCommand::Hide {
            reason: "abuse".into(),
            at: Utc::now(),
        },
    )
    .await;
    h.project().await;
    let query =
        "{ products(sort: RATING) { edges { node { sku ratingSummary { average count } } } } }";
    let sorted = h.gql(None, query, json!({})).await;
    no_errors(&sorted);
    let nodes: Vec<(String, Value, i64)> = sorted["data"]["products"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| {
            let node = &edge["node"];
            (
                node["sku"].as_str().unwrap().to_owned(),
                node["ratingSummary"]["average"].clone(),
                node["ratingSummary"]["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        [
            ("HP-1".to_owned(), json!(4.5), 4),
            ("MUG-1".to_owned(), json!(4.5), 2),
            ("SPK-1".to_owned(), Value::Null, 0),
        ]
    );
    h.drop().await;
}
