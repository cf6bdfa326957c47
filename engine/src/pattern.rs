//! Serial patterns (SPEC R2.4): one character class per position.
//!
//! `#` any digit, `@` any serial letter, `*` any serial character, `[AB3]` or `[A-H]` one of a set,
//! anything else that a serial may contain stands for itself. `A####` is A0000–A9999. Patterns
//! describe releases, custom-number composition rules and plate-class shapes.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::plate::{char_index, index_char, Serial, ALPHABET_LEN, DIGITS_LEN, SERIAL_LEN_MAX};

/// A set of alphabet indices, as a bit mask (bit `i` is `ALPHABET[i]`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CharSet(u64);

impl CharSet {
    pub const EMPTY: CharSet = CharSet(0);
    pub const ANY: CharSet = CharSet((1u64 << ALPHABET_LEN) - 1);
    pub const DIGITS: CharSet = CharSet((1u64 << DIGITS_LEN) - 1);
    pub const LETTERS: CharSet = CharSet(CharSet::ANY.0 & !CharSet::DIGITS.0);

    /// The set of one alphabet index; empty for an index beyond the alphabet.
    pub fn single(index: u8) -> CharSet {
        CharSet(1u64.checked_shl(u32::from(index)).unwrap_or(0) & CharSet::ANY.0)
    }
    pub fn from_bits(bits: u64) -> CharSet {
        CharSet(bits & CharSet::ANY.0)
    }
    pub fn bits(self) -> u64 {
        self.0
    }
    pub fn contains(self, index: u8) -> bool {
        (index as usize) < ALPHABET_LEN && self.0 & (1u64 << index) != 0
    }
    pub fn insert(&mut self, index: u8) {
        self.0 |= 1u64 << index;
    }
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn union(self, other: CharSet) -> CharSet {
        CharSet(self.0 | other.0)
    }
    pub fn intersect(self, other: CharSet) -> CharSet {
        CharSet(self.0 & other.0)
    }
    pub fn is_subset(self, other: CharSet) -> bool {
        self.0 & !other.0 == 0
    }
    /// Alphabet indices in ascending order.
    pub fn iter(self) -> impl Iterator<Item = u8> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as u8;
            bits &= bits - 1;
            Some(i)
        })
    }
    /// How many members are below `index` (the rank of `index` if it is a member).
    pub fn rank(self, index: u8) -> u32 {
        (self.0 & ((1u64 << index) - 1)).count_ones()
    }
    /// The `n`-th member in ascending order.
    pub fn nth(self, n: u32) -> Option<u8> {
        self.iter().nth(n as usize)
    }
    /// The members as characters, ascending (the API's `enabled` string).
    pub fn to_chars(self) -> String {
        self.iter().map(index_char).collect()
    }
}

impl fmt::Debug for CharSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.to_chars())
    }
}

/// Why a pattern was refused; `position` is the 1-based character of the pattern text at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pattern character {position}: {reason}")]
pub struct PatternError {
    pub position: usize,
    pub reason: String,
}

fn pattern_error(position: usize, reason: impl Into<String>) -> PatternError {
    PatternError {
        position,
        reason: reason.into(),
    }
}

/// A set of serials of one length: a character set per position.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    positions: Vec<CharSet>,
}

impl Pattern {
    /// Builds a pattern from its character sets: 1 to [`SERIAL_LEN_MAX`] of them, none empty.
    pub fn from_sets(positions: Vec<CharSet>) -> Result<Pattern, PatternError> {
        if positions.is_empty() || positions.len() > SERIAL_LEN_MAX {
            return Err(pattern_error(
                positions.len().clamp(1, SERIAL_LEN_MAX + 1),
                format!(
                    "a pattern has 1 to {SERIAL_LEN_MAX} positions, not {}",
                    positions.len()
                ),
            ));
        }
        if let Some(at) = positions.iter().position(|p| p.is_empty()) {
            return Err(pattern_error(
                at + 1,
                "no character is allowed at this position",
            ));
        }
        Ok(Pattern { positions })
    }

    /// The pattern matching exactly one serial.
    pub fn exact(serial: Serial) -> Pattern {
        let indices = serial.indices();
        Pattern {
            positions: indices[..serial.len()]
                .iter()
                .map(|&i| CharSet::single(i))
                .collect(),
        }
    }

    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let chars: Vec<char> = text.chars().collect();
        let mut positions = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let at = i + 1;
            let set = match c {
                '·' | ' ' => {
                    i += 1;
                    continue;
                }
                '#' => CharSet::DIGITS,
                '@' => CharSet::LETTERS,
                '*' => CharSet::ANY,
                '[' => {
                    let mut set = CharSet::EMPTY;
                    let mut j = i + 1;
                    loop {
                        let Some(&m) = chars.get(j) else {
                            return Err(pattern_error(at, "'[' is never closed"));
                        };
                        if m == ']' {
                            break;
                        }
                        let Some(lo) = char_index(m) else {
                            return Err(pattern_error(
                                j + 1,
                                format!("'{m}' cannot appear in a serial"),
                            ));
                        };
                        if chars.get(j + 1) == Some(&'-') && chars.get(j + 2) != Some(&']') {
                            let Some(&h) = chars.get(j + 2) else {
                                return Err(pattern_error(j + 2, "range has no end"));
                            };
                            let Some(hi) = char_index(h) else {
                                return Err(pattern_error(
                                    j + 3,
                                    format!("'{h}' cannot appear in a serial"),
                                ));
                            };
                            if hi < lo {
                                return Err(pattern_error(j + 1, "range runs backwards"));
                            }
                            for k in lo..=hi {
                                set.insert(k);
                            }
                            j += 3;
                        } else {
                            set.insert(lo);
                            j += 1;
                        }
                    }
                    if set.is_empty() {
                        return Err(pattern_error(at, "empty set '[]'"));
                    }
                    i = j;
                    set
                }
                _ => match char_index(c) {
                    Some(index) => CharSet::single(index),
                    None => {
                        return Err(pattern_error(
                            at,
                            format!("'{c}' is neither a serial character nor one of # @ * ["),
                        ))
                    }
                },
            };
            if positions.len() == SERIAL_LEN_MAX {
                return Err(pattern_error(
                    at,
                    format!("a serial has at most {SERIAL_LEN_MAX} characters"),
                ));
            }
            positions.push(set);
            i += 1;
        }
        if positions.is_empty() {
            return Err(pattern_error(1, "empty pattern"));
        }
        Ok(Pattern { positions })
    }

    /// Number of characters of the serials it matches.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    pub fn positions(&self) -> &[CharSet] {
        &self.positions
    }

    pub fn at(&self, position: usize) -> CharSet {
        self.positions[position]
    }

    pub fn matches(&self, serial: Serial) -> bool {
        serial.len() == self.len() && self.first_mismatch(serial).is_none()
    }

    /// The 0-based position of the first character outside the pattern (serial of equal length).
    pub fn first_mismatch(&self, serial: Serial) -> Option<usize> {
        let indices = serial.indices();
        self.positions
            .iter()
            .zip(&indices[..serial.len()])
            .position(|(set, &i)| !set.contains(i))
    }

    /// How many serials match.
    pub fn count(&self) -> u64 {
        self.positions.iter().map(|p| p.len() as u64).product()
    }

    /// Is every serial of `self` matched by `other`?
    pub fn is_subset(&self, other: &Pattern) -> bool {
        self.len() == other.len()
            && self
                .positions
                .iter()
                .zip(&other.positions)
                .all(|(a, b)| a.is_subset(*b))
    }

    /// The serials both match, or `None` when there are none.
    pub fn intersect(&self, other: &Pattern) -> Option<Pattern> {
        if self.len() != other.len() {
            return None;
        }
        let positions: Vec<CharSet> = self
            .positions
            .iter()
            .zip(&other.positions)
            .map(|(a, b)| a.intersect(*b))
            .collect();
        positions
            .iter()
            .all(|p| !p.is_empty())
            .then_some(Pattern { positions })
    }

    /// The `n`-th matching serial in ascending order; `None` from `count()` on.
    pub fn nth(&self, mut n: u64) -> Option<Serial> {
        if n >= self.count() {
            return None;
        }
        let mut indices = [0u8; SERIAL_LEN_MAX];
        for (slot, set) in indices[..self.len()].iter_mut().zip(&self.positions).rev() {
            let radix = set.len() as u64;
            *slot = set.nth((n % radix) as u32).unwrap_or(0);
            n /= radix;
        }
        Serial::from_indices(&indices[..self.len()]).ok()
    }

    /// The rank of a matching serial in ascending order, the inverse of [`Pattern::nth`].
    pub fn rank(&self, serial: Serial) -> Option<u64> {
        if !self.matches(serial) {
            return None;
        }
        let indices = serial.indices();
        let mut rank = 0u64;
        for (set, &i) in self.positions.iter().zip(&indices[..serial.len()]) {
            rank = rank * set.len() as u64 + set.rank(i) as u64;
        }
        Some(rank)
    }

    /// Every matching serial in ascending order of code.
    pub fn iter(&self) -> impl Iterator<Item = Serial> + '_ {
        (0..self.count()).filter_map(move |n| self.nth(n))
    }

    /// Appends every matching code to `out`, in ascending order, faster than [`Pattern::iter`].
    pub fn extend_codes(&self, out: &mut Vec<u32>) {
        let len = self.len();
        let sets: Vec<Vec<u8>> = self.positions.iter().map(|s| s.iter().collect()).collect();
        let mut cursor = vec![0usize; len];
        out.reserve(self.count() as usize);
        loop {
            let mut code = 0u32;
            for (set, &c) in sets.iter().zip(&cursor) {
                code = code * ALPHABET_LEN as u32 + set[c] as u32;
            }
            out.push(code);
            let mut p = len;
            loop {
                if p == 0 {
                    return;
                }
                p -= 1;
                cursor[p] += 1;
                if cursor[p] < sets[p].len() {
                    break;
                }
                cursor[p] = 0;
            }
        }
    }
}

impl fmt::Display for Pattern {
    /// The canonical text: `#`, `@`, `*`, a single character, or a bracketed set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for set in &self.positions {
            if *set == CharSet::DIGITS {
                write!(f, "#")?;
            } else if *set == CharSet::LETTERS {
                write!(f, "@")?;
            } else if *set == CharSet::ANY {
                write!(f, "*")?;
            } else if set.len() == 1 {
                write!(f, "{}", set.to_chars())?;
            } else {
                write!(f, "[{}]", set.to_chars())?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({self})")
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pattern, D::Error> {
        let text = String::deserialize(d)?;
        Pattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(text: &str) -> Pattern {
        Pattern::parse(text).expect("valid pattern")
    }
    fn s(text: &str) -> Serial {
        Serial::parse(text).expect("valid serial")
    }

    #[test]
    fn patterns_built_from_sets_out_of_range_are_errors_not_panics() {
        assert_eq!(Pattern::from_sets(Vec::new()).unwrap_err().position, 1);
        let too_long = vec![CharSet::DIGITS; SERIAL_LEN_MAX + 1];
        assert_eq!(
            Pattern::from_sets(too_long).unwrap_err().position,
            SERIAL_LEN_MAX + 1
        );
        let hole = vec![CharSet::DIGITS, CharSet::EMPTY];
        assert_eq!(Pattern::from_sets(hole).unwrap_err().position, 2);
        let ok = Pattern::from_sets(vec![CharSet::DIGITS, CharSet::single(10)]).unwrap();
        assert_eq!(ok, p("#A"));
        assert_eq!(ok.nth(0), Some(s("0A")));
        assert_eq!(ok.nth(9), Some(s("9A")));
        assert_eq!(ok.nth(10), None);
        assert_eq!(ok.nth(u64::MAX), None);
        assert_eq!(CharSet::single(ALPHABET_LEN as u8), CharSet::EMPTY);
        assert_eq!(CharSet::single(200), CharSet::EMPTY);
    }

    #[test]
    fn shapes_count_and_match() {
        assert_eq!(p("A####").count(), 10_000);
        assert_eq!(p("@####").count(), 24 * 10_000);
        assert_eq!(p("D@####").count(), 24 * 10_000);
        assert_eq!(p("[AB3]#").count(), 30);
        assert_eq!(p("[A-H]#").count(), 80);
        assert_eq!(p("[A-HJ]").count(), 9);
        assert!(p("A####").matches(s("A0042")));
        assert!(!p("A####").matches(s("B0042")));
        assert!(!p("A####").matches(s("A004")));
        assert!(p("[DF]*####").matches(s("DZ0001")));
        assert_eq!(p("a·12 3#").to_string(), "A123#");
    }

    #[test]
    fn parse_errors_name_the_position() {
        assert_eq!(Pattern::parse("A#I##").expect_err("I").position, 3);
        assert_eq!(Pattern::parse("A[B").expect_err("unclosed").position, 2);
        assert_eq!(Pattern::parse("[]##").expect_err("empty").position, 1);
        assert_eq!(Pattern::parse("[Z-A]").expect_err("backwards").position, 2);
        assert_eq!(Pattern::parse("#######").expect_err("long").position, 7);
        assert_eq!(Pattern::parse("").expect_err("empty").position, 1);
        assert_eq!(Pattern::parse("A$##").expect_err("dollar").position, 2);
    }

    #[test]
    fn nth_rank_and_iteration_agree() {
        let pat = p("[AB]#[XZ]");
        let all: Vec<Serial> = pat.iter().collect();
        assert_eq!(all.len() as u64, pat.count());
        assert!(all.windows(2).all(|w| w[0].code() < w[1].code()));
        for (n, serial) in all.iter().enumerate() {
            assert!(pat.matches(*serial));
            assert_eq!(pat.rank(*serial), Some(n as u64));
        }
        let mut codes = Vec::new();
        pat.extend_codes(&mut codes);
        assert_eq!(codes, all.iter().map(|s| s.code()).collect::<Vec<_>>());
        assert_eq!(pat.rank(s("C1X")), None);
    }

    #[test]
    fn display_round_trips() {
        for text in ["A####", "@####", "[DF]*####", "[AB3]#@", "88888"] {
            let pat = p(text);
            assert_eq!(p(&pat.to_string()), pat);
        }
        assert_eq!(p("[0-9]").to_string(), "#");
    }

    #[test]
    fn intersect_and_subset() {
        assert!(p("A####").is_subset(&p("@####")));
        assert!(!p("@####").is_subset(&p("A####")));
        assert_eq!(p("[AB]#").intersect(&p("[BC]#")), Some(p("B#")));
        assert_eq!(p("A#").intersect(&p("B#")), None);
    }
}
