//! Password reset by e-mail. A request for an address with an account stores the SHA-256 of a
//! new random token (256 bits) that expires after [`TOKEN_TTL`], and — in the same transaction —
//! puts the message carrying the token into the notifier's outbox (`notification_outbox`, sent
//! over SMTP by `sagas::notifier`, which blanks the body of a [`OUTBOX_KIND`] message once sent).
//! A request for an unknown address does nothing; the caller answers both alike.
//!
//! Using a token sets the new password, uses up every outstanding token of the account and
//! signs out every session (a reset is what one does when someone else may have the password).

use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::tokens::new_refresh_token;

/// How long a reset token can be used.
pub const TOKEN_TTL: chrono::Duration = chrono::Duration::minutes(30);

/// The outbox `kind` of a reset message.
pub const OUTBOX_KIND: &str = "password-reset";

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Issues a token for the account of `email`, if there is one, and enqueues its message.
/// Returns whether there was an account: never to be told to the caller (no enumeration).
pub async fn request(pool: &PgPool, email: &str) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let account = sqlx::query("SELECT id, name FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(account) = account else {
        return Ok(false);
    };
    let id: Uuid = account.get("id");
    let name: String = account.get("name");
    let token = new_refresh_token();
    sqlx::query(
        "INSERT INTO password_reset_tokens (token_hash, user_id, expires_at)
         VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(token_hash(&token))
    .bind(id)
    .bind(TOKEN_TTL.num_seconds() as f64)
    .execute(&mut *tx)
    .await?;
    let minutes = TOKEN_TTL.num_minutes();
    sqlx::query(
        "INSERT INTO notification_outbox (event_id, kind, recipient, subject, body)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::now_v7())
    .bind(OUTBOX_KIND)
    .bind(email)
    .bind("Reset your password")
    .bind(format!(
        "Hello {name},\n\nsomeone asked to reset the password of your account. If it was you, \
         use this code within {minutes} minutes; it works once:\n\n{token}\n\nIf it was not you, \
         ignore this message: your password stays as it is.\n"
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("the reset token is not valid, was used or has expired")]
    Invalid,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What a reset did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordReset {
    pub account: Uuid,
    /// The sessions (refresh-token families) it signed out.
    pub ended_sessions: Vec<Uuid>,
}

/// Sets the password of the account `token` was issued for to `password_hash`, if the token is
/// unused and unexpired; uses up the account's tokens and ends its sessions.
pub async fn reset(
    pool: &PgPool,
    token: &str,
    password_hash: &str,
) -> Result<PasswordReset, ResetError> {
    let mut tx = pool.begin().await?;
    let account: Option<Uuid> = sqlx::query_scalar(
        "SELECT user_id FROM password_reset_tokens
          WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
            FOR UPDATE",
    )
    .bind(token_hash(token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(account) = account else {
        return Err(ResetError::Invalid);
    };
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(account)
        .bind(password_hash)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE password_reset_tokens SET used_at = now() WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(account)
    .execute(&mut *tx)
    .await?;
    let mut ended_sessions: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE refresh_tokens SET revoked_at = now()
          WHERE user_id = $1 AND revoked_at IS NULL RETURNING family_id",
    )
    .bind(account)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    ended_sessions.sort_unstable();
    ended_sessions.dedup();
    Ok(PasswordReset {
        account,
        ended_sessions,
    })
}
