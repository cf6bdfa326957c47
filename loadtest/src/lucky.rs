//! What buyers want: "lucky" numbers (88, 666, 8888, …), and the numbers a virtual buyer types
//! in a custom check, guided by the keyboard's enabled characters.

use std::collections::HashSet;

use platepool_engine::rules::CompositionRules;
use platepool_engine::Serial;
use rand::rngs::StdRng;
use rand::Rng;

/// How sought-after a serial is: 4 for four or more equal digits in a row (8888), 3 for three
/// (666), 2 for a pair of 8s, 6s or 9s or the phrases 168 / 518, 1 for two or more of 6, 8, 9
/// anywhere, else 0.
pub fn lucky_score(serial: &str) -> u32 {
    let b = serial.as_bytes();
    let mut best_run = 0usize;
    let mut run = 0usize;
    let mut prev = 0u8;
    for &c in b {
        if c.is_ascii_digit() && c == prev {
            run += 1;
        } else {
            run = usize::from(c.is_ascii_digit());
        }
        prev = c;
        best_run = best_run.max(run);
    }
    if best_run >= 4 {
        return 4;
    }
    if best_run == 3 {
        return 3;
    }
    let has = |s: &str| serial.contains(s);
    if has("88") || has("66") || has("99") || has("168") || has("518") {
        return 2;
    }
    let fortunate = b
        .iter()
        .filter(|&&c| matches!(c, b'6' | b'8' | b'9'))
        .count();
    u32::from(fortunate >= 2)
}

/// Lucky for the fairness report: score 2 or more (88, 666, 8888 patterns).
pub fn is_lucky(serial: &str) -> bool {
    lucky_score(serial) >= 2
}

/// How much a person likes a serial: lucky first, and a 4 (sounds like "death") spoils it.
pub fn preference(serial: &str) -> i32 {
    let four = serial.contains('4');
    lucky_score(serial) as i32 * 10 - if four { 15 } else { 0 }
}

/// The index of the most preferred serial (the first of equals).
pub fn best(serials: &[String]) -> Option<usize> {
    let mut best: Option<(usize, i32)> = None;
    for (i, s) in serials.iter().enumerate() {
        let p = preference(s);
        if best.is_none_or(|(_, b)| p > b) {
            best = Some((i, p));
        }
    }
    best.map(|(i, _)| i)
}

const TAILS: &[&str] = &[
    "8888", "6666", "9999", "1688", "5188", "8868", "6688", "8899", "1888", "6888", "8666", "0888",
    "2888", "3888", "5888", "7888", "9888", "8886", "6668", "1666", "5166", "0168", "0518", "1168",
    "2168", "3388", "5566", "6699", "8008", "8080",
];

fn random_enabled(enabled: &[u8], rng: &mut StdRng) -> Option<u8> {
    if enabled.is_empty() {
        None
    } else {
        Some(enabled[rng.random_range(0..enabled.len())])
    }
}

/// A lucky 4-digit ending: a known favourite, or a run of one digit with a random neighbour.
fn lucky_tail(rng: &mut StdRng) -> String {
    if rng.random_bool(0.6) {
        return TAILS[rng.random_range(0..TAILS.len())].to_string();
    }
    let d = [b'8', b'6', b'9', b'8'][rng.random_range(0..4)] as char;
    let other = char::from(b'0' + rng.random_range(0..10u8));
    match rng.random_range(0..3) {
        0 => format!("{other}{d}{d}{d}"),
        1 => format!("{d}{d}{d}{other}"),
        _ => format!("{d}{d}{other}{other}"),
    }
}

/// Up to `count` distinct numbers a buyer types: each character taken from what the keyboard
/// enables at its position (`enabled[i]`, the characters as ASCII), a lucky ending with
/// probability `lucky`, never one in `tried`, and only numbers the office's composition rules
/// allow. May return fewer when the keyboard leaves little choice.
pub fn wishes(
    enabled: &[Vec<u8>],
    first: Option<u8>,
    count: usize,
    lucky: f64,
    tried: &HashSet<String>,
    rules: &CompositionRules,
    rng: &mut StdRng,
) -> Vec<String> {
    let len = enabled.len();
    let mut out: Vec<String> = Vec::with_capacity(count);
    if len == 0 || enabled.iter().any(Vec::is_empty) {
        return out;
    }
    let mut attempts = 0;
    while out.len() < count && attempts < count * 40 {
        attempts += 1;
        let tail = (rng.random_bool(lucky.clamp(0.0, 1.0)) && len >= 4).then(|| lucky_tail(rng));
        let mut s = Vec::with_capacity(len);
        for (pos, set) in enabled.iter().enumerate() {
            let wanted = match (&tail, pos) {
                (_, 0) if first.is_some() => first,
                (Some(t), p) if p + 4 >= len => t.as_bytes().get(p + 4 - len).copied(),
                _ => None,
            };
            let c = match wanted {
                Some(c) if set.contains(&c) => c,
                _ => match random_enabled(set, rng) {
                    Some(c) => c,
                    None => return out,
                },
            };
            s.push(c);
        }
        let Ok(text) = String::from_utf8(s) else {
            continue;
        };
        if tried.contains(&text) || out.contains(&text) {
            continue;
        }
        match Serial::parse(&text) {
            Ok(serial) if rules.allows(serial) => out.push(text),
            _ => continue,
        }
    }
    out
}

/// Every lucky number a bot would try, given the enabled first characters: the favourite
/// endings behind each, most wanted first.
pub fn bot_targets(firsts: &[u8], middle: &[Vec<u8>], rules: &CompositionRules) -> Vec<String> {
    let mut tails: Vec<&str> = TAILS.to_vec();
    tails.sort_by_key(|t| std::cmp::Reverse(lucky_score(t)));
    let mut out = Vec::new();
    for tail in tails.into_iter().filter(|t| lucky_score(t) >= 2) {
        for &f in firsts {
            let mut s = vec![f];
            for set in middle {
                match set.first() {
                    Some(&c) => s.push(c),
                    None => return out,
                }
            }
            s.extend_from_slice(tail.as_bytes());
            if let Ok(text) = String::from_utf8(s) {
                if Serial::parse(&text).is_ok_and(|serial| rules.allows(serial))
                    && !out.contains(&text)
                {
                    out.push(text);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use platepool_engine::rules::DenyRule;
    use platepool_engine::{Pattern, PlateClass};
    use rand::SeedableRng;

    fn small_rules(deny: Vec<DenyRule>) -> CompositionRules {
        CompositionRules::new(PlateClass::small().default_custom_patterns, deny)
    }

    #[test]
    fn lucky_scores() {
        assert_eq!(lucky_score("A8888"), 4);
        assert_eq!(lucky_score("88888"), 4);
        assert_eq!(lucky_score("A1666"), 3);
        assert_eq!(lucky_score("A1688"), 2);
        assert_eq!(lucky_score("A0518"), 2);
        assert_eq!(lucky_score("A6089"), 1);
        assert_eq!(lucky_score("A1234"), 0);
        assert_eq!(lucky_score("AA111"), 3);
        assert!(is_lucky("A1688") && is_lucky("B6660") && !is_lucky("A6089"));
        assert!(preference("A1688") > preference("A4888") - 20);
        assert!(preference("A1234") < preference("A1235"));
        let batch: Vec<String> = ["A1234", "A1688", "A0001", "A8888"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(best(&batch), Some(3));
        assert_eq!(best(&[]), None);
    }

    #[test]
    fn wishes_follow_the_keyboard_and_the_office_rules() {
        let mut rng = StdRng::seed_from_u64(3);
        let digits: Vec<u8> = b"0123456789".to_vec();
        let enabled = vec![
            b"AB".to_vec(),
            digits.clone(),
            digits.clone(),
            digits.clone(),
            digits,
        ];
        let rules = small_rules(vec![DenyRule::ThreeIdenticalDigits]);
        let mut tried = HashSet::new();
        tried.insert("A8888".to_string());
        for _ in 0..50 {
            let w = wishes(&enabled, Some(b'B'), 5, 0.8, &tried, &rules, &mut rng);
            assert_eq!(w.len(), 5);
            for s in &w {
                assert!(s.starts_with('B'), "{s}");
                assert!(
                    rules.allows(Serial::parse(s).expect("serial")),
                    "{s} denied"
                );
                assert!(!tried.contains(s));
            }
            let unique: HashSet<&String> = w.iter().collect();
            assert_eq!(unique.len(), w.len());
        }
        // A keyboard with an empty position: nothing can be typed.
        let dead = vec![
            b"A".to_vec(),
            Vec::new(),
            b"1".to_vec(),
            b"1".to_vec(),
            b"1".to_vec(),
        ];
        assert!(wishes(&dead, None, 5, 0.5, &HashSet::new(), &rules, &mut rng).is_empty());
        // A keyboard that allows one number only: one wish, not a loop.
        let one = vec![
            b"A".to_vec(),
            b"1".to_vec(),
            b"2".to_vec(),
            b"3".to_vec(),
            b"5".to_vec(),
        ];
        let w = wishes(&one, None, 5, 0.5, &HashSet::new(), &rules, &mut rng);
        assert_eq!(w, vec!["A1235".to_string()]);
    }

    #[test]
    fn mostly_lucky_when_asked() {
        let mut rng = StdRng::seed_from_u64(9);
        let digits: Vec<u8> = b"0123456789".to_vec();
        let enabled = vec![
            b"A".to_vec(),
            digits.clone(),
            digits.clone(),
            digits.clone(),
            digits,
        ];
        let rules = small_rules(Vec::new());
        let w = wishes(&enabled, None, 200, 1.0, &HashSet::new(), &rules, &mut rng);
        let lucky = w.iter().filter(|s| is_lucky(s)).count();
        assert!(lucky * 10 >= w.len() * 9, "{lucky} of {}", w.len());
        let plain = wishes(&enabled, None, 200, 0.0, &HashSet::new(), &rules, &mut rng);
        let lucky = plain.iter().filter(|s| is_lucky(s)).count();
        assert!(lucky * 4 < plain.len(), "{lucky} of {}", plain.len());
        let pattern = Pattern::parse("A####").expect("pattern");
        assert!(w
            .iter()
            .all(|s| pattern.matches(Serial::parse(s).expect("serial"))));
    }

    #[test]
    fn bot_targets_are_lucky_allowed_and_best_first() {
        let rules = small_rules(Vec::new());
        let t = bot_targets(b"AB", &[], &rules);
        assert_eq!(&t[..4], &["A8888", "B8888", "A6666", "B6666"]);
        assert!(t.iter().all(|s| is_lucky(s)));
        let strict = small_rules(vec![DenyRule::ThreeIdenticalDigits]);
        let t = bot_targets(b"A", &[], &strict);
        assert!(!t.is_empty() && t.iter().all(|s| !s.contains("888") && !s.contains("666")));
    }
}
