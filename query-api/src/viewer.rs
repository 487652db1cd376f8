//! Who is asking: the same access tokens as the command API, read from the `Authorization`
//! header (HTTP) or the `connection_init` payload (WebSocket).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use accounts::sessions::SessionCheck;
use accounts::tokens::TokenKeys;
use accounts::Role;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{QueryError, QueryResult};

/// The caller of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewer {
    /// No token: the catalog and guest carts only.
    Guest,
    Account {
        id: Uuid,
        role: Role,
    },
}

impl Viewer {
    /// From an `Authorization` header value: none → guest; `Bearer <valid token>` → its account;
    /// anything else is refused (a bad token is never downgraded to a guest silently).
    pub fn from_authorization(header: Option<&str>, keys: &TokenKeys) -> QueryResult<Viewer> {
        Ok(Viewer::with_session(header, keys)?.0)
    }

    /// [`from_authorization`](Self::from_authorization), with the token's [`Session`] (none for
    /// a guest), for a connection that outlives the check (WebSocket).
    pub fn with_session(
        header: Option<&str>,
        keys: &TokenKeys,
    ) -> QueryResult<(Viewer, Option<Session>)> {
        let Some(header) = header else {
            return Ok((Viewer::Guest, None));
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                QueryError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
            })?;
        let claims = keys.verify(token.trim()).ok_or_else(|| {
            QueryError::Unauthorized("the access token is invalid or expired".into())
        })?;
        let session = Session {
            account: claims.sub,
            expires_at: UNIX_EPOCH + Duration::from_secs(claims.exp),
            family: claims.sid,
            revocations: None,
        };
        let viewer = Viewer::Account {
            id: claims.sub,
            role: claims.role,
        };
        Ok((viewer, Some(session)))
    }

    /// The account id, if the caller has one in `role`: guests get `unauthorized`, other roles
    /// `forbidden`.
    pub fn require(&self, role: Role, what: &str) -> QueryResult<Uuid> {
        match *self {
            Viewer::Guest => Err(QueryError::Unauthorized(format!(
                "{what} needs a signed-in {} account",
                role.as_str()
            ))),
            Viewer::Account { id, role: actual } if actual == role => Ok(id),
            Viewer::Account { .. } => Err(QueryError::Forbidden(format!(
                "{what} is for {} accounts only",
                role.as_str()
            ))),
        }
    }

    /// The signed-in account of any role.
    pub fn account(&self) -> QueryResult<(Uuid, Role)> {
        match *self {
            Viewer::Guest => Err(QueryError::Unauthorized("sign in first".into())),
            Viewer::Account { id, role } => Ok((id, role)),
        }
    }

    /// The customer id when the caller is a signed-in customer.
    pub fn customer(&self) -> Option<Uuid> {
        match *self {
            Viewer::Account {
                id,
                role: Role::Customer,
            } => Some(id),
            _ => None,
        }
    }

    pub fn is_staff(&self) -> bool {
        matches!(
            self,
            Viewer::Account {
                role: Role::Staff,
                ..
            }
        )
    }
}

/// How often a running subscription checks its session again (besides at the token's expiry).
pub const SESSION_RECHECK: Duration = Duration::from_secs(30);

/// Where revoked sessions are looked up: the command API's cached check over its accounts
/// tables (a logout on another replica counts within its few seconds of cache).
#[derive(Clone)]
pub struct Revocations {
    pub check: Arc<SessionCheck>,
    pub pool: PgPool,
}

/// The access token of a request or a WebSocket connection. A request checks it once; a
/// subscription outlives that check, so it checks its session when it starts, when the token
/// expires and every [`SESSION_RECHECK`], and ends with `unauthorized` once the session is over:
/// the token expired, or its session (refresh-token family, claim `sid`) was signed out or
/// revoked for refresh-token reuse.
#[derive(Clone)]
pub struct Session {
    pub account: Uuid,
    /// The token's `exp`.
    pub expires_at: SystemTime,
    /// The refresh-token family the token belongs to (`None` for tokens issued outside a
    /// session, which live out their short life).
    pub family: Option<Uuid>,
    revocations: Option<Revocations>,
}

impl Session {
    /// This session, checked against `revocations` from now on.
    pub fn revocable(mut self, revocations: Revocations) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// `unauthorized` once the session is over.
    pub async fn check(&self) -> QueryResult<()> {
        if SystemTime::now() >= self.expires_at {
            return Err(QueryError::Unauthorized(
                "the access token expired; connect again with a fresh one".into(),
            ));
        }
        if let (Some(family), Some(revocations)) = (self.family, &self.revocations) {
            if revocations
                .check
                .is_revoked(&revocations.pool, family)
                .await?
            {
                return Err(QueryError::Unauthorized(
                    "the session was signed out; sign in again".into(),
                ));
            }
        }
        Ok(())
    }

    /// How long until the session must be checked again.
    pub fn next_check(&self) -> Duration {
        self.expires_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(SESSION_RECHECK)
    }
}
