//! What a search asks for and what it answers: [`SearchRequest`], [`SearchPage`], the facets and
//! the validation of a request.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Most hits one page returns.
pub const MAX_LIMIT: usize = 100;
/// Deepest offset a page may start at (like Elasticsearch's result window: deeper pages cost a
/// heap of `offset + limit` entries per segment).
pub const MAX_OFFSET: usize = 10_000;
/// Longest query text, in characters.
pub const MAX_QUERY_CHARS: usize = 500;
/// Most terms in a query text (each becomes an exact-or-fuzzy clause on three fields).
pub const MAX_QUERY_TERMS: usize = 16;

/// How hits are ordered. Every order ends with the SKU (ascending) as a tie-break, so pages are
/// stable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SearchSort {
    /// Best text match first (BM25, exact terms boosted over fuzzy ones); without text every hit
    /// scores the same, so this is SKU order.
    #[default]
    Relevance,
    PriceAsc,
    PriceDesc,
    /// Most recently created first (`ProductCreated.created_at`).
    Newest,
    /// Best rated first: highest average of the visible reviews, then most reviews; products
    /// without reviews last.
    Rating,
}

/// One search: text, filters, order and window. Prices are in minor units (cents), inclusive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// Free text over name, description and category; `None`, empty or punctuation-only means
    /// every product (filters still apply).
    pub text: Option<String>,
    /// Exact category, as returned in [`Facets::categories`].
    pub category: Option<String>,
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    pub in_stock: Option<bool>,
    pub sort: SearchSort,
    pub offset: usize,
    /// 1..=[`MAX_LIMIT`].
    pub limit: usize,
}

impl Default for SearchRequest {
    fn default() -> Self {
        Self {
            text: None,
            category: None,
            price_min: None,
            price_max: None,
            in_stock: None,
            sort: SearchSort::Relevance,
            offset: 0,
            limit: 20,
        }
    }
}

/// Why a [`SearchRequest`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSearchRequest {
    #[error("limit must be between 1 and {max}, got {got}", max = MAX_LIMIT)]
    Limit { got: usize },
    #[error("offset must be at most {max}, got {got}", max = MAX_OFFSET)]
    Offset { got: usize },
    #[error("price bounds must not be negative, got {got}")]
    NegativePrice { got: i64 },
    #[error("price_min ({min}) is greater than price_max ({max})")]
    PriceRange { min: i64, max: i64 },
    #[error("query text must be at most {max} characters, got {got}", max = MAX_QUERY_CHARS)]
    TextTooLong { got: usize },
    #[error("query text must have at most {max} terms, got {got}", max = MAX_QUERY_TERMS)]
    TooManyTerms { got: usize },
}

impl SearchRequest {
    /// Checks everything that does not need the index (the term count is checked once the text
    /// is tokenized).
    pub fn validate(&self) -> Result<(), InvalidSearchRequest> {
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(InvalidSearchRequest::Limit { got: self.limit });
        }
        if self.offset > MAX_OFFSET {
            return Err(InvalidSearchRequest::Offset { got: self.offset });
        }
        for bound in [self.price_min, self.price_max].into_iter().flatten() {
            if bound < 0 {
                return Err(InvalidSearchRequest::NegativePrice { got: bound });
            }
        }
        if let (Some(min), Some(max)) = (self.price_min, self.price_max) {
            if min > max {
                return Err(InvalidSearchRequest::PriceRange { min, max });
            }
        }
        if let Some(text) = &self.text {
            let chars = text.chars().count();
            if chars > MAX_QUERY_CHARS {
                return Err(InvalidSearchRequest::TextTooLong { got: chars });
            }
        }
        Ok(())
    }
}

/// Fixed price bands for the price facet, in **major units of a two-decimal currency** (EUR,
/// USD, ...; the bounds are 100× in minor units). Lower bound inclusive, upper bound exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PriceBand {
    /// below 10.00
    Under10,
    /// 10.00 to 24.99
    From10To25,
    /// 25.00 to 49.99
    From25To50,
    /// 50.00 to 99.99
    From50To100,
    /// 100.00 to 249.99
    From100To250,
    /// 250.00 and above
    From250,
}

impl PriceBand {
    /// Every band, cheapest first.
    pub const ALL: [PriceBand; 6] = [
        PriceBand::Under10,
        PriceBand::From10To25,
        PriceBand::From25To50,
        PriceBand::From50To100,
        PriceBand::From100To250,
        PriceBand::From250,
    ];

    /// The band of a price in minor units.
    pub fn of_minor(price_minor: i64) -> PriceBand {
        match price_minor {
            i64::MIN..1_000 => PriceBand::Under10,
            1_000..2_500 => PriceBand::From10To25,
            2_500..5_000 => PriceBand::From25To50,
            5_000..10_000 => PriceBand::From50To100,
            10_000..25_000 => PriceBand::From100To250,
            _ => PriceBand::From250,
        }
    }

    /// Inclusive lower and exclusive upper bound in minor units (`None` = open), e.g. to turn a
    /// selected band into `price_min` / `price_max` (`upper - 1`).
    pub fn bounds_minor(self) -> (Option<i64>, Option<i64>) {
        match self {
            PriceBand::Under10 => (None, Some(1_000)),
            PriceBand::From10To25 => (Some(1_000), Some(2_500)),
            PriceBand::From25To50 => (Some(2_500), Some(5_000)),
            PriceBand::From50To100 => (Some(5_000), Some(10_000)),
            PriceBand::From100To250 => (Some(10_000), Some(25_000)),
            PriceBand::From250 => (Some(25_000), None),
        }
    }

    pub(crate) fn slot(self) -> usize {
        self as usize
    }
}

/// One product as the index holds it: enough to render a search result without another lookup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductHit {
    pub sku: String,
    pub name: String,
    pub category: String,
    pub price_minor: i64,
    pub currency: String,
    pub in_stock: bool,
    pub created_at: DateTime<Utc>,
    /// The relevance score when sorted by relevance with text, else 0.
    pub score: f32,
    /// Average stars of the visible reviews; `None` without reviews.
    pub rating_average: Option<f64>,
    /// Number of visible reviews.
    pub review_count: u64,
}

/// Counts over every product that matches the text and all the filters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facets {
    /// Categories with at least one match: most matches first, then by name.
    pub categories: Vec<(String, u64)>,
    /// Every band in [`PriceBand::ALL`] order, zeros included.
    pub price_bands: Vec<(PriceBand, u64)>,
    pub in_stock: u64,
    pub out_of_stock: u64,
}

/// One page of hits, the number of all matches and the facets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    pub hits: Vec<ProductHit>,
    /// Every match, not just this page.
    pub total: usize,
    pub facets: Facets,
}
