//! goim-style query parameters: a list is either repeated (`keys=a&keys=b`) or comma-separated (`keys=a,b`).
//! A single-valued parameter given twice is refused (400), here and on `/v1` ([`first_duplicate`]), so
//! that no two components of a request path can read different values from one query.
//!
//! A list holds at most `MAX_LIST` (10,000) entries.

use crate::envelope::ApiError;

pub struct Params(Vec<(String, String)>);

/// Most list entries accepted in one request.
pub const MAX_LIST: usize = 10_000;

impl Params {
    pub fn parse(query: Option<&str>) -> Params {
        Params(
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// A single-valued parameter; an error when it is given more than once.
    pub fn get(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self
            .0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(duplicate(name));
        }
        Ok(first)
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        match self.get(name)? {
            Some(v) if !v.trim().is_empty() => Ok(v.trim()),
            _ => Err(ApiError::bad_request(format!(
                "missing query parameter {name:?}"
            ))),
        }
    }

    pub fn required_i32(&self, name: &str) -> Result<i32, ApiError> {
        let v = self.required(name)?;
        v.parse()
            .map_err(|_| ApiError::bad_request(format!("{name} must be an integer, got {v:?}")))
    }

    pub fn optional_i32(&self, name: &str, default: i32) -> Result<i32, ApiError> {
        match self.get(name)?.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                ApiError::bad_request(format!("{name} must be an integer, got {v:?}"))
            }),
        }
    }

    /// A boolean flag: `true`/`1` or `false`/`0`; absent is `false`.
    pub fn optional_bool(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name)? {
            None => Ok(false),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(ApiError::bad_request(format!(
                "{name} must be true or false, got {v:?}"
            ))),
        }
    }

    /// A non-empty list parameter.
    pub fn list(&self, name: &str) -> Result<Vec<String>, ApiError> {
        let items: Vec<String> = self
            .0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if items.is_empty() {
            return Err(ApiError::bad_request(format!(
                "missing query parameter {name:?}"
            )));
        }
        if items.len() > MAX_LIST {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_LIST} {name} per request"
            )));
        }
        Ok(items)
    }
}

fn duplicate(name: &str) -> ApiError {
    ApiError::bad_request(format!("query parameter {name:?} is given more than once"))
}

/// The first parameter of a raw query string that appears more than once, if any.
pub fn first_duplicate(query: Option<&str>) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, _)| k.into_owned())
        .find(|k| !seen.insert(k.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_repeat_or_split() {
        let p = Params::parse(Some("keys=a,b&keys=c&operation=1000&x=&mids=1%2C2"));
        assert_eq!(p.list("keys").unwrap(), vec!["a", "b", "c"]);
        assert_eq!(p.list("mids").unwrap(), vec!["1", "2"]);
        assert_eq!(p.required_i32("operation").unwrap(), 1000);
        assert!(p.required("x").is_err());
        assert!(p.list("nope").is_err());
        assert_eq!(p.optional_i32("speed", 0).unwrap(), 0);
        assert!(
            Params::parse(Some("operation=abc"))
                .required_i32("operation")
                .is_err()
        );
    }

    #[test]
    fn single_values_given_twice_are_refused() {
        let p = Params::parse(Some("operation=1000&operation=1001&keys=a&keys=b"));
        assert!(p.required_i32("operation").is_err());
        assert_eq!(p.list("keys").unwrap(), vec!["a", "b"]);
        assert_eq!(first_duplicate(Some("a=1&b=2&a=3")).as_deref(), Some("a"));
        assert_eq!(first_duplicate(Some("a=1&b=2")), None);
        assert_eq!(first_duplicate(None), None);
    }
}
