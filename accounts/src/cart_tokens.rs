//! Guest cart secrets: a guest has no account, so a guest cart is used by whoever holds its
//! `Cart-Token` — chosen by the guest's client (when it wants retry-safe creates) or made by the
//! server and answered once at creation. Only a SHA-256 of it is stored (`guest_cart_tokens`,
//! migration 0102), never in an event or with a kept response. The query API checks the same
//! table with [`holds`].

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// The request header carrying a guest cart's secret.
pub const HEADER: &str = "cart-token";

/// Shortest and longest accepted token, in characters (visible ASCII).
pub const MIN_LEN: usize = 32;
pub const MAX_LEN: usize = 128;

/// Whether `token` has the shape of a cart token (its entropy is the client's business; the
/// server's are 256 random bits).
pub fn is_well_formed(token: &str) -> bool {
    (MIN_LEN..=MAX_LEN).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

/// A new token: 256 random bits, hex.
pub fn new_token() -> String {
    super::tokens::new_refresh_token()
}

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Stores the hash of the token of a new guest cart. `false` if the cart already has another
/// token (never for ids derived from the token itself).
pub async fn register(
    pool: &PgPool,
    cart_id: Uuid,
    token_hash: &[u8],
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "INSERT INTO guest_cart_tokens (cart_id, token_hash) VALUES ($1, $2)
         ON CONFLICT (cart_id) DO NOTHING",
    )
    .bind(cart_id)
    .bind(token_hash)
    .execute(pool)
    .await?;
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT token_hash FROM guest_cart_tokens WHERE cart_id = $1")
            .bind(cart_id)
            .fetch_one(pool)
            .await?;
    Ok(constant_time_eq(&stored, token_hash))
}

/// Whether `token` is the token of the guest cart `cart_id` (`false` for a cart without one).
pub async fn holds(pool: &PgPool, cart_id: Uuid, token: &str) -> Result<bool, sqlx::Error> {
    let stored: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT token_hash FROM guest_cart_tokens WHERE cart_id = $1")
            .bind(cart_id)
            .fetch_optional(pool)
            .await?;
    Ok(stored.is_some_and(|stored| constant_time_eq(&stored, &hash(token))))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_visible_and_compared_by_hash() {
        let token = new_token();
        assert!(is_well_formed(&token));
        assert!(!is_well_formed("short"));
        assert!(!is_well_formed(&format!("{token} with spaces")));
        assert!(!is_well_formed(&"x".repeat(MAX_LEN + 1)));
        assert_ne!(new_token(), token);
        assert!(constant_time_eq(&hash(&token), &hash(&token)));
        assert!(!constant_time_eq(&hash(&token), &hash(&new_token())));
        assert!(!constant_time_eq(&hash(&token), &[]));
    }
}
