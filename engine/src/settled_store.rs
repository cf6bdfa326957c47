//! An office's settled applications read back from its store (see `pool/settled.rs`), and
//! the restore that keeps them there: one for the engine's start and the supervisor's restart.

use crate::class::PlateClass;
use crate::plate::Serial;
use crate::pool::{OfficePool, OfficeRecords, SettledRecords};
use crate::record::{AppRecord, AppState, NumberState};
use crate::store::{OfficeStore, StoreError};

impl SettledRecords for OfficeStore {
    fn application(&self, seq: u64) -> Result<Option<AppRecord>, String> {
        OfficeStore::application(self, seq).map_err(|e| e.to_string())
    }

    fn issued_to(&self, class: &str, serial: Serial) -> Result<Option<u64>, String> {
        match self
            .number_state(class, serial)
            .map_err(|e| e.to_string())?
        {
            Some(NumberState::Issued { app }) => Ok(Some(app)),
            _ => Ok(None),
        }
    }
}

/// What the registry indexes of every stored application, settled ones included: the VIN and
/// user indexes (I7, R4.12) and the blacklist entries lapses owe (R4.11).
#[derive(Debug, Clone)]
pub(crate) struct StoredApplication {
    pub seq: u64,
    pub vin: String,
    pub user: String,
    pub state: AppState,
    pub closed_at_ms: Option<u64>,
}

/// Why an office could not be restored.
#[derive(Debug)]
pub(crate) enum RestoreError {
    Store(StoreError),
    Records(String),
}

/// Reads an office's records and restores its pool with only live applications in memory,
/// returning what the registry indexes of all of them, in creation order.
pub(crate) fn restore_office(
    id: &str,
    office_store: &OfficeStore,
    catalog: Vec<PlateClass>,
    now_ms: u64,
) -> Result<(OfficePool, Vec<StoredApplication>), RestoreError> {
    let snap = office_store.load().map_err(RestoreError::Store)?;
    let config = snap
        .config
        .ok_or_else(|| RestoreError::Records("no configuration stored".into()))?;
    let mut index: Vec<StoredApplication> = snap
        .apps
        .iter()
        .map(|a| StoredApplication {
            seq: a.seq,
            vin: a.vin.clone(),
            user: a.user.clone(),
            state: a.state,
            closed_at_ms: a.closed_at_ms,
        })
        .collect();
    index.sort_by_key(|a| a.seq);
    let records = OfficeRecords {
        releases: snap.releases,
        numbers: snap.numbers,
        apps: snap.apps,
    };
    let settled = Box::new(office_store.clone());
    let pool = OfficePool::restore_live(id, config, catalog, records, now_ms, settled)
        .map_err(RestoreError::Records)?;
    Ok((pool, index))
}
