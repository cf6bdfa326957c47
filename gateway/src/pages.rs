//! The reference web front end (SPEC D3): the citizen's page at `/` and the operator console at
//! `/console/`, served from files compiled into the binary (`gateway/assets/`, embedded with
//! `include_dir`; no Node toolchain, no files on disk at run time).
//!
//! The pages are plain HTML, CSS and JavaScript modules that call the public API only, exactly
//! as an integrator's own front end would. They are mounted apart from the API
//! ([`crate::Gateway::scope`] keeps serving the API alone): one more call,
//! [`crate::Gateway::pages_scope`], for embedders who want them.
//!
//! Every answer carries a strong `ETag` (SHA-256 of the file) and `Cache-Control: no-cache`, so a
//! browser keeps the files and revalidates them with `If-None-Match` (304) — file names carry no
//! version, so a new binary's files are picked up on the next load. Pages get a strict
//! Content-Security-Policy: scripts, styles and API calls from the page's own origin only, no
//! inline script, no framing.

use std::collections::HashMap;
use std::sync::OnceLock;

use actix_web::dev::HttpServiceFactory;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{guard, web, HttpRequest, HttpResponse};
use include_dir::{include_dir, Dir};
use sha2::{Digest, Sha256};

/// `gateway/assets`: `citizen/…` is served at the mount path, `console/…` under `console/`.
static ASSETS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets");

/// The policy every page and file is served with. `connect-src 'self'` covers the API calls and
/// the console's event stream; `img-src data:` the SVG icons the style sheets inline.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file, ready to serve.
#[derive(Debug)]
struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
    /// Strong validator: `"` + hex SHA-256 (first 16 bytes) + `"`.
    etag: String,
}

/// The content type of a file, by its extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn etag(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Every file by the path it is served at, relative to the mount path (`""` is the citizen's
/// page, `"console/"` the console's); built once.
fn table() -> &'static HashMap<String, Asset> {
    static TABLE: OnceLock<HashMap<String, Asset>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut files = Vec::new();
        collect(&ASSETS, &mut files);
        let mut table = HashMap::new();
        for file in files {
            let Some(path) = file.path().to_str() else {
                continue;
            };
            let served = match path.strip_prefix("citizen/") {
                Some(rest) => rest.to_string(),
                None if path.starts_with("console/") => path.to_string(),
                None => continue,
            };
            let asset = Asset {
                bytes: file.contents(),
                content_type: content_type(&served),
                etag: etag(file.contents()),
            };
            if let Some(dir) = served.strip_suffix("index.html") {
                // `/` and `/console/` serve their index.html (the file's own path too).
                let index = Asset {
                    bytes: asset.bytes,
                    content_type: asset.content_type,
                    etag: asset.etag.clone(),
                };
                table.insert(dir.to_string(), index);
            }
            table.insert(served, asset);
        }
        table
    })
}

fn collect(dir: &'static Dir<'static>, out: &mut Vec<&'static include_dir::File<'static>>) {
    for entry in dir.entries() {
        match entry {
            include_dir::DirEntry::Dir(d) => collect(d, out),
            include_dir::DirEntry::File(f) => out.push(f),
        }
    }
}

/// The paths the pages serve, relative to the mount path (for tests and docs).
pub fn paths() -> Vec<&'static str> {
    let mut paths: Vec<&str> = table().keys().map(String::as_str).collect();
    paths.sort_unstable();
    paths
}

/// The request's path relative to `prefix`, without its leading `/`; `None` outside it.
fn relative<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    path.strip_prefix(prefix)?.strip_prefix('/')
}

/// Is this a path the pages answer (a file, or `console` which redirects)?
fn is_page(prefix: &str, path: &str) -> bool {
    relative(prefix, path).is_some_and(|rel| rel == "console" || table().contains_key(rel))
}

/// The pages as a scope mounted at `path` (`""` for the root: citizen at `/`, console at
/// `/console/`). The scope answers only its own files, so it sits beside the API mounted at the
/// same path; register it BEFORE [`crate::Gateway::scope`] when both share a path, since the API
/// scope answers every path under its own (its unknown paths get the JSON 404).
pub fn scope(path: &str) -> impl HttpServiceFactory {
    let prefix = path.trim_end_matches('/').to_string();
    let guard_prefix = prefix.clone();
    web::scope(&prefix)
        .guard(guard::fn_guard(move |ctx| {
            is_page(&guard_prefix, ctx.head().uri.path())
        }))
        .default_service(web::to(move |req: HttpRequest| {
            let prefix = prefix.clone();
            async move { serve(&prefix, &req) }
        }))
}

fn serve(prefix: &str, req: &HttpRequest) -> HttpResponse {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "GET, HEAD"))
            .finish();
    }
    let rel = relative(prefix, req.path()).unwrap_or("");
    if rel == "console" {
        return HttpResponse::PermanentRedirect()
            .insert_header((header::LOCATION, format!("{prefix}/console/")))
            .finish();
    }
    let Some(asset) = table().get(rel) else {
        // The guard let only known paths in; a table without the path cannot happen.
        return HttpResponse::NotFound().finish();
    };
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        });
    let mut answer = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    answer
        .insert_header((header::ETAG, asset.etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ));
    if fresh {
        return answer.finish();
    }
    answer
        .insert_header((header::CONTENT_TYPE, asset.content_type))
        .body(asset.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_pages_and_their_index_paths_are_embedded() {
        let paths = paths();
        for p in ["", "index.html", "console/", "console/index.html"] {
            assert!(paths.contains(&p), "{p:?} missing from {paths:?}");
        }
        assert!(!paths.iter().any(|p| p.starts_with("citizen/")));
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("a/b.CSS"), "text/css; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }

    #[test]
    fn paths_are_relative_to_the_mount() {
        assert_eq!(relative("", "/console/"), Some("console/"));
        assert_eq!(relative("/p", "/p/app.js"), Some("app.js"));
        assert_eq!(relative("/p", "/q/app.js"), None);
        assert!(is_page("", "/"));
        assert!(is_page("", "/console"));
        assert!(!is_page("", "/v1/me"));
        assert!(!is_page("", "/console/nothing-here.js"));
    }
}
