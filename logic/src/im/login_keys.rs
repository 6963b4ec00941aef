//! The keys of connections opened with a login token: `<platform>:<login id>:<uuid>`, assigned by
//! logic at Connect. Naming the platform and the login lets a logout, a password change or the
//! one-device-per-platform policy find exactly the connections to close. Connections opened with a
//! backend token keep the key the client chose (or a plain uuid).

/// The platform of a connection as its key names it: the auth body's, or "web"; no ':'.
pub fn platform_tag(platform: &str) -> String {
    let p: String = platform
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(32)
        .collect();
    if p.is_empty() {
        "web".into()
    } else {
        p.to_ascii_lowercase()
    }
}

/// The platform and the login (jti) a login connection's key names; `None` for other keys.
pub fn parse_login_key(key: &str) -> Option<(&str, &str)> {
    let mut parts = key.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(platform), Some(jti), Some(_), None) => Some((platform, jti)),
        _ => None,
    }
}

/// Whether a key is a login connection's (see [`login_key`]).
pub fn is_login_key(key: &str) -> bool {
    parse_login_key(key).is_some()
}

/// The login (jti) a login connection's key names.
pub fn login_of(key: &str) -> Option<&str> {
    parse_login_key(key).map(|(_, jti)| jti)
}

/// The key of a connection opened with a login token: `<platform>:<login id>:<uuid>`.
pub fn login_key(platform: &str, jti: &str) -> String {
    format!("{platform}:{jti}:{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_keys_name_platform_and_login() {
        assert_eq!(platform_tag(""), "web");
        assert_eq!(platform_tag("Android"), "android");
        assert_eq!(platform_tag("a:b c"), "abc");
        let k = login_key("ios", "j1");
        assert!(k.starts_with("ios:j1:") && k.len() > 10);
        assert_ne!(k, login_key("ios", "j1"));
        assert!(is_login_key(&k));
        assert!(!is_login_key("7f3c2a"));
        assert_eq!(login_of(&k), Some("j1"));
        assert_eq!(parse_login_key(&k).map(|(p, _)| p), Some("ios"));
        assert_eq!(login_of("plain"), None);
    }
}
