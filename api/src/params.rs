//! goim-style query parameters: a list is either repeated (`keys=a&keys=b`) or comma-separated (`keys=a,b`).

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

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        match self.get(name) {
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
        match self.get(name).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                ApiError::bad_request(format!("{name} must be an integer, got {v:?}"))
            }),
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
}
