//! Vehicle identification numbers (SPEC R4.2).
//!
//! A citizen types the VIN of the new car; it is checked before anything else, with the exact
//! reason on failure, so a typo is caught at the keyboard instead of as a "no such certificate"
//! later. The rules are ISO 3779 / GB 16735: 17 characters, digits and letters except I, O and Q,
//! and a check digit at position 9 (transliterate, weight, sum mod 11, 10 written X). GB 16735
//! makes the check digit mandatory for every vehicle sold in China, so it is always checked.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Number of characters of a VIN.
pub const VIN_LEN: usize = 17;
/// 1-based position of the check digit.
pub const CHECK_DIGIT_POSITION: usize = 9;

/// Weights of positions 1..=17 (the check digit's own weight is 0).
const WEIGHTS: [u32; VIN_LEN] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];

/// What is wrong with a VIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VinReason {
    /// Not 17 characters (after trimming surrounding whitespace).
    WrongLength { found: usize },
    /// I, O or Q, which VINs never contain because they read as 1, 0 and 0.
    ForbiddenLetter,
    /// Anything other than A–Z and 0–9.
    InvalidChar,
    /// The check digit at position 9 does not match the other sixteen characters.
    CheckDigit { expected: char, found: char },
}

impl VinReason {
    /// Stable snake_case code for APIs and logs.
    pub fn code(&self) -> &'static str {
        match self {
            VinReason::WrongLength { .. } => "wrong_length",
            VinReason::ForbiddenLetter => "forbidden_letter",
            VinReason::InvalidChar => "invalid_char",
            VinReason::CheckDigit { .. } => "check_digit",
        }
    }
}

/// A refused VIN: the reason and, except for a wrong length, the 1-based position at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(.reason, .position))]
pub struct VinError {
    pub reason: VinReason,
    pub position: Option<usize>,
}

impl VinError {
    /// Stable snake_case code: `wrong_length`, `forbidden_letter`, `invalid_char`, `check_digit`.
    pub fn reason_code(&self) -> &'static str {
        self.reason.code()
    }
}

/// The human message of a [`VinError`].
fn describe(reason: &VinReason, position: &Option<usize>) -> String {
    let at = position.unwrap_or(0);
    match reason {
        VinReason::WrongLength { found } => {
            format!("a VIN has {VIN_LEN} characters, this one has {found}")
        }
        VinReason::ForbiddenLetter => format!(
            "VIN character {at} is I, O or Q: a VIN never contains these letters (did you mean 1 or 0?)"
        ),
        VinReason::InvalidChar => {
            format!("VIN character {at} is not allowed: a VIN has only digits and letters A–Z")
        }
        VinReason::CheckDigit { expected, found } => format!(
            "the VIN's check digit (character {CHECK_DIGIT_POSITION}) is {found} but should be {expected}: a character is probably mistyped"
        ),
    }
}

/// A checked VIN: 17 characters, uppercase, valid check digit.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vin(String);

impl Vin {
    /// Checks a VIN; same as [`check_vin`].
    pub fn parse(input: &str) -> Result<Vin, VinError> {
        check_vin(input)
    }

    /// Makes a valid VIN from 17 characters by putting the right check digit at position 9
    /// (whatever stands there is replaced). For demo data, tests and load generators.
    pub fn with_check_digit(first17: &str) -> Option<Vin> {
        let digit = vin_check_digit(first17)?;
        let text: String = first17
            .trim()
            .chars()
            .enumerate()
            .map(|(n, c)| {
                if n + 1 == CHECK_DIGIT_POSITION {
                    digit
                } else {
                    c.to_ascii_uppercase()
                }
            })
            .collect();
        check_vin(&text).ok()
    }

    /// The normalised text: 17 uppercase characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text with all but the first 3 (maker) and last 4 characters hidden, for logs, SMS and
    /// pages that must not reveal the whole VIN: `LSV**********1234`.
    pub fn masked(&self) -> String {
        self.0
            .chars()
            .enumerate()
            .map(|(n, c)| {
                if (3..VIN_LEN - 4).contains(&n) {
                    '*'
                } else {
                    c
                }
            })
            .collect()
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Vin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Vin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vin({})", self.0)
    }
}

impl AsRef<str> for Vin {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Vin {
    type Err = VinError;
    fn from_str(text: &str) -> Result<Vin, VinError> {
        check_vin(text)
    }
}

impl Serialize for Vin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Vin {
    /// Deserializing checks the VIN again, so stored or received data can never hold a bad one.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Vin, D::Error> {
        let text = String::deserialize(d)?;
        check_vin(&text).map_err(serde::de::Error::custom)
    }
}

/// The ISO 3779 transliteration of an uppercase VIN character, `None` for anything a VIN cannot
/// contain (I, O, Q, lowercase, punctuation).
fn transliterate(c: char) -> Option<u32> {
    match c {
        '0'..='9' => c.to_digit(10),
        'A' | 'J' => Some(1),
        'B' | 'K' | 'S' => Some(2),
        'C' | 'L' | 'T' => Some(3),
        'D' | 'M' | 'U' => Some(4),
        'E' | 'N' | 'V' => Some(5),
        'F' | 'W' => Some(6),
        'G' | 'P' | 'X' => Some(7),
        'H' | 'Y' => Some(8),
        'R' | 'Z' => Some(9),
        _ => None,
    }
}

/// The check digit the 17 characters call for. The character at position 9 is ignored (its
/// weight is 0), so any placeholder may stand there. Case-insensitive; surrounding whitespace is
/// trimmed. `None` if the text is not 17 characters or holds a character a VIN cannot contain
/// (outside position 9).
pub fn vin_check_digit(first17: &str) -> Option<char> {
    let text = first17.trim();
    if text.chars().count() != VIN_LEN {
        return None;
    }
    let mut sum = 0u32;
    for (n, c) in text.chars().enumerate() {
        if n + 1 == CHECK_DIGIT_POSITION {
            continue;
        }
        sum += transliterate(c.to_ascii_uppercase())? * WEIGHTS[n];
    }
    Some(match sum % 11 {
        10 => 'X',
        r => char::from_digit(r, 10)?,
    })
}

/// Checks what a person typed as a VIN: surrounding whitespace trimmed, lowercase accepted.
/// Checked in order: length, then each character left to right, then the check digit, so the
/// reason given is the first thing to fix.
pub fn check_vin(input: &str) -> Result<Vin, VinError> {
    let text = input.trim();
    let found = text.chars().count();
    if found != VIN_LEN {
        return Err(VinError {
            reason: VinReason::WrongLength { found },
            position: None,
        });
    }
    let mut normal = String::with_capacity(VIN_LEN);
    for (n, c) in text.chars().enumerate() {
        let upper = c.to_ascii_uppercase();
        let reason = match upper {
            'I' | 'O' | 'Q' => Some(VinReason::ForbiddenLetter),
            'A'..='Z' | '0'..='9' => None,
            _ => Some(VinReason::InvalidChar),
        };
        if let Some(reason) = reason {
            return Err(VinError {
                reason,
                position: Some(n + 1),
            });
        }
        normal.push(upper);
    }
    let expected = vin_check_digit(&normal).ok_or(VinError {
        // Unreachable after the character checks above; kept as an error rather than a panic.
        reason: VinReason::InvalidChar,
        position: None,
    })?;
    let found = normal
        .as_bytes()
        .get(CHECK_DIGIT_POSITION - 1)
        .map_or('?', |&b| b as char);
    if found != expected {
        return Err(VinError {
            reason: VinReason::CheckDigit { expected, found },
            position: Some(CHECK_DIGIT_POSITION),
        });
    }
    Ok(Vin(normal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The characters a VIN may contain.
    const VIN_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPRSTUVWXYZ";

    /// Published VINs with valid check digits (verified by hand with the ISO 3779 table):
    /// the Wikipedia example, NHTSA examples, and Chinese-market VINs (L = China).
    const REAL_VINS: &[&str] = &[
        "1M8GDM9AXKP042788",
        "11111111111111111",
        "1HGCM82633A004352",
        "JH4KA7561PC008269",
        "JHMCM56557C404453",
        "5GZCZ43D13S812715",
        "LVSHCAMB1CE054249",
        "LSGPC52U6AF102554",
    ];

    fn err(input: &str) -> VinError {
        check_vin(input).expect_err("should be refused")
    }

    #[test]
    fn real_vins_are_accepted() {
        for text in REAL_VINS {
            let vin = check_vin(text).expect(text);
            assert_eq!(vin.as_str(), *text);
            assert_eq!(vin_check_digit(text), text.chars().nth(8));
        }
        assert_eq!(vin_check_digit("1M8GDM9A?KP042788"), Some('X'));
    }

    #[test]
    fn check_digit_worked_example() {
        // 1M8GDM9AXKP042788 by hand: values 1 4 8 7 4 4 9 1 _ 2 7 0 4 2 7 8 8,
        // products 8 28 48 35 16 12 18 10 _ 18 56 0 24 10 28 24 16 = 351; 351 = 31*11 + 10 -> X.
        let values = [1u32, 4, 8, 7, 4, 4, 9, 1, 0, 2, 7, 0, 4, 2, 7, 8, 8];
        let sum: u32 = values.iter().zip(WEIGHTS).map(|(v, w)| v * w).sum();
        assert_eq!(sum, 351);
        assert_eq!(sum % 11, 10);
        assert_eq!(vin_check_digit("1M8GDM9A0KP042788"), Some('X'));
    }

    #[test]
    fn normalises_case_and_whitespace() {
        let vin = check_vin("  1m8gdm9axkp042788\n").expect("valid");
        assert_eq!(vin.as_str(), "1M8GDM9AXKP042788");
        assert_eq!(vin.to_string(), "1M8GDM9AXKP042788");
        assert_eq!(
            "lvshcamb1ce054249".parse::<Vin>().expect("valid").as_str(),
            "LVSHCAMB1CE054249"
        );
    }

    #[test]
    fn wrong_check_digit_names_both() {
        let e = err("LSVAU2180N2183294");
        assert_eq!(
            e.reason,
            VinReason::CheckDigit {
                expected: 'X',
                found: '0'
            }
        );
        assert_eq!(e.position, Some(9));
        assert_eq!(e.reason_code(), "check_digit");
        let message = e.to_string();
        assert!(
            message.contains('X') && message.contains('0') && message.contains('9'),
            "{message}"
        );
    }

    #[test]
    fn length_is_checked_first() {
        let short = err("1M8GDM9AXKP04278");
        assert_eq!(short.reason, VinReason::WrongLength { found: 16 });
        assert_eq!(short.position, None);
        assert_eq!(short.reason_code(), "wrong_length");
        assert!(short.to_string().contains("16"));
        // Too long and full of bad characters: still the length is reported.
        assert_eq!(
            err("IIIIIIIIIIIIIIIIII").reason,
            VinReason::WrongLength { found: 18 }
        );
        assert_eq!(err("").reason, VinReason::WrongLength { found: 0 });
        assert_eq!(err("   ").reason, VinReason::WrongLength { found: 0 });
        // Length counts characters, not bytes.
        assert_eq!(err("粤1M8GDM9AXKP04278").reason, VinReason::InvalidChar);
    }

    #[test]
    fn characters_are_checked_left_to_right() {
        let e = err("1M8GDM9AXKP0427O8");
        assert_eq!(
            (e.reason, e.position),
            (VinReason::ForbiddenLetter, Some(16))
        );
        assert_eq!(e.reason_code(), "forbidden_letter");
        assert!(e.to_string().contains("16"));
        // Lowercase forbidden letters count too.
        assert_eq!(err("1M8GDM9AXKP042q88").position, Some(15));
        assert_eq!(err("iM8GDM9AXKP042788").reason, VinReason::ForbiddenLetter);
        // The first bad character wins, whichever kind it is.
        let e = err("1M8-DM9AXKP0427O8");
        assert_eq!((e.reason, e.position), (VinReason::InvalidChar, Some(4)));
        assert_eq!(e.reason_code(), "invalid_char");
        let e = err("1M8GDMIAXKP042-88");
        assert_eq!(
            (e.reason, e.position),
            (VinReason::ForbiddenLetter, Some(7))
        );
        // An inner space is a character, not ignored.
        assert_eq!(err("1M8GDM9AX P042788").position, Some(10));
        // Bad characters come before a wrong check digit.
        assert_eq!(err("1M8GDM9A0KP0427!8").reason, VinReason::InvalidChar);
        assert_eq!(err("粤M8GDM9AXKP042788").position, Some(1));
    }

    #[test]
    fn masked_keeps_three_and_four() {
        let vin = check_vin("LSGPC52U6AF102554").expect("valid");
        let masked = vin.masked();
        assert_eq!(masked, "LSG**********2554");
        assert_eq!(masked.chars().count(), 17);
        assert_eq!(masked.chars().filter(|&c| c == '*').count(), 10);
    }

    #[test]
    fn serde_is_the_string_and_checks() {
        let vin = check_vin("1HGCM82633A004352").expect("valid");
        let json = serde_json::to_string(&vin).expect("serialize");
        assert_eq!(json, r#""1HGCM82633A004352""#);
        let back: Vin = serde_json::from_str(r#""1hgcm82633a004352""#).expect("deserialize");
        assert_eq!(back, vin);
        let bad = serde_json::from_str::<Vin>(r#""1HGCM82643A004352""#).expect_err("check digit");
        assert!(bad.to_string().contains("check digit"), "{bad}");
    }

    #[test]
    fn check_digit_helper_rejects_garbage() {
        assert_eq!(vin_check_digit("1M8GDM9AXKP04278"), None);
        assert_eq!(vin_check_digit("1M8GDM9AXKP0427O8"), None);
        assert_eq!(vin_check_digit("1M8GDM9AXKP0427-8"), None);
        // The 9th character is ignored, whatever it is.
        assert_eq!(vin_check_digit("1M8GDM9A-KP042788"), Some('X'));
        let made = Vin::with_check_digit("lsvau2180n2183294").expect("makes a VIN");
        assert_eq!(made.as_str(), "LSVAU218XN2183294");
        assert!(Vin::with_check_digit("LSVAU2180N218329").is_none());
    }

    fn random_vin(rng: &mut StdRng) -> String {
        let mut chars: Vec<char> = (0..VIN_LEN)
            .map(|_| VIN_CHARS[rng.random_range(0..VIN_CHARS.len())] as char)
            .collect();
        let text: String = chars.iter().collect();
        chars[8] = vin_check_digit(&text).expect("valid characters");
        chars.into_iter().collect()
    }

    #[test]
    fn random_valid_vins_detect_every_single_substitution() {
        let mut rng = StdRng::seed_from_u64(0x5EED_0917);
        let mut detected = 0usize;
        for _ in 0..300 {
            let text = random_vin(&mut rng);
            assert!(check_vin(&text).is_ok(), "{text}");
            let original: Vec<char> = text.chars().collect();
            for pos in 0..VIN_LEN {
                for &b in VIN_CHARS {
                    let sub = b as char;
                    if sub == original[pos] {
                        continue;
                    }
                    let mut changed = original.clone();
                    changed[pos] = sub;
                    let changed: String = changed.into_iter().collect();
                    let result = check_vin(&changed);
                    let same_value = transliterate(sub) == transliterate(original[pos]);
                    if pos == 8 || !same_value {
                        // Weight and value change are both non-zero mod the prime 11, so the
                        // sum changes: every such typo is caught.
                        let e = result.expect_err(&changed);
                        assert_eq!(e.position, Some(9), "{changed}");
                        assert!(matches!(e.reason, VinReason::CheckDigit { .. }));
                        detected += 1;
                    } else {
                        // A and J (and B/K/S, ...) share a value: ISO 3779 cannot see that swap.
                        assert!(result.is_ok(), "{changed}");
                    }
                }
                // A forbidden letter or punctuation at any position is reported there.
                for (bad, reason) in [
                    ('O', VinReason::ForbiddenLetter),
                    ('q', VinReason::ForbiddenLetter),
                    ('#', VinReason::InvalidChar),
                ] {
                    let mut changed = original.clone();
                    changed[pos] = bad;
                    let changed: String = changed.into_iter().collect();
                    let e = check_vin(&changed).expect_err(&changed);
                    assert_eq!((e.reason, e.position), (reason, Some(pos + 1)));
                }
                // Lowercase of the same character is the same VIN.
                let mut lower = original.clone();
                lower[pos] = lower[pos].to_ascii_lowercase();
                let lower: String = lower.into_iter().collect();
                assert_eq!(check_vin(&lower).map(Vin::into_string), Ok(text.clone()));
            }
        }
        assert!(detected > 300 * 16 * 20, "{detected}");
    }

    #[test]
    fn check_digit_is_uniformish_over_random_vins() {
        // Every one of the 11 outcomes, X included, occurs; a bug mapping 10 wrongly would not.
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let text = random_vin(&mut rng);
            seen.insert(text.chars().nth(8).expect("17 chars"));
        }
        assert_eq!(seen.len(), 11, "{seen:?}");
        assert!(seen.contains(&'X'));
    }
}
