//! Errors of the event-log layer.

/// What can go wrong talking to the event log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Deserialize(Box<UnreadableEvent>),
    #[error("event cannot be stored: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("another writer changed the stream first; retry")]
    Conflict,
    #[error("cannot append: {0}")]
    InvalidAppend(String),
    #[error(transparent)]
    Canonical(#[from] crate::hash::CanonicalError),
    #[error("migration {version} ({name}) was changed after it was applied")]
    MigrationChanged { version: i64, name: String },
}

/// A stored event that cannot be turned back into its Rust type.
#[derive(Debug, thiserror::Error)]
#[error("stored event {event_type} v{event_version} of {aggregate_type}/{aggregate_id} #{sequence} cannot be read: {reason}")]
pub struct UnreadableEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub reason: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// SQLSTATEs that mean "another writer got there first": retry the command.
pub(crate) fn is_conflict(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // unique_violation (two appends of one sequence), serialization_failure (our chain
            // trigger's xid-order guard), deadlock_detected
            Some("23505") | Some("40001") | Some("40P01")
        ),
        _ => false,
    }
}
