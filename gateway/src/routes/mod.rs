//! The API's routes, declared once. Each route file declares the routes it serves in a `ROUTES`
//! table ([`table::Route`]: method, path, who may call it, how it is treated under load, its
//! handler and its OpenAPI description); [`FILES`] lists those tables. The router
//! ([`configure`]), the OpenAPI document ([`crate::openapi`]), the metrics labels and the
//! load-shedding check ([`crate::Gateway::scope`]) all read [`all`].
//!
//! A new route file: write it with its `ROUTES`, declare its module below and add its `ROUTES`
//! to [`FILES`].

pub mod answers;
pub mod citizen;
pub mod clock;
pub mod login;
pub mod operator;
pub mod public;
pub mod release_preview;
mod router;
pub mod table;

use std::sync::OnceLock;

use actix_web::web;

pub use table::{Access, Route, Shed, Verb};

/// Every route file's table, in the order the metrics list the routes.
pub const FILES: &[&[Route]] = &[
    public::ROUTES,
    login::ROUTES,
    citizen::me::ROUTES,
    citizen::sms::ROUTES,
    citizen::applications::ROUTES,
    citizen::identity::ROUTES,
    citizen::keyboard::ROUTES,
    citizen::custom::ROUTES,
    citizen::draws::ROUTES,
    citizen::claim::ROUTES,
    citizen::voucher::ROUTES,
    citizen::practice::ROUTES,
    operator::offices::ROUTES,
    // Before `operator::releases`: see `release_preview::ROUTES`.
    release_preview::ROUTES,
    operator::releases::ROUTES,
    operator::plates::ROUTES,
    operator::certificates::ROUTES,
    operator::registrations::ROUTES,
    operator::claims::ROUTES,
    operator::applications::ROUTES,
    operator::stats::ROUTES,
    operator::blacklist::ROUTES,
    operator::audit::ROUTES,
    operator::tokens::ROUTES,
    operator::outbox::ROUTES,
    clock::ROUTES,
];

/// Every route of the API, in [`FILES`] order.
pub fn all() -> &'static [&'static Route] {
    static ALL: OnceLock<Vec<&'static Route>> = OnceLock::new();
    ALL.get_or_init(|| FILES.iter().flat_map(|file| file.iter()).collect())
}

/// Registers the routes, and the per-worker state their handlers keep.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::Data::new(public::PoolNoticeCache::default()))
        .app_data(web::Data::new(operator::stats::RateSampler::new()));
    router::register(cfg, all());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_is_declared_once_with_a_well_formed_path() {
        let mut seen = std::collections::HashSet::new();
        for route in all() {
            assert!(seen.insert(route.key()), "{:?} twice", route.key());
            assert!(route.path.starts_with('/'), "{}", route.path);
            assert!(!route.path.ends_with('/'), "{}", route.path);
            for segment in route.path.split('/').skip(1) {
                let braced = segment.starts_with('{') && segment.ends_with('}');
                assert!(
                    braced || !(segment.contains('{') || segment.contains('}')),
                    "{}: a parameter is a whole segment",
                    route.path
                );
            }
        }
    }

    #[test]
    fn only_application_writes_are_shed_by_their_office() {
        for route in all() {
            let office = route.shed == Shed::Office;
            let write =
                route.verb == Verb::Post && route.path.starts_with("/v1/applications/{id}/");
            assert_eq!(office, write, "{:?}", route.key());
            if route.access == Access::Operator || !route.path.starts_with("/v1/") {
                assert_eq!(route.shed, Shed::Never, "{:?}", route.key());
            }
        }
    }
}
