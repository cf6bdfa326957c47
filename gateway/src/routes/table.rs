//! What a route is: method, path pattern, who may call it, how it is treated under load, its
//! handler and what the OpenAPI document says about it. Each route file declares its routes as a
//! `ROUTES` table of these; [`super::FILES`] lists the files. The router, the OpenAPI document,
//! the metrics labels and the load-shedding check all read the same tables.

use actix_web::http::Method;

use crate::openapi::Doc;

/// The HTTP method of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    pub const fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Delete => "DELETE",
        }
    }

    pub fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Put => Method::PUT,
            Verb::Delete => Method::DELETE,
        }
    }
}

/// Who may call a route: the credential its handler's extractor demands, and the security the
/// document gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credential.
    Public,
    /// A citizen token (`Authorization: Bearer`, or the session cookie).
    Citizen,
    /// The operator token.
    Operator,
}

/// How a route is treated while the gateway is overloaded (see [`crate::lag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// Always served: health, metrics and the operator API, so operators can see and act on an
    /// overloaded service.
    Never,
    /// Refused with 503 while this worker's event loop runs later than the configured limit.
    Lag,
    /// A write to an application: admitted by its office's own measure of its queue (the office
    /// is the `{office}-{seq}` application id in the path).
    Office,
}

/// One route of the API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub verb: Verb,
    /// The path pattern below the gateway's mount point; `{name}` is one non-empty segment.
    pub path: &'static str,
    pub access: Access,
    pub shed: Shed,
    /// Attaches the handler: `|r| r.to(handler)`.
    pub serve: fn(actix_web::Route) -> actix_web::Route,
    pub doc: Doc,
}

impl Route {
    /// A route that is never shed for load.
    pub const fn new(
        verb: Verb,
        path: &'static str,
        access: Access,
        serve: fn(actix_web::Route) -> actix_web::Route,
        doc: Doc,
    ) -> Route {
        Route {
            verb,
            path,
            access,
            shed: Shed::Never,
            serve,
            doc,
        }
    }

    /// The same route, treated as `shed` under load.
    pub const fn shed(self, shed: Shed) -> Route {
        Route { shed, ..self }
    }

    /// `(method, path pattern)`.
    pub fn key(&self) -> (&'static str, &'static str) {
        (self.verb.as_str(), self.path)
    }
}
