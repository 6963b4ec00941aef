//! The op 7 body: goim's JSON `{"mid","key","room_id","platform","accepts"}` plus `"token"`.
//!
//! `mid` is required; `key`, `room_id` and `platform` are at most 128 bytes (`MAX_FIELD_LEN`); unknown fields
//! are ignored.

use serde::Deserialize;

#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct AuthBody {
    pub mid: i64,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub room_id: String,
    #[serde(default)]
    pub platform: String,
    #[serde(default)]
    pub accepts: Vec<i32>,
    #[serde(default)]
    pub token: String,
}

/// Longest key, room id or platform accepted.
pub const MAX_FIELD_LEN: usize = 128;

impl AuthBody {
    pub fn parse(body: &[u8]) -> Result<AuthBody, String> {
        let a: AuthBody =
            serde_json::from_slice(body).map_err(|e| format!("bad auth body: {e}"))?;
        for (name, v) in [
            ("key", &a.key),
            ("room_id", &a.room_id),
            ("platform", &a.platform),
        ] {
            if v.len() > MAX_FIELD_LEN {
                return Err(format!("{name} longer than {MAX_FIELD_LEN} bytes"));
            }
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_goim_auth_bodies() {
        let a = AuthBody::parse(br#"{"mid":123,"room_id":"live://1000","platform":"web","accepts":[1000,1001],"token":"t"}"#)
            .unwrap();
        assert_eq!(a.mid, 123);
        assert_eq!(a.room_id, "live://1000");
        assert_eq!(a.accepts, vec![1000, 1001]);
        assert_eq!(a.key, "");
        assert!(AuthBody::parse(b"garbage").is_err());
        assert!(
            AuthBody::parse(br#"{"room_id":"x"}"#).is_err(),
            "mid is required"
        );
        let long = format!(r#"{{"mid":1,"key":"{}"}}"#, "k".repeat(200));
        assert!(AuthBody::parse(long.as_bytes()).is_err());
    }
}
