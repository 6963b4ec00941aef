//! The API key that trusted backends present as `Authorization: Bearer <key>` (HTTP header or gRPC metadata).
//!
//! `bearer_matches` compares in constant time (`constant_time_eq`), takes the scheme name in any case, and
//! never matches an empty key.

/// Whether an `Authorization` value carries `key`, compared in constant time.
pub fn bearer_matches(authorization: Option<&str>, key: &str) -> bool {
    // The scheme name is case-insensitive (RFC 9110).
    let Some(given) = authorization
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token)
    else {
        return false;
    };
    !key.is_empty() && constant_time_eq(given.trim().as_bytes(), key.as_bytes())
}

/// Whether two byte strings are equal, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_key_matches() {
        assert!(bearer_matches(Some("Bearer k1"), "k1"));
        assert!(bearer_matches(Some("bearer k1"), "k1"));
        assert!(!bearer_matches(Some("Bearer k2"), "k1"));
        assert!(!bearer_matches(Some("k1"), "k1"));
        assert!(!bearer_matches(None, "k1"));
        assert!(
            !bearer_matches(Some("Bearer "), ""),
            "an empty key never matches"
        );
    }
}
