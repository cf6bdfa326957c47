//! The client's address behind proxies: trusted proxies are CIDR ranges (`10.0.0.0/8`,
//! `2001:db8::/32`, or a single address), and `X-Forwarded-For` is walked from the right.
//!
//! Each proxy appends the address it received the request from. Reading from the right, the
//! peer and every hop that is a trusted proxy are skipped; the first address that is not a
//! trusted proxy is the client. A CDN in front of a load balancer in front of platepool, both
//! trusted, so yields the citizen's address, while an address a client wrote into the header
//! itself (left of the first untrusted hop) is never believed. A hop that is not an address
//! stops the walk at the last trusted hop before it.

use std::net::{IpAddr, SocketAddr};

use actix_web::HttpRequest;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// Reads one range: CIDR notation, or a single address (a /32 or /128).
pub fn parse_range(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))
}

/// Ranges from a comma-separated string.
pub fn parse_ranges(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_range)
        .collect()
}

/// `trusted_proxies` as a list of strings or one comma-separated string.
pub fn deserialize_ranges<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ranges {
        One(String),
        Many(Vec<String>),
    }
    let ranges = match Ranges::deserialize(d)? {
        Ranges::One(s) => parse_ranges(&s),
        Ranges::Many(v) => v.iter().map(|s| parse_range(s)).collect(),
    };
    ranges.map_err(serde::de::Error::custom)
}

/// One `X-Forwarded-For` hop: an address, optionally with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The client's address given the peer and the `X-Forwarded-For` values in the order received.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|v| v.split(',')).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

/// The client's address of a request (`None` only without a peer address, as in some tests).
pub fn client_ip(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let headers = req
        .headers()
        .get_all("X-Forwarded-For")
        .filter_map(|v| v.to_str().ok());
    Some(client_address(peer, headers, trusted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ranges_parse_from_cidr_and_single_addresses() {
        let r = parse_ranges("10.0.0.0/8, 192.168.1.7,2001:db8::/32,::1").expect("ranges");
        assert_eq!(r.len(), 4);
        assert!(r[0].contains(&ip("10.200.3.4")));
        assert!(r[1].contains(&ip("192.168.1.7")) && !r[1].contains(&ip("192.168.1.8")));
        assert!(r[2].contains(&ip("2001:db8:1::5")));
        assert!(parse_ranges("10.0.0.0/33").is_err());
        assert!(parse_ranges("example.com").is_err());
    }

    #[test]
    fn forwarded_for_is_walked_from_the_right_through_trusted_hops() {
        let trusted = parse_ranges("10.0.0.0/8,172.16.0.0/12").expect("ranges");
        let walk =
            |peer: &str, xff: &[&str]| client_address(ip(peer), xff.iter().copied(), &trusted);
        // CDN (172.16.5.5) → load balancer (10.1.1.1) → platepool: the citizen's address.
        assert_eq!(
            walk("10.1.1.1", &["198.51.100.9, 203.0.113.7, 172.16.5.5"]),
            ip("203.0.113.7"),
            "the spoofed left-most entry is not believed"
        );
        // The same over two header lines.
        assert_eq!(
            walk(
                "10.1.1.1",
                &["198.51.100.9", "203.0.113.7:5555", "172.16.5.5"]
            ),
            ip("203.0.113.7")
        );
        // An untrusted peer's header is ignored.
        assert_eq!(walk("203.0.113.1", &["198.51.100.9"]), ip("203.0.113.1"));
        // Only trusted hops: the left-most of them.
        assert_eq!(walk("10.1.1.1", &["10.2.2.2, 10.3.3.3"]), ip("10.2.2.2"));
        // No header: the peer.
        assert_eq!(walk("10.1.1.1", &[]), ip("10.1.1.1"));
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(walk("10.1.1.1", &["junk, 10.3.3.3"]), ip("10.3.3.3"));
        assert_eq!(walk("10.1.1.1", &["[2001:db8::1]:443"]), ip("2001:db8::1"));
    }
}
