//! Tamper evidence: every event's hash covers its content and its predecessor's hash in the
//! stream, so editing, deleting or reordering a stored event breaks the chain at that point.
//!
//! The writer computes the chain at append ([`crate::hash`]); [`verify_all`] and
//! [`verify_stream`] recompute it from the stored columns, hashing the payload and metadata text
//! exactly as PostgreSQL prints them — so an edit made in SQL, or a writer that got the canonical
//! form wrong, shows up as a broken link.
//! A chain alone cannot show that the *last* events of a stream were removed (or the tail
//! rewritten with a recomputed chain): the shorter chain is still intact. [`crate::anchor`]
//! catches that against signed stream heads kept outside the database.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::hash::{chain_hash, HashedFields, GENESIS};
use crate::Result;

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

const SELECT: &str = "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version,
        payload::text AS payload, metadata::text AS metadata, event_id, recorded_at, prev_hash, hash
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

        let (event_type, event_version, payload, metadata): (String, String, String, String) = (
            row.get("event_type"),
            row.get("event_version"),
            row.get("payload"),
            row.get("metadata"),
        );
        let recorded_at: DateTime<Utc> = row.get("recorded_at");
        let fields = HashedFields {
            aggregate_type: &aggregate_type,
            aggregate_id: &aggregate_id,
            sequence,
            event_type: &event_type,
            event_version: &event_version,
            payload: &payload,
            metadata: &metadata,
            event_id: row.get("event_id"),
            recorded_at_micros: recorded_at.timestamp_micros(),
        };
        let problem = if sequence != self.last_sequence + 1 {
            Some(Problem::MissingEvents {
                expected_sequence: self.last_sequence + 1,
            })
        } else if prev_hash != self.last_hash {
            Some(Problem::ChainBroken)
        } else if chain_hash(&prev_hash, &fields)[..] != hash[..] {
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
