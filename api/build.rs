//! Watches the built web client (`../web/dist`, embedded by `src/web_client.rs`), so that a new
//! `npm run build` recompiles this crate, and warns when it is missing: the binary then serves an explicit
//! "web client not built" page at `/` (see docs/web-client.md for why this is not a compile error).
//!
//! A rerun of this script alone does not recompile the crate, and the embedding macro only reads the
//! folder when the crate compiles. So the script hands the crate a stamp of the folder's contents
//! (`IMCLOUD_WEB_DIST_STAMP`, read with `env!` in `web_client.rs`): a new build of the client changes the
//! stamp, and rustc recompiles whatever reads it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;

fn stamp(dir: &Path, h: &mut DefaultHasher) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        path.hash(h);
        match e.metadata() {
            Ok(m) if m.is_dir() => stamp(&path, h),
            Ok(m) => {
                m.len().hash(h);
                m.modified().ok().hash(h);
            }
            Err(_) => {}
        }
    }
}

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let web = Path::new(&manifest).join("../web");
    let dist = web.join("dist");
    if dist.join("index.html").is_file() {
        let mut h = DefaultHasher::new();
        stamp(&dist, &mut h);
        println!("cargo:rustc-env=IMCLOUD_WEB_DIST_STAMP={:016x}", h.finish());
        println!("cargo:rerun-if-changed={}", dist.display());
    } else {
        println!("cargo:rustc-env=IMCLOUD_WEB_DIST_STAMP=missing");
        println!(
            "cargo:warning=web/dist is missing: this binary serves a \"web client not built\" page at /. \
             Run `npm ci && npm run build` in web/ (scripts/lib.sh build_web) before cargo to embed the client."
        );
        // The folder that will hold dist, so that building the client later reruns this script.
        println!("cargo:rerun-if-changed={}", web.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}
