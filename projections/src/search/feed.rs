//! [`SearchFeed`]: the index's subscription. Folds product, inventory and review events into
//! per-SKU state, upserts the documents that changed once per batch, and commits the batch's last
//! position with them.

use std::collections::HashMap;

use eventlog::{LogPosition, RecordedEvent};
use schemas::AnyEvent;
use sqlx::PgPool;
use tantivy::schema::Term;
use tantivy::{IndexWriter, TantivyDocument};

use super::catalog::{Catalog, SkuState, Touched};
use super::index::{commit_payload, SearchIndex};
use super::schema::ProductFields;
use super::SearchError;

/// Feeds one [`SearchIndex`] from the log. There is one per index (it holds the index's writer
/// lock); searches go through the [`SearchIndex`] and its clones.
///
/// On creation the per-SKU state is empty and [`folded_position`](Self::folded_position) is
/// [`LogPosition::START`]: following the log folds every event into the state, and writes to the
/// index only events past [`index_position`](Self::index_position) (the position stored with the
/// index's last commit). So an index with an empty disk is rebuilt, and one that survived a
/// restart is left alone until the feed passes its position.
pub struct SearchFeed {
    index: SearchIndex,
    writer: IndexWriter,
    catalog: Catalog,
    /// Last event folded into `catalog`.
    folded: LogPosition,
    /// Last event whose effect is committed in the index.
    committed: LogPosition,
    /// SKUs touched by events past `committed` and not yet written.
    pending: HashMap<String, Touched>,
    /// Documents written (added or deleted) since the feed was created.
    documents_written: u64,
}

impl std::fmt::Debug for SearchFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchFeed")
            .field("folded", &self.folded)
            .field("committed", &self.committed)
            .field("skus", &self.catalog.len())
            .finish()
    }
}

impl SearchFeed {
    /// Takes `index`'s writer; fails (with a lock error) if another feed holds it.
    pub fn new(index: &SearchIndex) -> Result<SearchFeed, SearchError> {
        Ok(SearchFeed {
            writer: index.writer()?,
            committed: index.committed_position()?,
            index: index.clone(),
            catalog: Catalog::default(),
            folded: LogPosition::START,
            pending: HashMap::new(),
            documents_written: 0,
        })
    }

    /// The index this feed writes.
    pub fn index(&self) -> &SearchIndex {
        &self.index
    }

    /// The last event folded into the per-SKU state; the log is read after it.
    pub fn folded_position(&self) -> LogPosition {
        self.folded
    }

    /// The last event whose effect is committed in the index.
    pub fn index_position(&self) -> LogPosition {
        self.committed
    }

    /// Documents written (upserted or deleted) since this feed was created: after a restart with
    /// an intact disk it stays 0 until the feed passes the index's position.
    pub fn documents_written(&self) -> u64 {
        self.documents_written
    }

    /// Reads one batch of at most `batch_size` events after [`folded_position`]
    /// (Self::folded_position), applies it and commits. Returns how many events were read; 0
    /// means nothing is safe to read yet (poll again later).
    ///
    /// The commit (with its fsync for an on-disk index) runs on the calling thread.
    pub async fn follow(&mut self, pool: &PgPool, batch_size: usize) -> Result<usize, SearchError> {
        if batch_size == 0 {
            return Err(SearchError::InvalidBatchSize);
        }
        let limit = i64::try_from(batch_size).unwrap_or(i64::MAX);
        let events = eventlog::log::read_after(pool, self.folded, limit).await?;
        let read = events.len();
        self.apply(events)?;
        Ok(read)
    }

    /// Follows until a batch comes back short (the log's safe head is reached); returns how many
    /// events were read. A rebuild from an empty disk is this call; a larger `batch_size` means
    /// fewer commits (e.g. 5,000).
    pub async fn catch_up(&mut self, pool: &PgPool, batch_size: usize) -> Result<u64, SearchError> {
        let mut total: u64 = 0;
        loop {
            let read = self.follow(pool, batch_size).await?;
            total += read as u64;
            if read < batch_size {
                tracing::debug!(events = total, position = %self.folded, "search index caught up");
                return Ok(total);
            }
        }
    }

    /// Applies events in log order and commits once. Events at or below
    /// [`folded_position`](Self::folded_position) are skipped, so delivering a batch again
    /// changes nothing. Returns how many events were new.
    ///
    /// On a decode error the events before it stay applied and committed, and the error is
    /// returned (the same event fails again on the next call: nothing is skipped). On an index
    /// error the feed rolls the writer back and forgets its state, so the next call replays the
    /// log from the start and rewrites only what the index is missing.
    pub fn apply(&mut self, events: Vec<RecordedEvent>) -> Result<usize, SearchError> {
        let mut applied = 0;
        let folded = self.fold_all(events, &mut applied);
        if let Err(error) = self.flush() {
            self.forget_after_failure();
            return Err(error);
        }
        folded.map(|()| applied)
    }

    /// Forgets the stored position so the next catch-up rewrites every document from the log
    /// (replacing each by SKU, so the documents present meanwhile stay searchable). For a
    /// change in how documents are built; the searches' [`SearchIndex::position`] goes back to
    /// the start until the catch-up is done.
    pub fn reindex_from_start(&mut self) -> Result<(), SearchError> {
        self.catalog = Catalog::default();
        self.pending.clear();
        self.folded = LogPosition::START;
        self.commit(LogPosition::START)
    }

    fn fold_all(
        &mut self,
        events: Vec<RecordedEvent>,
        applied: &mut usize,
    ) -> Result<(), SearchError> {
        for event in events {
            if event.position <= self.folded {
                continue;
            }
            self.fold(event)?;
            *applied += 1;
        }
        Ok(())
    }

    fn fold(&mut self, event: RecordedEvent) -> Result<(), SearchError> {
        let position = event.position;
        if !matches!(
            event.aggregate_type.as_str(),
            "product" | "inventory" | "review"
        ) {
            self.folded = position;
            return Ok(());
        }
        let decoded = schemas::decode(
            &event.aggregate_type,
            &event.event_type,
            &event.event_version,
            event.payload,
        )
        .map_err(|source| SearchError::Decode {
            position,
            event_type: event.event_type.clone(),
            source,
        })?;
        // product and inventory streams are keyed by SKU; a review names its SKU
        let (sku, touched) = match &decoded {
            AnyEvent::Product(product_event) => {
                let sku = event.aggregate_id;
                let touched = self.catalog.apply_product(&sku, product_event);
                (sku, touched)
            }
            AnyEvent::Inventory(inventory_event) => {
                let sku = event.aggregate_id;
                let touched = self.catalog.apply_inventory(&sku, inventory_event);
                (sku, touched)
            }
            AnyEvent::Review(review_event) => {
                match self.catalog.apply_review(&event.aggregate_id, review_event) {
                    // the rating is in the document: rewrite it
                    Some(sku) => (sku, Touched::Product),
                    None => {
                        self.folded = position;
                        return Ok(());
                    }
                }
            }
            _ => {
                self.folded = position;
                return Ok(());
            }
        };
        if position <= self.committed {
            // the index already holds this event's effect: no write, only remember what it holds
            if let Some(state) = self.catalog.get_mut(&sku) {
                state.indexed = state.listing();
            }
        } else {
            let entry = self.pending.entry(sku).or_insert(touched);
            if touched == Touched::Product {
                *entry = Touched::Product;
            }
        }
        self.folded = position;
        Ok(())
    }

    /// Writes the pending SKUs and commits at the folded position, if it is past the index's.
    fn flush(&mut self) -> Result<(), SearchError> {
        if self.folded <= self.committed {
            return Ok(());
        }
        let fields = *self.index.fields();
        let pending = std::mem::take(&mut self.pending);
        let mut written: u64 = 0;
        for (sku, touched) in pending {
            let Some(state) = self.catalog.get_mut(&sku) else {
                continue;
            };
            let listing = state.listing();
            if touched == Touched::Stock && listing == state.indexed {
                continue;
            }
            self.writer
                .delete_term(Term::from_field_text(fields.sku, &sku));
            if listing.is_some() {
                if let Some(document) = product_document(&fields, &sku, state) {
                    self.writer.add_document(document)?;
                }
            }
            state.indexed = listing;
            written += 1;
        }
        self.documents_written += written;
        tracing::debug!(documents = written, position = %self.folded, "search index commit");
        self.commit(self.folded)
    }

    fn commit(&mut self, position: LogPosition) -> Result<(), SearchError> {
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&commit_payload(position));
        prepared.commit()?;
        self.committed = position;
        self.index.publish(position)
    }

    /// After a failed write or commit: drop what was not committed and start the state over.
    fn forget_after_failure(&mut self) {
        if let Err(error) = self.writer.rollback() {
            tracing::error!(%error, "search index rollback failed");
        }
        self.catalog = Catalog::default();
        self.pending.clear();
        self.folded = LogPosition::START;
        if let Ok(position) = self.index.committed_position() {
            self.committed = position;
        }
    }
}

/// The document of a listed SKU (`None` when it has no product).
fn product_document(
    fields: &ProductFields,
    sku: &str,
    state: &SkuState,
) -> Option<TantivyDocument> {
    let product = state.product.as_ref()?;
    let mut document = TantivyDocument::default();
    document.add_text(fields.sku, sku);
    document.add_text(fields.name, &product.name);
    document.add_text(fields.description, &product.description);
    document.add_text(fields.category_text, &product.category);
    document.add_text(fields.category, &product.category);
    document.add_i64(fields.price_minor, product.price.amount_minor);
    document.add_text(fields.currency, product.price.currency.as_str());
    document.add_bool(fields.in_stock, state.stock.available() > 0);
    document.add_i64(
        fields.created_at_micros,
        product.created_at.timestamp_micros(),
    );
    document.add_i64(fields.rating_average_milli, state.rating.average_milli());
    document.add_i64(
        fields.review_count,
        i64::try_from(state.rating.count).unwrap_or(i64::MAX),
    );
    Some(document)
}
