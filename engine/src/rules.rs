//! Composition rules for custom numbers (SPEC R2.4).
//!
//! Each office publishes, per plate class, the shapes a citizen may type in custom selection
//! (`#####`, `@####`, …) and deny rules on top of them (three identical digits in a row, a denied
//! pattern). A serial outside the rules is refused with a reason *before* anything is looked up or
//! debited, so the citizen learns why and it costs nothing. The rules live in office configuration
//! (JSON), so both types serialize to the same text an operator writes.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pattern::{Pattern, PatternError};
use crate::plate::{Serial, DIGITS_LEN};

/// Why a deny-rule text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("unknown deny rule '{name}': expected one of three_identical_digits, four_identical_digits, pattern:<pattern> (e.g. pattern:##444)")]
    Unknown { name: String },
    #[error("deny rule '{text}' has a bad pattern: {source}")]
    BadPattern {
        text: String,
        #[source]
        source: PatternError,
    },
}

/// The text prefix of a [`DenyRule::Pattern`] rule.
const PATTERN_PREFIX: &str = "pattern:";
const THREE_NAME: &str = "three_identical_digits";
const FOUR_NAME: &str = "four_identical_digits";

/// One rule that refuses custom numbers which would otherwise fit an allowed shape.
///
/// Written in configuration as a string: `"three_identical_digits"`, `"four_identical_digits"` or
/// `"pattern:<pattern>"` (e.g. `"pattern:##444"`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum DenyRule {
    /// Three equal digits next to each other anywhere in the serial (A1112, 11123, 4A555).
    ThreeIdenticalDigits,
    /// Four equal digits next to each other anywhere in the serial (A8888, 11110).
    FourIdenticalDigits,
    /// Every serial the pattern matches (serials of another length never match).
    Pattern(Pattern),
}

impl DenyRule {
    /// Parses the configuration text; surrounding whitespace is ignored and the rule name is
    /// case-insensitive, since operators type these by hand.
    pub fn parse(text: &str) -> Result<DenyRule, RuleError> {
        let trimmed = text.trim();
        let lower = trimmed.to_ascii_lowercase();
        if lower == THREE_NAME {
            return Ok(DenyRule::ThreeIdenticalDigits);
        }
        if lower == FOUR_NAME {
            return Ok(DenyRule::FourIdenticalDigits);
        }
        if lower.starts_with(PATTERN_PREFIX) {
            // The prefix is ASCII, so its byte length is the same in `trimmed` and `lower`.
            let body = &trimmed[PATTERN_PREFIX.len()..];
            return Pattern::parse(body)
                .map(DenyRule::Pattern)
                .map_err(|source| RuleError::BadPattern {
                    text: trimmed.to_string(),
                    source,
                });
        }
        Err(RuleError::Unknown {
            name: trimmed.to_string(),
        })
    }

    /// Does this rule refuse the serial?
    pub fn denies(&self, serial: Serial) -> bool {
        match self {
            DenyRule::ThreeIdenticalDigits => longest_digit_run(serial) >= 3,
            DenyRule::FourIdenticalDigits => longest_digit_run(serial) >= 4,
            DenyRule::Pattern(pattern) => pattern.matches(serial),
        }
    }

    /// Why a denied serial is refused, in words a citizen reads.
    pub fn reason(&self) -> String {
        match self {
            DenyRule::ThreeIdenticalDigits => "three identical digits in a row".to_string(),
            DenyRule::FourIdenticalDigits => "four identical digits in a row".to_string(),
            DenyRule::Pattern(pattern) => format!("numbers of the form {pattern} are reserved"),
        }
    }
}

/// Length of the longest run of one repeated digit (letters break runs and never count).
fn longest_digit_run(serial: Serial) -> usize {
    let indices = serial.indices();
    let mut best = 0;
    let mut run = 0;
    let mut previous: Option<u8> = None;
    for &i in &indices[..serial.len()] {
        if i < DIGITS_LEN {
            run = if previous == Some(i) { run + 1 } else { 1 };
            previous = Some(i);
        } else {
            run = 0;
            previous = None;
        }
        best = best.max(run);
    }
    best
}

impl fmt::Display for DenyRule {
    /// The configuration text; `DenyRule::parse` of it gives the same rule back. Patterns are
    /// written in their canonical form (`pattern:[0-9]` displays as `pattern:#`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyRule::ThreeIdenticalDigits => f.write_str(THREE_NAME),
            DenyRule::FourIdenticalDigits => f.write_str(FOUR_NAME),
            DenyRule::Pattern(pattern) => write!(f, "{PATTERN_PREFIX}{pattern}"),
        }
    }
}

impl fmt::Debug for DenyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DenyRule({self})")
    }
}

impl std::str::FromStr for DenyRule {
    type Err = RuleError;
    fn from_str(text: &str) -> Result<DenyRule, RuleError> {
        DenyRule::parse(text)
    }
}

impl Serialize for DenyRule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DenyRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DenyRule, D::Error> {
        let text = String::deserialize(d)?;
        DenyRule::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A custom number refused by the office's composition rules; `reason` names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not allowed by the office's rules for custom numbers: {reason}")]
pub struct NotAllowed {
    pub reason: String,
}

/// An office's composition rules for custom numbers of one plate class.
///
/// JSON: `{"allowed": ["#####", "@####"], "deny": ["three_identical_digits"]}`; either list may be
/// omitted. An empty `allowed` list puts no limit on the shape (every serial of the class is
/// allowed); the deny rules still apply.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompositionRules {
    allowed: Vec<Pattern>,
    deny: Vec<DenyRule>,
}

impl CompositionRules {
    pub fn new(allowed: Vec<Pattern>, deny: Vec<DenyRule>) -> CompositionRules {
        CompositionRules { allowed, deny }
    }

    /// The shapes a custom number must match one of; empty means any shape.
    pub fn allowed(&self) -> &[Pattern] {
        &self.allowed
    }

    /// The rules that refuse numbers even when their shape is allowed.
    pub fn deny(&self) -> &[DenyRule] {
        &self.deny
    }

    /// Accepts the serial or says which rule refuses it: the shape first, then the deny rules in
    /// their configured order (the first one that denies is reported).
    pub fn check(&self, serial: Serial) -> Result<(), NotAllowed> {
        if !self.allowed.is_empty() && !self.allowed.iter().any(|p| p.matches(serial)) {
            let shapes: Vec<String> = self.allowed.iter().map(ToString::to_string).collect();
            return Err(NotAllowed {
                reason: format!("matches none of the allowed shapes {}", shapes.join(", ")),
            });
        }
        match self.deny.iter().find(|rule| rule.denies(serial)) {
            Some(rule) => Err(NotAllowed {
                reason: rule.reason(),
            }),
            None => Ok(()),
        }
    }

    /// Shorthand for `check(serial).is_ok()`.
    pub fn allows(&self, serial: Serial) -> bool {
        self.check(serial).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Serial {
        Serial::parse(text).expect("valid serial")
    }
    fn p(text: &str) -> Pattern {
        Pattern::parse(text).expect("valid pattern")
    }
    fn rule(text: &str) -> DenyRule {
        DenyRule::parse(text).expect("valid rule")
    }

    /// Reference for the digit-run rules, written independently of the implementation: look at
    /// every window of `n` characters of the text.
    fn has_run(text: &str, n: usize) -> bool {
        let chars: Vec<char> = text.chars().collect();
        chars
            .windows(n)
            .any(|w| w[0].is_ascii_digit() && w.iter().all(|&c| c == w[0]))
    }

    #[test]
    fn three_identical_digits_examples() {
        let three = DenyRule::ThreeIdenticalDigits;
        for denied in [
            "A1112", "11123", "A2111", "4A555", "A8888", "D00012", "999AB",
        ] {
            assert!(three.denies(s(denied)), "{denied} should be denied");
        }
        for allowed in [
            "A1212", "11A11", "A1122", "AAAB1", "ZZZ12", "D11F22", "12345",
        ] {
            assert!(!three.denies(s(allowed)), "{allowed} should be allowed");
        }
    }

    #[test]
    fn four_identical_digits_examples() {
        let four = DenyRule::FourIdenticalDigits;
        assert!(four.denies(s("A8888")));
        assert!(four.denies(s("11110")));
        assert!(four.denies(s("DA0000")));
        assert!(!four.denies(s("A1112")));
        assert!(!four.denies(s("111A1")));
        assert!(!four.denies(s("AAAA1")));
    }

    #[test]
    fn digit_runs_agree_with_a_window_reference_over_a_pattern() {
        // Every serial of a small but varied pattern: letters and digits mixed at each position.
        let pat = p("[A1][12][1B][12][1C]");
        for serial in pat.iter() {
            let text = serial.to_string();
            assert_eq!(
                DenyRule::ThreeIdenticalDigits.denies(serial),
                has_run(&text, 3),
                "three: {text}"
            );
            assert_eq!(
                DenyRule::FourIdenticalDigits.denies(serial),
                has_run(&text, 4),
                "four: {text}"
            );
        }
        // And a denser all-digit pattern with runs at every offset.
        for serial in p("[12][12][12][12][12]").iter() {
            let text = serial.to_string();
            assert_eq!(
                DenyRule::ThreeIdenticalDigits.denies(serial),
                has_run(&text, 3),
                "{text}"
            );
        }
    }

    #[test]
    fn pattern_rule_denies_what_it_matches() {
        let r = rule("pattern:##444");
        assert_eq!(r, DenyRule::Pattern(p("##444")));
        assert!(r.denies(s("12444")));
        assert!(!r.denies(s("A2444")));
        assert!(!r.denies(s("12445")));
        // Another length never matches.
        assert!(!r.denies(s("D12444")));
        assert!(r.reason().contains("##444"));
    }

    #[test]
    fn parse_display_round_trip_and_case() {
        for text in [
            "three_identical_digits",
            "four_identical_digits",
            "pattern:##444",
            "pattern:[AB]8888",
        ] {
            let r = rule(text);
            assert_eq!(r.to_string(), text);
            assert_eq!(rule(&r.to_string()), r);
            assert_eq!(text.parse::<DenyRule>().expect("valid"), r);
        }
        assert_eq!(
            rule("  Three_Identical_Digits "),
            DenyRule::ThreeIdenticalDigits
        );
        assert_eq!(rule("PATTERN:a####"), DenyRule::Pattern(p("A####")));
        assert_eq!(rule("pattern:[0-9]8888").to_string(), "pattern:#8888");
    }

    #[test]
    fn parse_errors_are_clear() {
        let unknown = DenyRule::parse("two_identical_digits").expect_err("unknown");
        assert_eq!(
            unknown,
            RuleError::Unknown {
                name: "two_identical_digits".into()
            }
        );
        let message = unknown.to_string();
        assert!(message.contains("two_identical_digits"), "{message}");
        assert!(message.contains("three_identical_digits"), "{message}");
        assert!(message.contains("pattern:"), "{message}");

        let bad = DenyRule::parse("pattern:#I###").expect_err("I is not a serial char");
        match &bad {
            RuleError::BadPattern { text, source } => {
                assert_eq!(text, "pattern:#I###");
                assert_eq!(source.position, 2);
            }
            other => panic!("expected BadPattern, got {other:?}"),
        }
        assert!(bad.to_string().contains("pattern:#I###"));
        assert!(matches!(
            DenyRule::parse("pattern:"),
            Err(RuleError::BadPattern { .. })
        ));
        assert!(matches!(
            DenyRule::parse(""),
            Err(RuleError::Unknown { .. })
        ));
    }

    #[test]
    fn deny_rule_serde_is_its_string() {
        let rules = vec![
            DenyRule::ThreeIdenticalDigits,
            DenyRule::Pattern(p("##444")),
        ];
        let json = serde_json::to_string(&rules).expect("serialize");
        assert_eq!(json, r#"["three_identical_digits","pattern:##444"]"#);
        let back: Vec<DenyRule> = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, rules);
        let err = serde_json::from_str::<DenyRule>(r#""no_such_rule""#).expect_err("unknown");
        assert!(err.to_string().contains("no_such_rule"), "{err}");
        assert!(serde_json::from_str::<DenyRule>("3").is_err());
    }

    fn small_rules() -> CompositionRules {
        CompositionRules::new(
            vec![p("#####"), p("@####"), p("#@###"), p("@@###")],
            vec![DenyRule::ThreeIdenticalDigits, rule("pattern:##444")],
        )
    }

    #[test]
    fn check_accepts_allowed_shapes() {
        let rules = small_rules();
        for ok in ["12345", "A1212", "1A234", "AB123", "A0102"] {
            assert_eq!(rules.check(s(ok)), Ok(()), "{ok}");
            assert!(rules.allows(s(ok)));
        }
    }

    #[test]
    fn check_names_the_shapes_when_none_match() {
        let rules = small_rules();
        let err = rules.check(s("12A34")).expect_err("##@## is not allowed");
        assert_eq!(
            err.reason,
            "matches none of the allowed shapes #####, @####, #@###, @@###"
        );
        assert!(err.to_string().contains(&err.reason));
        // A serial of another length fits none of the 5-character shapes.
        assert!(rules.check(s("DA1234")).is_err());
        assert!(!rules.allows(s("ABC12")));
    }

    #[test]
    fn check_reports_the_first_deny_rule_that_fails() {
        let rules = small_rules();
        let err = rules.check(s("A1112")).expect_err("three in a row");
        assert_eq!(err.reason, DenyRule::ThreeIdenticalDigits.reason());
        assert_eq!(err.reason, "three identical digits in a row");
        // 12444 breaks both deny rules: the first configured one is reported.
        let both = rules.check(s("12444")).expect_err("denied");
        assert_eq!(both.reason, DenyRule::ThreeIdenticalDigits.reason());
        // With the pattern rule alone, its own reason is reported.
        let only_pattern = CompositionRules::new(vec![], vec![rule("pattern:##444")]);
        let err = only_pattern.check(s("12444")).expect_err("pattern");
        assert!(err.reason.contains("##444"), "{}", err.reason);
        // The shape is checked before the deny rules.
        let shape_first = rules.check(s("11A11")).expect_err("shape");
        assert!(shape_first.reason.starts_with("matches none"));
    }

    #[test]
    fn empty_allowed_means_any_shape_but_deny_still_applies() {
        let rules = CompositionRules::new(vec![], vec![DenyRule::FourIdenticalDigits]);
        assert!(rules.allows(s("ZZZZZ")));
        assert!(rules.allows(s("DA1234")));
        assert!(rules.allows(s("A1112")));
        assert!(!rules.allows(s("A1111")));
        assert!(CompositionRules::default().allows(s("00000")));
    }

    #[test]
    fn composition_rules_serde() {
        let rules = small_rules();
        let json = serde_json::to_value(&rules).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({
                "allowed": ["#####", "@####", "#@###", "@@###"],
                "deny": ["three_identical_digits", "pattern:##444"]
            })
        );
        let back: CompositionRules = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, rules);

        let partial: CompositionRules =
            serde_json::from_str(r#"{"deny": ["four_identical_digits"]}"#).expect("partial");
        assert!(partial.allowed().is_empty());
        assert_eq!(partial.deny(), &[DenyRule::FourIdenticalDigits]);

        let bad = serde_json::from_str::<CompositionRules>(r##"{"allowed": ["#I###"]}"##)
            .expect_err("bad pattern");
        assert!(bad.to_string().contains("pattern character 2"), "{bad}");
        assert!(
            serde_json::from_str::<CompositionRules>(r#"{"allowd": []}"#).is_err(),
            "a misspelt field is refused, not silently ignored"
        );
    }
}
