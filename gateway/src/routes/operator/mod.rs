//! Operator routes (API.md "Operator", SPEC §5): offices, releases, withdrawals, certificate
//! imports, registrations, voids, look-ups, figures, the blacklist, the audit trail, citizen tokens
//! for demos and load tests, and the built-in SMS outbox.
//!
//! Every handler takes the [`Operator`](crate::auth::Operator) extractor first, so a request
//! without the operator credential is refused (401, or 403 for a citizen token) before its body
//! is read.
//!
//! One file per resource; [`shared`] holds what several handlers use.

mod applications;
mod audit;
mod blacklist;
mod certificates;
mod claims;
mod offices;
mod outbox;
mod plates;
mod registrations;
mod releases;
mod shared;
mod stats;
mod tokens;

use actix_web::web;
use applications::applications;
use audit::audit;
use blacklist::{blacklist, lift_blacklist};
use certificates::import_certificates;
use claims::void;
use offices::put_office;
use outbox::outbox;
use plates::withdraw_plate;
use registrations::register;
use releases::{add_release, withdraw_release};
use stats::{stats, RateSampler};
use tokens::issue_token;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::Data::new(RateSampler::new()))
        .route("/v1/admin/offices/{office}", web::put().to(put_office))
        .route(
            "/v1/admin/offices/{office}/releases",
            web::post().to(add_release),
        )
        .route(
            "/v1/admin/offices/{office}/releases/{id}",
            web::delete().to(withdraw_release),
        )
        .route(
            "/v1/admin/offices/{office}/plates/{serial}",
            web::delete().to(withdraw_plate),
        )
        .route(
            "/v1/admin/certificates",
            web::post().to(import_certificates),
        )
        .route("/v1/admin/registrations", web::post().to(register))
        .route(
            "/v1/admin/offices/{office}/claims/{serial}/void",
            web::post().to(void),
        )
        .route("/v1/admin/applications", web::get().to(applications))
        .route("/v1/admin/offices/{office}/stats", web::get().to(stats))
        .route("/v1/admin/blacklist", web::get().to(blacklist))
        .route(
            "/v1/admin/blacklist/{user}",
            web::delete().to(lift_blacklist),
        )
        .route("/v1/admin/audit", web::get().to(audit))
        .route("/v1/admin/tokens", web::post().to(issue_token))
        .route("/v1/admin/sms/outbox", web::get().to(outbox));
}
