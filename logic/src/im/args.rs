//! One call's input: path parameters, query parameters and the JSON body, as the api forwards them.

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ImError;

#[derive(Debug, Default, Deserialize)]
pub struct Args {
    #[serde(default)]
    pub path: HashMap<String, String>,
    #[serde(default)]
    pub query: HashMap<String, String>,
    #[serde(default)]
    pub body: Value,
}

impl Args {
    /// A path parameter that is an id (a positive integer).
    pub fn id(&self, name: &str) -> Result<i64, ImError> {
        let v = self
            .path
            .get(name)
            .ok_or_else(|| ImError::invalid(format!("missing path parameter {name}")))?;
        v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ImError::invalid(format!("{name} must be a positive integer, got {v:?}"))
        })
    }

    pub fn path_str(&self, name: &str) -> Result<&str, ImError> {
        self.path
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| ImError::invalid(format!("missing path parameter {name}")))
    }

    /// An optional integer query parameter.
    pub fn query_i64(&self, name: &str) -> Result<Option<i64>, ImError> {
        match self.query.get(name).map(|s| s.trim()) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ImError::invalid(format!("{name} must be an integer, got {v:?}"))),
        }
    }

    pub fn query_str(&self, name: &str) -> &str {
        self.query.get(name).map(|s| s.trim()).unwrap_or("")
    }

    /// Page and page size from `page` (from 1) and `page_size` (1..=100, default 20): (limit, offset).
    pub fn page(&self) -> Result<(i64, i64), ImError> {
        let page = self.query_i64("page")?.unwrap_or(1);
        let size = self.query_i64("page_size")?.unwrap_or(20);
        if !(1..=10_000).contains(&page) {
            return Err(ImError::invalid("page must be between 1 and 10000"));
        }
        if !(1..=100).contains(&size) {
            return Err(ImError::invalid("page_size must be between 1 and 100"));
        }
        Ok((size, (page - 1) * size))
    }

    /// The JSON body as `T`; a missing body reads as `{}`.
    pub fn body<T: DeserializeOwned>(&self) -> Result<T, ImError> {
        let body = if self.body.is_null() {
            Value::Object(Default::default())
        } else {
            self.body.clone()
        };
        serde_json::from_value(body).map_err(|e| ImError::invalid(format!("request body: {e}")))
    }
}

/// Checks a text field's length in characters (after trimming) and returns it trimmed.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<String, ImError> {
    let v = value.trim();
    let n = v.chars().count();
    if n < min || n > max {
        return Err(ImError::invalid(if min > 0 {
            format!("{field} must be {min} to {max} characters")
        } else {
            format!("{field} must be at most {max} characters")
        }));
    }
    if v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ImError::invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(v.to_string())
}

/// [`text`] for an optional field: `None` stays `None`.
pub fn opt_text(
    field: &str,
    value: Option<&str>,
    min: usize,
    max: usize,
) -> Result<Option<String>, ImError> {
    value.map(|v| text(field, v, min, max)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_ids_and_query_are_checked() {
        let a: Args = serde_json::from_value(json!({
            "path": {"id": "12", "bad": "x", "neg": "-3"},
            "query": {"limit": "5", "page_size": "500", "x": "y"}
        }))
        .unwrap();
        assert_eq!(a.id("id"), Ok(12));
        assert_eq!(a.id("bad").unwrap_err().status, 400);
        assert_eq!(a.id("neg").unwrap_err().status, 400);
        assert_eq!(a.id("none").unwrap_err().status, 400);
        assert_eq!(a.query_i64("limit"), Ok(Some(5)));
        assert_eq!(a.query_i64("nope"), Ok(None));
        assert_eq!(a.query_i64("x").unwrap_err().status, 400);
        assert_eq!(a.page().unwrap_err().status, 400);
    }

    #[test]
    fn text_fields_are_bounded() {
        assert_eq!(text("name", "  ab ", 1, 3), Ok("ab".into()));
        assert!(text("name", "", 1, 3).is_err());
        assert!(text("name", "abcd", 1, 3).is_err());
        assert!(text("name", "a\u{0}", 0, 3).is_err());
        assert_eq!(text("name", "日本語", 1, 3), Ok("日本語".into()));
    }
}
