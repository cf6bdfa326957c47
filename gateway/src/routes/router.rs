//! The actix-web services for the route table.
//!
//! actix tries a scope's resources in registration order and runs one regular expression per
//! `{…}` pattern it tries; static patterns are compared as strings. So that a request runs at
//! most one regular expression per `{…}` segment of its path, the paths are cut into chunks —
//! runs of static segments, and each `{…}` segment alone — and every chunk that leads further
//! becomes a scope: `/v1/applications/{id}/draws` is served by the scope `/v1/applications`,
//! inside it the scope `/{id}`, inside it the resource `/draws`. Static chunks come before
//! `{…}` ones in each scope.
//!
//! Each path is one resource holding the routes of every method the table gives it; any other
//! method gets 405 `method_not_allowed` with an `Allow` header naming the methods served (API.md
//! conventions). Paths no route serves fall through to the app's default service (404).

use actix_web::http::header::{HeaderValue, ALLOW};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError as _};

use super::table::Route;
use crate::error::ApiError;

/// A chunk of a path and what is served at and below it.
#[derive(Debug, Default)]
struct Node {
    chunk: String,
    routes: Vec<&'static Route>,
    children: Vec<Node>,
}

/// `/v1/applications/{id}/draws` → `["/v1/applications", "/{id}", "/draws"]`.
fn chunks(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut run = String::new();
    for segment in path.split('/').skip(1) {
        if segment.starts_with('{') {
            if !run.is_empty() {
                out.push(std::mem::take(&mut run));
            }
            out.push(format!("/{segment}"));
        } else {
            run.push('/');
            run.push_str(segment);
        }
    }
    if !run.is_empty() || out.is_empty() {
        out.push(run);
    }
    out
}

impl Node {
    fn insert(&mut self, chunks: &[String], route: &'static Route) {
        match chunks.split_first() {
            None => self.routes.push(route),
            Some((first, rest)) => {
                let child = match self.children.iter().position(|c| &c.chunk == first) {
                    Some(i) => &mut self.children[i],
                    None => {
                        self.children.push(Node {
                            chunk: first.clone(),
                            ..Node::default()
                        });
                        let last = self.children.len() - 1;
                        &mut self.children[last]
                    }
                };
                child.insert(rest, route);
            }
        }
    }

    /// Registers this node's services in `cfg`.
    fn register(self, cfg: &mut web::ServiceConfig) {
        if self.children.is_empty() {
            cfg.service(resource(&self.chunk, &self.routes));
            return;
        }
        let Node {
            chunk,
            routes,
            mut children,
        } = self;
        // Static chunks first: they are string comparisons.
        children.sort_by_key(|c| c.chunk.starts_with("/{"));
        cfg.service(web::scope(&chunk).configure(move |cfg| {
            if !routes.is_empty() {
                cfg.service(resource("", &routes));
            }
            for child in children {
                child.register(cfg);
            }
        }));
    }
}

/// One path's resource: its routes, and 405 with `Allow` for any other method.
fn resource(path: &str, routes: &[&'static Route]) -> actix_web::Resource {
    let allow = routes
        .iter()
        .map(|r| r.verb.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut resource = web::resource(path);
    for route in routes {
        resource = resource.route((route.serve)(web::method(route.verb.method())));
    }
    resource.default_service(web::to(move |req: HttpRequest| {
        let allow = allow.clone();
        async move { method_not_allowed(&req, &allow) }
    }))
}

/// 405 `method_not_allowed`, with the methods the path serves in `Allow`.
fn method_not_allowed(req: &HttpRequest, allow: &str) -> HttpResponse {
    let mut answer = ApiError::method_not_allowed(format!(
        "{} is not served here; this path serves {allow}",
        req.method()
    ))
    .error_response();
    if let Ok(value) = HeaderValue::from_str(allow) {
        answer.headers_mut().insert(ALLOW, value);
    }
    answer
}

/// Registers every route of `routes` in `cfg`.
pub fn register(cfg: &mut web::ServiceConfig, routes: &[&'static Route]) {
    let mut root = Node::default();
    for &route in routes {
        root.insert(&chunks(route.path), route);
    }
    let mut children = root.children;
    children.sort_by_key(|c| c.chunk.starts_with("/{"));
    for child in children {
        child.register(cfg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cut_at_each_parameter() {
        assert_eq!(chunks("/healthz"), ["/healthz"]);
        assert_eq!(
            chunks("/v1/applications/{id}/draws"),
            ["/v1/applications", "/{id}", "/draws"]
        );
        assert_eq!(
            chunks("/v1/admin/offices/{office}/claims/{serial}/void"),
            [
                "/v1/admin/offices",
                "/{office}",
                "/claims",
                "/{serial}",
                "/void"
            ]
        );
        assert_eq!(chunks("/v1/offices/{office}"), ["/v1/offices", "/{office}"]);
    }

    #[test]
    fn routes_sharing_a_prefix_share_its_scopes() {
        let mut root = Node::default();
        for &route in super::super::all() {
            root.insert(&chunks(route.path), route);
        }
        let applications = root
            .children
            .iter()
            .find(|c| c.chunk == "/v1/applications")
            .expect("one scope for /v1/applications");
        assert_eq!(applications.routes.len(), 1, "POST /v1/applications");
        assert_eq!(applications.children.len(), 1, "only /{{id}} below it");
        let id = &applications.children[0];
        assert_eq!(id.chunk, "/{id}");
        assert!(id.children.iter().all(|c| !c.chunk.contains('{')));
        assert_eq!(
            root.children
                .iter()
                .filter(|c| c.chunk == "/v1/admin/offices")
                .count(),
            1
        );
    }
}
