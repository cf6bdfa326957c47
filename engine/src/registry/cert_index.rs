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
