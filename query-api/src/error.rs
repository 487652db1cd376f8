//! The query API's errors: every one carries `extensions.code` from the APIs' shared vocabulary
//! ([`ErrorCode`], crate `http-vocabulary`), so a client handles both APIs' errors with one switch.

use async_graphql::ErrorExtensions;
use eventlog::LogPosition;
use http_vocabulary::ErrorCode;

/// What a query can fail with.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Validation(String),
    #[error("the query is {0} bytes long; at most {1} are accepted")]
    QueryTooLarge(usize, usize),
    /// The read model did not reach the position the caller asked for within the wait bound.
    #[error("the {read_model} read model has not reached position {required} yet (it is at {current}); retry shortly")]
    NotYetConsistent {
        read_model: &'static str,
        required: LogPosition,
        current: LogPosition,
    },
    #[error("{0} is unavailable; retry shortly")]
    Unavailable(&'static str),
    #[error("an internal error occurred")]
    Internal,
}

pub type QueryResult<T> = Result<T, QueryError>;

impl QueryError {
    pub fn code(&self) -> ErrorCode {
        match self {
            QueryError::Unauthorized(_) => ErrorCode::Unauthorized,
            QueryError::Forbidden(_) => ErrorCode::Forbidden,
            QueryError::NotFound(_) => ErrorCode::NotFound,
            QueryError::Validation(_) => ErrorCode::Validation,
            QueryError::QueryTooLarge(..) => ErrorCode::PayloadTooLarge,
            QueryError::NotYetConsistent { .. } => ErrorCode::NotYetConsistent,
            QueryError::Unavailable(_) => ErrorCode::ServiceUnavailable,
            QueryError::Internal => ErrorCode::Internal,
        }
    }

    /// An unexpected failure: logged here, once, with its cause; the client sees an opaque error.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error in the query API");
        QueryError::Internal
    }

    pub fn validation(detail: impl Into<String>) -> Self {
        QueryError::Validation(detail.into())
    }
}

impl From<sqlx::Error> for QueryError {
    fn from(error: sqlx::Error) -> Self {
        if eventlog::error::is_unavailable(&error) {
            tracing::warn!(%error, "database unavailable");
            QueryError::Unavailable("the database")
        } else {
            QueryError::internal(error)
        }
    }
}

impl From<eventlog::Error> for QueryError {
    fn from(error: eventlog::Error) -> Self {
        match error {
            eventlog::Error::Database(error) => error.into(),
            other => QueryError::internal(other),
        }
    }
}

impl ErrorExtensions for QueryError {
    fn extend(&self) -> async_graphql::Error {
        async_graphql::Error::new(self.to_string()).extend_with(|_, extensions| {
            extensions.set("code", self.code().as_str());
            if let QueryError::NotYetConsistent {
                required, current, ..
            } = self
            {
                extensions.set("requiredPosition", required.to_string());
                extensions.set("currentPosition", current.to_string());
            }
        })
    }
}

/// `result.gql()?` in a resolver: the error keeps its code.
pub trait IntoGraphql<T> {
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> IntoGraphql<T> for QueryResult<T> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(|error| error.extend())
    }
}
