//! Rebuilding an office from its records at start-up (I9).

use crate::class::PlateClass;
use crate::config::OfficeConfig;
use crate::plate::Serial;
use crate::record::{AppRecord, AppState, NumberState, ReleaseRecord};

use rustc_hash::FxHashSet;

use super::numbers::Status;
use super::{Application, Effects, Holds, OfficePool, SettledRecords};

/// An office's stored records, as [`OfficePool::restore_live`] takes them.
#[derive(Debug, Default)]
pub struct OfficeRecords {
    pub releases: Vec<ReleaseRecord>,
    pub numbers: Vec<(String, Serial, NumberState)>,
    pub apps: Vec<AppRecord>,
}

/// Who an office is, as restore is given it.
struct Office<'a> {
    id: &'a str,
    config: OfficeConfig,
    catalog: Vec<PlateClass>,
}

impl OfficePool {
    /// Rebuilds an office from its records (I9): releases re-expanded from their specifications,
    /// numbers whose state differs applied on top, applications with their quotas and claims.
    /// Holds are gone: those numbers are back in the pool.
    pub fn restore(
        id: &str,
        config: OfficeConfig,
        catalog: Vec<PlateClass>,
        releases: Vec<ReleaseRecord>,
        numbers: Vec<(String, Serial, NumberState)>,
        apps: Vec<AppRecord>,
        now_ms: u64,
    ) -> Result<OfficePool, String> {
        let office = Office {
            id,
            config,
            catalog,
        };
        OfficePool::restore_keeping(office, releases, numbers, apps, now_ms, None)
    }

    /// As [`OfficePool::restore`], keeping settled applications in `settled` (their store)
    /// rather than in memory: only live ones are taken from `apps` (see `settled.rs`).
    pub fn restore_live(
        id: &str,
        config: OfficeConfig,
        catalog: Vec<PlateClass>,
        records: OfficeRecords,
        now_ms: u64,
        settled: Box<dyn SettledRecords>,
    ) -> Result<OfficePool, String> {
        let office = Office {
            id,
            config,
            catalog,
        };
        let OfficeRecords {
            releases,
            numbers,
            apps,
        } = records;
        OfficePool::restore_keeping(office, releases, numbers, apps, now_ms, Some(settled))
    }

    fn restore_keeping(
        office: Office<'_>,
        mut releases: Vec<ReleaseRecord>,
        numbers: Vec<(String, Serial, NumberState)>,
        apps: Vec<AppRecord>,
        now_ms: u64,
        settled: Option<Box<dyn SettledRecords>>,
    ) -> Result<OfficePool, String> {
        let mut pool =
            OfficePool::new(office.id, office.config, office.catalog).map_err(|e| e.to_string())?;
        let on_disk = settled.is_some();
        pool.settled_records = settled;
        // Applications left on disk, for the numbers issued to them.
        let mut issued_to_settled = FxHashSet::default();
        releases.sort_by_key(|r| r.id);
        for rec in releases {
            let class_ix = pool
                .class_index(&rec.class)
                .ok_or_else(|| format!("release {} names unknown class {}", rec.id, rec.class))?;
            let named = pool
                .expand(class_ix, &rec.source)
                .map_err(|e| format!("release {}: {e}", rec.id))?;
            // As when it was added: numbers an earlier release holds stay that release's.
            let codes = pool.not_in_pool(class_ix, named);
            pool.classes[class_ix].add_segment(rec.id, codes);
            pool.next_release = pool.next_release.max(rec.id + 1);
            pool.schedule_release(&rec);
            pool.releases.push(rec);
        }
        for rec in apps {
            let class_ix = pool.class_index(&rec.class).ok_or_else(|| {
                format!("application {} names unknown class {}", rec.seq, rec.class)
            })?;
            let group = pool.classes[class_ix]
                .def
                .group_for(rec.energy)
                .ok_or_else(|| format!("application {}: energy not in class", rec.seq))?;
            pool.next_seq = pool.next_seq.max(rec.seq + 1);
            if on_disk && !rec.state.live() {
                if rec.state == AppState::Issued {
                    issued_to_settled.insert(rec.seq);
                }
                continue;
            }
            if rec.state == AppState::Claimed {
                if let Some(c) = &rec.claim {
                    pool.claim_deadlines.insert((c.register_by_ms, rec.seq));
                }
            }
            pool.apps.insert(
                rec.seq,
                Application {
                    rec,
                    class_ix,
                    group,
                    practice: false,
                    holds: Holds::default(),
                    hold_deadline: None,
                },
            );
        }
        for (class, serial, state) in numbers {
            let class_ix = pool
                .class_index(&class)
                .ok_or_else(|| format!("number {serial} names unknown class {class}"))?;
            let idx = pool.classes[class_ix]
                .find(serial)
                .ok_or_else(|| format!("number {serial} is in no release"))?;
            let (status, owner) = match state {
                NumberState::Claimed { app } => (Status::Claimed, Some(app)),
                NumberState::Issued { app } => (Status::Issued, Some(app)),
                NumberState::Withdrawn => (Status::Withdrawn, None),
            };
            if let Some(app) = owner {
                if status == Status::Issued && issued_to_settled.contains(&app) {
                    // Its owner is the number record itself (see `settled.rs`).
                    pool.classes[class_ix].set_status(idx, status);
                    continue;
                }
                if !pool.apps.contains_key(&app) {
                    return Err(format!(
                        "number {serial} belongs to unknown application {app}"
                    ));
                }
                pool.owners.insert((class_ix as u8, idx), app);
            }
            pool.classes[class_ix].set_status(idx, status);
        }
        let withdrawn: Vec<(usize, u32)> = pool
            .releases
            .iter()
            .filter(|r| r.withdrawn)
            .filter_map(|r| pool.class_index(&r.class).map(|c| (c, r.id)))
            .collect();
        for (class_ix, release) in withdrawn {
            if let Some(seg) = pool.classes[class_ix].segment_index(release) {
                pool.classes[class_ix].withdraw_segment(seg);
            }
        }
        pool.run_release_events(now_ms);
        pool.effects = Effects::default();
        // Holds are gone: an application whose only hope was a held number is exhausted now
        // (R4.7). Its records are left in the effects, for the actor's first commit.
        let spent: Vec<u64> = pool
            .apps
            .values()
            .filter(|a| a.rec.state.selecting() && a.rec.custom_left == 0 && a.rec.random_left == 0)
            .map(|a| a.rec.seq)
            .collect();
        for seq in spent {
            if let Some(mut app) = pool.apps.remove(&seq) {
                if pool.maybe_exhaust(&mut app, now_ms) {
                    pool.persist(&app);
                }
                pool.apps.insert(seq, app);
            }
        }
        // The keyboards are built once the engine is ready (or at the first keyboard read), not
        // here: a restart is ready sooner.
        Ok(pool)
    }

    /// Brings every keyboard index up to date now rather than at its next query (the engine
    /// has each office do so shortly after recovery; see `actor::KEYBOARD_WARM_UP_AFTER`).
    pub fn refresh_keyboards(&self) {
        for cp in &self.classes {
            cp.refresh_keyboard();
        }
    }
}
