//! Connection tokens: HS256 JWTs whose `sub` is the mid, with a required `exp`.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Seconds of clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("missing token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("token is for another user")]
    WrongMid,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("ttl must be between 1 and {max} seconds")]
    BadTtl { max: u64 },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    /// Set on login tokens: the login session, which logout ends (see `im::accounts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    max_ttl_secs: u64,
}

impl Tokens {
    pub fn new(secret: &str, max_ttl_secs: u64) -> Tokens {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Tokens {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            max_ttl_secs,
        }
    }

    /// Signs a token for `mid` valid for `ttl_secs`; returns it with its expiry (unix seconds).
    pub fn issue(&self, mid: i64, ttl_secs: u64) -> Result<(String, u64), TokenError> {
        if ttl_secs == 0 || ttl_secs > self.max_ttl_secs {
            return Err(TokenError::BadTtl {
                max: self.max_ttl_secs,
            });
        }
        self.sign(mid, ttl_secs, None)
    }

    /// Signs a login token for `mid`, bound to login session `jti`.
    pub fn issue_login(
        &self,
        mid: i64,
        ttl_secs: u64,
        jti: &str,
    ) -> Result<(String, u64), TokenError> {
        self.sign(mid, ttl_secs, Some(jti.to_string()))
    }

    fn sign(
        &self,
        mid: i64,
        ttl_secs: u64,
        jti: Option<String>,
    ) -> Result<(String, u64), TokenError> {
        let now = unix_now();
        let claims = Claims {
            sub: mid.to_string(),
            exp: now.saturating_add(ttl_secs),
            iat: now,
            jti,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok((token, claims.exp))
    }

    /// Checks signature, expiry, and that the token was issued for `mid`.
    pub fn verify(&self, token: &str, mid: i64) -> Result<Claims, TokenError> {
        let claims = self.decode(token)?;
        if claims.sub != mid.to_string() {
            return Err(TokenError::WrongMid);
        }
        Ok(claims)
    }

    /// Checks signature and expiry; the caller checks whose token it is.
    pub fn decode(&self, token: &str) -> Result<Claims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_for_their_mid_only() {
        let t = Tokens::new("s3cret", 3600);
        let (tok, exp) = t.issue(42, 60).unwrap();
        assert!(exp > unix_now());
        assert_eq!(t.verify(&tok, 42).unwrap().sub, "42");
        assert_eq!(t.verify(&tok, 43).unwrap_err(), TokenError::WrongMid);
        assert_eq!(t.verify("", 42).unwrap_err(), TokenError::Missing);
        assert!(matches!(
            t.verify("not.a.jwt", 42),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            Tokens::new("other", 3600).verify(&tok, 42),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let t = Tokens::new("s3cret", 3600);
        let claims = Claims {
            sub: "7".into(),
            exp: unix_now() - 60,
            iat: unix_now() - 120,
            jti: None,
        };
        let tok = jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert_eq!(t.verify(&tok, 7).unwrap_err(), TokenError::Expired);
    }

    #[test]
    fn tokens_without_exp_are_rejected() {
        #[derive(Serialize)]
        struct NoExp {
            sub: String,
        }
        let tok = jsonwebtoken::encode(
            &Header::default(),
            &NoExp { sub: "7".into() },
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(matches!(
            Tokens::new("k", 10).verify(&tok, 7),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn ttl_is_bounded() {
        let t = Tokens::new("k", 100);
        assert_eq!(t.issue(1, 0).unwrap_err(), TokenError::BadTtl { max: 100 });
        assert_eq!(
            t.issue(1, 101).unwrap_err(),
            TokenError::BadTtl { max: 100 }
        );
    }
}
