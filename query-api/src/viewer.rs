//! Who is asking: the same access tokens as the command API, read from the `Authorization`
//! header (HTTP) or the `connection_init` payload (WebSocket).

use command_api::auth::tokens::TokenKeys;
use command_api::auth::Role;
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
        let Some(header) = header else {
            return Ok(Viewer::Guest);
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
        Ok(Viewer::Account {
            id: claims.sub,
            role: claims.role,
        })
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
