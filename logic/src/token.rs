//! Connection and login tokens: JWTs whose `sub` is the mid, with a required `exp`.
//!
//! Logic signs with the current HS256 secret (`IMCLOUD_AUTH_SECRET`) and names it in the header's `kid`
//! (`hs-` and the first 16 hex digits of the secret's SHA-256, which says nothing usable about a
//! 32-byte random secret). It verifies with:
//! - the current secret, and the previous one (`IMCLOUD_AUTH_SECRET_PREVIOUS`) during a rotation, for
//!   HS256 tokens: the one the `kid` names, or both when the token has no known `kid` (tokens a
//!   backend signs itself often have none);
//! - a public key (`IMCLOUD_AUTH_PUBLIC_KEY_FILE`, RSA or Ed25519) for RS256 or EdDSA tokens, so a backend
//!   can mint tokens without holding logic's secret.
//!
//! Invariants: a token's algorithm picks which keys are tried, and no key is ever used for another
//! family (an HS256 token is never checked against the public key's bytes: no algorithm confusion);
//! `aud` and `iss` are required and checked only when configured, and then written into every token
//! logic signs.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    #[error("{0}")]
    Config(String),
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

struct VerifyKey {
    kid: String,
    key: DecodingKey,
    alg: Algorithm,
}

/// The keys tokens are signed and verified with, and the claims they must carry.
pub struct TokenKeys {
    kid: String,
    encoding: EncodingKey,
    verifying: Vec<VerifyKey>,
    audience: Option<String>,
    issuer: Option<String>,
}

/// The `kid` of an HS256 secret.
pub fn secret_kid(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    format!("hs-{}", hex_prefix(&digest))
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn non_empty(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

impl TokenKeys {
    /// Signing with `secret`; verifying with it, `previous` (if not empty) and the PEM public key.
    pub fn new(
        secret: &str,
        previous: &str,
        public_key_pem: Option<&[u8]>,
        audience: &str,
        issuer: &str,
    ) -> Result<TokenKeys, TokenError> {
        let mut verifying = vec![VerifyKey {
            kid: secret_kid(secret),
            key: DecodingKey::from_secret(secret.as_bytes()),
            alg: Algorithm::HS256,
        }];
        if !previous.is_empty() && previous != secret {
            verifying.push(VerifyKey {
                kid: secret_kid(previous),
                key: DecodingKey::from_secret(previous.as_bytes()),
                alg: Algorithm::HS256,
            });
        }
        if let Some(pem) = public_key_pem {
            let kid = format!("pk-{}", hex_prefix(&Sha256::digest(pem)));
            let (key, alg) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
                (k, Algorithm::RS256)
            } else if let Ok(k) = DecodingKey::from_ed_pem(pem) {
                (k, Algorithm::EdDSA)
            } else {
                return Err(TokenError::Config(
                    "IMCLOUD_AUTH_PUBLIC_KEY_FILE holds no PEM RSA or Ed25519 public key".into(),
                ));
            };
            verifying.push(VerifyKey { kid, key, alg });
        }
        Ok(TokenKeys {
            kid: secret_kid(secret),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            verifying,
            audience: non_empty(audience),
            issuer: non_empty(issuer),
        })
    }

    /// From the configuration (reads IMCLOUD_AUTH_PUBLIC_KEY_FILE when set).
    pub fn from_config(cfg: &imcloud_common::Config) -> Result<Arc<TokenKeys>, TokenError> {
        let pem = match cfg.auth_public_key_file.trim() {
            "" => None,
            path => Some(std::fs::read(path).map_err(|e| {
                TokenError::Config(format!("IMCLOUD_AUTH_PUBLIC_KEY_FILE {path}: {e}"))
            })?),
        };
        TokenKeys::new(
            &cfg.auth_secret,
            &cfg.auth_secret_previous,
            pem.as_deref(),
            &cfg.auth_audience,
            &cfg.auth_issuer,
        )
        .map(Arc::new)
    }

    /// The `kid` of the signing secret.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = LEEWAY_SECS;
        let mut required = vec!["exp", "sub"];
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        v
    }

    fn decode(&self, token: &str) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let family: Vec<&VerifyKey> = self
            .verifying
            .iter()
            .filter(|k| k.alg == header.alg)
            .collect();
        if family.is_empty() {
            return Err(TokenError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        // The key the kid names, if it names one of ours; otherwise every key of the family.
        let named: Vec<&VerifyKey> = family
            .iter()
            .copied()
            .filter(|k| header.kid.as_deref() == Some(k.kid.as_str()))
            .collect();
        let candidates = if named.is_empty() { family } else { named };
        let validation = self.validation(header.alg);
        let mut last = TokenError::Invalid("no key".into());
        for k in candidates {
            match jsonwebtoken::decode::<Claims>(token, &k.key, &validation) {
                Ok(d) => return Ok(d.claims),
                Err(e) => {
                    last = match e.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                        _ => TokenError::Invalid(e.to_string()),
                    };
                    // Expired with a valid signature is the answer; a bad signature may fit the next key.
                    if last == TokenError::Expired {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

pub struct Tokens {
    keys: Arc<TokenKeys>,
    max_ttl_secs: u64,
}

impl Tokens {
    /// Tokens signed and verified with one HS256 secret and no `aud`/`iss`.
    pub fn new(secret: &str, max_ttl_secs: u64) -> Tokens {
        let keys = TokenKeys::new(secret, "", None, "", "")
            .map(Arc::new)
            .unwrap_or_else(|_| unreachable!("no public key to parse"));
        Tokens::with_keys(keys, max_ttl_secs)
    }

    pub fn with_keys(keys: Arc<TokenKeys>, max_ttl_secs: u64) -> Tokens {
        Tokens { keys, max_ttl_secs }
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
            aud: self.keys.audience.clone(),
            iss: self.keys.issuer.clone(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.keys.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.keys.encoding)
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
        self.keys.decode(token)
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

    fn claims(sub: &str, exp: u64) -> Claims {
        Claims {
            sub: sub.into(),
            exp,
            iat: unix_now(),
            jti: None,
            aud: None,
            iss: None,
        }
    }

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
    fn issued_tokens_name_their_key() {
        let t = Tokens::new("s3cret", 3600);
        let (tok, _) = t.issue(1, 60).unwrap();
        let header = jsonwebtoken::decode_header(&tok).unwrap();
        assert_eq!(header.kid.as_deref(), Some(secret_kid("s3cret").as_str()));
        assert_ne!(secret_kid("s3cret"), secret_kid("s3creu"));
    }

    #[test]
    fn rotation_accepts_the_previous_secret() {
        let old = Tokens::new("old-secret", 3600);
        let (old_tok, _) = old.issue(7, 60).unwrap();
        let keys = TokenKeys::new("new-secret", "old-secret", None, "", "").unwrap();
        let rotated = Tokens::with_keys(Arc::new(keys), 3600);
        assert_eq!(rotated.verify(&old_tok, 7).unwrap().sub, "7");
        let (new_tok, _) = rotated.issue(7, 60).unwrap();
        assert!(Tokens::new("new-secret", 3600).verify(&new_tok, 7).is_ok());
        // Once the previous secret is dropped, its tokens stop working.
        assert!(Tokens::new("new-secret", 3600).verify(&old_tok, 7).is_err());
        // A token without kid (signed by a backend) is tried against both secrets.
        let bare = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims("7", unix_now() + 60),
            &EncodingKey::from_secret(b"old-secret"),
        )
        .unwrap();
        assert!(rotated.verify(&bare, 7).is_ok());
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let t = Tokens::new("s3cret", 3600);
        let tok = jsonwebtoken::encode(
            &Header::default(),
            &claims("7", unix_now() - 60),
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
    fn audience_and_issuer_are_required_when_configured() {
        let keys = TokenKeys::new("k", "", None, "imcloud", "https://id.example").unwrap();
        let t = Tokens::with_keys(Arc::new(keys), 3600);
        let (tok, _) = t.issue(1, 60).unwrap();
        assert!(t.verify(&tok, 1).is_ok(), "logic's own tokens carry them");
        let plain = Tokens::new("k", 3600).issue(1, 60).unwrap().0;
        assert!(t.verify(&plain, 1).is_err(), "no aud/iss");
        let mut c = claims("1", unix_now() + 60);
        c.aud = Some("someone-else".into());
        c.iss = Some("https://id.example".into());
        let other =
            jsonwebtoken::encode(&Header::default(), &c, &EncodingKey::from_secret(b"k")).unwrap();
        assert!(t.verify(&other, 1).is_err(), "wrong aud");
        // Without configuration, aud and iss are not checked.
        assert!(Tokens::new("k", 3600).verify(&other, 1).is_ok());
    }

    #[test]
    fn a_backend_can_sign_with_its_own_ed25519_key() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let public = pair.public_key_pem();
        let keys = TokenKeys::new("logic-secret", "", Some(public.as_bytes()), "", "").unwrap();
        let t = Tokens::with_keys(Arc::new(keys), 3600);
        let signing = EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap();
        let tok = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims("9", unix_now() + 60),
            &signing,
        )
        .unwrap();
        assert_eq!(t.verify(&tok, 9).unwrap().sub, "9");
        // Without the public key configured, EdDSA tokens are refused.
        assert!(Tokens::new("logic-secret", 3600).verify(&tok, 9).is_err());
        // Another key pair's tokens are refused.
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims("9", unix_now() + 60),
            &EncodingKey::from_ed_pem(other.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(t.verify(&forged, 9).is_err());
        // Algorithm confusion: an HS256 token keyed with the public key's bytes is refused.
        let confused = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims("9", unix_now() + 60),
            &EncodingKey::from_secret(public.as_bytes()),
        )
        .unwrap();
        assert!(t.verify(&confused, 9).is_err());
        assert!(TokenKeys::new("k", "", Some(b"garbage"), "", "").is_err());
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
