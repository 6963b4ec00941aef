//! Paging: `page`/`page_size` for search and the message box, and opaque cursors (`limit`, `cursor`,
//! answered with `next_cursor`) for the lists that used to be unpaged (conversations, friends, group
//! members, read receipts). A cursor is the offset of the next page; clients must treat it as opaque.

use imcloud_common::im::params::{CursorQuery, PageQuery};

use super::error::ImError;

/// (limit, offset) from `page` (from 1, at most 10000) and `page_size` (1..=100, default 20).
pub fn page(page: Option<i64>, page_size: Option<i64>) -> Result<(i64, i64), ImError> {
    let page = page.unwrap_or(1);
    let size = page_size.unwrap_or(20);
    if !(1..=10_000).contains(&page) {
        return Err(ImError::invalid("page must be between 1 and 10000"));
    }
    if !(1..=100).contains(&size) {
        return Err(ImError::invalid("page_size must be between 1 and 100"));
    }
    Ok((size, (page - 1) * size))
}

pub fn page_of(q: &PageQuery) -> Result<(i64, i64), ImError> {
    page(q.page, q.page_size)
}

/// A cursor page: (limit, offset). The default limit is 100, the largest 500.
pub fn cursor(q: &CursorQuery) -> Result<(i64, i64), ImError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ImError::invalid("limit must be between 1 and 500"));
    }
    let offset = match q.cursor.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|o| (0..=10_000_000).contains(o))
            .ok_or_else(|| ImError::invalid("cursor is not one this server gave"))?,
    };
    Ok((limit, offset))
}

/// Fetch `limit + 1` rows; this trims the extra one and gives the next page's cursor.
pub fn next<T>(rows: &mut Vec<T>, limit: i64, offset: i64) -> Option<String> {
    if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        Some((offset + limit).to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_cursors_are_bounded() {
        assert_eq!(page(None, None), Ok((20, 0)));
        assert_eq!(page(Some(3), Some(10)), Ok((10, 20)));
        assert!(page(Some(0), None).is_err());
        assert!(page(None, Some(500)).is_err());
        let q = |limit, cursor: Option<&str>| CursorQuery {
            limit,
            cursor: cursor.map(str::to_string),
        };
        assert_eq!(cursor(&q(None, None)), Ok((100, 0)));
        assert_eq!(cursor(&q(Some(5), Some("10"))), Ok((5, 10)));
        assert!(cursor(&q(Some(0), None)).is_err());
        assert!(cursor(&q(None, Some("x"))).is_err());
        let mut rows = vec![1, 2, 3];
        assert_eq!(next(&mut rows, 2, 4), Some("6".into()));
        assert_eq!(rows, vec![1, 2]);
        assert_eq!(next(&mut rows, 2, 0), None);
    }
}
