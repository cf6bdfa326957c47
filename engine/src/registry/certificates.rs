//! Certificate records (R5.3): rows checked and imported into the certificate log
//! (`cert_log.rs`), each import with its audit entry (R5.6), and look-ups by VIN.

use serde::{Deserialize, Serialize};

use super::cert_log::{CertificateLog, LoggedImport};
use super::{Pending, Registry};
use crate::class::Energy;
use crate::kv::Kv;
use crate::outcome::Refusal;
use crate::store::StoreError;
use crate::vin::check_vin;

/// Most certificate rows one import may carry.
pub const IMPORT_ROWS_MAX: usize = 200_000;
/// Longest selection voucher number.
pub const VOUCHER_LEN_MAX: usize = 32;
/// The audit action of a certificate import.
pub const IMPORT_ACTION: &str = "import_certificates";

/// Where certificates were kept before the certificate log (read once, moved, removed).
pub(crate) const SLED_CERT_PREFIX: &[u8] = b"cert/";
/// Certificates moved from sled into the log per import.
const MIGRATE_CHUNK: usize = 50_000;
/// In the registry's tree: how far the certificate log had been acknowledged (u64), and one
/// marker per import whose audit entry is in the trail.
pub(crate) const LOG_END_KEY: &[u8] = b"certlog/end";
pub(crate) const IMPORT_MARK_PREFIX: &[u8] = b"certlog/import/";

/// A vehicle's certificate record (national data; one import serves every office).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub vin: String,
    pub voucher: String,
    pub class: String,
    pub energy: Energy,
}

/// One row of an import, as given.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CertificateRow {
    #[serde(default)]
    pub vin: String,
    #[serde(default)]
    pub voucher: String,
    #[serde(default)]
    pub class: String,
    #[serde(default)]
    pub energy: String,
}

/// A row an import refused, and why. Rows count from 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedRow {
    pub row: usize,
    pub reason: String,
}

/// Where one call of a certificate import sits in the operator's whole import, for the call's
/// audit entry: a large import reaches the registry in several calls (so one import does not
/// hold the registry long), each durable with its own entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportPart {
    /// This call's place among the import's calls, from 1, and how many there are.
    pub index: usize,
    pub of: usize,
    /// Rows the caller refused before the engine saw them (unreadable CSV records, …), counted
    /// as rejected in this call's entry.
    pub rejected_before: usize,
}

impl ImportPart {
    /// A whole import in one call.
    pub const WHOLE: ImportPart = ImportPart {
        index: 1,
        of: 1,
        rejected_before: 0,
    };

    /// The audit entry's detail: `certificates: 3 imported, 1 rejected` (and `(part 2 of 5)`).
    pub fn detail(&self, imported: usize, rejected: usize) -> String {
        let rejected = rejected + self.rejected_before;
        let mut text = format!("certificates: {imported} imported, {rejected} rejected");
        if self.of > 1 {
            text.push_str(&format!(" (part {} of {})", self.index, self.of));
        }
        text
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub imported: usize,
    pub rejected: Vec<RejectedRow>,
}

fn unavailable(e: StoreError) -> Refusal {
    Refusal::Unavailable(e.to_string())
}

/// A put (`Some`) or remove (`None`) in the registry's tree.
type Change = (Vec<u8>, Option<Vec<u8>>);

fn import_mark(batch: u64) -> Vec<u8> {
    let mut key = IMPORT_MARK_PREFIX.to_vec();
    key.extend_from_slice(&batch.to_be_bytes());
    key
}

/// What the registry's tree records with an import once its certificates are durable: its
/// audit entry (under `log_key`), its marker, and how far the log is acknowledged.
fn import_changes(
    kv: &Kv,
    batch: u64,
    end: u64,
    log: Option<(Vec<u8>, Vec<u8>)>,
) -> Result<Vec<Change>, StoreError> {
    let recorded = kv.get::<u64>(LOG_END_KEY)?.unwrap_or(0);
    let mut changes = vec![
        (import_mark(batch), Some(Kv::encode(&end))),
        (LOG_END_KEY.to_vec(), Some(Kv::encode(&recorded.max(end)))),
    ];
    if let Some((key, entry)) = log {
        changes.push((key, Some(entry)));
    }
    Ok(changes)
}

impl Registry {
    /// The certificate record of a VIN (normalised, as `check_vin` gives it).
    pub fn certificate(&self, vin: &str) -> Result<Option<Certificate>, Refusal> {
        self.certs.get(vin).map_err(unavailable)
    }

    /// Certificates on record, and the bytes their index holds in memory.
    pub fn certificate_stats(&self) -> (usize, usize) {
        self.certs.stats()
    }

    /// Imports certificate records (R5.3): every good row is kept, every bad one reported. The
    /// import is in the audit trail (R5.6: `who`, the counts, when), written in the log with
    /// its records, so a record is durable exactly when its import's entry is (the entry is
    /// copied into the registry's trail once the log is synced, and again at start-up if that
    /// copy was lost). An import whose every row was refused is recorded too (it changed
    /// nothing, but an operator acted). The registry goes on serving while the log syncs.
    pub(crate) fn import_certificates(
        &mut self,
        rows: Vec<CertificateRow>,
        who: &str,
        part: ImportPart,
    ) -> Result<Pending<ImportReport>, Refusal> {
        if rows.len() > IMPORT_ROWS_MAX {
            return Err(Refusal::BadRequest(format!(
                "an import carries at most {IMPORT_ROWS_MAX} rows"
            )));
        }
        let mut rejected = Vec::new();
        let mut certs = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            match self.check_row(row) {
                Ok(cert) => certs.push(cert),
                Err(reason) => rejected.push(RejectedRow { row: i + 1, reason }),
            }
        }
        let imported = certs.len();
        let (key, audit) =
            self.audit_entry(who, IMPORT_ACTION, part.detail(imported, rejected.len()))?;
        let (appended, synced) = self
            .certs
            .append(&certs, Some(&audit))
            .map_err(unavailable)?;
        drop(certs);
        let kv = self.kv.clone();
        let (batch, end) = (appended.batch, appended.end);
        let durable = async move {
            synced.await?;
            let changes = import_changes(&kv, batch, end, Some((key, Kv::encode(&audit))))?;
            kv.commit_raw_async(changes).await
        };
        Ok(Pending::new(durable, move |r: &mut Registry| {
            r.certs.commit(appended).map_err(unavailable)?;
            Ok(ImportReport { imported, rejected })
        }))
    }

    fn check_row(&self, row: CertificateRow) -> Result<Certificate, String> {
        let vin = check_vin(&row.vin).map_err(|e| format!("vin: {e}"))?;
        let voucher = row.voucher.trim().to_ascii_uppercase();
        if voucher.is_empty() || voucher.len() > VOUCHER_LEN_MAX {
            return Err(format!(
                "voucher: must have 1 to {VOUCHER_LEN_MAX} characters"
            ));
        }
        if !voucher
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err("voucher: only letters, digits and '-'".into());
        }
        let class = row.class.trim();
        if !self.catalog.iter().any(|c| c.name == class) {
            return Err(format!("class: unknown class '{class}'"));
        }
        let energy = Energy::parse(&row.energy).ok_or_else(|| {
            format!(
                "energy: '{}' is not one of fuel, bev, phev, fcev",
                row.energy.trim()
            )
        })?;
        Ok(Certificate {
            vin: vin.as_str().to_string(),
            voucher,
            class: class.to_string(),
            energy,
        })
    }
}

/// Opens the certificate log of a store, as far as the registry's tree says it was
/// acknowledged; copies into the audit trail any import's entry a crash kept out of it; moves
/// certificates that older versions kept in sled into the log.
pub(crate) async fn open_log(
    store: &crate::store::Store,
    kv: &Kv,
) -> Result<CertificateLog, StoreError> {
    let acknowledged = kv.get::<u64>(LOG_END_KEY)?.unwrap_or(0);
    let (mut log, imports) = CertificateLog::open(store.path(), store.durability(), acknowledged)?;
    recover_audit(store, kv, &imports).await?;
    migrate_from_sled(kv, &mut log).await?;
    Ok(log)
}

/// Imports in the log whose audit entry did not reach the registry's tree (a crash between the
/// log's sync and the tree's) get it now.
async fn recover_audit(
    store: &crate::store::Store,
    kv: &Kv,
    imports: &[LoggedImport],
) -> Result<(), StoreError> {
    for import in imports {
        if kv.get::<u64>(&import_mark(import.batch))?.is_some() {
            continue;
        }
        let log = match &import.audit {
            Some(entry) => {
                let mut key = super::LOG_PREFIX.to_vec();
                key.extend_from_slice(&store.generate_id()?.to_be_bytes());
                Some((key, Kv::encode(entry)))
            }
            None => None,
        };
        tracing::info!(
            import = import.batch,
            "certificate import recovered into the audit trail"
        );
        let changes = import_changes(kv, import.batch, import.end, log)?;
        kv.commit_raw_async(changes).await?;
    }
    Ok(())
}

/// Certificates kept in sled by older versions move into the log, in parts; each part leaves
/// sled only once it is durable in the log.
async fn migrate_from_sled(kv: &Kv, log: &mut CertificateLog) -> Result<(), StoreError> {
    loop {
        let part: Vec<(Vec<u8>, Certificate)> =
            kv.scan_from(SLED_CERT_PREFIX, SLED_CERT_PREFIX, MIGRATE_CHUNK)?;
        if part.is_empty() {
            return Ok(());
        }
        let certs: Vec<Certificate> = part.iter().map(|(_, c)| c.clone()).collect();
        let (appended, synced) = log.append(&certs, None)?;
        synced.await?;
        let (batch, end) = (appended.batch, appended.end);
        log.commit(appended)?;
        let mut changes = import_changes(kv, batch, end, None)?;
        changes.extend(part.into_iter().map(|(key, _)| (key, None)));
        kv.commit_raw_async(changes).await?;
        tracing::info!(
            moved = certs.len(),
            "certificates moved from the database into the certificate log"
        );
    }
}
