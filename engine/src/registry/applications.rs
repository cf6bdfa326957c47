//! Opening applications across offices (R4.2): the checks that need no office, the VIN
//! pending set and the live-application and used-VIN rules (I7, R4.12) asked of the offices that
//! hold the VIN's earlier applications; the VIN and user indexes.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use super::{ApplicationRequest, OfficeEntry, Registry, RegistryCall};
use crate::actor::Call;
use crate::engine::AppId;
use crate::outcome::Refusal;
use crate::pool::NewApplication;
use crate::vin::check_vin;

/// Opens an application, or with `dry_run` only checks that it could be opened (R4.2).
///
/// The registry's part is synchronous and short: the checks that need no office, then the VIN
/// is reserved (no other application of it can start until this one is done) and its earlier
/// applications are listed. The rest — asking the offices holding those applications whether
/// one is live (I7) or has used the VIN (R4.12), and creating the application in its office —
/// runs on the caller's task, not in the registry's context (an actor polls every future
/// spawned in it at each wake-up, so thousands of applications in flight there would cost
/// the registry's thread quadratic time). The reservation is released, and a created
/// application indexed, in one message when the caller is done or goes away.
pub(crate) async fn open_application(
    registry: &Addr<Registry>,
    req: ApplicationRequest,
    dry_run: bool,
) -> Result<Option<AppId>, Refusal> {
    let reserved = registry
        .send(RegistryCall(Box::new(move |r: &mut Registry| {
            r.reserve_application(&req)
        })))
        .await
        .map_err(|_| Refusal::Unavailable("registry is not running".into()))??;
    let mut reservation = Reservation {
        registry: registry.clone(),
        vin: reserved.new_app.vin.clone(),
        user: reserved.new_app.user.clone(),
        created: None,
    };
    let Reserved {
        entry,
        new_app,
        existing,
        offices,
        office_id,
    } = reserved;
    for id in existing {
        let Some(other) = offices.get(&id.office) else {
            continue;
        };
        let seq = id.seq;
        let state = other
            .handle
            .call(Call::read(move |pool, _| {
                Ok(pool.application(seq, 0)?.map(|v| v.record.state))
            }))
            .await?;
        match state {
            Some(s) if s.live() => {
                return Err(Refusal::ApplicationExists {
                    application: id.to_string(),
                })
            }
            Some(s) if s.used_vin() => return Err(Refusal::VinAlreadyUsed),
            _ => {}
        }
    }
    if dry_run {
        return Ok(None);
    }
    let seq = entry
        .handle
        .call(Call::write(move |pool, now, _| {
            pool.create_application(new_app, now)
        }))
        .await?;
    let id = AppId {
        office: office_id,
        seq,
    };
    reservation.created = Some(id.clone());
    Ok(Some(id))
}

/// What the registry decided before the offices are asked.
struct Reserved {
    entry: OfficeEntry,
    new_app: NewApplication,
    /// The VIN's earlier applications, and the offices as they were.
    existing: Vec<AppId>,
    offices: Arc<HashMap<String, OfficeEntry>>,
    office_id: String,
}

/// A VIN reserved for one application being opened; dropping it (done, refused, or the caller
/// gone) releases the VIN and indexes the application if it was created, in one message, so
/// no other application of the VIN starts between the two.
struct Reservation {
    registry: Addr<Registry>,
    vin: String,
    user: String,
    created: Option<AppId>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let (vin, user, created) = (
            std::mem::take(&mut self.vin),
            std::mem::take(&mut self.user),
            self.created.take(),
        );
        // Queued whatever the mailbox holds: a release must not wait, nor be lost.
        self.registry
            .do_send(RegistryCall(Box::new(move |r: &mut Registry| {
                r.pending_vins.remove(&vin);
                if let Some(id) = created {
                    r.vins.entry(vin).or_default().push(id.clone());
                    r.users.entry(user).or_default().push(id);
                }
            })));
    }
}

impl Registry {
    /// The registry's part of opening an application: the checks, then the VIN reserved.
    fn reserve_application(&mut self, req: &ApplicationRequest) -> Result<Reserved, Refusal> {
        let (entry, new_app) = self.precheck(req)?;
        if self.pending_vins.contains(&new_app.vin) {
            return Err(Refusal::ApplicationExists {
                application: String::new(),
            });
        }
        let existing = self.vins.get(&new_app.vin).cloned().unwrap_or_default();
        self.pending_vins.insert(new_app.vin.clone());
        Ok(Reserved {
            entry,
            new_app,
            existing,
            offices: self.offices.load_full(),
            office_id: req.office.clone(),
        })
    }
}

impl Registry {
    /// The checks of R4.2 that need no office round trip, in the API's order: office, notice
    /// version, VIN, voucher match, eligibility; then the blacklist (I6).
    fn precheck(&self, req: &ApplicationRequest) -> Result<(OfficeEntry, NewApplication), Refusal> {
        let offices = self.offices.load();
        let entry = offices
            .get(&req.office)
            .cloned()
            .ok_or(Refusal::UnknownOffice)?;
        let config = &entry.config;
        if req.notice_version != config.notice.version {
            return Err(Refusal::NoticeNotAccepted {
                expected: config.notice.version.clone(),
            });
        }
        let vin = check_vin(&req.vin).map_err(|e| Refusal::InvalidVin(e.to_string()))?;
        let cert = self
            .certificate(vin.as_str())?
            .filter(|c| c.voucher.eq_ignore_ascii_case(req.voucher.trim()))
            .ok_or(Refusal::VoucherMismatch)?;
        if !config.classes.contains(&cert.class) {
            return Err(Refusal::VehicleNotEligible(format!(
                "the office does not serve class {}",
                cert.class
            )));
        }
        let class = self
            .catalog
            .iter()
            .find(|c| c.name == cert.class)
            .ok_or_else(|| Refusal::VehicleNotEligible(format!("unknown class {}", cert.class)))?;
        if class.group_for(cert.energy).is_none() {
            return Err(Refusal::VehicleNotEligible(format!(
                "a {} vehicle cannot have a {} plate",
                cert.energy.as_str(),
                cert.class
            )));
        }
        if let Some(until_ms) = self.blacklisted_until(&req.user) {
            return Err(Refusal::Blacklisted { until_ms });
        }
        Ok((
            entry.clone(),
            NewApplication {
                user: req.user.clone(),
                phone: req.phone.clone(),
                vin: vin.as_str().to_string(),
                class: cert.class,
                energy: cert.energy,
                notice_version: req.notice_version.clone(),
            },
        ))
    }

    /// Applications of a user, in creation order per office.
    pub fn user_applications(&self, user: &str) -> Vec<AppId> {
        self.users.get(user).cloned().unwrap_or_default()
    }

    pub fn vin_applications(&self, vin: &str) -> Vec<AppId> {
        self.vins.get(vin).cloned().unwrap_or_default()
    }

    /// Indexes an application found at start-up.
    pub(crate) fn index(&mut self, id: AppId, vin: &str, user: &str) {
        self.vins
            .entry(vin.to_string())
            .or_default()
            .push(id.clone());
        self.users.entry(user.to_string()).or_default().push(id);
    }
}
