//! The keyboard's limit: answering a query by scanning every available number, the obvious
//! implementation the keyboard index replaces. Same semantics as `KeyboardIndex::query`: at a free
//! position, the characters some number has there together with every entered character; at an
//! entered position, the same ignoring that position's own entry.

use platepool_engine::pattern::CharSet;
use platepool_engine::plate::Serial;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};

/// Serials of one length as alphabet indices, one after the other, for a tight scan.
#[derive(Debug, Clone)]
pub struct ScanSet {
    len: usize,
    chars: Vec<u8>,
}

impl ScanSet {
    pub fn new(len: usize, serials: impl IntoIterator<Item = Serial>) -> ScanSet {
        let mut chars = Vec::new();
        for s in serials {
            debug_assert_eq!(s.len(), len);
            chars.extend_from_slice(&s.indices()[..len]);
        }
        ScanSet { len, chars }
    }

    pub fn count(&self) -> usize {
        self.chars.len() / self.len.max(1)
    }

    /// The `i`-th serial's characters.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.chars[i * self.len..(i + 1) * self.len]
    }

    /// The keyboard for `entered` by a linear scan over every serial.
    pub fn query(&self, entered: &[Option<u8>]) -> Vec<CharSet> {
        let len = self.len;
        let mut want = [u8::MAX; 8];
        for (p, e) in entered.iter().take(len).enumerate() {
            if let Some(c) = e {
                want[p] = *c;
            }
        }
        let mut out = [0u64; 8];
        for s in self.chars.chunks_exact(len) {
            let mut mismatches = 0u32;
            let mut at = 0usize;
            for p in 0..len {
                if want[p] != u8::MAX && s[p] != want[p] {
                    mismatches += 1;
                    at = p;
                }
            }
            match mismatches {
                0 => {
                    for p in 0..len {
                        out[p] |= 1 << s[p];
                    }
                }
                1 => out[at] |= 1 << s[at],
                _ => {}
            }
        }
        out[..len].iter().map(|&b| CharSet::from_bits(b)).collect()
    }

    /// `n` queries as a person types them: characters of a real serial at 0 to `len - 1`
    /// random positions (so answers are not empty), the rest free.
    pub fn queries(&self, n: usize, seed: u64) -> Vec<Vec<Option<u8>>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let count = self.count();
        (0..n)
            .map(|_| {
                let s = self.get(rng.random_range(0..count));
                let k = rng.random_range(0..self.len);
                let mut entered = vec![None; self.len];
                for p in sample(&mut rng, self.len, k) {
                    entered[p] = Some(s[p]);
                }
                entered
            })
            .collect()
    }
}
