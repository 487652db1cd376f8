//! One pass over the matching documents that counts the total and every facet from fast fields
//! and keeps the best `offset + limit` documents for the requested order (SKU as tie-break).
//! Stored documents are loaded afterwards, only for the page.

use std::collections::{BinaryHeap, HashMap};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader, TantivyError};

use super::request::{PriceBand, SearchSort};
use super::schema::{
    CATEGORY, CREATED_AT_MICROS, IN_STOCK, PRICE_MINOR, RATING_AVERAGE_MILLI, REVIEW_COUNT, SKU,
};

/// Maps an i64 onto a u64 so that the order is kept.
fn ordered_i64(value: i64) -> u64 {
    (value as u64) ^ (1 << 63)
}

/// Orders by average (thousandths of a star, 0..=5,000), then by number of reviews: larger is
/// better rated.
fn rating_key(average_milli: i64, review_count: i64) -> u64 {
    let average = u64::try_from(average_milli.clamp(0, 0xFFFF)).unwrap_or(0);
    let count = u64::try_from(review_count.clamp(0, 0xFFFF_FFFF_FFFF)).unwrap_or(0);
    (average << 48) | count
}

/// Maps a score onto a u64 that is smaller for better (higher) scores.
fn score_rank(score: Score) -> u64 {
    let bits = score.to_bits();
    let ordered = if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    u64::from(!ordered)
}

/// A document that made a page window: smaller `rank` first, then smaller SKU.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub rank: u64,
    pub sku: String,
    pub address: DocAddress,
    pub score: Score,
}

/// Counts and best candidates, of one segment or (merged) of the whole index.
#[derive(Debug, Default)]
pub(crate) struct PageCounts {
    pub total: u64,
    pub categories: HashMap<String, u64>,
    pub price_bands: [u64; PriceBand::ALL.len()],
    pub in_stock: u64,
    pub out_of_stock: u64,
    /// best first, at most `window` long once merged
    pub candidates: Vec<Candidate>,
}

pub(crate) struct PageCollector {
    pub sort: SearchSort,
    /// Whether scores are computed (relevance order with text).
    pub scored: bool,
    /// `offset + limit`: how many of the best documents to keep.
    pub window: usize,
}

fn required_str_column(reader: &SegmentReader, name: &str) -> tantivy::Result<StrColumn> {
    reader
        .fast_fields()
        .str(name)?
        .ok_or_else(|| TantivyError::SchemaError(format!("fast field `{name}` is missing")))
}

impl Collector for PageCollector {
    type Fruit = PageCounts;
    type Child = PageSegmentCollector;

    fn for_segment(
        &self,
        segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<PageSegmentCollector> {
        let fast_fields = reader.fast_fields();
        let category = required_str_column(reader, CATEGORY)?;
        let category_counts = vec![0; category.num_terms()];
        Ok(PageSegmentCollector {
            sort: self.sort,
            scored: self.scored,
            window: self.window,
            segment_ord,
            price_minor: fast_fields.i64(PRICE_MINOR)?,
            created_at_micros: fast_fields.i64(CREATED_AT_MICROS)?,
            rating_average_milli: fast_fields.i64(RATING_AVERAGE_MILLI)?,
            review_count: fast_fields.i64(REVIEW_COUNT)?,
            in_stock: fast_fields.bool(IN_STOCK)?,
            sku: required_str_column(reader, SKU)?,
            category,
            counts: SegmentCounts {
                category_counts,
                ..SegmentCounts::default()
            },
            best: BinaryHeap::new(),
            block: BlockValues::default(),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.scored
    }

    fn merge_fruits(&self, segment_fruits: Vec<PageCounts>) -> tantivy::Result<PageCounts> {
        let mut merged = PageCounts::default();
        for fruit in segment_fruits {
            merged.total += fruit.total;
            for (category, count) in fruit.categories {
                *merged.categories.entry(category).or_insert(0) += count;
            }
            for (sum, count) in merged.price_bands.iter_mut().zip(fruit.price_bands) {
                *sum += count;
            }
            merged.in_stock += fruit.in_stock;
            merged.out_of_stock += fruit.out_of_stock;
            merged.candidates.extend(fruit.candidates);
        }
        merged
            .candidates
            .sort_by(|a, b| a.rank.cmp(&b.rank).then_with(|| a.sku.cmp(&b.sku)));
        merged.candidates.truncate(self.window);
        Ok(merged)
    }
}

/// Ordered by (rank, SKU ordinal): the heap's top is the worst kept document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct SegmentCandidate {
    rank: u64,
    sku_ord: u64,
    doc: DocId,
    score_bits: u32,
}

#[derive(Default)]
struct SegmentCounts {
    total: u64,
    category_counts: Vec<u64>,
    price_bands: [u64; PriceBand::ALL.len()],
    in_stock: u64,
    out_of_stock: u64,
}

pub(crate) struct PageSegmentCollector {
    sort: SearchSort,
    scored: bool,
    window: usize,
    segment_ord: SegmentOrdinal,
    price_minor: Column<i64>,
    created_at_micros: Column<i64>,
    rating_average_milli: Column<i64>,
    review_count: Column<i64>,
    in_stock: Column<bool>,
    sku: StrColumn,
    category: StrColumn,
    counts: SegmentCounts,
    best: BinaryHeap<SegmentCandidate>,
    block: BlockValues,
}

/// Fast-field values of one block of documents (reused between blocks).
#[derive(Default)]
struct BlockValues {
    prices: Vec<Option<i64>>,
    in_stock: Vec<Option<bool>>,
    category_ords: Vec<Option<u64>>,
}

impl BlockValues {
    fn fill(
        &mut self,
        prices: &Column<i64>,
        in_stock: &Column<bool>,
        category: &StrColumn,
        docs: &[DocId],
    ) {
        fn load<T: PartialOrd + Copy + std::fmt::Debug + Send + Sync + 'static>(
            column: &Column<T>,
            docs: &[DocId],
            out: &mut Vec<Option<T>>,
        ) {
            out.clear();
            out.resize(docs.len(), None);
            column.first_vals(docs, out);
        }
        load(prices, docs, &mut self.prices);
        load(in_stock, docs, &mut self.in_stock);
        load(category.ords(), docs, &mut self.category_ords);
    }
}

impl PageSegmentCollector {
    fn rank(&self, doc: DocId, price_minor: i64, score: Score) -> u64 {
        match self.sort {
            SearchSort::Relevance if self.scored => score_rank(score),
            SearchSort::Relevance => 0,
            SearchSort::PriceAsc => ordered_i64(price_minor),
            SearchSort::PriceDesc => !ordered_i64(price_minor),
            SearchSort::Newest => !ordered_i64(self.created_at_micros.first(doc).unwrap_or(0)),
            SearchSort::Rating => !rating_key(
                self.rating_average_milli.first(doc).unwrap_or(0),
                self.review_count.first(doc).unwrap_or(0),
            ),
        }
    }

    fn sku_ord(&self, doc: DocId) -> u64 {
        self.sku.ords().first(doc).unwrap_or(u64::MAX)
    }

    /// Counts one matching document and keeps it if it is among the best so far.
    fn take(
        &mut self,
        doc: DocId,
        score: Score,
        price_minor: Option<i64>,
        in_stock: Option<bool>,
        category_ord: Option<u64>,
    ) {
        let price_minor = price_minor.unwrap_or(0);
        let counts = &mut self.counts;
        counts.total += 1;
        counts.price_bands[PriceBand::of_minor(price_minor).slot()] += 1;
        if in_stock.unwrap_or(false) {
            counts.in_stock += 1;
        } else {
            counts.out_of_stock += 1;
        }
        if let Some(count) = category_ord
            .and_then(|ord| usize::try_from(ord).ok())
            .and_then(|ord| counts.category_counts.get_mut(ord))
        {
            *count += 1;
        }

        if self.window == 0 {
            return;
        }
        let rank = self.rank(doc, price_minor, score);
        let worst = match self.best.peek() {
            Some(worst) if self.best.len() >= self.window => *worst,
            _ => {
                let sku_ord = self.sku_ord(doc);
                self.best.push(SegmentCandidate {
                    rank,
                    sku_ord,
                    doc,
                    score_bits: score.to_bits(),
                });
                return;
            }
        };
        if rank > worst.rank {
            return;
        }
        let candidate = SegmentCandidate {
            rank,
            sku_ord: self.sku_ord(doc),
            doc,
            score_bits: score.to_bits(),
        };
        if candidate < worst {
            self.best.pop();
            self.best.push(candidate);
        }
    }
}

impl SegmentCollector for PageSegmentCollector {
    type Fruit = PageCounts;

    fn collect(&mut self, doc: DocId, score: Score) {
        let price_minor = self.price_minor.first(doc);
        let in_stock = self.in_stock.first(doc);
        let category_ord = self.category.ords().first(doc);
        self.take(doc, score, price_minor, in_stock, category_ord);
    }

    /// Unscored matches come in blocks: read the fast fields a block at a time.
    fn collect_block(&mut self, docs: &[DocId]) {
        let mut block = std::mem::take(&mut self.block);
        block.fill(&self.price_minor, &self.in_stock, &self.category, docs);
        for (i, doc) in docs.iter().enumerate() {
            self.take(
                *doc,
                0.0,
                block.prices[i],
                block.in_stock[i],
                block.category_ords[i],
            );
        }
        self.block = block;
    }

    fn harvest(self) -> PageCounts {
        let mut categories = HashMap::new();
        let mut name = String::new();
        for (ord, count) in self.counts.category_counts.iter().enumerate() {
            if *count > 0 && matches!(self.category.ord_to_str(ord as u64, &mut name), Ok(true)) {
                *categories.entry(name.clone()).or_insert(0) += *count;
            }
        }
        let candidates = self
            .best
            .into_iter()
            .map(|candidate| {
                let mut sku = String::new();
                // an unreadable ordinal leaves the SKU empty: it only weakens the tie-break
                let _ = self.sku.ord_to_str(candidate.sku_ord, &mut sku);
                Candidate {
                    rank: candidate.rank,
                    sku,
                    address: DocAddress::new(self.segment_ord, candidate.doc),
                    score: Score::from_bits(candidate.score_bits),
                }
            })
            .collect();
        PageCounts {
            total: self.counts.total,
            categories,
            price_bands: self.counts.price_bands,
            in_stock: self.counts.in_stock,
            out_of_stock: self.counts.out_of_stock,
            candidates,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_keep_the_order() {
        assert!(ordered_i64(-5) < ordered_i64(0));
        assert!(ordered_i64(0) < ordered_i64(7));
        assert!(ordered_i64(i64::MIN) < ordered_i64(i64::MAX));
        assert!(score_rank(2.5) < score_rank(1.0));
        assert!(score_rank(1.0) < score_rank(0.0));
        assert!(score_rank(0.0) < score_rank(-1.0));
        // better average first, then more reviews; no reviews last
        assert!(!rating_key(4_500, 2) < !rating_key(4_000, 90));
        assert!(!rating_key(4_000, 90) < !rating_key(4_000, 3));
        assert!(!rating_key(1_000, 1) < !rating_key(0, 0));
    }
}
