//! The IM API's request parsing: an operation's path parameters, query and JSON body decoded into its
//! typed request by the api ([`imcloud_api::im_api::request`], the typed contract of
//! `imcloud_common::im::operations`), and the `ImRequest` JSON that logic decodes from the api.
//!
//! Input: byte 0 picks the operation (its index in the operation table, modulo its length; 255 means
//! "logic": the rest is the `args` JSON logic decodes); then, separated by 0xFF bytes, the path
//! parameter values (separated by 0xFE, in the order the route names them), the query string and the
//! body.
//!
//! Checks: no panic; every request the api accepts encodes to JSON that logic decodes into the same
//! operation, and decoding is stable (encode, decode, encode gives the same JSON); the same for any
//! `ImRequest` logic accepts.

#![no_main]

use axum::extract::Query;
use axum::http::Uri;
use imcloud_common::im::operations::{ImRequest, Operation, ROUTES, Visitor, visit};
use imcloud_common::im::params::Params;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// Logic's side: whatever it accepts re-encodes to itself.
fn stable(req: &ImRequest) {
    let json = serde_json::to_value(req).expect("a request encodes");
    let back: ImRequest =
        serde_json::from_value(json.clone()).expect("logic decodes what was encoded");
    assert_eq!(back.route().op, req.route().op);
    assert_eq!(
        serde_json::to_value(&back).expect("encodes again"),
        json,
        "decoding is stable"
    );
}

struct Parts<'a> {
    path: Vec<&'a str>,
    query: &'a str,
    body: &'a [u8],
}

struct Pick<'a> {
    index: usize,
    at: usize,
    parts: &'a Parts<'a>,
}

impl Visitor for Pick<'_> {
    fn visit<O: Operation>(&mut self) {
        if self.at == self.index {
            check::<O>(self.parts);
        }
        self.at += 1;
    }
}

fn check<O: Operation>(parts: &Parts<'_>) {
    let params: Map<String, Value> = O::Path::params()
        .into_iter()
        .zip(&parts.path)
        .map(|(p, v)| (p.name.to_string(), Value::String(v.to_string())))
        .collect();
    // The HTTP server refuses a request line that is not a valid URI before the api sees it.
    let uri: Uri = format!("/q?{}", parts.query)
        .parse()
        .unwrap_or_else(|_| Uri::from_static("/q"));
    let query = Query::<O::Query>::try_from_uri(&uri);
    if let Ok(op) = imcloud_api::im_api::request::<O>(params, query, parts.body) {
        let req: ImRequest = op.into();
        assert_eq!(req.route().op, O::ROUTE.op);
        stable(&req);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if pick == 255 {
        if let Ok(req) = serde_json::from_slice::<ImRequest>(rest) {
            stable(&req);
        }
        return;
    }
    let mut it = rest.splitn(3, |&b| b == 0xFF);
    let (path, query, body) = (
        it.next().unwrap_or(&[]),
        it.next().unwrap_or(&[]),
        it.next().unwrap_or(&[]),
    );
    // Path parameters and the query reach the api as strings.
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let path: Option<Vec<&str>> = path
        .split(|&b| b == 0xFE)
        .map(|v| std::str::from_utf8(v).ok())
        .collect();
    let Some(path) = path else {
        return;
    };
    let parts = Parts { path, query, body };
    let mut pick = Pick {
        index: pick as usize % ROUTES.len(),
        at: 0,
        parts: &parts,
    };
    visit(&mut pick);
});
