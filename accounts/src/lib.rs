//! Accounts and credentials: argon2 password hashes, short-lived JWT access tokens (HS256),
//! rotating refresh tokens (sessions), guest cart tokens, and the roles that decide who may do
//! what. Plain SQL tables, not events: credentials are security state, not business history.
//! The command API and the query API both check tokens and sessions with this crate.

pub mod address_book;
pub mod cart_tokens;
pub mod password_reset;
pub mod passwords;
pub mod profile;
pub mod sessions;
mod store;
pub mod tokens;

pub use store::{
    contact_of, create, delete_customer, end_session, find_by_email, is_revoked, list_sessions,
    revoke_all_sessions, revoke_session, rotate, start_session, start_session_on, Account,
    AccountError, Contact, RefreshError, Session, SessionInfo,
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What an account may do. Guests (no token) are not a role: they have no account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Shops: carts, checkout, their own orders.
    Customer,
    /// Runs the shop: catalog, stock, shipping, cancellations, refunds.
    Staff,
    /// Reads history and verifies it; changes nothing.
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Staff => "staff",
            Role::Auditor => "auditor",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "customer" => Ok(Role::Customer),
            "staff" => Ok(Role::Staff),
            "auditor" => Ok(Role::Auditor),
            other => Err(format!(
                "unknown role `{other}` (expected customer, staff or auditor)"
            )),
        }
    }
}
