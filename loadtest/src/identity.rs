//! Virtual buyers' identities: user id, phone, VIN, voucher and client address, unique per run
//! (the run tag) so a rehearsal can be repeated against the same gateway.

use platepool_engine::vin::Vin;

use crate::scenario::Kind;

/// VIN characters (no I, O, Q), used as base-33 digits.
const VIN_DIGITS: &[u8; 33] = b"0123456789ABCDEFGHJKLMNPRSTUVWXYZ";

/// A run tag: five decimal digits, in every identity of the run.
pub fn run_tag(seed: u64, now_ms: u64) -> u32 {
    let mixed = (seed ^ now_ms.rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((mixed >> 33) % 100_000) as u32
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub phone: String,
    pub vin: String,
    pub voucher: String,
    /// The address sent as `X-Forwarded-For`.
    pub ip: String,
}

fn base33(mut n: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = VIN_DIGITS[(n % 33) as usize];
        n /= 33;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The VIN of buyer `index` in run `tag`: `LPT` + tag (5) + check digit + index (8), valid.
pub fn vin(tag: u32, index: u32) -> String {
    let first17 = format!("LPT{}0{}", base33(tag as u64, 5), base33(index as u64, 8));
    Vin::with_check_digit(&first17)
        .map(Vin::into_string)
        .unwrap_or(first17)
}

pub fn identity(tag: u32, index: u32, kind: Kind, bot_ips: u32) -> Identity {
    let ip = match kind {
        Kind::Person => format!(
            "10.{}.{}.{}",
            (index >> 16) & 255,
            (index >> 8) & 255,
            index & 255
        ),
        Kind::Bot => format!("198.51.100.{}", index % bot_ips.clamp(1, 250) + 1),
    };
    Identity {
        user: format!("lt{tag:05}-{index}"),
        phone: format!("19{tag:05}{index:07}"),
        vin: vin(tag, index),
        voucher: format!("LT{tag:05}{index:08}"),
        ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn identities_are_valid_and_unique() {
        let mut vins = HashSet::new();
        let mut phones = HashSet::new();
        for i in (0..200_000).step_by(997) {
            let id = identity(4_321, i, Kind::Person, 8);
            assert!(Vin::parse(&id.vin).is_ok(), "{}", id.vin);
            assert!(platepool_gateway::auth::validate_user(&id.user).is_ok());
            assert!(platepool_gateway::auth::validate_phone(&id.phone).is_ok());
            assert!(vins.insert(id.vin));
            assert!(phones.insert(id.phone));
            assert!(id.ip.parse::<std::net::IpAddr>().is_ok());
        }
        assert_ne!(vin(1, 5), vin(2, 5));
        let bot = identity(1, 17, Kind::Bot, 4);
        assert_eq!(bot.ip, "198.51.100.2");
        assert!(run_tag(1, 2) < 100_000);
    }
}
