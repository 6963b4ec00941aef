//! The op 7 auth body and the token in it, as logic's `Connect` takes them from a client: the body parsed
//! by [`AuthBody::parse`], then its token verified for its mid by [`Tokens::verify`]. The verifier holds
//! an HS256 secret, a previous secret (a rotation) and an Ed25519 public key, so every algorithm family
//! and key choice is reachable.
//!
//! Input: the body of an op 7 frame. When it is UTF-8 it is also verified as a bare token (the token is
//! easier to mutate outside its JSON string).
//!
//! Checks: no panic; a parsed body keeps the field bounds; a token verifies only for its own mid (its
//! `sub`), and then for no other. Seeds signed with the secrets below (`fuzz/seeds.py`) reach the claims
//! checks; mutations of them reach signature checking.

#![no_main]

use std::sync::{Arc, LazyLock};

use imcloud_logic::auth_body::{AuthBody, MAX_FIELD_LEN};
use imcloud_logic::token::{TokenError, TokenKeys, Tokens};
use libfuzzer_sys::fuzz_target;

/// The secrets `fuzz/seeds.py` signs the seed tokens with.
const SECRET: &str = "fuzz-secret";
const PREVIOUS: &str = "fuzz-previous-secret";
/// An Ed25519 public key whose private key was thrown away: EdDSA tokens reach signature checking only.
const PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAlENbuxh5B8MFNJn2cvKMzCSqjRoBNzJq0jmTkw4ailI=
-----END PUBLIC KEY-----
";

static TOKENS: LazyLock<Tokens> = LazyLock::new(|| {
    let keys = TokenKeys::new(SECRET, PREVIOUS, Some(PUBLIC_KEY.as_bytes()), "", "")
        .expect("the fuzz keys");
    Tokens::with_keys(Arc::new(keys), 3600)
});

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = AuthBody::parse(data) {
        assert!(a.key.len() <= MAX_FIELD_LEN);
        assert!(a.room_id.len() <= MAX_FIELD_LEN);
        assert!(a.platform.len() <= MAX_FIELD_LEN);
        if let Ok(claims) = TOKENS.verify(&a.token, a.mid) {
            assert_eq!(
                claims.sub,
                a.mid.to_string(),
                "a token verifies for its own mid only"
            );
        }
    }
    if let Ok(token) = std::str::from_utf8(data)
        && let Ok(claims) = TOKENS.decode(token)
        && let Ok(mid) = claims.sub.parse::<i64>()
        && mid.to_string() == claims.sub
    {
        // A token that decodes verifies for the mid its `sub` names, and for no other.
        assert!(TOKENS.verify(token, mid).is_ok());
        assert_eq!(
            TOKENS.verify(token, mid.wrapping_add(1)).unwrap_err(),
            TokenError::WrongMid
        );
    }
});
