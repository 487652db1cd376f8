//! Accounts and refresh-token families in PostgreSQL (tables from migration 0100).

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgExecutor, PgPool, Row};
use uuid::Uuid;

use crate::tokens::new_refresh_token;
use crate::Role;

/// A stored account.
#[derive(Clone, Debug)]
pub struct Account {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("an account with this email exists")]
    EmailTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub async fn create(
    pool: &PgPool,
    email: &str,
    name: &str,
    password_hash: &str,
    role: Role,
) -> Result<Uuid, AccountError> {
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, role) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (email) DO NOTHING",
    )
    .bind(id)
    .bind(email)
    .bind(name)
    .bind(password_hash)
    .bind(role.as_str())
    .execute(pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(AccountError::EmailTaken);
    }
    Ok(id)
}

/// Where and to whom an account's mail goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub email: String,
    pub name: String,
}

/// The e-mail address and name on an account, if it exists.
pub async fn contact_of<'e>(
    executor: impl PgExecutor<'e>,
    account: Uuid,
) -> Result<Option<Contact>, sqlx::Error> {
    let row = sqlx::query("SELECT email, name FROM users WHERE id = $1")
        .bind(account)
        .fetch_optional(executor)
        .await?;
    Ok(row.map(|row| Contact {
        email: row.get("email"),
        name: row.get("name"),
    }))
}

/// Deletes a customer's account; its sessions go with it (`ON DELETE CASCADE`). `false` when
/// there is no customer account with that id (staff and auditors are never deleted here).
pub async fn delete_customer<'e>(
    executor: impl PgExecutor<'e>,
    account: Uuid,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM users WHERE id = $1 AND role = 'customer'")
        .bind(account)
        .execute(executor)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

pub async fn find_by_email(pool: &PgPool, email: &str) -> Result<Option<Account>, sqlx::Error> {
    let row =
        sqlx::query("SELECT id, email, name, password_hash, role FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(|row| {
        Some(Account {
            id: row.get("id"),
            email: row.get("email"),
            name: row.get("name"),
            password_hash: row.get("password_hash"),
            role: row.get::<String, _>("role").parse().ok()?,
        })
    }))
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A session: a refresh-token family and its current token.
#[derive(Debug, Clone)]
pub struct Session {
    /// The family id: the `sid` of the session's access tokens.
    pub family: Uuid,
    pub refresh_token: String,
}

/// Starts a new refresh-token family (a login) and returns its first token.
pub async fn start_session(
    pool: &PgPool,
    account: Uuid,
    ttl: chrono::Duration,
) -> Result<Session, sqlx::Error> {
    start_session_on(pool, account, ttl, None).await
}

/// [`start_session`] from a device (its User-Agent), shown in the account's list of sessions.
pub async fn start_session_on(
    pool: &PgPool,
    account: Uuid,
    ttl: chrono::Duration,
    device: Option<&str>,
) -> Result<Session, sqlx::Error> {
    let token = new_refresh_token();
    let family = Uuid::now_v7();
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO session_devices (family_id, user_id, user_agent) VALUES ($1, $2, $3)")
        .bind(family)
        .bind(account)
        .bind(device)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::now_v7())
    .bind(family)
    .bind(account)
    .bind(token_hash(&token))
    .bind(Utc::now() + ttl)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Session {
        family,
        refresh_token: token,
    })
}

/// Whether the session `family` was revoked (logout, or a refresh token used twice). A
/// family without tokens (deleted with its account) counts as revoked.
pub async fn is_revoked(pool: &PgPool, family: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(bool_or(revoked_at IS NOT NULL), true)
           FROM refresh_tokens WHERE family_id = $1",
    )
    .bind(family)
    .fetch_one(pool)
    .await
}

/// Why a refresh was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh token is not valid")]
    Invalid,
    #[error("the refresh token was already used; every session of its family is revoked")]
    Reused { family: Uuid },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Exchanges a refresh token for a new one of the same family: the account, its role and the
/// session with its new token. Using a token that was already exchanged revokes the family:
/// whoever holds the newer token is logged out too.
pub async fn rotate(
    pool: &PgPool,
    token: &str,
    ttl: chrono::Duration,
) -> Result<(Uuid, Role, Session), RefreshError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "SELECT t.id, t.family_id, t.user_id, t.expires_at, t.replaced_at, t.revoked_at, u.role
           FROM refresh_tokens t JOIN users u ON u.id = t.user_id
          WHERE t.token_hash = $1
            FOR UPDATE OF t",
    )
    .bind(token_hash(token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(RefreshError::Invalid);
    };
    let family: Uuid = row.get("family_id");
    let revoked: Option<DateTime<Utc>> = row.get("revoked_at");
    let replaced: Option<DateTime<Utc>> = row.get("replaced_at");
    let expires: DateTime<Utc> = row.get("expires_at");
    if revoked.is_some() || expires <= Utc::now() {
        return Err(RefreshError::Invalid);
    }
    if replaced.is_some() {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::warn!(%family, "refresh token reused; family revoked");
        return Err(RefreshError::Reused { family });
    }
    let account: Uuid = row.get("user_id");
    let role: Role = row
        .get::<String, _>("role")
        .parse()
        .map_err(|_| RefreshError::Invalid)?;
    sqlx::query("UPDATE refresh_tokens SET replaced_at = now() WHERE id = $1")
        .bind(row.get::<Uuid, _>("id"))
        .execute(&mut *tx)
        .await?;
    let next = new_refresh_token();
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::now_v7())
    .bind(family)
    .bind(account)
    .bind(token_hash(&next))
    .bind(Utc::now() + ttl)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        account,
        role,
        Session {
            family,
            refresh_token: next,
        },
    ))
}

/// Revokes the family of `token` (logout) and returns it. Unknown tokens are ignored: logging
/// out twice is fine.
pub async fn end_session(pool: &PgPool, token: &str) -> Result<Option<Uuid>, sqlx::Error> {
    let family: Option<Uuid> =
        sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(token_hash(token))
            .fetch_optional(pool)
            .await?;
    if let Some(family) = family {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = now()
              WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family)
        .execute(pool)
        .await?;
    }
    Ok(family)
}

/// A live session of an account, as listed to its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The refresh-token family (the `sid` of its access tokens).
    pub id: Uuid,
    /// The User-Agent it signed in from (none for sessions older than the record of it).
    pub device: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When its refresh token was last exchanged (or the sign-in, if never).
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The account's sessions that are neither revoked nor expired, most recently used first.
pub async fn list_sessions(pool: &PgPool, account: Uuid) -> Result<Vec<SessionInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT t.family_id, d.user_agent, min(t.issued_at) AS created_at,
                max(t.issued_at) AS last_used_at, max(t.expires_at) AS expires_at
           FROM refresh_tokens t LEFT JOIN session_devices d ON d.family_id = t.family_id
          WHERE t.user_id = $1
          GROUP BY t.family_id, d.user_agent
         HAVING bool_and(t.revoked_at IS NULL) AND max(t.expires_at) > now()
          ORDER BY max(t.issued_at) DESC, t.family_id",
    )
    .bind(account)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|row| SessionInfo {
            id: row.get("family_id"),
            device: row.get("user_agent"),
            created_at: row.get("created_at"),
            last_used_at: row.get("last_used_at"),
            expires_at: row.get("expires_at"),
        })
        .collect())
}

/// Revokes one session of the account. `false` if it has no such live session.
pub async fn revoke_session(
    pool: &PgPool,
    account: Uuid,
    family: Uuid,
) -> Result<bool, sqlx::Error> {
    let revoked = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now()
          WHERE family_id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(family)
    .bind(account)
    .execute(pool)
    .await?;
    Ok(revoked.rows_affected() > 0)
}

/// Revokes every session of the account ("sign out everywhere"); returns them.
pub async fn revoke_all_sessions(pool: &PgPool, account: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut families: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE refresh_tokens SET revoked_at = now()
          WHERE user_id = $1 AND revoked_at IS NULL RETURNING family_id",
    )
    .bind(account)
    .fetch_all(pool)
    .await?;
    families.sort_unstable();
    families.dedup();
    Ok(families)
}
