//! The query strings of goim's push API (`POST /goim/push/{keys,mids,room,all}`), parsed into the logic
//! requests by the api's [`keys_request`], [`mids_request`], [`room_request`] and [`all_request`].
//!
//! Input: the raw query string (what follows `?`; axum hands it over as a `&str`, so non-UTF-8 input is
//! skipped).
//!
//! Checks: no panic; lists are non-empty and bounded, their entries trimmed, non-empty and free of
//! commas; required values are trimmed and non-empty; a parameter given twice is refused, never read.

#![no_main]

use imcloud_api::goim_push::{all_request, keys_request, mids_request, room_request};
use imcloud_api::params::{MAX_LIST, first_duplicate};
use libfuzzer_sys::fuzz_target;

fn list_ok(items: &[String]) {
    assert!(!items.is_empty() && items.len() <= MAX_LIST);
    for i in items {
        assert!(!i.is_empty() && !i.contains(',') && i.trim() == i, "{i:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let q = Some(query);
    let duplicate = first_duplicate(q);
    let single = |name: &str| duplicate.as_deref() != Some(name);
    if let Ok(r) = keys_request(q) {
        assert!(single("operation"));
        list_ok(&r.keys);
    }
    if let Ok(r) = mids_request(q) {
        assert!(single("operation"));
        assert!(!r.mids.is_empty() && r.mids.len() <= MAX_LIST);
    }
    if let Ok(r) = room_request(q) {
        assert!(single("operation") && single("type") && single("room"));
        for v in [&r.r#type, &r.room] {
            assert!(!v.is_empty() && v.trim() == v, "{v:?}");
        }
    }
    if all_request(q).is_ok() {
        assert!(single("operation") && single("speed"));
    }
});
