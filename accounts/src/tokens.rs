//! JWT access tokens (HS256, about 15 minutes) and opaque refresh tokens.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Role;

const ISSUER: &str = "shop";

/// What an access token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The account id.
    pub sub: Uuid,
    pub role: Role,
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
    /// The session (refresh-token family) the token was issued for: a token of a revoked
    /// session (logout, refresh-token reuse) is refused. `None` for tokens issued outside a
    /// session (tests, tools), which live out their short life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

/// The signing secret. Never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// At least 32 bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, String> {
        let bytes = bytes.into();
        if bytes.len() < 32 {
            return Err("the JWT secret must be at least 32 bytes".to_owned());
        }
        Ok(Self(bytes))
    }

    /// A random secret, for a development process whose tokens need not survive a restart.
    pub fn random() -> Self {
        Self(new_refresh_token().into_bytes())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Issues and checks access tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &Secret, access_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(&secret.0),
            decoding: DecodingKey::from_secret(&secret.0),
            validation,
            access_ttl,
        }
    }

    /// A token outside any session (tests, tools): it cannot be revoked before it expires.
    pub fn issue(&self, account: Uuid, role: Role) -> Result<String, String> {
        self.issue_claims(account, role, None)
    }

    /// A token of the session (refresh-token family) `session`: revoking the session revokes it.
    pub fn issue_for_session(
        &self,
        account: Uuid,
        role: Role,
        session: Uuid,
    ) -> Result<String, String> {
        self.issue_claims(account, role, Some(session))
    }

    fn issue_claims(&self, account: Uuid, role: Role, sid: Option<Uuid>) -> Result<String, String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: account,
            role,
            iat: now,
            exp: now + self.access_ttl.as_secs(),
            iss: ISSUER.to_owned(),
            sid,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| e.to_string())
    }

    /// The claims of a valid, unexpired token signed with our key.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// A new opaque refresh token: 256 random bits, hex.
pub fn new_refresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &[u8]) -> TokenKeys {
        TokenKeys::new(
            &Secret::new(secret.to_vec()).unwrap(),
            Duration::from_secs(900),
        )
    }

    #[test]
    fn a_token_verifies_with_its_key_only() {
        let account = Uuid::new_v4();
        let token = keys(&[7; 32]).issue(account, Role::Staff).unwrap();
        let claims = keys(&[7; 32]).verify(&token).unwrap();
        assert_eq!(
            (claims.sub, claims.role, claims.sid),
            (account, Role::Staff, None)
        );
        let session = Uuid::new_v4();
        let token = keys(&[7; 32])
            .issue_for_session(account, Role::Staff, session)
            .unwrap();
        assert_eq!(keys(&[7; 32]).verify(&token).unwrap().sid, Some(session));
        assert_eq!(claims.exp - claims.iat, 900);
        assert!(keys(&[8; 32]).verify(&token).is_none());
        assert!(keys(&[7; 32]).verify("not.a.token").is_none());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let keys = keys(&[7; 32]);
        // an expiry far in the past, signed with the right key
        let now = jsonwebtoken::get_current_timestamp();
        let old = Claims {
            sub: Uuid::new_v4(),
            role: Role::Customer,
            iat: now - 3600,
            exp: now - 1800,
            iss: ISSUER.into(),
            sid: None,
        };
        let token = jsonwebtoken::encode(&Header::default(), &old, &keys.encoding).unwrap();
        assert!(keys.verify(&token).is_none());
    }

    #[test]
    fn short_secrets_are_refused_and_secrets_never_print() {
        assert!(Secret::new(vec![1; 31]).is_err());
        assert_eq!(format!("{:?}", Secret::random()), "Secret(***)");
        assert_eq!(new_refresh_token().len(), 64);
    }
}
