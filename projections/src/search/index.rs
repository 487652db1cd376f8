//! [`SearchIndex`]: the tantivy index (on disk or in RAM), one shared reader, and
//! [`SearchIndex::search`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use eventlog::LogPosition;
use serde::{Deserialize, Serialize};
use tantivy::directory::MmapDirectory;
use tantivy::query::{EnableScoring, FuzzyTermQuery, Query};
use tantivy::schema::{Field, Term, Value};
use tantivy::{
    DocAddress, Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, Searcher,
    TantivyDocument, TantivyError,
};

use super::collector::{Candidate, PageCollector};
use super::query::build_query;
use super::request::{Facets, PriceBand, ProductHit, SearchPage, SearchRequest, SearchSort};
use super::schema::{register_analyzers, ProductFields, FORMAT};
use super::SearchError;

/// Memory the (single) indexing thread may buffer before it writes a segment.
const WRITER_MEMORY_BYTES: usize = 50_000_000;

/// What every commit stores in the index's `meta.json`, atomically with the documents.
#[derive(Debug, Serialize, Deserialize)]
struct CommitPayload {
    format: u32,
    position: LogPosition,
}

pub(crate) fn commit_payload(position: LogPosition) -> String {
    serde_json::json!({ "format": FORMAT, "position": position }).to_string()
}

/// The product search index. Clones share the index and its reader; searches never block the
/// feed and see each commit as soon as the feed has published it.
#[derive(Clone)]
pub struct SearchIndex {
    shared: Arc<Shared>,
}

struct Shared {
    index: Index,
    reader: IndexReader,
    fields: ProductFields,
    path: Option<PathBuf>,
    /// The log position the current searcher reflects.
    published: Mutex<LogPosition>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("path", &self.shared.path)
            .field("position", &self.position())
            .finish()
    }
}

impl SearchIndex {
    /// Opens the index in `dir` (created, with the directory, when missing), or a new in-RAM
    /// index for `None`. An index of another format or schema (written by an older release) is
    /// deleted and created empty, at position zero, so the feed rebuilds it from the log; only
    /// the files tantivy manages are deleted. An index that still does not match is refused
    /// with [`SearchError::IncompatibleIndex`].
    pub fn open(dir: Option<&Path>) -> Result<SearchIndex, SearchError> {
        let (schema, fields) = ProductFields::schema();
        let index = match dir {
            None => Index::create_in_ram(schema.clone()),
            Some(path) => {
                let directory_error = |source| SearchError::Directory {
                    path: path.to_owned(),
                    source,
                };
                std::fs::create_dir_all(path).map_err(directory_error)?;
                let directory = MmapDirectory::open(path).map_err(TantivyError::from)?;
                if Index::exists(&directory).map_err(TantivyError::from)? {
                    let index = Index::open(directory)?;
                    match compatibility(&index, &schema) {
                        Ok(()) => index,
                        Err(found) => {
                            tracing::warn!(
                                path = %path.display(),
                                %found,
                                expected = FORMAT,
                                "the search index has an older format: rebuilding it from the log"
                            );
                            drop(index);
                            remove_index_files(path).map_err(directory_error)?;
                            let directory =
                                MmapDirectory::open(path).map_err(TantivyError::from)?;
                            Index::create(directory, schema.clone(), IndexSettings::default())?
                        }
                    }
                } else {
                    Index::create(directory, schema.clone(), IndexSettings::default())?
                }
            }
        };
        let incompatible = |found: String| SearchError::IncompatibleIndex {
            path: dir.map(Path::to_owned).unwrap_or_default(),
            found,
        };
        if index.schema() != schema {
            return Err(incompatible("a different schema".to_owned()));
        }
        register_analyzers(&index);
        let position = stored_position(&index).map_err(incompatible)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        warm_up_fuzzy_automata(fields.name, &index)?;
        Ok(SearchIndex {
            shared: Arc::new(Shared {
                index,
                reader,
                fields,
                path: dir.map(Path::to_owned),
                published: Mutex::new(position),
            }),
        })
    }

    /// The log position searches currently reflect: every event up to it is visible. For
    /// read-your-writes, wait until it reaches a command's position.
    pub fn position(&self) -> LogPosition {
        *self
            .shared
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many products are listed.
    pub fn product_count(&self) -> u64 {
        self.shared.reader.searcher().num_docs()
    }

    /// Where the index lives; `None` in RAM.
    pub fn path(&self) -> Option<&Path> {
        self.shared.path.as_deref()
    }

    /// One page of products matching `request`, the total and the facets.
    pub fn search(&self, request: &SearchRequest) -> Result<SearchPage, SearchError> {
        request.validate()?;
        let built = build_query(&self.shared.fields, request)?;
        let collector = PageCollector {
            sort: request.sort,
            scored: request.sort == SearchSort::Relevance && built.has_text,
            window: request.offset + request.limit,
        };
        let searcher = self.shared.reader.searcher();
        let counts = searcher.search(built.query.as_ref(), &collector)?;

        let hits = counts
            .candidates
            .iter()
            .skip(request.offset)
            .take(request.limit)
            .map(|candidate| self.hit(&searcher, candidate, collector.scored))
            .collect::<Result<Vec<_>, _>>()?;

        let mut categories: Vec<(String, u64)> = counts.categories.into_iter().collect();
        categories.sort_by(|(a_name, a_count), (b_name, b_count)| {
            b_count.cmp(a_count).then_with(|| a_name.cmp(b_name))
        });
        let price_bands = PriceBand::ALL
            .iter()
            .map(|band| (*band, counts.price_bands[band.slot()]))
            .collect();
        Ok(SearchPage {
            hits,
            total: usize::try_from(counts.total).unwrap_or(usize::MAX),
            facets: Facets {
                categories,
                price_bands,
                in_stock: counts.in_stock,
                out_of_stock: counts.out_of_stock,
            },
        })
    }

    fn hit(
        &self,
        searcher: &Searcher,
        candidate: &Candidate,
        scored: bool,
    ) -> Result<ProductHit, SearchError> {
        let fields = &self.shared.fields;
        let doc: TantivyDocument = searcher.doc(candidate.address)?;
        let text = |field: Field, name: &str| -> Result<String, SearchError> {
            doc.get_first(field)
                .and_then(|value| value.as_str().map(str::to_owned))
                .ok_or_else(|| missing(candidate.address, name))
        };
        let integer = |field: Field, name: &str| -> Result<i64, SearchError> {
            doc.get_first(field)
                .and_then(|value| value.as_i64())
                .ok_or_else(|| missing(candidate.address, name))
        };
        let created_at_micros = integer(fields.created_at_micros, "created_at_micros")?;
        let created_at: DateTime<Utc> = DateTime::from_timestamp_micros(created_at_micros)
            .ok_or_else(|| missing(candidate.address, "created_at_micros"))?;
        Ok(ProductHit {
            sku: text(fields.sku, "sku")?,
            name: text(fields.name, "name")?,
            category: text(fields.category, "category")?,
            price_minor: integer(fields.price_minor, "price_minor")?,
            currency: text(fields.currency, "currency")?,
            in_stock: doc
                .get_first(fields.in_stock)
                .and_then(|value| value.as_bool())
                .ok_or_else(|| missing(candidate.address, "in_stock"))?,
            created_at,
            score: if scored { candidate.score } else { 0.0 },
            rating_average: match integer(fields.rating_average_milli, "rating_average_milli")? {
                0 => None,
                milli => Some(milli as f64 / 1_000.0),
            },
            review_count: u64::try_from(integer(fields.review_count, "review_count")?).unwrap_or(0),
        })
    }

    pub(crate) fn fields(&self) -> &ProductFields {
        &self.shared.fields
    }

    /// The index's single writer (tantivy allows one per index; a second fails with a lock
    /// error).
    pub(crate) fn writer(&self) -> Result<IndexWriter, SearchError> {
        Ok(self
            .shared
            .index
            .writer_with_num_threads(1, WRITER_MEMORY_BYTES)?)
    }

    /// The position stored with the last commit.
    pub(crate) fn committed_position(&self) -> Result<LogPosition, SearchError> {
        stored_position(&self.shared.index).map_err(|found| SearchError::IncompatibleIndex {
            path: self.shared.path.clone().unwrap_or_default(),
            found,
        })
    }

    /// Makes the last commit visible to searches and records its position.
    pub(crate) fn publish(&self, position: LogPosition) -> Result<(), SearchError> {
        self.shared.reader.reload()?;
        *self
            .shared
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = position;
        Ok(())
    }
}

fn missing(address: DocAddress, field: &str) -> SearchError {
    SearchError::Index(TantivyError::InternalError(format!(
        "stored field `{field}` is missing or malformed in document {address:?}"
    )))
}

/// Whether `index` is of this release's schema and format; else what it is.
fn compatibility(index: &Index, schema: &tantivy::schema::Schema) -> Result<(), String> {
    if index.schema() != *schema {
        return Err("a different schema".to_owned());
    }
    stored_position(index).map(|_| ())
}

/// Deletes the files of the tantivy index in `dir`: those its `.managed.json` lists and its
/// `meta.json` (nothing else that may be in the directory).
fn remove_index_files(dir: &Path) -> std::io::Result<()> {
    let managed = dir.join(".managed.json");
    let listed: Vec<PathBuf> = match std::fs::read(&managed) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error),
    };
    let files = listed
        .into_iter()
        .filter(|file| file.components().count() == 1)
        .map(|file| dir.join(file))
        .chain([dir.join("meta.json"), managed]);
    for file in files {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The position in the last commit's payload (`START` for a new index), or what was found
/// instead.
fn stored_position(index: &Index) -> Result<LogPosition, String> {
    let metas = index.load_metas().map_err(|e| e.to_string())?;
    let Some(payload) = metas.payload else {
        return Ok(LogPosition::START);
    };
    match serde_json::from_str::<CommitPayload>(&payload) {
        Ok(stored) if stored.format == FORMAT => Ok(stored.position),
        Ok(stored) => Err(format!("format {}, expected {FORMAT}", stored.format)),
        Err(_) => Err(format!("commit payload `{payload}`")),
    }
}

/// tantivy builds each Levenshtein automaton builder on first use (the distance-2 one takes a
/// noticeable while); build them now rather than in the first search.
fn warm_up_fuzzy_automata(field: Field, index: &Index) -> Result<(), SearchError> {
    let schema = index.schema();
    for distance in [1, 2] {
        FuzzyTermQuery::new(Term::from_field_text(field, "warmup"), distance, true)
            .weight(EnableScoring::disabled_from_schema(&schema))?;
    }
    Ok(())
}
