//! The numbers of one plate class in one office: where each is, and the two indexes over the
//! available ones (the draw sampler and the keyboard).
//!
//! Every number released into the class gets a dense index. Releases are appended as *segments*
//! of dense indices, sorted by serial code within a segment, so a lookup is a binary search and
//! nothing is ever re-numbered. Per number the pool keeps 13 bytes and a bit: its code (4), its
//! status byte (1) and its slot in the sampler (4), packed together so that a random pick touches
//! one cache line; the sampler's entry (4); and whether the keyboard counts it (1 bit). Holders
//! of held and claimed numbers live with the applications.
//!
//! **The keyboard index covers the released numbers' hull, not the class's serial space.** Its
//! arrays are sized to the space they index (see [`crate::keyboard`]): over a group's whole
//! space (`*****`, 34^5 serials) that is about 12 MB per office, whatever it released. Each
//! group's index covers instead the smallest pattern holding every number the office released
//! into the group (per position, the characters seen there): a release of `[A-J]####` is indexed
//! over 100,000 serials, not 45 million, so an office costs in proportion to its numbers. The
//! answers are the same, since a serial outside the hull is never in the pool. A release that
//! widens the hull has the indexes rebuilt at the next read. Numbers scattered over the whole
//! space still give a hull as large as the space.
//!
//! **The keyboard is brought up to date lazily.** Updating it costs one cell per subset of
//! positions (about 30 scattered memory writes), and a random draw moves 20 numbers (10 held, the
//! previous 10 back): eagerly, that was over a third of a draw's time. Instead a number whose
//! keyboard membership may have changed is noted in a short list, and the keyboard is reconciled
//! with the statuses when it is read. A number held and let go between two reads costs nothing;
//! a read sees exactly what eager updates would have shown (I8). When the list would grow past
//! [`KEYBOARD_DIRTY_MAX`], it is dropped and the next read reconciles every number instead, so
//! the list's memory stays fixed.

use std::cell::RefCell;

use rand::Rng;

use crate::class::PlateClass;
use crate::keyboard::KeyboardIndex;
use crate::pattern::{CharSet, Pattern};
use crate::plate::Serial;
use crate::rules::CompositionRules;

/// Where a number is in its life. Stored in the low bits of the status byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Status {
    /// Released, but its release has not opened yet: neither visible nor drawable.
    Pending = 0,
    /// In the pool: a draw or check could take it.
    Available = 1,
    /// Held for an application (random batch or candidate list).
    Held = 2,
    /// Pre-selected by an application.
    Claimed = 3,
    /// Registered at the office: out of the pool for good.
    Issued = 4,
    /// Taken out of the pool by an operator.
    Withdrawn = 5,
}

pub const STATUS_COUNT: usize = 6;
const STATUS_MASK: u8 = 0b0000_0111;
/// Set once the release's random-only period is over: custom checks may take the number.
const CUSTOM_OPEN: u8 = 0b0000_1000;
/// Set while the office's composition rules allow the number for custom selection.
const ALLOWED: u8 = 0b0001_0000;
/// Set when the serial contains the digit 4 (the draw's digit-4 filter; fixed per number).
const HAS_FOUR: u8 = 0b0010_0000;
/// The energy group index sits in the top two bits ([`crate::class::CLASS_GROUPS_MAX`] is 4).
const GROUP_SHIFT: u8 = 6;
/// Slot value of a number that is not in the sampler.
const NO_SLOT: u32 = u32::MAX;
/// Numbers noted for the keyboard's next reconciliation before a full pass is cheaper to keep.
pub const KEYBOARD_DIRTY_MAX: usize = 1 << 16;

impl Status {
    fn from_bits(bits: u8) -> Status {
        match bits & STATUS_MASK {
            0 => Status::Pending,
            1 => Status::Available,
            2 => Status::Held,
            3 => Status::Claimed,
            4 => Status::Issued,
            _ => Status::Withdrawn,
        }
    }

    pub const ALL: [Status; STATUS_COUNT] = [
        Status::Pending,
        Status::Available,
        Status::Held,
        Status::Claimed,
        Status::Issued,
        Status::Withdrawn,
    ];
}

/// One number: its serial code, its status byte and its slot in the sampler, packed into 9
/// bytes so that a draw picking it at random reads one cache line, not three.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed)]
struct Num {
    code: u32,
    slot: u32,
    bits: u8,
}

/// A release's numbers: a run of dense indices.
#[derive(Debug, Clone)]
pub struct Segment {
    pub release: u32,
    pub start: u32,
    pub end: u32,
    min_code: u32,
    max_code: u32,
    /// Withdrawn as a whole: numbers coming back from holders leave the pool instead.
    pub withdrawn: bool,
    /// How many of the segment's numbers are in each [`Status`].
    pub counts: [u32; STATUS_COUNT],
}

/// The numbers of one class.
#[derive(Debug)]
pub struct ClassPool {
    pub def: PlateClass,
    /// Per number, everything a draw touches, together: one cache miss instead of three.
    nums: Vec<Num>,
    segments: Vec<Segment>,
    /// Available numbers by (energy group, contains the digit 4): bucket `group * 2 + has_four`.
    buckets: Vec<Vec<u32>>,
    /// Per energy group, per position: the characters of the numbers released into the group
    /// (the space its keyboard index covers; see the module documentation).
    hulls: Vec<Vec<CharSet>>,
    /// The keyboard, reconciled with the statuses when read (see the module documentation).
    /// Reads take `&self`, hence the cell; the pool is owned by one actor and never shared.
    keyboard: RefCell<LazyKeyboard>,
    composition: CompositionRules,
}

/// Per energy group, the available numbers a custom check may take (I8), as of the last read.
#[derive(Debug)]
struct LazyKeyboard {
    /// Built on first use.
    groups: Vec<Option<KeyboardIndex>>,
    /// Bit per number: counted in its group's index.
    indexed: Vec<u64>,
    /// Numbers whose membership may differ from `indexed`.
    dirty: Vec<u32>,
    /// Too many to list: the next read looks at every number.
    all_dirty: bool,
}

impl LazyKeyboard {
    fn note(&mut self, idx: u32) {
        if self.all_dirty {
            return;
        }
        if self.dirty.len() >= KEYBOARD_DIRTY_MAX {
            self.dirty = Vec::new();
            self.all_dirty = true;
        } else {
            self.dirty.push(idx);
        }
    }

    fn is_indexed(&self, idx: u32) -> bool {
        self.indexed[idx as usize / 64] & (1 << (idx % 64)) != 0
    }

    /// Drops every index (their spaces changed): the next read builds them again from the
    /// statuses.
    fn rebuild(&mut self) {
        for group in &mut self.groups {
            *group = None;
        }
        self.indexed.fill(0);
        self.dirty = Vec::new();
        self.all_dirty = true;
    }
}

impl ClassPool {
    pub fn new(def: PlateClass, composition: CompositionRules) -> ClassPool {
        let groups = def.groups.len();
        let serial_len = def.serial_len();
        ClassPool {
            def,
            nums: Vec::new(),
            segments: Vec::new(),
            buckets: vec![Vec::new(); groups * 2],
            hulls: vec![vec![CharSet::EMPTY; serial_len]; groups],
            keyboard: RefCell::new(LazyKeyboard {
                groups: (0..groups).map(|_| None).collect(),
                indexed: Vec::new(),
                dirty: Vec::new(),
                all_dirty: false,
            }),
            composition,
        }
    }

    pub fn len(&self) -> u32 {
        self.nums.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.nums.is_empty()
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn serial(&self, idx: u32) -> Serial {
        Serial::from_pool_code(self.nums[idx as usize].code, self.def.serial_len())
    }

    pub fn status(&self, idx: u32) -> Status {
        Status::from_bits(self.nums[idx as usize].bits)
    }

    pub fn group(&self, idx: u32) -> usize {
        (self.nums[idx as usize].bits >> GROUP_SHIFT) as usize
    }

    pub fn custom_open(&self, idx: u32) -> bool {
        self.nums[idx as usize].bits & CUSTOM_OPEN != 0
    }

    pub fn allowed(&self, idx: u32) -> bool {
        self.nums[idx as usize].bits & ALLOWED != 0
    }

    /// The dense index of a serial released into this class.
    pub fn find(&self, serial: Serial) -> Option<u32> {
        if serial.len() != self.def.serial_len() {
            return None;
        }
        let code = serial.code();
        self.segments
            .iter()
            .filter(|s| s.min_code <= code && code <= s.max_code)
            .find_map(|s| {
                self.nums[s.start as usize..s.end as usize]
                    .binary_search_by_key(&code, |n| n.code)
                    .ok()
                    .map(|i| s.start + i as u32)
            })
    }

    fn segment_of(&self, idx: u32) -> usize {
        self.segments.partition_point(|s| s.end <= idx)
    }

    /// Would the number come back into the pool if its holder let it go? Not when its release was
    /// withdrawn as a whole: then it leaves.
    pub fn returns_to_pool(&self, idx: u32) -> bool {
        !self.segments[self.segment_of(idx)].withdrawn
    }

    /// Appends a release's numbers: `codes` sorted, deduplicated, each matching the class shape
    /// and one energy group, none already in the class. Numbers start [`Status::Pending`].
    pub fn add_segment(&mut self, release: u32, codes: Vec<u32>) {
        debug_assert!(codes.windows(2).all(|w| w[0] < w[1]));
        let start = self.len();
        let len = self.def.serial_len();
        self.nums.reserve(codes.len());
        let hulls_before = self.hulls.clone();
        for &code in &codes {
            let serial = Serial::from_pool_code(code, len);
            let group = self.def.group_of(serial).unwrap_or(0) as u8;
            let indices = serial.indices();
            for (set, &index) in self.hulls[group as usize].iter_mut().zip(&indices) {
                set.insert(index);
            }
            let mut bits = Status::Pending as u8 | (group << GROUP_SHIFT);
            if self.composition.check(serial).is_ok() {
                bits |= ALLOWED;
            }
            if serial.contains_four() {
                bits |= HAS_FOUR;
            }
            self.nums.push(Num {
                code,
                slot: NO_SLOT,
                bits,
            });
        }
        let keyboard = self.keyboard.get_mut();
        keyboard.indexed.resize(self.nums.len().div_ceil(64), 0);
        if self.hulls != hulls_before {
            keyboard.rebuild();
        }
        let min_code = codes.first().copied().unwrap_or(u32::MAX);
        let max_code = codes.last().copied().unwrap_or(0);
        let n = codes.len() as u32;
        let mut counts = [0; STATUS_COUNT];
        counts[Status::Pending as usize] = n;
        self.segments.push(Segment {
            release,
            start,
            end: start + n,
            min_code,
            max_code,
            withdrawn: false,
            counts,
        });
    }

    pub fn segment_index(&self, release: u32) -> Option<usize> {
        self.segments.iter().position(|s| s.release == release)
    }

    /// Opens a segment: its pending numbers become available.
    pub fn open_segment(&mut self, seg: usize) {
        let (start, end) = (self.segments[seg].start, self.segments[seg].end);
        for idx in start..end {
            if self.status(idx) == Status::Pending {
                self.set_status(idx, Status::Available);
            }
        }
    }

    /// Ends a segment's random-only period.
    pub fn open_segment_for_custom(&mut self, seg: usize) {
        let (start, end) = (self.segments[seg].start, self.segments[seg].end);
        for idx in start..end {
            self.nums[idx as usize].bits |= CUSTOM_OPEN;
        }
        self.keyboard.get_mut().all_dirty = true;
    }

    /// Withdraws a whole segment: every pending or available number leaves the pool; held and
    /// claimed ones stay with their holders and leave when they come back. Returns how many left.
    pub fn withdraw_segment(&mut self, seg: usize) -> u32 {
        self.segments[seg].withdrawn = true;
        let (start, end) = (self.segments[seg].start, self.segments[seg].end);
        let mut n = 0;
        for idx in start..end {
            if matches!(self.status(idx), Status::Pending | Status::Available) {
                self.set_status(idx, Status::Withdrawn);
                n += 1;
            }
        }
        n
    }

    /// Moves a number to a new status, keeping the sampler, keyboard and counts in step.
    /// A number coming back to the pool from a withdrawn release is withdrawn instead.
    pub fn set_status(&mut self, idx: u32, to: Status) {
        let from = self.status(idx);
        let seg = self.segment_of(idx);
        let to = if to == Status::Available && self.segments[seg].withdrawn {
            Status::Withdrawn
        } else {
            to
        };
        if from == to {
            return;
        }
        if from == Status::Available {
            self.sampler_remove(idx);
        }
        let i = idx as usize;
        self.nums[i].bits = (self.nums[i].bits & !STATUS_MASK) | to as u8;
        if to == Status::Available {
            self.sampler_insert(idx);
        }
        if from == Status::Available || to == Status::Available {
            self.keyboard.get_mut().note(idx);
        }
        let counts = &mut self.segments[seg].counts;
        counts[from as usize] -= 1;
        counts[to as usize] += 1;
    }

    fn on_keyboard(&self, idx: u32) -> bool {
        let bits = self.nums[idx as usize].bits;
        Status::from_bits(bits) == Status::Available
            && bits & CUSTOM_OPEN != 0
            && bits & ALLOWED != 0
    }

    fn bucket_of(&self, idx: u32) -> usize {
        let bits = self.nums[idx as usize].bits;
        (bits >> GROUP_SHIFT) as usize * 2 + usize::from(bits & HAS_FOUR != 0)
    }

    fn sampler_insert(&mut self, idx: u32) {
        let b = self.bucket_of(idx);
        debug_assert_eq!({ self.nums[idx as usize].slot }, NO_SLOT);
        self.nums[idx as usize].slot = self.buckets[b].len() as u32;
        self.buckets[b].push(idx);
    }

    fn sampler_remove(&mut self, idx: u32) {
        let b = self.bucket_of(idx);
        let at = self.nums[idx as usize].slot;
        debug_assert_ne!(at, NO_SLOT);
        let bucket = &mut self.buckets[b];
        bucket.swap_remove(at as usize);
        if let Some(&moved) = bucket.get(at as usize) {
            self.nums[moved as usize].slot = at;
        }
        self.nums[idx as usize].slot = NO_SLOT;
    }

    /// Brings the keyboard up to date with the statuses: every noted number (or every number,
    /// after the list overflowed) whose membership changed is inserted or removed.
    fn sync_keyboard(&self, kb: &mut LazyKeyboard) {
        let reconcile = |kb: &mut LazyKeyboard, idx: u32| {
            let want = self.on_keyboard(idx);
            if want == kb.is_indexed(idx) {
                return;
            }
            let serial = self.serial(idx);
            let group = self.group(idx);
            let index =
                kb.groups[group].get_or_insert_with(|| KeyboardIndex::new(&self.hull(group)));
            if want {
                index.insert(serial);
            } else {
                index.remove(serial);
            }
            kb.indexed[idx as usize / 64] ^= 1 << (idx % 64);
        };
        if kb.all_dirty {
            kb.all_dirty = false;
            kb.dirty.clear();
            for idx in 0..self.len() {
                reconcile(kb, idx);
            }
        } else {
            let dirty = std::mem::take(&mut kb.dirty);
            for &idx in &dirty {
                reconcile(kb, idx);
            }
            // Keep the allocation for the next round.
            kb.dirty = dirty;
            kb.dirty.clear();
        }
    }

    /// The space a group's keyboard index covers: the hull of the numbers released into it (the
    /// group's own pattern while it has none).
    fn hull(&self, group: usize) -> Pattern {
        Pattern::from_sets(self.hulls[group].clone())
            .unwrap_or_else(|_| self.def.groups[group].pattern.clone())
    }

    /// How many available numbers a draw for `group` could take.
    pub fn drawable(&self, group: usize, exclude_four: bool) -> usize {
        let no_four = self.buckets[group * 2].len();
        if exclude_four {
            no_four
        } else {
            no_four + self.buckets[group * 2 + 1].len()
        }
    }

    /// One available number of `group`, uniformly at random (I5); `None` when there is none.
    /// The caller moves it out of [`Status::Available`] before picking again.
    pub fn pick(&self, group: usize, exclude_four: bool, rng: &mut impl Rng) -> Option<u32> {
        let total = self.drawable(group, exclude_four);
        if total == 0 {
            return None;
        }
        let r = rng.random_range(0..total);
        let no_four = &self.buckets[group * 2];
        Some(if r < no_four.len() {
            no_four[r]
        } else {
            self.buckets[group * 2 + 1][r - no_four.len()]
        })
    }

    /// Up to `n` available numbers of `group`, uniformly, without taking them (practice mode).
    pub fn sample_without_taking(
        &self,
        group: usize,
        exclude_four: bool,
        n: usize,
        rng: &mut impl Rng,
    ) -> Vec<u32> {
        let total = self.drawable(group, exclude_four);
        let no_four = &self.buckets[group * 2];
        let has_four = &self.buckets[group * 2 + 1];
        rand::seq::index::sample(rng, total, n.min(total))
            .into_iter()
            .map(|r| {
                if r < no_four.len() {
                    no_four[r]
                } else {
                    has_four[r - no_four.len()]
                }
            })
            .collect()
    }

    /// Brings the keyboard up to date now (start-up, so that the first query does not build it).
    pub fn refresh_keyboard(&self) {
        let mut kb = self.keyboard.borrow_mut();
        if kb.all_dirty || !kb.dirty.is_empty() {
            self.sync_keyboard(&mut kb);
        }
    }

    /// The keyboard for a vehicle of `group` (I8).
    pub fn keyboard(&self, group: usize, entered: &[Option<u8>]) -> Vec<CharSet> {
        self.refresh_keyboard();
        let kb = self.keyboard.borrow();
        let empty = vec![CharSet::EMPTY; self.def.serial_len()];
        let Some(index) = &kb.groups[group] else {
            return empty;
        };
        // The index covers the hull: a character typed outside it is in no number of the pool,
        // so only its own position (which ignores its own entry) can offer anything. One
        // outside the group's space empties every position, as an index over it would.
        let space = &self.def.groups[group].pattern;
        let hull = &self.hulls[group];
        let mut outside = None;
        for (position, entry) in entered.iter().enumerate() {
            let Some(typed) = *entry else {
                continue;
            };
            if position >= space.len() || !space.at(position).contains(typed) {
                return empty;
            }
            if !hull[position].contains(typed) {
                if outside.is_some() {
                    return empty;
                }
                outside = Some(position);
            }
        }
        match outside {
            None => index.query(entered),
            Some(position) => {
                let mut others = entered.to_vec();
                others[position] = None;
                let mut out = empty;
                out[position] = index.query(&others)[position];
                out
            }
        }
    }

    /// New composition rules: recompute which numbers custom checks may take.
    pub fn set_composition(&mut self, composition: CompositionRules) {
        self.composition = composition;
        for idx in 0..self.len() {
            let serial = self.serial(idx);
            let i = idx as usize;
            if self.composition.check(serial).is_ok() {
                self.nums[i].bits |= ALLOWED;
            } else {
                self.nums[i].bits &= !ALLOWED;
            }
        }
        self.keyboard.get_mut().all_dirty = true;
    }

    pub fn composition(&self) -> &CompositionRules {
        &self.composition
    }

    /// Numbers per status over the whole class.
    pub fn counts(&self) -> [u64; STATUS_COUNT] {
        let mut out = [0u64; STATUS_COUNT];
        for s in &self.segments {
            for (o, c) in out.iter_mut().zip(s.counts) {
                *o += c as u64;
            }
        }
        out
    }

    /// Heap bytes, for the memory benchmark.
    pub fn memory_bytes(&self) -> usize {
        let kb = self.keyboard.borrow();
        self.nums.capacity() * std::mem::size_of::<Num>()
            + self.buckets.iter().map(|b| b.capacity() * 4).sum::<usize>()
            + kb.indexed.capacity() * 8
            + kb.dirty.capacity() * 4
            + kb.groups
                .iter()
                .flatten()
                .map(KeyboardIndex::memory_bytes)
                .sum::<usize>()
    }

    /// Asserts the indexes agree with the statuses (tests and debug builds). The keyboard is
    /// checked as a read would see it: brought up to date first.
    pub fn check_invariants(&self) {
        let mut kb = self.keyboard.borrow_mut();
        if !kb.all_dirty {
            // Every number whose membership is stale must be on the list.
            let listed: std::collections::HashSet<u32> = kb.dirty.iter().copied().collect();
            for idx in 0..self.len() {
                assert!(
                    kb.is_indexed(idx) == self.on_keyboard(idx) || listed.contains(&idx),
                    "keyboard membership of {} is stale and not noted",
                    self.serial(idx)
                );
            }
        }
        self.sync_keyboard(&mut kb);
        let mut counts = vec![[0u32; STATUS_COUNT]; self.segments.len()];
        let mut in_sampler = 0usize;
        for (si, seg) in self.segments.iter().enumerate() {
            for idx in seg.start..seg.end {
                let st = self.status(idx);
                counts[si][st as usize] += 1;
                let slot = self.nums[idx as usize].slot;
                if st == Status::Available {
                    in_sampler += 1;
                    assert_eq!(self.buckets[self.bucket_of(idx)][slot as usize], idx);
                } else {
                    assert_eq!(
                        slot,
                        NO_SLOT,
                        "number {} not available but in sampler",
                        self.serial(idx)
                    );
                }
                let counted = kb.groups[self.group(idx)]
                    .as_ref()
                    .is_some_and(|k| k.contains(self.serial(idx)));
                assert_eq!(
                    counted,
                    self.on_keyboard(idx),
                    "keyboard membership of {}",
                    self.serial(idx)
                );
                assert_eq!(
                    counted,
                    kb.is_indexed(idx),
                    "indexed bit of {}",
                    self.serial(idx)
                );
                assert_eq!(
                    self.nums[idx as usize].bits & HAS_FOUR != 0,
                    self.serial(idx).contains_four()
                );
            }
            assert_eq!(counts[si], seg.counts, "counts of release {}", seg.release);
        }
        assert_eq!(in_sampler, self.buckets.iter().map(Vec::len).sum::<usize>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::Pattern;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// The keyboard by brute force over the statuses (I8).
    fn brute(cp: &ClassPool, entered: &[Option<u8>]) -> Vec<CharSet> {
        let len = cp.def.serial_len();
        let mut out = vec![CharSet::EMPTY; len];
        for idx in 0..cp.len() {
            if !cp.on_keyboard(idx) {
                continue;
            }
            let s = cp.serial(idx);
            for (p, slot) in out.iter_mut().enumerate() {
                let agrees = entered
                    .iter()
                    .enumerate()
                    .all(|(q, e)| q == p || e.is_none_or(|c| s.index_at(q) == c));
                if agrees {
                    slot.insert(s.index_at(p));
                }
            }
        }
        out
    }

    fn pool(pattern: &str) -> ClassPool {
        let mut cp = ClassPool::new(PlateClass::small(), CompositionRules::default());
        let mut codes = Vec::new();
        Pattern::parse(pattern)
            .expect("pattern")
            .extend_codes(&mut codes);
        codes.sort_unstable();
        cp.add_segment(1, codes);
        cp.open_segment(0);
        cp.open_segment_for_custom(0);
        cp
    }

    fn queries(cp: &ClassPool, rng: &mut StdRng) -> Vec<Vec<Option<u8>>> {
        let mut out = vec![vec![None; 5]];
        for _ in 0..20 {
            let s = cp.serial(rng.random_range(0..cp.len()));
            out.push(
                (0..5)
                    .map(|p| rng.random_bool(0.4).then(|| s.index_at(p)))
                    .collect(),
            );
        }
        out
    }

    #[test]
    fn a_lazily_updated_keyboard_answers_as_an_eager_one_would() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut cp = pool("AB###");
        // Few changes between reads: the noted list is used.
        for round in 0..30 {
            for _ in 0..50 {
                let idx = rng.random_range(0..cp.len());
                let to = match cp.status(idx) {
                    Status::Available => [Status::Held, Status::Claimed][round % 2],
                    _ => Status::Available,
                };
                cp.set_status(idx, to);
            }
            for q in queries(&cp, &mut rng) {
                assert_eq!(cp.keyboard(0, &q), brute(&cp, &q), "round {round}, {q:?}");
            }
        }
        cp.check_invariants();
    }

    #[test]
    fn too_many_changes_between_reads_fall_back_to_a_full_pass() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut cp = pool("A####");
        let _ = cp.keyboard(0, &[None; 5]);
        // More changes than the list holds, most of them undone again before the read.
        let mut held = Vec::new();
        for _ in 0..(KEYBOARD_DIRTY_MAX + 5_000) {
            let idx = rng.random_range(0..cp.len());
            if cp.status(idx) == Status::Available {
                cp.set_status(idx, Status::Held);
                held.push(idx);
            } else if let Some(back) = held.pop() {
                cp.set_status(back, Status::Available);
            }
        }
        assert!(cp.keyboard.borrow().all_dirty, "the list overflowed");
        for q in queries(&cp, &mut rng) {
            assert_eq!(cp.keyboard(0, &q), brute(&cp, &q), "{q:?}");
        }
        assert!(!cp.keyboard.borrow().all_dirty);
        cp.check_invariants();
    }

    /// Queries with characters typed outside the released numbers' hull, at one or two
    /// positions, besides the usual ones.
    fn queries_outside_the_hull(cp: &ClassPool, rng: &mut StdRng) -> Vec<Vec<Option<u8>>> {
        let z = crate::plate::char_index('Z').expect("Z");
        let mut out = queries(cp, rng);
        for q in out.clone() {
            let mut one = q.clone();
            one[0] = Some(z);
            out.push(one.clone());
            one[3] = Some(z);
            out.push(one);
        }
        out
    }

    #[test]
    fn the_keyboard_covers_the_hull_of_the_released_numbers_and_answers_as_over_the_space() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut cp = pool("AB###");
        let small = cp.memory_bytes();
        // An index over the whole `*****` space would be about 12 MB.
        assert!(small < 200_000, "{small} bytes for 1,000 numbers");
        for q in queries_outside_the_hull(&cp, &mut rng) {
            assert_eq!(cp.keyboard(0, &q), brute(&cp, &q), "{q:?}");
        }
        // A release that widens the hull: the index is rebuilt over the new one.
        let mut codes = Vec::new();
        Pattern::parse("C[A-D]#[0-4]#")
            .expect("pattern")
            .extend_codes(&mut codes);
        codes.sort_unstable();
        cp.add_segment(2, codes);
        cp.open_segment(1);
        cp.open_segment_for_custom(1);
        for _ in 0..300 {
            let idx = rng.random_range(0..cp.len());
            if cp.status(idx) == Status::Available {
                cp.set_status(idx, Status::Claimed);
            }
        }
        for q in queries_outside_the_hull(&cp, &mut rng) {
            assert_eq!(cp.keyboard(0, &q), brute(&cp, &q), "{q:?}");
        }
        assert!(cp.memory_bytes() > small);
        cp.check_invariants();
    }

    #[test]
    fn a_hull_of_one_number_has_no_varying_position() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut cp = pool("AB123");
        for q in queries_outside_the_hull(&cp, &mut rng) {
            assert_eq!(cp.keyboard(0, &q), brute(&cp, &q), "{q:?}");
        }
        cp.set_status(0, Status::Held);
        assert_eq!(cp.keyboard(0, &[None; 5]), vec![CharSet::EMPTY; 5]);
        cp.check_invariants();
    }

    #[test]
    fn new_composition_rules_change_the_keyboard_at_the_next_read() {
        let mut cp = pool("AB###");
        let all = cp.keyboard(0, &[None; 5]);
        assert!(all[2].contains(4));
        let rules = CompositionRules::new(vec![Pattern::parse("AB[0-3]##").expect("p")], vec![]);
        cp.set_composition(rules);
        let after = cp.keyboard(0, &[None; 5]);
        assert_eq!(after, brute(&cp, &[None; 5]));
        assert!(
            !after[2].contains(4),
            "4 at the third position is no longer allowed"
        );
        cp.check_invariants();
    }
}
