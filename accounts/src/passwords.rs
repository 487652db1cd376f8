//! Password hashing with argon2id (PHC strings), off the async runtime's threads.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

/// Shortest and longest accepted password, in characters.
pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 256;

/// Why a password is not acceptable.
pub fn check_policy(password: &str) -> Result<(), String> {
    let length = password.chars().count();
    if length < MIN_LEN {
        return Err(format!(
            "the password must have at least {MIN_LEN} characters"
        ));
    }
    if length > MAX_LEN {
        return Err(format!(
            "the password must have at most {MAX_LEN} characters"
        ));
    }
    Ok(())
}

/// Hashes a password into a PHC string (`$argon2id$v=19$...`) with a random salt.
pub async fn hash(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A hash of a random password, verified against when an account does not exist, so that a login
/// for an unknown email takes as long as one with a wrong password.
pub async fn decoy_hash() -> String {
    static DECOY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DECOY
        .get_or_init(|| async {
            hash(uuid::Uuid::new_v4().to_string())
                .await
                .unwrap_or_default()
        })
        .await
        .clone()
}

/// Whether `password` matches the PHC string `hash`.
pub async fn verify(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hash = hash("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".into(), hash.clone()).await);
        assert!(!verify("wrong horse battery".into(), hash).await);
        assert!(!verify("x".into(), "not a phc string".into()).await);
    }

    #[tokio::test]
    async fn the_decoy_hash_is_well_formed_and_matches_nothing_guessable() {
        let decoy = decoy_hash().await;
        assert!(PasswordHash::new(&decoy).is_ok());
        assert!(!verify("password123".into(), decoy).await);
    }

    #[test]
    fn the_policy_bounds_length() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("long enough pass").is_ok());
        assert!(check_policy(&"x".repeat(300)).is_err());
    }
}
