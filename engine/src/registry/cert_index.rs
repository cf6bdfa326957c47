//! The certificate log's index in memory: a VIN's 64-bit hash to the offset of its newest
//! record, 16 bytes per certificate in a sorted array, with a small hash map of the latest
//! additions merged into it from time to time. VINs whose hash another VIN already has (about
//! one in 10^12 pairs) are kept by their full text in `overflow`; a look-up always compares the
//! VIN of the record it reads, so a hash never answers for another vehicle.

use std::hash::{DefaultHasher, Hash, Hasher};

use rustc_hash::FxHashMap;

/// Additions kept in the map before it is merged into the sorted array (at least; the map may
/// grow to an eighth of the array, so that merging costs O(1) per addition on average).
const RECENT_MIN: usize = 16_384;

/// The hash a VIN is indexed by (SipHash with fixed keys: the index is rebuilt at every start,
/// so the hash need not be stable across builds).
pub(crate) fn vin_hash(vin: &str) -> u64 {
    let mut h = DefaultHasher::new();
    vin.hash(&mut h);
    h.finish()
}

#[derive(Debug, Default)]
pub(crate) struct CertIndex {
    /// (hash, offset), sorted by hash, one entry per hash.
    sorted: Vec<(u64, u64)>,
    /// Newer than `sorted` for the hashes it holds.
    recent: FxHashMap<u64, u64>,
    /// VINs whose hash belongs to another VIN in `sorted` or `recent`.
    overflow: FxHashMap<String, u64>,
}

/// Where a VIN's newest record may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Stored by full VIN: this is the record.
    Exact(u64),
    /// Stored by hash: the record's VIN must be compared.
    ByHash(u64),
}

impl CertIndex {
    /// Certificates indexed.
    pub(crate) fn len(&self) -> usize {
        self.sorted.len() + self.recent.len() + self.overflow.len()
    }

    /// Bytes of memory the index holds (capacity, not length), for reports.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.sorted.capacity() * 16
            + self.recent.capacity() * 17
            + self
                .overflow
                .keys()
                .map(|k| k.capacity() + 33)
                .sum::<usize>()
    }

    pub(crate) fn find(&self, vin: &str) -> Option<Slot> {
        self.find_hashed(vin, vin_hash(vin))
    }

    fn find_hashed(&self, vin: &str, hash: u64) -> Option<Slot> {
        if let Some(&offset) = self.overflow.get(vin) {
            return Some(Slot::Exact(offset));
        }
        self.by_hash(hash).map(Slot::ByHash)
    }

    fn by_hash(&self, hash: u64) -> Option<u64> {
        if let Some(&offset) = self.recent.get(&hash) {
            return Some(offset);
        }
        self.sorted
            .binary_search_by_key(&hash, |e| e.0)
            .ok()
            .map(|i| self.sorted[i].1)
    }

    /// Points `vin` at `offset`. `vin_at` reads the VIN of the record at an offset already in
    /// the index (called only when another record has the same hash).
    pub(crate) fn insert<E>(
        &mut self,
        vin: &str,
        offset: u64,
        vin_at: impl FnOnce(u64) -> Result<String, E>,
    ) -> Result<(), E> {
        self.insert_hashed(vin, vin_hash(vin), offset, vin_at)
    }

    fn insert_hashed<E>(
        &mut self,
        vin: &str,
        hash: u64,
        offset: u64,
        vin_at: impl FnOnce(u64) -> Result<String, E>,
    ) -> Result<(), E> {
        // The newest record is the one further into the log: imports indexed out of order
        // (two answered by one sync) keep it.
        if let Some(slot) = self.overflow.get_mut(vin) {
            *slot = offset.max(*slot);
            return Ok(());
        }
        match self.by_hash(hash) {
            None => self.set(hash, offset),
            Some(old) => {
                if vin_at(old)? != vin {
                    self.overflow.insert(vin.to_string(), offset);
                } else if old < offset {
                    self.set(hash, offset);
                }
            }
        }
        Ok(())
    }

    fn set(&mut self, hash: u64, offset: u64) {
        if let Ok(i) = self.sorted.binary_search_by_key(&hash, |e| e.0) {
            self.sorted[i].1 = offset;
            return;
        }
        self.recent.insert(hash, offset);
        if self.recent.len() >= RECENT_MIN.max(self.sorted.len() / 8) {
            self.merge();
        }
    }

    /// Indexes `entries` (a VIN's hash and its record's offset, every committed record of the
    /// log) as inserting them one by one in the log's order would, in one sort instead of a
    /// search per record: at start-up, with a million certificates or more, the searches were
    /// most of the time to ready. Records sharing a hash are told apart by their VINs
    /// (`vin_at`): the same VIN imported again keeps its newest record; another VIN with a
    /// taken hash is kept by name, the hash staying with the VIN first in the log.
    pub(crate) fn load<E>(
        &mut self,
        mut entries: Vec<(u64, u64)>,
        mut vin_at: impl FnMut(u64) -> Result<String, E>,
    ) -> Result<(), E> {
        if self.len() > 0 {
            for (hash, offset) in entries {
                let vin = vin_at(offset)?;
                self.insert_hashed(&vin, hash, offset, &mut vin_at)?;
            }
            return Ok(());
        }
        entries.sort_unstable();
        // Compacted in place: each run of equal hashes leaves one entry, at or before its start.
        let (mut at, mut kept) = (0, 0);
        while at < entries.len() {
            let hash = entries[at].0;
            let same = entries[at..].iter().take_while(|e| e.0 == hash).count();
            let offset = if same == 1 {
                entries[at].1
            } else {
                // In log order: the first VIN keeps the hash, each VIN its newest record.
                let mut vins: Vec<(String, u64)> = Vec::new();
                for &(_, offset) in &entries[at..at + same] {
                    let vin = vin_at(offset)?;
                    match vins.iter_mut().find(|(v, _)| *v == vin) {
                        Some(newest) => newest.1 = offset,
                        None => vins.push((vin, offset)),
                    }
                }
                let first = vins.remove(0).1;
                self.overflow.extend(vins);
                first
            };
            entries[kept] = (hash, offset);
            kept += 1;
            at += same;
        }
        entries.truncate(kept);
        if entries.capacity() > kept + kept / 16 {
            entries.shrink_to_fit();
        }
        self.sorted = entries;
        Ok(())
    }

    /// Moves the recent additions into the sorted array (their hashes are not in it).
    pub(crate) fn merge(&mut self) {
        if self.recent.is_empty() {
            return;
        }
        let mut recent: Vec<(u64, u64)> = self.recent.drain().collect();
        recent.sort_unstable_by_key(|e| e.0);
        let old = std::mem::take(&mut self.sorted);
        let mut merged = Vec::with_capacity(old.len() + recent.len());
        let (mut a, mut b) = (old.into_iter().peekable(), recent.into_iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.0 <= y.0 => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            merged.extend(next);
        }
        self.sorted = merged;
        self.recent.shrink_to(RECENT_MIN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An index over a table of records, as the log uses it.
    fn put(index: &mut CertIndex, records: &HashMap<u64, String>, vin: &str, offset: u64) {
        index
            .insert(vin, offset, |at| {
                records.get(&at).cloned().ok_or("no record there")
            })
            .expect("insert");
    }

    fn resolve(index: &CertIndex, records: &HashMap<u64, String>, vin: &str) -> Option<u64> {
        match index.find(vin)? {
            Slot::Exact(at) => Some(at),
            Slot::ByHash(at) => (records.get(&at).map(String::as_str) == Some(vin)).then_some(at),
        }
    }

    #[test]
    fn newest_record_wins_across_merges() {
        let mut index = CertIndex::default();
        let mut records = HashMap::new();
        let n = 3 * RECENT_MIN as u64;
        for i in 0..n {
            let vin = format!("VIN{i:08}");
            records.insert(i, vin.clone());
            put(&mut index, &records, &vin, i);
        }
        // Every tenth VIN imported again, later in the log.
        for i in (0..n).step_by(10) {
            let vin = format!("VIN{i:08}");
            records.insert(n + i, vin.clone());
            put(&mut index, &records, &vin, n + i);
        }
        assert_eq!(index.len(), n as usize);
        for i in 0..n {
            let expect = if i % 10 == 0 { n + i } else { i };
            assert_eq!(
                resolve(&index, &records, &format!("VIN{i:08}")),
                Some(expect)
            );
        }
        assert_eq!(resolve(&index, &records, "VIN99999999"), None);
        index.merge();
        assert!(index.recent.is_empty());
        assert!(index.sorted.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn loading_at_once_indexes_as_inserting_one_by_one() {
        // VINs imported twice, and VINs sharing a hash (as collisions would), in log order.
        let mut log: Vec<(String, u64)> = Vec::new();
        for i in 0..3 * RECENT_MIN as u64 {
            log.push((format!("VIN{i:08}"), vin_hash(&format!("VIN{i:08}"))));
        }
        for i in (0..3 * RECENT_MIN as u64).step_by(7) {
            log.push((format!("VIN{i:08}"), vin_hash(&format!("VIN{i:08}"))));
        }
        for (vin, hash) in [
            ("AAAA", 42),
            ("BBBB", 42),
            ("AAAA", 42),
            ("CCCC", 42),
            ("BBBB", 42),
        ] {
            log.push((vin.to_string(), hash));
        }
        let records: HashMap<u64, String> = log
            .iter()
            .enumerate()
            .map(|(at, (vin, _))| (at as u64, vin.clone()))
            .collect();
        let vin_at = |at: u64| records.get(&at).cloned().ok_or("no record there");
        let mut one_by_one = CertIndex::default();
        for (at, (vin, hash)) in log.iter().enumerate() {
            one_by_one
                .insert_hashed(vin, *hash, at as u64, vin_at)
                .expect("insert");
        }
        one_by_one.merge();
        let mut at_once = CertIndex::default();
        let entries = log
            .iter()
            .enumerate()
            .map(|(at, (_, hash))| (*hash, at as u64))
            .collect();
        at_once.load(entries, vin_at).expect("load");
        assert_eq!(at_once.sorted, one_by_one.sorted);
        assert_eq!(at_once.overflow, one_by_one.overflow);
        assert_eq!(at_once.len(), 3 * RECENT_MIN + 3);
        let (a, b, c) = (
            at_once.find_hashed("AAAA", 42),
            at_once.find_hashed("BBBB", 42),
            at_once.find_hashed("CCCC", 42),
        );
        let last = log.len() as u64 - 1;
        assert_eq!(
            a,
            Some(Slot::ByHash(last - 2)),
            "the first VIN keeps the hash"
        );
        assert_eq!(b, Some(Slot::Exact(last)));
        assert_eq!(c, Some(Slot::Exact(last - 1)));
        // Loading into an index that holds entries already inserts them one by one.
        let mut again = CertIndex::default();
        again
            .load(vec![(vin_hash("VIN00000001"), 1)], vin_at)
            .expect("load");
        again
            .load(vec![(vin_hash("VIN00000002"), 2)], vin_at)
            .expect("load");
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn a_vin_whose_hash_is_taken_is_kept_by_name() {
        // Two VINs given the same hash, as a collision would.
        const HASH: u64 = 42;
        let mut index = CertIndex::default();
        let mut records: HashMap<u64, String> = HashMap::new();
        let mut put = |index: &mut CertIndex, vin: &str, at: u64| {
            records.insert(at, vin.to_string());
            let table = records.clone();
            index
                .insert_hashed(vin, HASH, at, |old| {
                    table.get(&old).cloned().ok_or("no record there")
                })
                .expect("insert");
            records.clone()
        };
        let resolve = |index: &CertIndex, records: &HashMap<u64, String>, vin: &str| match index
            .find_hashed(vin, HASH)?
        {
            Slot::Exact(at) => Some(at),
            Slot::ByHash(at) => (records.get(&at).map(String::as_str) == Some(vin)).then_some(at),
        };
        put(&mut index, "AAAA", 1);
        let records = put(&mut index, "BBBB", 2);
        assert_eq!(resolve(&index, &records, "AAAA"), Some(1));
        assert_eq!(resolve(&index, &records, "BBBB"), Some(2));
        assert_eq!(index.overflow.len(), 1, "the second VIN is kept by name");
        let records = put(&mut index, "BBBB", 3);
        let records2 = put(&mut index, "AAAA", 4);
        assert_eq!(resolve(&index, &records, "BBBB"), Some(3));
        assert_eq!(resolve(&index, &records2, "AAAA"), Some(4));
        assert_eq!(resolve(&index, &records2, "CCCC"), None);
        assert_eq!(index.len(), 2);
    }
}
