//! Whether an access token's session is still alive. Access tokens carry their session (the
//! refresh-token family, claim `sid`); logout and refresh-token reuse revoke the family, and
//! from then on its access tokens are refused — not only when they expire.
//!
//! Checked on every signed-in request, so cached: a revocation is permanent (remembered for
//! good, up to a bound), a live session is re-read after `command_api::ApiConfig::session_check_ttl`
//! (a few seconds), which is how long a logout on another replica takes to reach this one; one
//! on this replica counts at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

/// Sessions remembered at most (each a few dozen bytes); past it, the oldest are forgotten.
const MAX_ENTRIES: usize = 100_000;

pub struct SessionCheck {
    ttl: Duration,
    /// family → (revoked, when it was read)
    known: Mutex<HashMap<Uuid, (bool, Instant)>>,
}

impl SessionCheck {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the session `family` is revoked, from the cache when it may be trusted.
    pub async fn is_revoked(&self, pool: &PgPool, family: Uuid) -> Result<bool, sqlx::Error> {
        if let Some(revoked) = self.cached(family) {
            return Ok(revoked);
        }
        let revoked = crate::is_revoked(pool, family).await?;
        self.remember(family, revoked);
        Ok(revoked)
    }

    /// Records a revocation made by this process, so it counts at once.
    pub fn revoked(&self, family: Uuid) {
        self.remember(family, true);
    }

    fn cached(&self, family: Uuid) -> Option<bool> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        match known.get(&family) {
            Some((true, _)) => Some(true),
            Some((false, at)) if at.elapsed() < self.ttl => Some(false),
            _ => None,
        }
    }

    fn remember(&self, family: Uuid, revoked: bool) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= MAX_ENTRIES {
            // live entries that are due for a re-read carry nothing; then the oldest go
            let ttl = self.ttl;
            known.retain(|_, (revoked, at)| *revoked || at.elapsed() < ttl);
            if known.len() >= MAX_ENTRIES {
                let mut ages: Vec<Instant> = known.values().map(|(_, at)| *at).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                known.retain(|_, (_, at)| *at > cut);
            }
        }
        known.insert(family, (revoked, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_are_remembered_and_live_sessions_only_for_a_while() {
        let check = SessionCheck::new(Duration::from_millis(50));
        let (live, gone) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(check.cached(live), None);
        check.remember(live, false);
        check.revoked(gone);
        assert_eq!(check.cached(live), Some(false));
        assert_eq!(check.cached(gone), Some(true));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(check.cached(live), None, "read again after the ttl");
        assert_eq!(check.cached(gone), Some(true), "a revocation is final");
        check.revoked(live);
        assert_eq!(check.cached(live), Some(true));
    }
}
