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
    /// The store's payload codec (e.g. sealing personal fields) refused an event.
    #[error("payload codec: {0}")]
    Codec(crate::codec::CodecError),
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

/// Whether `error` means the database cannot be reached or used right now (a lost or refused
/// connection, a server shutting down or starting, no free connection): a retry later may
/// succeed, so callers answer "unavailable, retry" (HTTP 503), never an internal error.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // class 08: connection exception; 57P01..03: admin/crash shutdown, cannot connect
            // now (starting up); 53300: too many connections
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// [`is_unavailable`] for the event log's own errors.
impl Error {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Database(db) if is_unavailable(db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_and_shutdowns_are_unavailable_but_conflicts_are_not() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
        assert!(is_unavailable(&sqlx::Error::Protocol(
            "unexpected eof".into()
        )));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::ColumnNotFound("x".into())));
        assert!(!Error::Conflict.is_unavailable());
    }
}
