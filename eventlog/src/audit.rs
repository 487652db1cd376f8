//! Tamper evidence: every event's hash covers its content and its predecessor's hash in the
//! stream, so editing, deleting or reordering a stored event breaks the chain at that point.
//!
//! The chain is computed at append by the `events_chain` trigger (migration 0001); [`verify_all`]
//! and [`verify_stream`] recompute it here, independently, from the stored columns.
//! Known limit: removing the *last* events of a stream leaves a shorter chain that is still
//! intact; anchoring stream heads outside the database is the cure (see ARCHITECTURE.md).

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::Result;

/// The hash every stream's first event chains to.
pub const GENESIS: [u8; 32] = [0; 32];

/// What is wrong at a broken link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// The stored content does not hash to the stored hash: the event was edited.
    ContentAltered,
    /// Sequences are missing before this event: events were deleted.
    MissingEvents { expected_sequence: i64 },
    /// The event does not chain to its predecessor's hash: the predecessor was replaced.
    ChainBroken,
}

/// The first place a chain does not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub problem: Problem,
}

impl std::fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.problem {
            Problem::ContentAltered => "content was altered".to_owned(),
            Problem::MissingEvents { expected_sequence } => {
                format!("events are missing (expected sequence {expected_sequence})")
            }
            Problem::ChainBroken => "does not chain to its predecessor".to_owned(),
        };
        write!(
            f,
            "{}/{} event #{}: {what}",
            self.aggregate_type, self.aggregate_id, self.sequence
        )
    }
}

/// The outcome of a verification.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub streams: u64,
    pub events: u64,
    pub broken_links: u64,
    pub first_broken: Option<BrokenLink>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.broken_links == 0
    }
}

/// The text a hash covers; must match the SQL function `event_hash_input` byte for byte.
pub fn hash_input(fields: &[&str]) -> String {
    fields.join("\u{1f}")
}

/// `sha256(prev_hash || hash_input)`.
pub fn chain_hash(prev_hash: &[u8], input: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(input.as_bytes());
    hasher.finalize().into()
}

const SELECT: &str = "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version,
        payload::text AS payload, metadata::text AS metadata, event_id::text AS event_id,
        extract(epoch FROM recorded_at)::text AS recorded_at, prev_hash, hash
   FROM events";

const PAGE: i64 = 5_000;

/// Walks streams in order and keeps the state of the one being checked.
#[derive(Default)]
struct ChainWalker {
    report: VerifyReport,
    stream: Option<(String, String)>,
    last_sequence: i64,
    last_hash: Vec<u8>,
}

impl ChainWalker {
    fn check(&mut self, row: &PgRow) {
        let aggregate_type: String = row.get("aggregate_type");
        let aggregate_id: String = row.get("aggregate_id");
        let sequence: i64 = row.get("sequence");
        let prev_hash: Vec<u8> = row.get("prev_hash");
        let hash: Vec<u8> = row.get("hash");
        let same_stream = self
            .stream
            .as_ref()
            .is_some_and(|(t, i)| *t == aggregate_type && *i == aggregate_id);
        if !same_stream {
            self.report.streams += 1;
            self.stream = Some((aggregate_type.clone(), aggregate_id.clone()));
            self.last_sequence = 0;
            self.last_hash = GENESIS.to_vec();
        }
        self.report.events += 1;

        let sequence_text = sequence.to_string();
        let texts = [
            "event_type",
            "event_version",
            "payload",
            "metadata",
            "event_id",
            "recorded_at",
        ]
        .map(|column| row.get::<String, _>(column));
        let input = hash_input(&[
            &aggregate_type,
            &aggregate_id,
            &sequence_text,
            &texts[0],
            &texts[1],
            &texts[2],
            &texts[3],
            &texts[4],
            &texts[5],
        ]);
        let problem = if sequence != self.last_sequence + 1 {
            Some(Problem::MissingEvents {
                expected_sequence: self.last_sequence + 1,
            })
        } else if prev_hash != self.last_hash {
            Some(Problem::ChainBroken)
        } else if chain_hash(&prev_hash, &input)[..] != hash[..] {
            Some(Problem::ContentAltered)
        } else {
            None
        };
        if let Some(problem) = problem {
            self.report.broken_links += 1;
            if self.report.first_broken.is_none() {
                self.report.first_broken = Some(BrokenLink {
                    aggregate_type: aggregate_type.clone(),
                    aggregate_id: aggregate_id.clone(),
                    sequence,
                    problem,
                });
            }
        }
        self.last_sequence = sequence;
        self.last_hash = hash;
    }
}

/// Recomputes every stream's chain. `progress` is called after each page with the number of
/// events checked so far.
pub async fn verify_all(pool: &PgPool, mut progress: impl FnMut(u64)) -> Result<VerifyReport> {
    let mut walker = ChainWalker::default();
    let mut after: Option<(String, String, i64)> = None;
    loop {
        let rows = match &after {
            None => {
                sqlx::query(&format!(
                    "{SELECT} ORDER BY aggregate_type, aggregate_id, sequence LIMIT $1"
                ))
                .bind(PAGE)
                .fetch_all(pool)
                .await?
            }
            Some((aggregate_type, aggregate_id, sequence)) => {
                sqlx::query(&format!(
                    "{SELECT} WHERE (aggregate_type, aggregate_id, sequence) > ($1, $2, $3)
                      ORDER BY aggregate_type, aggregate_id, sequence LIMIT $4"
                ))
                .bind(aggregate_type)
                .bind(aggregate_id)
                .bind(sequence)
                .bind(PAGE)
                .fetch_all(pool)
                .await?
            }
        };
        for row in &rows {
            walker.check(row);
        }
        progress(walker.report.events);
        match rows.last() {
            Some(last) if rows.len() as i64 == PAGE => {
                after = Some((
                    last.get("aggregate_type"),
                    last.get("aggregate_id"),
                    last.get("sequence"),
                ))
            }
            _ => return Ok(walker.report),
        }
    }
}

/// Recomputes one stream's chain.
pub async fn verify_stream(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<VerifyReport> {
    let rows = sqlx::query(&format!(
        "{SELECT} WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
    ))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_all(pool)
    .await?;
    let mut walker = ChainWalker::default();
    for row in &rows {
        walker.check(row);
    }
    Ok(walker.report)
}

/// The number of stored events, for progress bars.
pub async fn count_events(pool: &PgPool) -> Result<u64> {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    Ok(count as u64)
}
