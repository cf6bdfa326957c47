//! The index behind the virtual keyboard (SPEC R4.5, invariant I8).
//!
//! A character is enabled at a position iff some number in the index has it there together with
//! every character already entered at the other positions. Answering that by scanning a pool of
//! millions of numbers on every keystroke is far too slow, so the index keeps *projection counts*:
//! for a set `S` of positions, how many indexed serials agree on the characters at `S`. With
//! entered positions `E`, a free position `p` is answered from the projection onto `E ∪ {p}` (one
//! cell per character of `p`), and an entered position from the projection onto the other entered
//! positions plus itself. A query is thus at most `len × 34` cell reads, and inserting or removing
//! a serial updates one cell per subset of positions.
//!
//! Layout and memory:
//! - Characters are stored as their rank within the space's set at that position (mixed radix), so
//!   an array covers only serials of the space, not all of 34^len.
//! - Positions whose set has a single character (the `D` of `D*####`) cannot tell serials apart;
//!   they are left out of the subsets, which halves memory and update work for each of them.
//! - The projection onto every varying position is a membership bitmap (1 bit per serial of the
//!   space). Its rows along the last varying position are contiguous, so the projection onto all
//!   positions but the last one is read from the bitmap (a row is non-empty iff it has a bit set)
//!   instead of being stored.
//! - Every other proper, non-empty subset has a count array whose cell width fits the largest count
//!   it can hold (the number of serials of the space that agree on a cell): `u8`, `u16` or `u32`.
//!
//! For `*****` (34^5) that is a 5.7 MB bitmap, four 34^4 `u8` arrays (5.3 MB), ten 34^3 `u16`
//! arrays (0.8 MB) and a little more: about 12 MB, fixed. The size grows with the space, not with
//! the pool: a six-position all-`*` space (34^6) would need about 0.5 GB, so the index is meant
//! for class spaces of up to about 34^5 serials.

use std::fmt;

use crate::pattern::{CharSet, Pattern};
use crate::plate::{Serial, SERIAL_LEN_MAX};

/// Bits in one word of the membership bitmap.
const WORD_BITS: usize = u64::BITS as usize;

/// Mixed-radix digits of a serial: the rank of its character within the space's set, per varying
/// position (only the first `varying` entries are meaningful; the rest stay 0).
type Ranks = [usize; SERIAL_LEN_MAX];

/// How the cells of one subset of varying positions are kept.
#[derive(Clone)]
enum Cells {
    /// The empty subset: its single cell is the number of indexed serials.
    Total,
    /// Every varying position: the membership bitmap.
    Members,
    /// Every varying position but the last: a cell is a row of the bitmap along the last one.
    Rows,
    /// Counts that never exceed `u8::MAX`.
    U8(Vec<u8>),
    /// Counts that never exceed `u16::MAX`.
    U16(Vec<u16>),
    /// Larger counts (at most 34^5, which fits).
    U32(Vec<u32>),
}

impl Cells {
    /// A zeroed count array of `cells` cells none of which can exceed `max_count`.
    fn counts(cells: usize, max_count: u64) -> Cells {
        if max_count <= u64::from(u8::MAX) {
            Cells::U8(vec![0; cells])
        } else if max_count <= u64::from(u16::MAX) {
            Cells::U16(vec![0; cells])
        } else {
            Cells::U32(vec![0; cells])
        }
    }

    /// Heap bytes held by a count array.
    fn heap_bytes(&self) -> usize {
        match self {
            Cells::Total | Cells::Members | Cells::Rows => 0,
            Cells::U8(v) => std::mem::size_of_val(v.as_slice()),
            Cells::U16(v) => std::mem::size_of_val(v.as_slice()),
            Cells::U32(v) => std::mem::size_of_val(v.as_slice()),
        }
    }

    /// Adds one to a count cell; the other kinds are kept elsewhere and ignore it.
    fn increment(&mut self, cell: usize) {
        match self {
            Cells::Total | Cells::Members | Cells::Rows => {}
            Cells::U8(v) => v[cell] += 1,
            Cells::U16(v) => v[cell] += 1,
            Cells::U32(v) => v[cell] += 1,
        }
    }

    /// Takes one from a count cell; the other kinds are kept elsewhere and ignore it.
    fn decrement(&mut self, cell: usize) {
        match self {
            Cells::Total | Cells::Members | Cells::Rows => {}
            Cells::U8(v) => v[cell] -= 1,
            Cells::U16(v) => v[cell] -= 1,
            Cells::U32(v) => v[cell] -= 1,
        }
    }
}

/// Bit `k` set iff `cells[base + k * stride]` is non-zero, for `k < radix`.
fn nonzero_counts<T: Copy + Into<u32>>(
    cells: &[T],
    base: usize,
    stride: usize,
    radix: usize,
) -> u64 {
    cells[base..]
        .iter()
        .step_by(stride)
        .take(radix)
        .enumerate()
        .fold(0u64, |mask, (k, &count)| {
            mask | (u64::from(count.into() != 0) << k)
        })
}

/// The virtual keyboard's index over the serials of one space (a class's pattern); see the module
/// documentation for the design.
#[derive(Clone)]
pub struct KeyboardIndex {
    space: Pattern,
    /// For each position of the space: its slot among the varying positions (`None` for a
    /// position whose set has one character).
    slot_of: [Option<usize>; SERIAL_LEN_MAX],
    /// Number of characters in each varying position's set, by slot.
    radix: Ranks,
    /// Number of varying positions; subsets of them are bit masks below `1 << varying`.
    varying: usize,
    /// For each subset mask, the stride of each slot in that subset's cell layout (0 for slots
    /// outside it), so a cell is `Σ rank × stride`. Layouts are row-major (the highest slot has
    /// stride 1), which keeps the cells read for a free position after a typed prefix contiguous.
    strides: Vec<Ranks>,
    /// For each subset mask, how its cells are kept.
    cells: Vec<Cells>,
    /// The masks with count arrays, largest array first: updates are bound by cache misses on
    /// the large arrays, and touching them back to back lets the processor overlap those misses.
    update_order: Vec<usize>,
    /// One bit per serial of the space, in the layout of the full subset.
    members: Vec<u64>,
    len: u64,
}

impl KeyboardIndex {
    /// An empty index over the serials of `space` (e.g. "*****" = 34^5, "D*####" = 340,000).
    pub fn new(space: &Pattern) -> KeyboardIndex {
        let mut slot_of = [None; SERIAL_LEN_MAX];
        let mut radix: Ranks = [0; SERIAL_LEN_MAX];
        let mut varying = 0;
        for (position, set) in space.positions().iter().enumerate() {
            if set.len() > 1 {
                slot_of[position] = Some(varying);
                radix[varying] = set.len() as usize;
                varying += 1;
            }
        }
        let full = (1usize << varying) - 1;
        // The subset whose cells are rows of the bitmap: only a proper, non-empty one is worth it.
        let rows = (varying >= 2).then(|| full & !(1 << (varying - 1)));
        let space_size: u64 = radix[..varying].iter().map(|&r| r as u64).product();

        let mut strides = Vec::with_capacity(full + 1);
        let mut cells = Vec::with_capacity(full + 1);
        for mask in 0..=full {
            let mut layout: Ranks = [0; SERIAL_LEN_MAX];
            let mut size = 1usize;
            for slot in (0..varying).rev().filter(|slot| mask & (1 << slot) != 0) {
                layout[slot] = size;
                size *= radix[slot];
            }
            let kind = if mask == full {
                Cells::Members
            } else if mask == 0 {
                Cells::Total
            } else if Some(mask) == rows {
                // Cells are row starts in the bitmap: the full layout without the last slot.
                layout = full_layout(&radix, varying);
                layout[varying - 1] = 0;
                Cells::Rows
            } else {
                Cells::counts(size, space_size / size as u64)
            };
            strides.push(layout);
            cells.push(kind);
        }
        let members = vec![0u64; (space_size as usize).div_ceil(WORD_BITS)];
        let mut update_order: Vec<usize> = (0..=full)
            .filter(|&mask| cells[mask].heap_bytes() > 0)
            .collect();
        update_order.sort_by_key(|&mask| std::cmp::Reverse(cells[mask].heap_bytes()));
        KeyboardIndex {
            space: space.clone(),
            slot_of,
            radix,
            varying,
            strides,
            cells,
            update_order,
            members,
            len: 0,
        }
    }

    pub fn space(&self) -> &Pattern {
        &self.space
    }

    /// Adds a serial matching the space that is not in the index yet. Both are programming errors
    /// (debug-asserted); in release builds such a call changes nothing, so the counts stay exact.
    pub fn insert(&mut self, serial: Serial) {
        debug_assert!(
            self.space.matches(serial),
            "{serial:?} outside {:?}",
            self.space
        );
        let Some(ranks) = self.ranks(serial) else {
            return;
        };
        let bit = self.cell(self.full_mask(), &ranks);
        debug_assert!(!self.member(bit), "{serial:?} is already indexed");
        if self.member(bit) {
            return;
        }
        self.members[bit / WORD_BITS] |= 1 << (bit % WORD_BITS);
        self.len += 1;
        for &mask in &self.update_order {
            self.cells[mask].increment(cell_at(&self.strides[mask], &ranks));
        }
    }

    /// Removes a serial that is in the index (debug-asserted; in release builds removing a serial
    /// that is not indexed changes nothing).
    pub fn remove(&mut self, serial: Serial) {
        let ranks = self.ranks(serial);
        let bit = ranks.map(|ranks| self.cell(self.full_mask(), &ranks));
        debug_assert!(
            bit.is_some_and(|bit| self.member(bit)),
            "{serial:?} is not indexed"
        );
        let (Some(ranks), Some(bit)) = (ranks, bit) else {
            return;
        };
        if !self.member(bit) {
            return;
        }
        self.members[bit / WORD_BITS] &= !(1 << (bit % WORD_BITS));
        self.len -= 1;
        for &mask in &self.update_order {
            self.cells[mask].decrement(cell_at(&self.strides[mask], &ranks));
        }
    }

    pub fn contains(&self, serial: Serial) -> bool {
        self.ranks(serial)
            .is_some_and(|ranks| self.member(self.cell(self.full_mask(), &ranks)))
    }

    /// Number of indexed serials.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// For each position of the space, the enabled characters given `entered` (one entry per
    /// position: Some(alphabet index) where the person typed a character, None where free).
    /// At a free position p: the c such that some serial in the index has c at p and the entered
    /// characters at every entered position. At an entered position p: the same with p's own
    /// entry ignored (the characters p could be changed to). A character outside the space's set
    /// at a position is never enabled; an entered character outside it makes every position empty.
    ///
    /// Missing trailing entries count as free; an entry beyond the space's length that is `Some`
    /// can match no serial of the space, so every position is then empty.
    pub fn query(&self, entered: &[Option<u8>]) -> Vec<CharSet> {
        let len = self.space.len();
        let mut out = vec![CharSet::EMPTY; len];
        if self.len == 0 || entered.iter().skip(len).any(Option::is_some) {
            return out;
        }
        let mut ranks: Ranks = [0; SERIAL_LEN_MAX];
        let mut entered_mask = 0usize;
        for (position, entry) in entered.iter().take(len).enumerate() {
            let Some(index) = *entry else {
                continue;
            };
            let set = self.space.at(position);
            if !set.contains(index) {
                return out;
            }
            if let Some(slot) = self.slot_of[position] {
                ranks[slot] = set.rank(index) as usize;
                entered_mask |= 1 << slot;
            }
        }
        for (position, enabled) in out.iter_mut().enumerate() {
            let set = self.space.at(position);
            *enabled = match self.slot_of[position] {
                // A fixed character is possible iff some serial matches the entered ones.
                None => {
                    if self.any_matching(entered_mask, &ranks) {
                        set
                    } else {
                        CharSet::EMPTY
                    }
                }
                Some(slot) => {
                    let mut others = ranks;
                    others[slot] = 0;
                    let found = self.nonzero_along(entered_mask | (1 << slot), &others, slot);
                    chars_of_ranks(set, found)
                }
            };
        }
        out
    }

    /// Heap bytes held, for the memory benchmark.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(self.members.as_slice())
            + std::mem::size_of_val(self.strides.as_slice())
            + std::mem::size_of_val(self.cells.as_slice())
            + std::mem::size_of_val(self.update_order.as_slice())
            + self.cells.iter().map(Cells::heap_bytes).sum::<usize>()
            + std::mem::size_of_val(self.space.positions())
    }

    /// The subset of every varying position.
    fn full_mask(&self) -> usize {
        (1 << self.varying) - 1
    }

    /// The mixed-radix digits of a serial, or `None` if it is not in the space.
    fn ranks(&self, serial: Serial) -> Option<Ranks> {
        if serial.len() != self.space.len() {
            return None;
        }
        let indices = serial.indices();
        let mut ranks: Ranks = [0; SERIAL_LEN_MAX];
        for (position, (set, &index)) in self.space.positions().iter().zip(&indices).enumerate() {
            if !set.contains(index) {
                return None;
            }
            if let Some(slot) = self.slot_of[position] {
                ranks[slot] = set.rank(index) as usize;
            }
        }
        Some(ranks)
    }

    /// The cell of `ranks` in the layout of subset `mask`.
    fn cell(&self, mask: usize, ranks: &Ranks) -> usize {
        cell_at(&self.strides[mask], ranks)
    }

    fn member(&self, bit: usize) -> bool {
        self.members[bit / WORD_BITS] & (1 << (bit % WORD_BITS)) != 0
    }

    /// `count` (at most [`WORD_BITS`]) bitmap bits from `start`, the first one lowest.
    fn member_bits(&self, start: usize, count: usize) -> u64 {
        let word = start / WORD_BITS;
        let shift = start % WORD_BITS;
        let mut bits = self.members[word] >> shift;
        if shift != 0 && shift + count > WORD_BITS {
            bits |= self.members[word + 1] << (WORD_BITS - shift);
        }
        if count < WORD_BITS {
            bits &= (1 << count) - 1;
        }
        bits
    }

    /// Is the bitmap row (along the last varying position) starting at `start` non-empty?
    fn row_occupied(&self, start: usize) -> bool {
        self.member_bits(start, self.radix[self.varying - 1]) != 0
    }

    /// Does some indexed serial have `ranks` at every slot of `mask`?
    fn any_matching(&self, mask: usize, ranks: &Ranks) -> bool {
        let cell = self.cell(mask, ranks);
        match &self.cells[mask] {
            Cells::Total => self.len > 0,
            Cells::Members => self.member(cell),
            Cells::Rows => self.row_occupied(cell),
            Cells::U8(v) => v[cell] != 0,
            Cells::U16(v) => v[cell] != 0,
            Cells::U32(v) => v[cell] != 0,
        }
    }

    /// Bit `k` set iff some indexed serial has rank `k` at `slot` and `others` at the other slots
    /// of `mask` (which contains `slot`; `others[slot]` is 0).
    fn nonzero_along(&self, mask: usize, others: &Ranks, slot: usize) -> u64 {
        let base = self.cell(mask, others);
        let stride = self.strides[mask][slot];
        let radix = self.radix[slot];
        match &self.cells[mask] {
            Cells::Members if stride == 1 => self.member_bits(base, radix),
            Cells::Members => (0..radix).fold(0, |found, k| {
                found | (u64::from(self.member(base + k * stride)) << k)
            }),
            Cells::Rows => (0..radix).fold(0, |found, k| {
                found | (u64::from(self.row_occupied(base + k * stride)) << k)
            }),
            Cells::U8(v) => nonzero_counts(v, base, stride, radix),
            Cells::U16(v) => nonzero_counts(v, base, stride, radix),
            Cells::U32(v) => nonzero_counts(v, base, stride, radix),
            // `mask` contains `slot`, so it is never the empty subset.
            Cells::Total => 0,
        }
    }
}

impl fmt::Debug for KeyboardIndex {
    /// The arrays are megabytes; show what identifies the index instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyboardIndex")
            .field("space", &self.space)
            .field("len", &self.len)
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

/// `Σ rank × stride` over the slots.
fn cell_at(layout: &Ranks, ranks: &Ranks) -> usize {
    layout
        .iter()
        .zip(ranks)
        .map(|(stride, rank)| stride * rank)
        .sum()
}

/// The row-major layout over every varying slot (the bitmap's).
fn full_layout(radix: &Ranks, varying: usize) -> Ranks {
    let mut layout: Ranks = [0; SERIAL_LEN_MAX];
    let mut size = 1usize;
    for slot in (0..varying).rev() {
        layout[slot] = size;
        size *= radix[slot];
    }
    layout
}

/// The characters of `set` whose ranks are the set bits of `ranks`.
fn chars_of_ranks(set: CharSet, ranks: u64) -> CharSet {
    let mut out = CharSet::EMPTY;
    for (rank, index) in set.iter().enumerate() {
        if ranks & (1 << rank) != 0 {
            out.insert(index);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hint::black_box;
    use std::time::Instant;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::plate::ALPHABET_LEN;

    fn p(text: &str) -> Pattern {
        Pattern::parse(text).expect("valid pattern")
    }
    fn s(text: &str) -> Serial {
        Serial::parse(text).expect("valid serial")
    }
    fn idx(c: char) -> u8 {
        crate::plate::char_index(c).expect("serial character")
    }
    /// Parses "A_1" into entries: `_` is free.
    fn entered(text: &str) -> Vec<Option<u8>> {
        text.chars().map(|c| (c != '_').then(|| idx(c))).collect()
    }
    fn chars(sets: &[CharSet]) -> Vec<String> {
        sets.iter().map(|set| set.to_chars()).collect()
    }

    /// The definition of I8, by scanning every serial.
    fn brute_force(
        space: &Pattern,
        pool: &HashSet<Serial>,
        entered: &[Option<u8>],
    ) -> Vec<CharSet> {
        let len = space.len();
        let mut out = vec![CharSet::EMPTY; len];
        if entered.iter().skip(len).any(Option::is_some) {
            return out;
        }
        let typed = |q: usize| entered.get(q).copied().flatten();
        if (0..len).any(|q| typed(q).is_some_and(|c| !space.at(q).contains(c))) {
            return out;
        }
        for serial in pool {
            let indices = serial.indices();
            let mismatches: Vec<usize> = (0..len)
                .filter(|&q| typed(q).is_some_and(|c| c != indices[q]))
                .collect();
            match mismatches.as_slice() {
                [] => (0..len).for_each(|q| out[q].insert(indices[q])),
                [q] => out[*q].insert(indices[*q]),
                _ => {}
            }
        }
        out
    }

    /// A random `entered` vector: none, all, a typed prefix, scattered, or with odd lengths;
    /// characters mostly taken from a pooled serial so that answers are rarely all empty.
    fn random_entered(rng: &mut StdRng, space: &Pattern, pool: &[Serial]) -> Vec<Option<u8>> {
        let len = space.len();
        let template = if !pool.is_empty() && rng.random_bool(0.85) {
            pool[rng.random_range(0..pool.len())].indices()
        } else {
            space
                .nth(rng.random_range(0..space.count()))
                .expect("an index below the count")
                .indices()
        };
        let pick = |rng: &mut StdRng, q: usize| -> u8 {
            match rng.random_range(0..20) {
                0 => rng.random_range(0..ALPHABET_LEN as u8), // possibly outside the space
                1..=3 => {
                    let set = space.at(q);
                    set.nth(rng.random_range(0..set.len())).unwrap_or(0)
                }
                _ => template[q],
            }
        };
        let mut out: Vec<Option<u8>> = match rng.random_range(0..10) {
            0 => vec![None; len],
            1 => (0..len).map(|q| Some(pick(rng, q))).collect(),
            2..=4 => {
                let typed = rng.random_range(0..=len);
                (0..len)
                    .map(|q| (q < typed).then(|| pick(rng, q)))
                    .collect()
            }
            _ => (0..len)
                .map(|q| rng.random_bool(0.5).then(|| pick(rng, q)))
                .collect(),
        };
        match rng.random_range(0..30) {
            0 => out.truncate(rng.random_range(0..=len)),
            1 => out.push(None),
            2 => out.push(Some(template[0])),
            _ => {}
        }
        out
    }

    /// Every count cell and bit is zero.
    fn all_zero(index: &KeyboardIndex) -> bool {
        index.members.iter().all(|&w| w == 0)
            && index.cells.iter().all(|cells| match cells {
                Cells::U8(v) => v.iter().all(|&c| c == 0),
                Cells::U16(v) => v.iter().all(|&c| c == 0),
                Cells::U32(v) => v.iter().all(|&c| c == 0),
                Cells::Total | Cells::Members | Cells::Rows => true,
            })
    }

    /// Random inserts and removals on `space` (starting from `seed_block`), checking queries,
    /// `len` and `contains` against a brute-force scan after every batch.
    fn differential(space: &Pattern, seed_block: Option<&Pattern>, seed: u64, rounds: usize) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut index = KeyboardIndex::new(space);
        let mut pool: Vec<Serial> = Vec::new();
        let mut set: HashSet<Serial> = HashSet::new();
        if let Some(block) = seed_block {
            for serial in block.iter() {
                index.insert(serial);
                pool.push(serial);
                set.insert(serial);
            }
        }
        let batch = (space.count() as usize / 8).clamp(1, 400);
        let mut queries = 0;
        for round in 0..rounds {
            // Grow for the first half, shrink for the second, so both full and sparse are seen.
            let grow = if round < rounds / 2 { 0.7 } else { 0.3 };
            for _ in 0..batch {
                if pool.is_empty() || rng.random_bool(grow) {
                    let serial = space
                        .nth(rng.random_range(0..space.count()))
                        .expect("an index below the count");
                    if set.insert(serial) {
                        assert!(!index.contains(serial));
                        index.insert(serial);
                        pool.push(serial);
                    }
                } else {
                    let serial = pool.swap_remove(rng.random_range(0..pool.len()));
                    set.remove(&serial);
                    assert!(index.contains(serial));
                    index.remove(serial);
                    assert!(!index.contains(serial));
                }
            }
            assert_eq!(index.len(), set.len() as u64);
            assert_eq!(index.is_empty(), set.is_empty());
            for _ in 0..40 {
                let e = random_entered(&mut rng, space, &pool);
                assert_eq!(
                    index.query(&e),
                    brute_force(space, &set, &e),
                    "space {space:?}, entered {e:?}, {} pooled",
                    set.len()
                );
                queries += 1;
            }
        }
        assert!(queries >= 1_000, "only {queries} queries checked");
        // Removing everything brings every count back to zero.
        for serial in pool.drain(..) {
            index.remove(serial);
        }
        assert!(index.is_empty());
        assert!(all_zero(&index));
        assert!(index.query(&[]).iter().all(|set| set.is_empty()));
    }

    #[test]
    fn full_five_position_space_matches_brute_force() {
        // The dense block saturates u8 cells (34 serials share "AB0C") and fills u16 ones.
        differential(&p("*****"), Some(&p("AB0**")), 1, 60);
    }

    #[test]
    fn random_subset_of_full_space_matches_brute_force() {
        differential(&p("*****"), None, 2, 60);
    }

    #[test]
    fn space_with_fixed_position_matches_brute_force() {
        differential(&p("D*####"), Some(&p("D[AB]12##")), 3, 60);
    }

    #[test]
    fn small_spaces_match_brute_force() {
        differential(&p("[AB]#[XZ]"), None, 4, 60);
        differential(&p("*"), None, 5, 40);
        differential(&p("[AB]"), None, 6, 40);
        differential(&p("7"), None, 7, 40);
        differential(&p("D[AF]"), None, 8, 40);
        differential(&p("[DF]*####"), Some(&p("F[A-C]000#")), 9, 40);
    }

    #[test]
    fn prefix_typing_example() {
        let mut index = KeyboardIndex::new(&p("*****"));
        for text in ["A1234", "A1299", "B1234", "AZ000"] {
            index.insert(s(text));
        }
        assert_eq!(chars(&index.query(&[])), ["AB", "1Z", "02", "039", "049"]);
        assert_eq!(
            chars(&index.query(&entered("A1"))),
            ["AB", "1Z", "2", "39", "49"]
        );
        // At an entered position: what it could be changed to, keeping the others.
        assert_eq!(
            chars(&index.query(&entered("A1234"))),
            ["AB", "1", "2", "3", "4"]
        );
        // A gap inside the prefix.
        assert_eq!(
            chars(&index.query(&entered("_1_9"))),
            ["A", "1", "2", "39", "9"]
        );
        // Nothing matches: every free position is empty; entered ones show the alternatives.
        assert_eq!(
            chars(&index.query(&entered("B12_9"))),
            ["A", "", "", "", "4"]
        );
        // Characters outside the space or the alphabet, and entries beyond the length.
        let none = vec![CharSet::EMPTY; 5];
        assert_eq!(index.query(&[Some(ALPHABET_LEN as u8)]), none);
        assert_eq!(index.query(&[Some(200)]), none);
        assert_eq!(index.query(&entered("A1234A")), none);
        assert_eq!(index.query(&[None, None, None, None, None, None]).len(), 5);

        let mut narrow = KeyboardIndex::new(&p("A####"));
        narrow.insert(s("A0001"));
        assert_eq!(narrow.query(&entered("B")), none);
        assert_eq!(narrow.query(&entered("_B")), none);
        assert_eq!(
            chars(&narrow.query(&entered("A"))),
            ["A", "0", "0", "0", "1"]
        );
        assert_eq!(
            chars(&narrow.query(&entered("A0002"))),
            ["", "", "", "", "1"]
        );
    }

    #[test]
    fn u8_cells_reach_their_maximum_and_return_to_zero() {
        let space = p("*****");
        let mut index = KeyboardIndex::new(&space);
        let block = p("ABCD*");
        for serial in block.iter() {
            index.insert(serial);
        }
        assert_eq!(index.len(), ALPHABET_LEN as u64);
        assert_eq!(index.query(&entered("ABCD"))[4], CharSet::ANY);
        assert_eq!(index.query(&entered("ABC_"))[3], CharSet::single(idx('D')));
        assert_eq!(index.query(&entered("ABCE"))[4], CharSet::EMPTY);
        let pos4 = index.slot_of[4].expect("varying");
        let mask = index.full_mask() & !(1 << pos4);
        // That subset is the bitmap's rows; the other size-4 subsets hold counts up to 34.
        assert!(matches!(index.cells[mask], Cells::Rows));
        let mask = index.full_mask() & !1;
        match &index.cells[mask] {
            Cells::U8(v) => assert_eq!(v.iter().copied().max(), Some(1)),
            _ => panic!("expected u8 cells"),
        }
        let mask = index.full_mask() & !2;
        match &index.cells[mask] {
            Cells::U8(v) => assert_eq!(v.iter().map(|&c| u32::from(c)).sum::<u32>(), 34),
            _ => panic!("expected u8 cells"),
        }
        for serial in block.iter() {
            index.remove(serial);
        }
        assert!(index.is_empty());
        assert!(all_zero(&index));
        assert_eq!(index.query(&entered("ABCD")), vec![CharSet::EMPTY; 5]);
    }

    #[test]
    fn cell_widths_follow_the_largest_count() {
        let index = KeyboardIndex::new(&p("*****"));
        let widths: Vec<(u32, &str)> = index
            .cells
            .iter()
            .enumerate()
            .filter_map(|(mask, cells)| {
                let kind = match cells {
                    Cells::U8(_) => "u8",
                    Cells::U16(_) => "u16",
                    Cells::U32(_) => "u32",
                    Cells::Total | Cells::Members | Cells::Rows => return None,
                };
                Some(((mask as u32).count_ones(), kind))
            })
            .collect();
        assert_eq!(widths.len(), 29);
        for (size, kind) in widths {
            let expected = match size {
                4 => "u8",
                3 | 2 => "u16",
                _ => "u32",
            };
            assert_eq!(kind, expected, "subset of {size} positions");
        }
    }

    /// Misuse is debug-asserted; in release builds it changes nothing, so the counts stay exact.
    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "already indexed"))]
    fn double_insert_is_refused() {
        let mut index = KeyboardIndex::new(&p("A####"));
        index.insert(s("A0000"));
        index.insert(s("A0000"));
        assert_eq!(index.len(), 1);
        index.remove(s("A0000"));
        assert!(index.is_empty() && all_zero(&index));
    }

    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "is not indexed"))]
    fn removing_an_absent_serial_is_refused() {
        let mut index = KeyboardIndex::new(&p("A####"));
        index.insert(s("A0001"));
        index.remove(s("A0000"));
        assert_eq!(index.len(), 1);
        index.remove(s("B0000"));
        index.remove(s("A000"));
        assert_eq!(index.len(), 1);
        assert!(index.contains(s("A0001")));
    }

    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "outside"))]
    fn inserting_outside_the_space_is_refused() {
        let mut index = KeyboardIndex::new(&p("A####"));
        index.insert(s("B0000"));
        index.insert(s("A000"));
        assert!(index.is_empty() && all_zero(&index));
    }

    #[test]
    fn memory_stays_within_budget() {
        const FULL_SPACE_BUDGET: usize = 16 << 20;
        let full = KeyboardIndex::new(&p("*****")).memory_bytes();
        assert!(full < FULL_SPACE_BUDGET, "{full} bytes for *****");
        let bitmap = 34usize.pow(5) / 8;
        assert!(full > bitmap, "{full} bytes cannot hold the bitmap");
        let narrow = KeyboardIndex::new(&p("D*####")).memory_bytes();
        assert!(narrow < 1 << 20, "{narrow} bytes for D*####");
        println!("memory: ***** {full} bytes, D*#### {narrow} bytes");
    }

    /// Timing sanity check; run with
    /// `cargo test --release -p platepool-engine --lib keyboard::tests::timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, run manually in release mode"]
    fn timing() {
        const POOL: usize = 1_000_000;
        const QUERIES: usize = 200_000;
        const UPDATES: usize = 1_000_000;
        let space = p("*****");
        let mut rng = StdRng::seed_from_u64(42);
        let mut index = KeyboardIndex::new(&space);
        let mut chosen = HashSet::with_capacity(POOL);
        while chosen.len() < POOL {
            chosen.insert(
                space
                    .nth(rng.random_range(0..space.count()))
                    .expect("an index below the count"),
            );
        }
        let mut pool: Vec<Serial> = chosen.into_iter().collect();

        let start = Instant::now();
        for &serial in &pool {
            index.insert(serial);
        }
        let insert_ns = start.elapsed().as_nanos() as f64 / POOL as f64;

        let queries: Vec<Vec<Option<u8>>> = (0..QUERIES)
            .map(|_| random_entered(&mut rng, &space, &pool))
            .collect();
        let start = Instant::now();
        let mut enabled = 0u64;
        for e in &queries {
            enabled += black_box(index.query(e))
                .iter()
                .map(|s| u64::from(s.len()))
                .sum::<u64>();
        }
        let query_ns = start.elapsed().as_nanos() as f64 / QUERIES as f64;

        let prefixes: Vec<Vec<Option<u8>>> = (0..QUERIES)
            .map(|n| {
                let indices = pool[rng.random_range(0..pool.len())].indices();
                (0..5).map(|q| (q < n % 6).then_some(indices[q])).collect()
            })
            .collect();
        let start = Instant::now();
        for e in &prefixes {
            enabled += black_box(index.query(e)).len() as u64;
        }
        let prefix_ns = start.elapsed().as_nanos() as f64 / QUERIES as f64;

        // Hold/release churn, prepared first so only the index is timed: remove a pooled number,
        // insert one that is not pooled.
        let mut churn = Vec::with_capacity(UPDATES / 2);
        let mut pooled: HashSet<Serial> = pool.iter().copied().collect();
        for _ in 0..UPDATES / 2 {
            let at = rng.random_range(0..pool.len());
            let fresh = loop {
                let candidate = space
                    .nth(rng.random_range(0..space.count()))
                    .expect("an index below the count");
                if !pooled.contains(&candidate) {
                    break candidate;
                }
            };
            pooled.remove(&pool[at]);
            pooled.insert(fresh);
            churn.push((pool[at], fresh));
            pool[at] = fresh;
        }
        let start = Instant::now();
        for &(held, released) in &churn {
            index.remove(held);
            index.insert(released);
        }
        let update_ns = start.elapsed().as_nanos() as f64 / UPDATES as f64;
        assert_eq!(index.len(), POOL as u64);
        println!(
            "1M in *****: insert {insert_ns:.0} ns (bulk), mixed query {query_ns:.0} ns, \
             prefix query {prefix_ns:.0} ns, update {update_ns:.0} ns, \
             memory {} bytes ({enabled})",
            index.memory_bytes()
        );
    }
}
