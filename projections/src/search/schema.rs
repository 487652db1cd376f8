//! The index's schema: field names, options and the text analyzer, in one place so the writer,
//! the query builder and the collector agree.

use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STORED, STRING,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::Index;

/// Bumped whenever the schema or the document shape changes; an index of another format is
/// refused (delete it and it rebuilds from the log).
pub(crate) const FORMAT: u32 = 2;

/// The analyzer of the full-text fields: split on non-alphanumerics, drop tokens over 40 bytes,
/// lowercase, fold accents ("Café" finds "cafe"). No stemming: typo tolerance covers plurals.
pub(crate) const TEXT_ANALYZER: &str = "product_text";

pub(crate) const SKU: &str = "sku";
pub(crate) const NAME: &str = "name";
pub(crate) const DESCRIPTION: &str = "description";
pub(crate) const CATEGORY_TEXT: &str = "category_text";
pub(crate) const CATEGORY: &str = "category";
pub(crate) const PRICE_MINOR: &str = "price_minor";
pub(crate) const CURRENCY: &str = "currency";
pub(crate) const IN_STOCK: &str = "in_stock";
pub(crate) const CREATED_AT_MICROS: &str = "created_at_micros";
pub(crate) const RATING_AVERAGE_MILLI: &str = "rating_average_milli";
pub(crate) const REVIEW_COUNT: &str = "review_count";

/// The fields of a product document.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProductFields {
    /// exact, stored, fast (tie-break ordinals); the upsert key
    pub sku: Field,
    /// full text, stored
    pub name: Field,
    /// full text, not stored
    pub description: Field,
    /// full text over the category, not stored
    pub category_text: Field,
    /// exact, stored, fast: the category filter and facet
    pub category: Field,
    /// i64 minor units, indexed, fast, stored
    pub price_minor: Field,
    /// ISO code, stored
    pub currency: Field,
    /// indexed, fast, stored
    pub in_stock: Field,
    /// microseconds since the epoch, fast, stored: "newness"
    pub created_at_micros: Field,
    /// average stars of the visible reviews in thousandths (0 without), fast, stored
    pub rating_average_milli: Field,
    /// number of visible reviews, fast, stored
    pub review_count: Field,
}

impl ProductFields {
    pub(crate) fn schema() -> (Schema, ProductFields) {
        let full_text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TEXT_ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqs),
        );
        let mut builder = Schema::builder();
        let fields = ProductFields {
            sku: builder.add_text_field(SKU, STRING | STORED | FAST),
            name: builder.add_text_field(NAME, full_text.clone().set_stored()),
            description: builder.add_text_field(DESCRIPTION, full_text.clone()),
            category_text: builder.add_text_field(CATEGORY_TEXT, full_text),
            category: builder.add_text_field(CATEGORY, STRING | STORED | FAST),
            price_minor: builder.add_i64_field(PRICE_MINOR, INDEXED | FAST | STORED),
            currency: builder.add_text_field(CURRENCY, STORED),
            in_stock: builder.add_bool_field(IN_STOCK, INDEXED | FAST | STORED),
            created_at_micros: builder.add_i64_field(CREATED_AT_MICROS, FAST | STORED),
            rating_average_milli: builder.add_i64_field(RATING_AVERAGE_MILLI, FAST | STORED),
            review_count: builder.add_i64_field(REVIEW_COUNT, FAST | STORED),
        };
        (builder.build(), fields)
    }

    /// The full-text fields with their boosts: a match in the name counts most.
    pub(crate) fn text_fields(&self) -> [(Field, f32); 3] {
        [
            (self.name, 3.0),
            (self.category_text, 2.0),
            (self.description, 1.0),
        ]
    }
}

pub(crate) fn text_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// Registers the analyzer; needed on every open (tokenizers are not persisted).
pub(crate) fn register_analyzers(index: &Index) {
    index.tokenizers().register(TEXT_ANALYZER, text_analyzer());
}
