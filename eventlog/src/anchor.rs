//! Anchors: signed digests of every stream head, kept outside the database, so that removing or
//! rewriting the *tail* of a stream (which leaves a shorter, self-consistent chain) is caught.
//!
//! An [`Anchor`] covers one log position (the gap-safe one: only events of transactions below
//! the snapshot's xmin, as the log reader reads them) and lists, for every stream, its last
//! sequence and hash there, plus the number of events at or before that position. A running
//! sha256 over the heads (sorted by aggregate type and id, bytewise) is the anchor's digest; an
//! HMAC-SHA256 with the operator's key over the header ([`Anchor::signed_text`]) signs it.
//!
//! [`verify`] checks the signature first (a bad one is [`SignatureProblem`], nothing else is
//! trusted), then that every anchored head is still in the database with exactly its hash —
//! with the hash chain intact (see [`crate::audit`]), that proves the stream's whole prefix is
//! unchanged — and that no event was added at or before the anchored position. Streams may have
//! grown since: later events are not the anchor's business.
//!
//! Anchors are JSON files ([`write_file`], [`read_dir`]); an object store or a Kafka topic can
//! hold the same bytes.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};

use crate::LogPosition;

type HmacSha256 = Hmac<Sha256>;

/// The `format` of the anchors this module writes and reads.
pub const FORMAT: &str = "shop.audit-anchor.v1";

/// Shortest key accepted (HMAC-SHA256's block of security).
pub const MIN_KEY_BYTES: usize = 32;

/// What can go wrong making, storing or checking an anchor (a failed check is not an error: it
/// is an [`AnchorReport`] or a [`SignatureProblem`]).
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("anchors: {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("anchor signing key must be at least {MIN_KEY_BYTES} bytes")]
    ShortKey,
}

pub type Result<T, E = AnchorError> = std::result::Result<T, E>;

/// The key anchors are signed with. Never printed.
#[derive(Clone)]
pub struct AnchorKey(Vec<u8>);

impl std::fmt::Debug for AnchorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnchorKey(***)")
    }
}

impl AnchorKey {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<AnchorKey> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(AnchorError::ShortKey);
        }
        Ok(AnchorKey(bytes))
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }

    /// A public name of the key (an HMAC of a constant, not the key): tells "signed with another
    /// key" from "altered" and helps rotation.
    pub fn id(&self) -> String {
        let mut mac = self.mac();
        mac.update(b"shop.audit-anchor.key-id");
        hex::encode(&mac.finalize().into_bytes()[..8])
    }
}

/// A stream's last event at the anchored position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHead {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
}

/// A signed digest of every stream head at one log position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// [`FORMAT`].
    pub format: String,
    pub created_at: DateTime<Utc>,
    /// The last event covered, in log order (`transaction_id.global_position`).
    pub position: LogPosition,
    pub streams: u64,
    /// Events at or before `position`.
    pub events: u64,
    /// sha256 over the heads in order, hex ([`digest`]).
    pub digest: String,
    /// [`AnchorKey::id`] of the signing key.
    pub key_id: String,
    /// HMAC-SHA256 of [`Anchor::signed_text`], hex.
    pub signature: String,
    /// Sorted by aggregate type, then aggregate id (bytewise).
    pub heads: Vec<StreamHead>,
}

impl Anchor {
    /// What the signature covers: the header, whose digest covers the heads.
    pub fn signed_text(&self) -> String {
        format!(
            "{}\ncreated_at={}\nposition={}\nstreams={}\nevents={}\ndigest={}\n",
            self.format,
            self.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            self.position,
            self.streams,
            self.events,
            self.digest
        )
    }

    fn sign(mut self, key: &AnchorKey) -> Anchor {
        let mut mac = key.mac();
        mac.update(self.signed_text().as_bytes());
        self.signature = hex::encode(mac.finalize().into_bytes());
        self.key_id = key.id();
        self
    }

    /// Whether `key` signed this anchor as it is: header and heads. Nothing else about an
    /// anchor may be trusted before this passes.
    pub fn check_signature(&self, key: &AnchorKey) -> Result<(), SignatureProblem> {
        self.check_header(key)?;
        if self.streams != self.heads.len() as u64 || digest(&self.heads) != self.digest {
            return Err(SignatureProblem::HeadsAltered);
        }
        Ok(())
    }

    /// Whether `key` signed this anchor's header (time, position, counts, digest), whatever its
    /// heads: for a copy published without them.
    pub fn check_header(&self, key: &AnchorKey) -> Result<(), SignatureProblem> {
        if self.format != FORMAT {
            return Err(SignatureProblem::UnknownFormat(self.format.clone()));
        }
        let signature = hex::decode(&self.signature).map_err(|_| SignatureProblem::Mismatch)?;
        let mut mac = key.mac();
        mac.update(self.signed_text().as_bytes());
        if mac.verify_slice(&signature).is_err() {
            return Err(if self.key_id != key.id() {
                SignatureProblem::OtherKey {
                    key_id: self.key_id.clone(),
                }
            } else {
                SignatureProblem::Mismatch
            });
        }
        Ok(())
    }

    /// `anchor-<created_at>-<position>.json`: names sort by creation time.
    pub fn file_name(&self) -> String {
        format!(
            "anchor-{}-{}.json",
            self.created_at.format("%Y%m%dT%H%M%S%.6fZ"),
            self.position
        )
    }

    /// One line for logs and the CLI.
    pub fn summary(&self) -> String {
        format!(
            "anchor at log position {} ({} streams, {} events, digest {}…)",
            self.position,
            self.streams,
            self.events,
            &self.digest[..self.digest.len().min(16)]
        )
    }
}

/// Why an anchor is refused as badly signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignatureProblem {
    /// Not an anchor this version knows.
    UnknownFormat(String),
    /// Signed with another key (or its key id was edited too).
    OtherKey { key_id: String },
    /// The header (position, counts, digest, time) was altered, or the signature forged.
    Mismatch,
    /// The signed header is intact but the list of heads does not hash to its digest.
    HeadsAltered,
}

impl std::fmt::Display for SignatureProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureProblem::UnknownFormat(format) => {
                write!(f, "unknown anchor format `{format}` (expected {FORMAT})")
            }
            SignatureProblem::OtherKey { key_id } => write!(
                f,
                "signed with another key (key id {key_id}), or altered; is SHOP_AUDIT_ANCHOR_KEY right?"
            ),
            SignatureProblem::Mismatch => {
                f.write_str("the signature does not match: the anchor was altered")
            }
            SignatureProblem::HeadsAltered => {
                f.write_str("the list of stream heads does not match the signed digest: it was altered")
            }
        }
    }
}

/// The running sha256 over heads in their order: for each, the length-prefixed aggregate type
/// and id, the sequence (8 bytes, big-endian) and the hash.
pub fn digest(heads: &[StreamHead]) -> String {
    let mut sha = Sha256::new();
    sha.update(FORMAT.as_bytes());
    for head in heads {
        for text in [&head.aggregate_type, &head.aggregate_id] {
            sha.update((text.len() as u64).to_be_bytes());
            sha.update(text.as_bytes());
        }
        sha.update(head.sequence.to_be_bytes());
        sha.update((head.hash.len() as u64).to_be_bytes());
        sha.update(&head.hash);
    }
    hex::encode(sha.finalize())
}

/// Heads per query.
const PAGE: usize = 5_000;

/// The last event a reader may read now: the anchor's position (`START` for an empty log).
async fn safe_position(pool: &PgPool) -> Result<LogPosition> {
    let row = sqlx::query(
        "SELECT transaction_id::text::bigint AS transaction_id, global_position FROM events
          WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map_or(LogPosition::START, |row| LogPosition {
        transaction_id: row.get("transaction_id"),
        global_position: row.get("global_position"),
    }))
}

/// Events at or before `position`.
pub async fn count_events_at(pool: &PgPool, position: LogPosition) -> Result<u64> {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events
          WHERE (events.transaction_id, events.global_position) <= ($1::bigint::text::xid8, $2)",
    )
    .bind(position.transaction_id)
    .bind(position.global_position)
    .fetch_one(pool)
    .await?;
    Ok(count as u64)
}

/// Streams per page of heads: the next `$3` streams (after `($4, $5)` on later pages) and their
/// heads at the position `$1.$2`: each stream's last event there (the log order agrees with every
/// stream's order, so that is its highest sequence there). `DISTINCT ON` over the primary key
/// reads every event; a skip scan (two index probes per stream) took 2x longer on the seeded
/// log's 3.8 events per stream, but would win on much longer streams.
fn heads_sql(after: bool) -> String {
    let after = if after {
        "AND (aggregate_type, aggregate_id) > ($4, $5)"
    } else {
        ""
    };
    format!(
        "SELECT DISTINCT ON (aggregate_type, aggregate_id)
                aggregate_type, aggregate_id, sequence, hash
           FROM events
          WHERE (events.transaction_id, events.global_position) <= ($1::bigint::text::xid8, $2)
                {after}
          ORDER BY aggregate_type, aggregate_id, sequence DESC
          LIMIT $3"
    )
}

/// Makes an anchor of the log as a reader may read it now, signed with `key`. `progress` is
/// called after each page with the number of events the heads read so far cover, and the
/// number of events the anchor covers.
///
/// Everything at or before the position is settled (its transactions have all ended and events
/// are immutable), so the position, the count and the heads may be read in separate statements
/// while writers go on.
pub async fn create(
    pool: &PgPool,
    key: &AnchorKey,
    mut progress: impl FnMut(u64, u64),
) -> Result<Anchor> {
    let created_at = DateTime::from_timestamp_micros(Utc::now().timestamp_micros())
        .expect("now is a valid time");
    let position = safe_position(pool).await?;
    let events = count_events_at(pool, position).await?;
    let mut heads: Vec<StreamHead> = Vec::new();
    let mut covered = 0u64;
    loop {
        let rows = match heads.last() {
            None => {
                sqlx::query(&heads_sql(false))
                    .bind(position.transaction_id)
                    .bind(position.global_position)
                    .bind(PAGE as i64)
                    .fetch_all(pool)
                    .await?
            }
            Some(last) => {
                sqlx::query(&heads_sql(true))
                    .bind(position.transaction_id)
                    .bind(position.global_position)
                    .bind(PAGE as i64)
                    .bind(&last.aggregate_type)
                    .bind(&last.aggregate_id)
                    .fetch_all(pool)
                    .await?
            }
        };
        let full = rows.len() == PAGE;
        for row in rows {
            let head = StreamHead {
                aggregate_type: row.get("aggregate_type"),
                aggregate_id: row.get("aggregate_id"),
                sequence: row.get("sequence"),
                hash: row.get("hash"),
            };
            covered += head.sequence as u64;
            heads.push(head);
        }
        progress(covered, events);
        if !full {
            break;
        }
    }
    // the digest's order is bytewise, whatever the database's collation
    heads.sort_by(|a, b| {
        (a.aggregate_type.as_bytes(), a.aggregate_id.as_bytes())
            .cmp(&(b.aggregate_type.as_bytes(), b.aggregate_id.as_bytes()))
    });
    let anchor = Anchor {
        format: FORMAT.to_owned(),
        created_at,
        position,
        streams: heads.len() as u64,
        events,
        digest: digest(&heads),
        key_id: String::new(),
        signature: String::new(),
        heads,
    };
    Ok(anchor.sign(key))
}

/// What the database no longer agrees with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AnchorProblem {
    /// The anchored event is gone: the stream now ends before it (`last_sequence`, `None` when
    /// the stream has no events left).
    Truncated {
        aggregate_type: String,
        aggregate_id: String,
        anchored_sequence: i64,
        last_sequence: Option<i64>,
    },
    /// The anchored event is there with another hash: it, or an event before it, was replaced.
    Rewritten {
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
    },
    /// Events at or before the anchored position were added or removed (e.g. backdated rows).
    EventCountChanged { anchored: u64, now: u64 },
}

impl std::fmt::Display for AnchorProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnchorProblem::Truncated {
                aggregate_type,
                aggregate_id,
                anchored_sequence,
                last_sequence,
            } => {
                write!(
                    f,
                    "{aggregate_type}/{aggregate_id} was truncated: anchored through event #{anchored_sequence}, "
                )?;
                match last_sequence {
                    Some(last) => write!(f, "now ends at #{last}"),
                    None => f.write_str("now has no events"),
                }
            }
            AnchorProblem::Rewritten {
                aggregate_type,
                aggregate_id,
                sequence,
            } => write!(
                f,
                "{aggregate_type}/{aggregate_id} event #{sequence} was rewritten: its hash is not the anchored one"
            ),
            AnchorProblem::EventCountChanged { anchored, now } => write!(
                f,
                "the log holds {now} events at or before the anchored position, the anchor counted {anchored}"
            ),
        }
    }
}

/// The outcome of checking an anchor against the database.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AnchorReport {
    pub heads_checked: u64,
    pub problems: u64,
    pub first_problem: Option<AnchorProblem>,
}

impl AnchorReport {
    pub fn holds(&self) -> bool {
        self.problems == 0
    }

    fn found(&mut self, problem: AnchorProblem) {
        self.problems += 1;
        if self.first_problem.is_none() {
            self.first_problem = Some(problem);
        }
    }
}

/// Why an anchor check did not run or did not hold.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("badly signed anchor: {0}")]
    BadlySigned(SignatureProblem),
    #[error(transparent)]
    Anchor(#[from] AnchorError),
}

/// Checks `anchor`'s signature with `key`, then every anchored head against the database.
/// `progress` is called after each page with the number of heads checked.
pub async fn verify(
    pool: &PgPool,
    anchor: &Anchor,
    key: &AnchorKey,
    mut progress: impl FnMut(u64),
) -> Result<AnchorReport, VerifyError> {
    anchor
        .check_signature(key)
        .map_err(VerifyError::BadlySigned)?;
    let mut report = AnchorReport::default();
    for page in anchor.heads.chunks(PAGE) {
        let types: Vec<&str> = page.iter().map(|h| h.aggregate_type.as_str()).collect();
        let ids: Vec<&str> = page.iter().map(|h| h.aggregate_id.as_str()).collect();
        let sequences: Vec<i64> = page.iter().map(|h| h.sequence).collect();
        let rows = sqlx::query(
            "SELECT e.hash,
                    CASE WHEN e.hash IS NULL THEN
                        (SELECT max(m.sequence) FROM events m
                          WHERE m.aggregate_type = h.t AND m.aggregate_id = h.a)
                    END AS last_sequence
               FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS h(t, a, s, i)
               LEFT JOIN events e
                 ON e.aggregate_type = h.t AND e.aggregate_id = h.a AND e.sequence = h.s
              ORDER BY h.i",
        )
        .bind(&types)
        .bind(&ids)
        .bind(&sequences)
        .fetch_all(pool)
        .await
        .map_err(AnchorError::from)?;
        for (head, row) in page.iter().zip(rows) {
            let hash: Option<Vec<u8>> = row.get("hash");
            match hash {
                None => report.found(AnchorProblem::Truncated {
                    aggregate_type: head.aggregate_type.clone(),
                    aggregate_id: head.aggregate_id.clone(),
                    anchored_sequence: head.sequence,
                    last_sequence: row.get("last_sequence"),
                }),
                Some(hash) if hash != head.hash => report.found(AnchorProblem::Rewritten {
                    aggregate_type: head.aggregate_type.clone(),
                    aggregate_id: head.aggregate_id.clone(),
                    sequence: head.sequence,
                }),
                Some(_) => {}
            }
        }
        report.heads_checked += page.len() as u64;
        progress(report.heads_checked);
    }
    let now = count_events_at(pool, anchor.position).await?;
    if now != anchor.events {
        report.found(AnchorProblem::EventCountChanged {
            anchored: anchor.events,
            now,
        });
    }
    Ok(report)
}

/// Writes `anchor` as `dir/<file_name>` (creating `dir`), atomically: a reader never sees half
/// a file. Returns its path.
pub fn write_file(dir: &Path, anchor: &Anchor) -> Result<PathBuf> {
    let path = dir.join(anchor.file_name());
    let io = |source| AnchorError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let partial = dir.join(format!(".{}.partial", anchor.file_name()));
    let json = serde_json::to_vec_pretty(anchor).expect("an anchor serializes");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&partial).map_err(io)?;
        file.write_all(&json).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&partial, &path).map_err(io)?;
    Ok(path)
}

/// An anchor file as read back: the anchor, or why it is not one.
pub type AnchorFile = (PathBuf, Result<Anchor, String>);

/// The anchor files of `dir` (`anchor-*.json`), oldest first (names sort by creation time).
pub fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| AnchorError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("anchor-") && n.ends_with(".json"))
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// Reads one anchor file.
pub fn read_file(path: &Path) -> Result<AnchorFile> {
    let bytes = std::fs::read(path).map_err(|source| AnchorError::Io {
        path: path.to_owned(),
        source,
    })?;
    let anchor = serde_json::from_slice(&bytes).map_err(|e| format!("not an anchor: {e}"));
    Ok((path.to_owned(), anchor))
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> AnchorKey {
        AnchorKey::new(vec![byte; 32]).unwrap()
    }

    fn anchor() -> Anchor {
        let heads = vec![StreamHead {
            aggregate_type: "product".into(),
            aggregate_id: "A".into(),
            sequence: 3,
            hash: vec![7; 32],
        }];
        Anchor {
            format: FORMAT.into(),
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            position: LogPosition {
                transaction_id: 5,
                global_position: 9,
            },
            streams: 1,
            events: 3,
            digest: digest(&heads),
            key_id: String::new(),
            signature: String::new(),
            heads,
        }
        .sign(&key(1))
    }

    #[test]
    fn a_signed_anchor_round_trips_and_any_change_is_refused() {
        let signed = anchor();
        let json = serde_json::to_string(&signed).unwrap();
        let read: Anchor = serde_json::from_str(&json).unwrap();
        assert_eq!(read, signed);
        assert_eq!(read.check_signature(&key(1)), Ok(()));
        assert!(matches!(
            read.check_signature(&key(2)),
            Err(SignatureProblem::OtherKey { .. })
        ));
        let mut later = read.clone();
        later.events = 4;
        assert_eq!(
            later.check_signature(&key(1)),
            Err(SignatureProblem::Mismatch)
        );
        let mut head = read.clone();
        head.heads[0].sequence = 2;
        assert_eq!(
            head.check_signature(&key(1)),
            Err(SignatureProblem::HeadsAltered)
        );
        let mut dropped = read.clone();
        dropped.heads.clear();
        assert_eq!(
            dropped.check_signature(&key(1)),
            Err(SignatureProblem::HeadsAltered)
        );
        assert_eq!(read.file_name(), "anchor-20231114T221320.123456Z-5.9.json");
    }

    #[test]
    fn keys_are_long_enough_and_never_printed() {
        assert!(AnchorKey::new(vec![1; 31]).is_err());
        let key = AnchorKey::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap();
        assert!(!format!("{key:?}").contains("0123"));
        assert_eq!(key.id().len(), 16);
    }
}
