//! The citizen API (API.md "Citizen"; SPEC §4): stage 1 (apply), stage 2 (identity, custom and
//! random selection, claim), the voucher, re-entry and practice mode.
//!
//! Every handler: authenticate (401), rate-limit selection calls (429 before any rule), read the
//! body, then — for state-changing calls — run the work once per `Idempotency-Key`.
//!
//! One file per page of the flow; [`request`] and [`render`] hold what they share.

mod applications;
mod claim;
mod custom;
mod draws;
mod identity;
mod keyboard;
mod me;
mod practice;
mod render;
mod request;
mod sms;
mod voucher;

use actix_web::web;
use applications::{application, apply};
use claim::{claim, pick_candidate};
use custom::custom;
use draws::draw;
use identity::identity;
use keyboard::keyboard;
use me::me;
use practice::practice;
use sms::send_sms;
use voucher::voucher;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/me", web::get().to(me))
        .route("/v1/sms", web::post().to(send_sms))
        .route("/v1/practice", web::post().to(practice))
        // Nested scopes: one regular expression (`{id}`) per request instead of one per route
        // tried (see `public::configure`).
        .service(
            web::scope("/v1/applications")
                .route("", web::post().to(apply))
                .service(
                    web::scope("/{id}")
                        .route("", web::get().to(application))
                        .route("/identity", web::post().to(identity))
                        .route("/keyboard", web::get().to(keyboard))
                        .route("/custom", web::post().to(custom))
                        .route("/draws", web::post().to(draw))
                        .route("/candidates", web::post().to(pick_candidate))
                        .route("/claim", web::post().to(claim))
                        .route("/voucher", web::get().to(voucher)),
                ),
        );
}
