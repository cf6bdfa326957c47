//! Plate serials (SPEC R2.1–R2.3, R2.5).
//!
//! The engine stores only the serial of a plate (the part after "粤K·"); the office supplies the
//! prefix. A serial is at most [`SERIAL_LEN_MAX`] characters from [`ALPHABET`] and is kept as a
//! base-34 integer (`code`), so a pool of millions of numbers is a few arrays of `u32`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The characters a serial may contain, in ascending code-point order: digits, then the letters
/// A–Z without I and O (they read as 1 and 0).
pub const ALPHABET: [u8; ALPHABET_LEN] = *b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// How many characters [`ALPHABET`] has.
pub const ALPHABET_LEN: usize = 34;
/// Longest serial any plate class may have: 34^6 still fits in a `u32`.
pub const SERIAL_LEN_MAX: usize = 6;
/// Index of the digit 4 in [`ALPHABET`] (the digit-4 filter, R2.5).
pub const FOUR_INDEX: u8 = 4;
/// Indices below this in [`ALPHABET`] are digits; the rest are letters.
pub const DIGITS_LEN: u8 = 10;

/// Why a typed serial was refused. Positions are 1-based, as a person counts them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlateError {
    #[error("the plate number is empty")]
    Empty,
    #[error("character {position} ('{found}') is not allowed in a plate number: use digits and letters other than I and O")]
    InvalidChar { position: usize, found: char },
    #[error("the plate number has {found} characters, {expected} expected")]
    WrongLength {
        /// Where the number stops being acceptable (1-based): the first extra or missing character.
        position: usize,
        expected: usize,
        found: usize,
    },
    #[error("character {position} ('{found}') is not possible here: {reason}")]
    NotInClass {
        position: usize,
        found: char,
        reason: String,
    },
    /// A serial built from numbers rather than text: an alphabet index or a code out of range.
    #[error("{what} is out of range")]
    OutOfRange { position: usize, what: String },
}

impl PlateError {
    /// The 1-based position at fault, for the API's `position` field.
    pub fn position(&self) -> usize {
        match self {
            PlateError::Empty => 1,
            PlateError::InvalidChar { position, .. }
            | PlateError::WrongLength { position, .. }
            | PlateError::NotInClass { position, .. }
            | PlateError::OutOfRange { position, .. } => *position,
        }
    }
}

/// Alphabet index of a character, case-insensitive; `None` if serials cannot contain it.
pub fn char_index(c: char) -> Option<u8> {
    let upper = c.to_ascii_uppercase();
    if !upper.is_ascii() {
        return None;
    }
    ALPHABET
        .iter()
        .position(|&a| a == upper as u8)
        .map(|i| i as u8)
}

/// A serial has 1 to [`SERIAL_LEN_MAX`] characters.
fn check_len(len: usize) -> Result<(), PlateError> {
    match len {
        0 => Err(PlateError::Empty),
        1..=SERIAL_LEN_MAX => Ok(()),
        _ => Err(PlateError::WrongLength {
            position: SERIAL_LEN_MAX + 1,
            expected: SERIAL_LEN_MAX,
            found: len,
        }),
    }
}

/// The character at an alphabet index.
/// The character at an alphabet index; `?` for an index beyond the alphabet.
pub fn index_char(index: u8) -> char {
    ALPHABET.get(index as usize).map_or('?', |&c| c as char)
}

/// True for characters a person may type between parts of a plate and that mean nothing.
/// `text` without `prefix` at its start, comparing character by character in upper case. The
/// cut is at a character boundary of `text` itself: case mappings that change a character's
/// byte length ("ﬀ" → "FF", "ß" → "SS") must not cut a character in two (found by fuzzing:
/// "粤ﬀ1234" against the prefix "粤F" panicked the office actor).
fn strip_prefix_ignoring_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let mut rest = text.chars();
    for p in prefix.chars() {
        let c = rest.next()?;
        if !c.to_uppercase().eq(p.to_uppercase()) {
            return None;
        }
    }
    Some(rest.as_str())
}

fn is_separator(c: char) -> bool {
    matches!(c, '·' | '•' | '.' | '-' | ' ' | '\u{3000}' | '\t')
}

/// One plate serial: its characters as a base-34 number, and its length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Serial {
    code: u32,
    len: u8,
}

impl Serial {
    /// Builds a serial from alphabet indices (each < [`ALPHABET_LEN`], 1 to
    /// [`SERIAL_LEN_MAX`] of them); anything else is an error.
    pub fn from_indices(indices: &[u8]) -> Result<Serial, PlateError> {
        check_len(indices.len())?;
        let mut code = 0u32;
        for (n, &i) in indices.iter().enumerate() {
            if i as usize >= ALPHABET_LEN {
                return Err(PlateError::OutOfRange {
                    position: n + 1,
                    what: format!("alphabet index {i} (0 to {})", ALPHABET_LEN - 1),
                });
            }
            code = code * ALPHABET_LEN as u32 + i as u32;
        }
        Ok(Serial {
            code,
            len: indices.len() as u8,
        })
    }

    /// The serial with this code and length (the inverse of [`Serial::code`]); a length
    /// outside 1 to [`SERIAL_LEN_MAX`] or a code of more characters is an error.
    pub fn from_code(code: u32, len: usize) -> Result<Serial, PlateError> {
        check_len(len)?;
        if u64::from(code) >= (ALPHABET_LEN as u64).pow(len as u32) {
            return Err(PlateError::OutOfRange {
                position: 1,
                what: format!("code {code} for {len} characters"),
            });
        }
        Ok(Serial::from_pool_code(code, len))
    }

    /// [`Serial::from_code`] for a code the engine made itself from a valid serial (a pool's
    /// numbers), where checking again would cost the hot path for nothing.
    pub(crate) fn from_pool_code(code: u32, len: usize) -> Serial {
        debug_assert!((1..=SERIAL_LEN_MAX).contains(&len));
        debug_assert!(u64::from(code) < (ALPHABET_LEN as u64).pow(len as u32));
        Serial {
            code,
            len: len as u8,
        }
    }

    /// Parses what a person typed: case-insensitive, separators ("·", spaces) ignored. Only the
    /// characters are checked here; whether the serial fits a class is [`crate::PlateClass`]'s job.
    pub fn parse(input: &str) -> Result<Serial, PlateError> {
        let mut indices = [0u8; SERIAL_LEN_MAX];
        let mut len = 0usize;
        for (n, c) in input.chars().filter(|&c| !is_separator(c)).enumerate() {
            let Some(i) = char_index(c) else {
                return Err(PlateError::InvalidChar {
                    position: n + 1,
                    found: c,
                });
            };
            if n < SERIAL_LEN_MAX {
                indices[n] = i;
            }
            len = n + 1;
        }
        if len == 0 {
            return Err(PlateError::Empty);
        }
        if len > SERIAL_LEN_MAX {
            return Err(PlateError::WrongLength {
                position: SERIAL_LEN_MAX + 1,
                expected: SERIAL_LEN_MAX,
                found: len,
            });
        }
        Serial::from_indices(&indices[..len])
    }

    /// Like [`Serial::parse`], but also accepts the full plate with the office prefix
    /// ("粤K·A1234" when `prefix` is "粤K").
    pub fn parse_with_prefix(input: &str, prefix: &str) -> Result<Serial, PlateError> {
        let trimmed = input.trim();
        Serial::parse(strip_prefix_ignoring_case(trimmed, prefix).unwrap_or(trimmed))
    }

    /// The base-34 number of the serial; serials of one length sort like their codes.
    pub fn code(self) -> u32 {
        self.code
    }

    /// Number of characters.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        self.len as usize
    }

    /// Alphabet indices of the characters, first one first; only `len()` of them are meaningful.
    pub fn indices(self) -> [u8; SERIAL_LEN_MAX] {
        let mut out = [0u8; SERIAL_LEN_MAX];
        let mut code = self.code;
        for slot in out[..self.len as usize].iter_mut().rev() {
            *slot = (code % ALPHABET_LEN as u32) as u8;
            code /= ALPHABET_LEN as u32;
        }
        out
    }

    /// The characters, as text on the stack: what `to_string` gives, without the allocation
    /// (every plate of every draw's answer is written through this).
    pub fn text(self) -> SerialText {
        let mut bytes = self.indices();
        for b in &mut bytes[..self.len()] {
            *b = ALPHABET[*b as usize];
        }
        SerialText {
            bytes,
            len: self.len,
        }
    }

    /// Alphabet index of the character at 0-based `position`.
    pub fn index_at(self, position: usize) -> u8 {
        self.indices()[position]
    }

    /// The digit-4 filter (R2.5): does the digit 4 appear anywhere?
    pub fn contains_four(self) -> bool {
        self.indices()[..self.len()].contains(&FOUR_INDEX)
    }
}

/// A serial's characters, written without allocating ([`Serial::text`]).
#[derive(Debug, Clone, Copy)]
pub struct SerialText {
    bytes: [u8; SERIAL_LEN_MAX],
    len: u8,
}

impl SerialText {
    pub fn as_str(&self) -> &str {
        // The alphabet is ASCII, so this never falls back.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

/// The full plate as printed: prefix, "·", serial (written without allocating).
#[derive(Debug, Clone, Copy)]
pub struct FullPlate<'a>(pub &'a str, pub Serial);

impl fmt::Display for FullPlate<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)?;
        f.write_str("·")?;
        f.write_str(self.1.text().as_str())
    }
}

/// [`FullPlate`] as a string.
pub fn full_plate(prefix: &str, serial: Serial) -> String {
    FullPlate(prefix, serial).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn serials_built_from_numbers_out_of_range_are_errors_not_panics() {
        assert_eq!(Serial::from_indices(&[]), Err(PlateError::Empty));
        assert!(matches!(
            Serial::from_indices(&[0; SERIAL_LEN_MAX + 1]),
            Err(PlateError::WrongLength { .. })
        ));
        assert!(matches!(
            Serial::from_indices(&[0, ALPHABET_LEN as u8]),
            Err(PlateError::OutOfRange { position: 2, .. })
        ));
        assert_eq!(Serial::from_code(0, 0), Err(PlateError::Empty));
        assert!(Serial::from_code(0, SERIAL_LEN_MAX + 1).is_err());
        assert!(Serial::from_code(34, 1).is_err());
        assert_eq!(Serial::from_code(33, 1).unwrap().to_string(), "Z");
        assert_eq!(index_char(200), '?');
    }

    #[test]
    fn alphabet_is_sorted_and_has_no_i_or_o() {
        assert!(ALPHABET.windows(2).all(|w| w[0] < w[1]));
        assert!(!ALPHABET.contains(&b'I') && !ALPHABET.contains(&b'O'));
        assert_eq!(index_char(FOUR_INDEX), '4');
        assert_eq!(index_char(DIGITS_LEN), 'A');
    }

    #[test]
    fn text_is_the_characters_of_the_indices() {
        for (code, len) in [(0, 1), (33, 1), (34, 2), (1_234_567, 5), (1_544_804_415, 6)] {
            let s = Serial::from_code(code, len).unwrap();
            let by_index: String = s.indices()[..len].iter().map(|&i| index_char(i)).collect();
            assert_eq!(s.text().as_str(), by_index);
            assert_eq!(s.to_string(), by_index);
            assert_eq!(Serial::parse(&by_index), Ok(s));
        }
        let a = Serial::parse("A1234").expect("valid");
        assert_eq!(FullPlate("粤K", a).to_string(), "粤K·A1234");
    }

    #[test]
    fn parse_normalises_case_and_separators() {
        let a = Serial::parse("a1234").expect("valid");
        assert_eq!(a.to_string(), "A1234");
        assert_eq!(Serial::parse(" A·12 34 ").expect("valid"), a);
        assert_eq!(
            Serial::parse_with_prefix("粤K·A1234", "粤K").expect("valid"),
            a
        );
        assert_eq!(
            Serial::parse_with_prefix("粤k·a1234", "粤K").expect("valid"),
            a
        );
        assert_eq!(a.len(), 5);
    }

    #[test]
    fn parse_names_the_bad_position() {
        assert_eq!(
            Serial::parse("A1I34"),
            Err(PlateError::InvalidChar {
                position: 3,
                found: 'I'
            })
        );
        assert_eq!(
            Serial::parse("o1234"),
            Err(PlateError::InvalidChar {
                position: 1,
                found: 'o'
            })
        );
        assert_eq!(Serial::parse("··"), Err(PlateError::Empty));
        let long = Serial::parse("A123456").expect_err("too long");
        assert_eq!(long.position(), 7);
        assert!(matches!(long, PlateError::WrongLength { found: 7, .. }));
        assert_eq!(Serial::parse("A1!34").expect_err("bad").position(), 3);
    }

    #[test]
    fn code_round_trips_and_orders() {
        for text in ["00000", "ZZZZZ", "A1234", "DA1234", "F00001", "Z"] {
            let s = Serial::parse(text).expect("valid");
            assert_eq!(Serial::from_code(s.code(), s.len()), Ok(s));
            assert_eq!(s.to_string(), text);
        }
        let a = Serial::parse("A0000").expect("valid");
        let b = Serial::parse("A0001").expect("valid");
        assert!(a.code() < b.code());
        assert_eq!(
            Serial::parse("ZZZZZZ").expect("valid").code() as u64,
            34u64.pow(6) - 1
        );
    }

    #[test]
    fn digit_four_filter() {
        assert!(Serial::parse("A1234").expect("valid").contains_four());
        assert!(!Serial::parse("A1235").expect("valid").contains_four());
        assert!(Serial::parse("4AAAA").expect("valid").contains_four());
    }
}
