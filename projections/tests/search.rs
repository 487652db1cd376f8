//! The product search index against a real PostgreSQL event log: typo tolerance, facets,
//! filters, sorts, pagination, following changes, idempotent replays, resuming an on-disk index
//! and rebuilding an empty one.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use domain::{
    Currency, CustomerId, InventoryCommand, Money, OrderId, ProductCommand, Quantity, Rating,
    ReviewCommand, Sku,
};
use eventlog::testing::TestDatabase;
use eventlog::{Actor, EventMetadata, LogPosition};
use projections::search::{
    Facets, InvalidSearchRequest, PriceBand, SearchError, SearchFeed, SearchIndex, SearchPage,
    SearchRequest, SearchSort,
};
use schemas::stores::Stores;
use sqlx::PgPool;

const BATCH: usize = 1_000;

struct Shop {
    db: TestDatabase,
    stores: Stores,
    /// Position of the last event written, to wait for.
    last: LogPosition,
}

fn metadata() -> EventMetadata {
    EventMetadata::new(Actor::system("search-test"))
}

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, day, 12, 0, 0)
        .single()
        .expect("valid date")
}

fn eur(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::parse("EUR").expect("currency"))
}

fn order(n: u128) -> OrderId {
    OrderId::new(uuid::Uuid::from_u128(n))
}

impl Shop {
    async fn new() -> Shop {
        let db = TestDatabase::create(eventlog::migrate::MIGRATIONS, 4).await;
        let stores = Stores::new(&db.pool);
        Shop {
            db,
            stores,
            last: LogPosition::START,
        }
    }

    fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    fn seen(&mut self, position: Option<LogPosition>) {
        if let Some(position) = position {
            self.last = self.last.max(position);
        }
    }

    async fn product(&mut self, command: ProductCommand, sku: &str) {
        let receipt = self
            .stores
            .products
            .execute(sku, command, &metadata())
            .await
            .expect("product command");
        self.seen(receipt.position);
    }

    async fn create(
        &mut self,
        sku: &str,
        name: &str,
        description: &str,
        category: &str,
        price: i64,
        day: u32,
    ) {
        let command = ProductCommand::Create {
            sku: Sku::parse(sku).expect("sku"),
            name: name.to_owned(),
            description: description.to_owned(),
            category: category.to_owned(),
            price: eur(price),
            created_at: at(day),
        };
        self.product(command, sku).await;
    }

    async fn inventory(&mut self, sku: &str, command: InventoryCommand) {
        let receipt = self
            .stores
            .inventory
            .execute(sku, command, &metadata())
            .await
            .expect("inventory command");
        self.seen(receipt.position);
    }

    async fn receive(&mut self, sku: &str, quantity: u32) {
        let command = InventoryCommand::ReceiveStock {
            sku: Sku::parse(sku).expect("sku"),
            quantity: Quantity::new(quantity).expect("quantity"),
        };
        self.inventory(sku, command).await;
    }

    /// `customer`'s review of `sku` with `stars`; its stream id.
    async fn review(&mut self, customer: u128, sku: &str, stars: i64) -> String {
        let author = CustomerId::new(uuid::Uuid::from_u128(customer));
        let sku = Sku::parse(sku).expect("sku");
        let review_id = domain::derived_ids::review_id_of(author, &sku);
        let command = ReviewCommand::Write {
            review_id,
            author,
            sku,
            rating: Rating::new(stars).expect("stars"),
            title: "title".to_owned(),
            text: String::new(),
            verified_purchase: false,
            at: at(10),
        };
        let id = review_id.to_string();
        self.moderate(&id, command).await;
        id
    }

    async fn moderate(&mut self, review_id: &str, command: ReviewCommand) {
        let receipt = self
            .stores
            .reviews
            .execute(review_id, command, &metadata())
            .await
            .expect("review command");
        self.seen(receipt.position);
    }

    /// Eight products in four categories, five of them in stock:
    ///
    /// | sku | category | price | band | created | available |
    /// |---|---|---|---|---|---|
    /// | HP-1 | Audio | 129.00 | 100–250 | day 1 | 5 |
    /// | HP-2 | Audio | 79.00 | 50–100 | day 2 | 0 |
    /// | SPK-1 | Audio | 249.00 | 100–250 | day 3 | 2 |
    /// | MUG-1 | Kitchen | 9.00 | <10 | day 4 | 10 |
    /// | MUG-2 | Kitchen | 19.00 | 10–25 | day 5 | 0 (never received) |
    /// | KTL-1 | Kitchen | 39.00 | 25–50 | day 6 | 3 |
    /// | LMP-1 | Home | 45.00 | 25–50 | day 7 | 0 (1 received, 1 reserved) |
    /// | TV-1 | Video | 1299.00 | 250+ | day 8 | 1 |
    async fn seed(&mut self) {
        self.create(
            "HP-1",
            "Studio headphones",
            "Closed-back over-ear headphones for mixing",
            "Audio",
            12_900,
            1,
        )
        .await;
        self.create(
            "HP-2",
            "Wireless earbuds",
            "Bluetooth in-ear headphones with a charging case",
            "Audio",
            7_900,
            2,
        )
        .await;
        self.create(
            "SPK-1",
            "Bookshelf speaker",
            "A pair of passive speakers",
            "Audio",
            24_900,
            3,
        )
        .await;
        self.create(
            "MUG-1",
            "Coffee mug",
            "Stoneware mug, 350 ml",
            "Kitchen",
            900,
            4,
        )
        .await;
        self.create(
            "MUG-2",
            "Travel mug",
            "Insulated steel mug with a lid",
            "Kitchen",
            1_900,
            5,
        )
        .await;
        self.create(
            "KTL-1",
            "Electric kettle",
            "A 1.7 litre kettle that boils fast",
            "Kitchen",
            3_900,
            6,
        )
        .await;
        self.create(
            "LMP-1",
            "Desk lamp",
            "Dimmable LED lamp for the desk",
            "Home",
            4_500,
            7,
        )
        .await;
        self.create(
            "TV-1",
            "OLED television",
            "A 55 inch screen",
            "Video",
            129_900,
            8,
        )
        .await;
        self.receive("HP-1", 5).await;
        self.receive("SPK-1", 2).await;
        self.receive("MUG-1", 10).await;
        self.receive("KTL-1", 3).await;
        self.receive("LMP-1", 1).await;
        self.inventory(
            "LMP-1",
            InventoryCommand::Reserve {
                order_id: order(1),
                quantity: Quantity::new(1).expect("quantity"),
                expires_at: at(20),
            },
        )
        .await;
        self.receive("TV-1", 1).await;
    }

    /// Follows until the feed has folded every event written so far (the log reader only sees
    /// a transaction once it is below every open one's, so this polls).
    async fn sync(&self, feed: &mut SearchFeed) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while feed.folded_position() < self.last {
            assert!(
                Instant::now() < deadline,
                "the feed did not reach {}",
                self.last
            );
            if feed.follow(self.pool(), BATCH).await.expect("follow") == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn all() -> SearchRequest {
    SearchRequest {
        limit: 100,
        ..SearchRequest::default()
    }
}

fn text(query: &str) -> SearchRequest {
    SearchRequest {
        text: Some(query.to_owned()),
        ..all()
    }
}

fn sorted(sort: SearchSort) -> SearchRequest {
    SearchRequest { sort, ..all() }
}

fn search(index: &SearchIndex, request: &SearchRequest) -> SearchPage {
    index.search(request).expect("search")
}

fn skus(page: &SearchPage) -> Vec<&str> {
    page.hits.iter().map(|hit| hit.sku.as_str()).collect()
}

fn bands(counts: [u64; 6]) -> Vec<(PriceBand, u64)> {
    PriceBand::ALL.into_iter().zip(counts).collect()
}

fn categories(counts: &[(&str, u64)]) -> Vec<(String, u64)> {
    counts
        .iter()
        .map(|(name, count)| ((*name).to_owned(), *count))
        .collect()
}

/// What a page shows, without the scores (which depend on the segment layout).
fn summary(page: &SearchPage) -> (Vec<String>, usize, Facets) {
    let hits = page
        .hits
        .iter()
        .map(|hit| {
            format!(
                "{} {} {} {} {}{} {}",
                hit.sku,
                hit.name,
                hit.category,
                hit.price_minor,
                hit.currency,
                if hit.in_stock { " in stock" } else { "" },
                hit.created_at
            )
        })
        .collect();
    (hits, page.total, page.facets.clone())
}

fn summaries(index: &SearchIndex) -> Vec<(Vec<String>, usize, Facets)> {
    [
        all(),
        text("headphones"),
        text("hedphones mixing"),
        sorted(SearchSort::PriceAsc),
        sorted(SearchSort::Newest),
        SearchRequest {
            in_stock: Some(false),
            ..all()
        },
    ]
    .iter()
    .map(|request| summary(&search(index, request)))
    .collect()
}

async fn seeded() -> (Shop, SearchIndex, SearchFeed) {
    let mut shop = Shop::new().await;
    shop.seed().await;
    let index = SearchIndex::open(None).expect("open index");
    let mut feed = SearchFeed::new(&index).expect("feed");
    shop.sync(&mut feed).await;
    (shop, index, feed)
}

#[tokio::test]
async fn a_typo_finds_headphones() {
    let (shop, index, _feed) = seeded().await;

    let page = search(&index, &text("hedphones"));
    // HP-1 has it in its name (boosted) and description, HP-2 only in its description
    assert_eq!(skus(&page), ["HP-1", "HP-2"]);
    assert_eq!(page.hits[0].name, "Studio headphones");
    assert!(page.hits[0].score > page.hits[1].score);

    // a transposition is one edit; every term must match
    assert_eq!(skus(&search(&index, &text("studoi hedphones"))), ["HP-1"]);
    assert_eq!(
        skus(&search(&index, &text("hedphones kettle"))),
        Vec::<&str>::new()
    );
    // case and accents do not matter; short terms are exact
    assert_eq!(skus(&search(&index, &text("KÉTTLE"))), ["KTL-1"]);
    assert_eq!(skus(&search(&index, &text("mig"))), Vec::<&str>::new());
    // category text is searchable too
    assert_eq!(skus(&search(&index, &text("kitchen"))).len(), 3);

    shop.db.drop().await;
}

#[tokio::test]
async fn facets_count_the_matching_products() {
    let (shop, index, _feed) = seeded().await;

    let page = search(&index, &all());
    assert_eq!(page.total, 8);
    assert_eq!(
        page.facets,
        Facets {
            categories: categories(&[("Audio", 3), ("Kitchen", 3), ("Home", 1), ("Video", 1)]),
            price_bands: bands([1, 1, 2, 1, 2, 1]),
            in_stock: 5,
            out_of_stock: 3,
        }
    );

    // facets follow the text and the filters
    let mugs = search(&index, &text("mug"));
    assert_eq!(mugs.total, 2);
    assert_eq!(
        mugs.facets,
        Facets {
            categories: categories(&[("Kitchen", 2)]),
            price_bands: bands([1, 1, 0, 0, 0, 0]),
            in_stock: 1,
            out_of_stock: 1,
        }
    );
    let in_stock = search(
        &index,
        &SearchRequest {
            in_stock: Some(true),
            ..all()
        },
    );
    assert_eq!(in_stock.total, 5);
    assert_eq!(
        in_stock.facets,
        Facets {
            categories: categories(&[("Audio", 2), ("Kitchen", 2), ("Video", 1)]),
            price_bands: bands([1, 0, 1, 0, 2, 1]),
            in_stock: 5,
            out_of_stock: 0,
        }
    );

    shop.db.drop().await;
}

#[tokio::test]
async fn filters_and_sorts() {
    let (shop, index, _feed) = seeded().await;

    let kitchen = SearchRequest {
        category: Some("Kitchen".to_owned()),
        ..all()
    };
    assert_eq!(skus(&search(&index, &kitchen)), ["KTL-1", "MUG-1", "MUG-2"]);
    let lowercase = SearchRequest {
        category: Some("kitchen".to_owned()),
        ..all()
    };
    assert_eq!(
        search(&index, &lowercase).total,
        0,
        "the category filter is exact"
    );

    let band = SearchRequest {
        price_min: Some(2_500),
        price_max: Some(4_999),
        sort: SearchSort::PriceAsc,
        ..all()
    };
    assert_eq!(skus(&search(&index, &band)), ["KTL-1", "LMP-1"]);
    let inclusive = SearchRequest {
        price_min: Some(3_900),
        price_max: Some(3_900),
        ..all()
    };
    assert_eq!(skus(&search(&index, &inclusive)), ["KTL-1"]);
    let from = SearchRequest {
        price_min: Some(24_900),
        ..all()
    };
    assert_eq!(skus(&search(&index, &from)), ["SPK-1", "TV-1"]);

    let out_of_stock = SearchRequest {
        in_stock: Some(false),
        ..all()
    };
    assert_eq!(
        skus(&search(&index, &out_of_stock)),
        ["HP-2", "LMP-1", "MUG-2"]
    );
    let combined = SearchRequest {
        text: Some("headphones".to_owned()),
        category: Some("Audio".to_owned()),
        in_stock: Some(true),
        price_max: Some(20_000),
        ..all()
    };
    assert_eq!(skus(&search(&index, &combined)), ["HP-1"]);

    // without text every product scores the same: SKU order
    assert_eq!(
        skus(&search(&index, &sorted(SearchSort::Relevance))),
        ["HP-1", "HP-2", "KTL-1", "LMP-1", "MUG-1", "MUG-2", "SPK-1", "TV-1"]
    );
    assert_eq!(
        skus(&search(&index, &sorted(SearchSort::PriceAsc))),
        ["MUG-1", "MUG-2", "KTL-1", "LMP-1", "HP-2", "HP-1", "SPK-1", "TV-1"]
    );
    assert_eq!(
        skus(&search(&index, &sorted(SearchSort::PriceDesc))),
        ["TV-1", "SPK-1", "HP-1", "HP-2", "LMP-1", "KTL-1", "MUG-2", "MUG-1"]
    );
    assert_eq!(
        skus(&search(&index, &sorted(SearchSort::Newest))),
        ["TV-1", "LMP-1", "KTL-1", "MUG-2", "MUG-1", "SPK-1", "HP-2", "HP-1"]
    );

    // a hit carries what a result needs
    let tv = &search(&index, &text("television")).hits[0];
    assert_eq!(
        (tv.sku.as_str(), tv.name.as_str(), tv.category.as_str()),
        ("TV-1", "OLED television", "Video")
    );
    assert_eq!(
        (tv.price_minor, tv.currency.as_str(), tv.in_stock),
        (129_900, "EUR", true)
    );
    assert_eq!(tv.created_at, at(8));

    shop.db.drop().await;
}

#[tokio::test]
async fn pages_are_windows_of_one_order() {
    let (shop, index, _feed) = seeded().await;

    let page = |offset: usize, limit: usize| {
        search(
            &index,
            &SearchRequest {
                sort: SearchSort::PriceAsc,
                offset,
                limit,
                ..SearchRequest::default()
            },
        )
    };
    let first = page(0, 3);
    assert_eq!(
        (skus(&first), first.total),
        (vec!["MUG-1", "MUG-2", "KTL-1"], 8)
    );
    let second = page(3, 3);
    assert_eq!(
        (skus(&second), second.total),
        (vec!["LMP-1", "HP-2", "HP-1"], 8)
    );
    let third = page(6, 3);
    assert_eq!((skus(&third), third.total), (vec!["SPK-1", "TV-1"], 8));
    let beyond = page(8, 3);
    assert_eq!((skus(&beyond), beyond.total), (Vec::<&str>::new(), 8));
    assert_eq!(
        beyond.facets, first.facets,
        "facets do not depend on the window"
    );

    // ties (every score equal without text) page by SKU
    let relevance = |offset: usize| {
        skus(&search(
            &index,
            &SearchRequest {
                offset,
                limit: 4,
                ..SearchRequest::default()
            },
        ))
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    assert_eq!(relevance(0), ["HP-1", "HP-2", "KTL-1", "LMP-1"]);
    assert_eq!(relevance(4), ["MUG-1", "MUG-2", "SPK-1", "TV-1"]);

    shop.db.drop().await;
}

#[tokio::test]
async fn changes_show_after_follow() {
    let (mut shop, index, mut feed) = seeded().await;
    let position_before = index.position();

    shop.product(ProductCommand::Reprice { price: eur(4_900) }, "HP-1")
        .await;
    shop.product(ProductCommand::Discontinue { at: at(9) }, "MUG-1")
        .await;
    shop.product(
        ProductCommand::Rename {
            name: "Espresso machine".to_owned(),
        },
        "KTL-1",
    )
    .await;
    shop.receive("MUG-2", 4).await;
    shop.inventory(
        "LMP-1",
        InventoryCommand::ReleaseReservation {
            order_id: order(1),
            reason: "cancelled".to_owned(),
        },
    )
    .await;
    shop.inventory(
        "TV-1",
        InventoryCommand::Reserve {
            order_id: order(2),
            quantity: Quantity::new(1).expect("quantity"),
            expires_at: at(20),
        },
    )
    .await;
    // a product created after its stock arrived
    shop.receive("CAM-1", 2).await;
    shop.create(
        "CAM-1",
        "Action camera",
        "Waterproof 4K camera",
        "Video",
        19_900,
        10,
    )
    .await;

    // not visible before the feed follows
    assert_eq!(search(&index, &all()).total, 8);
    shop.sync(&mut feed).await;
    assert!(index.position() > position_before);
    assert_eq!(index.position(), feed.index_position());

    let page = search(&index, &sorted(SearchSort::PriceAsc));
    assert_eq!(
        skus(&page),
        ["MUG-2", "KTL-1", "LMP-1", "HP-1", "HP-2", "CAM-1", "SPK-1", "TV-1"]
    );
    assert_eq!(page.hits[3].price_minor, 4_900);
    assert_eq!(
        page.facets,
        Facets {
            categories: categories(&[("Audio", 3), ("Kitchen", 2), ("Video", 2), ("Home", 1)]),
            price_bands: bands([0, 1, 3, 1, 2, 1]),
            // HP-1, SPK-1, MUG-2, KTL-1, LMP-1, CAM-1 (TV-1's only unit is now reserved)
            in_stock: 6,
            out_of_stock: 2,
        }
    );
    let band = SearchRequest {
        price_min: Some(2_500),
        price_max: Some(4_999),
        ..all()
    };
    assert_eq!(skus(&search(&index, &band)), ["HP-1", "KTL-1", "LMP-1"]);
    assert_eq!(search(&index, &text("coffee")).total, 0, "discontinued");
    assert_eq!(skus(&search(&index, &text("espresso"))), ["KTL-1"]);
    assert_eq!(
        search(&index, &text("electric")).total,
        0,
        "the old name is gone"
    );
    assert_eq!(index.product_count(), 8);

    shop.db.drop().await;
}

#[tokio::test]
async fn replays_change_nothing() {
    let (shop, index, mut feed) = seeded().await;
    let before = summaries(&index);
    let position = feed.index_position();

    // the same events delivered again are skipped by the position guard
    let events = eventlog::log::read_after(shop.pool(), LogPosition::START, 10_000)
        .await
        .expect("read the log");
    assert!(!events.is_empty());
    let written = feed.documents_written();
    assert_eq!(feed.apply(events).expect("apply again"), 0);
    assert_eq!(feed.documents_written(), written);
    assert_eq!(feed.index_position(), position);
    assert_eq!(summaries(&index), before);

    // forgetting the position rewrites every document from the log: same result
    feed.reindex_from_start().expect("reset");
    assert_eq!(index.position(), LogPosition::START);
    feed.catch_up(shop.pool(), BATCH).await.expect("catch up");
    assert_eq!(feed.index_position(), position);
    assert_eq!(index.product_count(), 8);
    assert_eq!(summaries(&index), before);

    shop.db.drop().await;
}

#[tokio::test]
async fn an_index_on_disk_resumes_from_its_position() {
    let mut shop = Shop::new().await;
    shop.seed().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (position, before) = {
        let index = SearchIndex::open(Some(dir.path())).expect("open");
        let mut feed = SearchFeed::new(&index).expect("feed");
        shop.sync(&mut feed).await;
        // at least one write per product (more when its stock arrived in a later batch)
        assert!(feed.documents_written() >= 8);
        (feed.index_position(), summaries(&index))
    };

    // written while the replica is down
    shop.product(ProductCommand::Reprice { price: eur(1_000) }, "TV-1")
        .await;

    let index = SearchIndex::open(Some(dir.path())).expect("reopen");
    assert_eq!(index.position(), position);
    assert_eq!(
        summaries(&index),
        before,
        "searchable at once from the stored commit"
    );
    let mut feed = SearchFeed::new(&index).expect("feed");
    assert_eq!(feed.index_position(), position);
    shop.sync(&mut feed).await;
    // the state was folded again from the log, but only the repriced product was written
    assert_eq!(feed.documents_written(), 1);
    let tv = search(&index, &text("television"));
    assert_eq!(tv.hits[0].price_minor, 1_000);
    assert_eq!(index.product_count(), 8);

    // a second feed cannot take the writer
    assert!(matches!(
        SearchFeed::new(&index),
        Err(SearchError::Index(_))
    ));

    shop.db.drop().await;
}

#[tokio::test]
async fn an_empty_index_rebuilds_from_the_log() {
    let (shop, ram_index, _ram_feed) = seeded().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let index = SearchIndex::open(Some(dir.path())).expect("open");
    assert_eq!(index.position(), LogPosition::START);
    assert_eq!(index.product_count(), 0);

    let mut feed = SearchFeed::new(&index).expect("feed");
    let read = feed.catch_up(shop.pool(), 4).await.expect("rebuild");
    assert_eq!(read, 16, "8 product and 8 inventory events");
    assert_eq!(feed.index_position(), ram_index.position());
    assert_eq!(summaries(&index), summaries(&ram_index));
    drop(feed);
    drop(index);
    assert_nonempty(dir.path());

    shop.db.drop().await;
}

fn assert_nonempty(dir: &Path) {
    let files = std::fs::read_dir(dir).expect("index dir").count();
    assert!(files > 1, "the index is on disk");
}

#[tokio::test]
async fn invalid_requests_are_typed_errors() {
    let index = SearchIndex::open(None).expect("open");
    let refused = |request: SearchRequest| match index.search(&request) {
        Err(SearchError::InvalidRequest(invalid)) => invalid,
        other => panic!("expected an invalid request, got {other:?}"),
    };
    assert_eq!(
        refused(SearchRequest { limit: 0, ..all() }),
        InvalidSearchRequest::Limit { got: 0 }
    );
    assert_eq!(
        refused(SearchRequest {
            limit: 101,
            ..all()
        }),
        InvalidSearchRequest::Limit { got: 101 }
    );
    assert_eq!(
        refused(SearchRequest {
            offset: 10_001,
            ..all()
        }),
        InvalidSearchRequest::Offset { got: 10_001 }
    );
    assert_eq!(
        refused(SearchRequest {
            price_min: Some(500),
            price_max: Some(100),
            ..all()
        }),
        InvalidSearchRequest::PriceRange { min: 500, max: 100 }
    );
    assert_eq!(
        refused(SearchRequest {
            price_max: Some(-1),
            ..all()
        }),
        InvalidSearchRequest::NegativePrice { got: -1 }
    );
    assert_eq!(
        refused(text(&"a".repeat(501))),
        InvalidSearchRequest::TextTooLong { got: 501 }
    );
    let many = (0..20)
        .map(|n| format!("w{n}"))
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        refused(text(&many)),
        InvalidSearchRequest::TooManyTerms { got: 20 }
    );

    // odd but valid input is answered, not refused
    for request in [text(""), text("  --  "), text("\u{0}\u{feff}"), text("🎧")] {
        let page = index.search(&request).expect("answered");
        assert_eq!(page.total, 0);
    }
    let empty = index.search(&all()).expect("empty index");
    assert_eq!(empty.facets.price_bands, bands([0; 6]));
    let error = index
        .search(&SearchRequest { limit: 0, ..all() })
        .expect_err("refused");
    assert!(error.is_invalid_request());
}

#[tokio::test]
async fn follow_refuses_a_zero_batch() {
    let shop = Shop::new().await;
    let index = SearchIndex::open(None).expect("open");
    let mut feed = SearchFeed::new(&index).expect("feed");
    assert!(matches!(
        feed.follow(shop.pool(), 0).await,
        Err(SearchError::InvalidBatchSize)
    ));
    shop.db.drop().await;
}

#[tokio::test]
async fn the_rating_sort_follows_reviews_edits_and_moderation() {
    let (mut shop, index, mut feed) = seeded().await;
    let rating_order = |index: &SearchIndex| -> Vec<(String, Option<f64>, u64)> {
        search(index, &sorted(SearchSort::Rating))
            .hits
            .into_iter()
            .map(|hit| (hit.sku, hit.rating_average, hit.review_count))
            .collect()
    };
    // unrated: SKU order, no averages
    let unrated = rating_order(&index);
    assert_eq!(unrated.len(), 8);
    assert!(unrated
        .iter()
        .all(|(_, average, count)| average.is_none() && *count == 0));
    assert_eq!(unrated[0].0, "HP-1");

    // TV-1: 5 and 4 (4.5 over 2); KTL-1: 5, 5, 3, 5 (4.5 over 4); MUG-1: 2
    shop.review(1, "TV-1", 5).await;
    let edited = shop.review(2, "TV-1", 1).await;
    for (customer, stars) in [(1, 5), (2, 5), (3, 3), (4, 5)] {
        shop.review(customer, "KTL-1", stars).await;
    }
    shop.review(1, "MUG-1", 2).await;
    let hidden = shop.review(5, "KTL-1", 1).await;
    shop.moderate(
        &edited,
        ReviewCommand::Edit {
            author: CustomerId::new(uuid::Uuid::from_u128(2)),
            rating: Rating::new(4).expect("stars"),
            title: "better".to_owned(),
            text: String::new(),
            verified_purchase: false,
            at: at(11),
        },
    )
    .await;
    shop.moderate(
        &hidden,
        ReviewCommand::Hide {
            reason: "abuse".to_owned(),
            at: at(12),
        },
    )
    .await;
    shop.sync(&mut feed).await;
    let rated = rating_order(&index);
    assert_eq!(
        rated[..3],
        [
            ("KTL-1".to_owned(), Some(4.5), 4),
            ("TV-1".to_owned(), Some(4.5), 2),
            ("MUG-1".to_owned(), Some(2.0), 1),
        ]
    );
    assert!(rated[3..].iter().all(|(_, average, _)| average.is_none()));

    // publishing the hidden 1-star review brings KTL-1 down to 3.8 over 5
    shop.moderate(
        &hidden,
        ReviewCommand::Publish {
            reason: "fine".to_owned(),
            at: at(13),
        },
    )
    .await;
    shop.sync(&mut feed).await;
    let rated = rating_order(&index);
    assert_eq!(rated[0], ("TV-1".to_owned(), Some(4.5), 2));
    assert_eq!(rated[1], ("KTL-1".to_owned(), Some(3.8), 5));

    // a rebuild from the log gives the same order
    feed.reindex_from_start().expect("reset");
    feed.catch_up(shop.pool(), 3).await.expect("catch up");
    assert_eq!(rating_order(&index), rated);
    shop.db.drop().await;
}

#[tokio::test]
async fn an_index_of_an_older_format_is_rebuilt_from_the_log() {
    let mut shop = Shop::new().await;
    shop.seed().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (position, before) = {
        let index = SearchIndex::open(Some(dir.path())).expect("open");
        let mut feed = SearchFeed::new(&index).expect("feed");
        shop.sync(&mut feed).await;
        (feed.index_position(), summaries(&index))
    };
    // what an older release left: its format number in the commit
    {
        let old = tantivy::Index::open_in_dir(dir.path()).expect("open as tantivy");
        let mut writer: tantivy::IndexWriter = old.writer(15_000_000).expect("writer");
        let mut commit = writer.prepare_commit().expect("prepare");
        commit.set_payload(&format!(
            r#"{{"format":1,"position":{}}}"#,
            serde_json::to_string(&position).expect("position")
        ));
        commit.commit().expect("commit");
    }
    // a file of someone else's in the directory survives
    std::fs::write(dir.path().join("NOTES.txt"), "keep me").expect("write");

    let index = SearchIndex::open(Some(dir.path())).expect("reopened and reset");
    assert_eq!(index.position(), LogPosition::START);
    assert_eq!(index.product_count(), 0);
    let mut feed = SearchFeed::new(&index).expect("feed");
    shop.sync(&mut feed).await;
    assert_eq!(feed.index_position(), position);
    assert_eq!(summaries(&index), before);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("NOTES.txt")).expect("kept"),
        "keep me"
    );
    shop.db.drop().await;
}
