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
        let mut want = [0u8; 8];
        let mut typed = [false; 8];
        for (p, e) in entered.iter().take(self.len).enumerate() {
            if let Some(c) = e {
                want[p] = *c;
                typed[p] = true;
            }
        }
        let out = match self.len {
            5 => scan::<5>(&self.chars, &want, &typed),
            6 => scan::<6>(&self.chars, &want, &typed),
            n => scan_dyn(&self.chars, n, &want, &typed),
        };
        out[..self.len]
            .iter()
            .map(|&b| CharSet::from_bits(b))
            .collect()
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

/// The scan for serials of `N` characters: per serial, a bit mask of the typed positions it
/// differs at; no difference enables every character of the serial, one difference enables that
/// character at that position only.
fn scan<const N: usize>(chars: &[u8], want: &[u8; 8], typed: &[bool; 8]) -> [u64; 8] {
    let mut out = [0u64; 8];
    for s in chars.chunks_exact(N) {
        let mut differs = 0u32;
        for p in 0..N {
            differs |= u32::from(typed[p] & (s[p] != want[p])) << p;
        }
        if differs == 0 {
            for p in 0..N {
                out[p] |= 1 << s[p];
            }
        } else if differs.is_power_of_two() {
            let p = differs.trailing_zeros() as usize;
            out[p] |= 1 << s[p];
        }
    }
    out
}

fn scan_dyn(chars: &[u8], len: usize, want: &[u8; 8], typed: &[bool; 8]) -> [u64; 8] {
    let mut out = [0u64; 8];
    for s in chars.chunks_exact(len) {
        let mut differs = 0u32;
        for p in 0..len {
            differs |= u32::from(typed[p] & (s[p] != want[p])) << p;
        }
        if differs == 0 {
            for p in 0..len {
                out[p] |= 1 << s[p];
            }
        } else if differs.is_power_of_two() {
            let p = differs.trailing_zeros() as usize;
            out[p] |= 1 << s[p];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use platepool_engine::keyboard::KeyboardIndex;
    use platepool_engine::pattern::Pattern;

    #[test]
    fn the_scan_agrees_with_the_keyboard_index() {
        let space = Pattern::parse("*****").expect("pattern");
        let mut index = KeyboardIndex::new(&space);
        let mut rng = StdRng::seed_from_u64(3);
        let mut serials = Vec::new();
        for _ in 0..20_000 {
            let code = rng.random_range(0..34u32.pow(5));
            let s = Serial::from_code(code, 5).expect("a code below 34^5");
            if !index.contains(s) {
                index.insert(s);
                serials.push(s);
            }
        }
        let set = ScanSet::new(5, serials);
        for q in set.queries(500, 4) {
            assert_eq!(set.query(&q), index.query(&q), "{q:?}");
        }
    }
}
