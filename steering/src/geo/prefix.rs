//! The operator prefix map: longest-prefix match of a client address over
//! CIDR entries, IPv4 and IPv6. An IPv4-mapped IPv6 network or address
//! (`::ffff:a.b.c.d`) is treated as the IPv4 one.
//!
//! One hash map per prefix length present, probed longest first: at most
//! 33 (IPv4) or 129 (IPv6) probes, usually a handful.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

use super::config::PrefixEntry;

/// The IPv4 network an IPv4-mapped IPv6 network stands for; any other
/// network unchanged.
pub(crate) fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(n) = net {
        if n.prefix_len() >= 96 {
            if let Some(v4) = n.network().to_ipv4_mapped() {
                if let Ok(v4net) = Ipv4Net::new(v4, n.prefix_len() - 96) {
                    return IpNet::V4(v4net);
                }
            }
        }
    }
    net
}

/// Address bits as an integer key.
trait Bits: Copy + Eq + Hash {
    /// Keep the first `len` bits.
    fn masked(self, len: u8) -> Self;
}

impl Bits for u32 {
    fn masked(self, len: u8) -> Self {
        self & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
    }
}

impl Bits for u128 {
    fn masked(self, len: u8) -> Self {
        self & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
    }
}

/// Networks of one family: `(prefix length, network bits → entry index)`,
/// longest first.
struct Table<K> {
    by_len: Vec<(u8, HashMap<K, usize>)>,
}

impl<K: Bits> Table<K> {
    fn new() -> Self {
        Self { by_len: Vec::new() }
    }

    fn insert(&mut self, bits: K, len: u8, index: usize) {
        let pos = match self.by_len.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(pos) => pos,
            Err(pos) => {
                self.by_len.insert(pos, (len, HashMap::new()));
                pos
            }
        };
        self.by_len[pos].1.insert(bits.masked(len), index);
    }

    fn longest(&self, bits: K) -> Option<usize> {
        self.by_len
            .iter()
            .find_map(|(len, map)| map.get(&bits.masked(*len)).copied())
    }
}

/// An immutable prefix map, built once per load.
pub(crate) struct PrefixMap {
    entries: Vec<PrefixEntry>,
    v4: Table<u32>,
    v6: Table<u128>,
}

impl PrefixMap {
    /// Build from entries already validated (no duplicates, no host bits).
    /// Should a CIDR still appear twice, the later entry wins.
    pub fn new(entries: Vec<PrefixEntry>) -> Self {
        let mut v4 = Table::new();
        let mut v6 = Table::new();
        for (i, e) in entries.iter().enumerate() {
            match canonical_net(e.cidr) {
                IpNet::V4(n) => v4.insert(u32::from(n.network()), n.prefix_len(), i),
                IpNet::V6(n) => v6.insert(u128::from(n.network()), n.prefix_len(), i),
            }
        }
        Self { entries, v4, v6 }
    }

    /// The most specific entry containing `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&PrefixEntry> {
        let index = match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.longest(u32::from(a)),
            IpAddr::V6(a) => self.v6.longest(u128::from(a)),
        }?;
        self.entries.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cidr: &str, site: &str) -> PrefixEntry {
        PrefixEntry {
            cidr: cidr.parse().unwrap(),
            site: Some(site.into()),
            asn: None,
            isp: None,
            country: None,
            lat: None,
            lon: None,
        }
    }

    fn site<'a>(map: &'a PrefixMap, ip: &str) -> Option<&'a str> {
        map.lookup(ip.parse().unwrap()).and_then(|e| e.site.as_deref())
    }

    #[test]
    fn longest_prefix_wins_in_any_insertion_order() {
        let nets = [
            entry("127.0.0.0/8", "a8"),
            entry("127.1.0.0/16", "b16"),
            entry("127.1.2.0/24", "c24"),
            entry("127.1.2.3/32", "d32"),
            entry("2001:db8::/32", "v6-32"),
            entry("2001:db8:1::/48", "v6-48"),
            entry("2001:db8:1:2::/64", "v6-64"),
            entry("2001:db8:1:2::5/128", "v6-128"),
        ];
        // Forward and reversed: the answer must not depend on the order.
        for entries in [nets.to_vec(), nets.iter().rev().cloned().collect()] {
            let map = PrefixMap::new(entries);
            assert_eq!(site(&map, "127.9.9.9"), Some("a8"));
            assert_eq!(site(&map, "127.1.9.9"), Some("b16"));
            assert_eq!(site(&map, "127.1.2.4"), Some("c24"));
            assert_eq!(site(&map, "127.1.2.3"), Some("d32"));
            assert_eq!(site(&map, "128.0.0.1"), None);
            assert_eq!(site(&map, "126.255.255.255"), None);
            assert_eq!(site(&map, "2001:db8:ffff::1"), Some("v6-32"));
            assert_eq!(site(&map, "2001:db8:1:ffff::1"), Some("v6-48"));
            assert_eq!(site(&map, "2001:db8:1:2::6"), Some("v6-64"));
            assert_eq!(site(&map, "2001:db8:1:2::5"), Some("v6-128"));
            assert_eq!(site(&map, "2001:db9::1"), None);
            assert_eq!(site(&map, "::1"), None);
        }
    }

    #[test]
    fn ipv4_mapped_addresses_and_networks_are_ipv4() {
        let map = PrefixMap::new(vec![
            entry("198.51.100.0/24", "plain"),
            entry("::ffff:192.0.2.0/120", "mapped"),
        ]);
        assert_eq!(site(&map, "::ffff:198.51.100.7"), Some("plain"));
        assert_eq!(site(&map, "192.0.2.9"), Some("mapped"));
        assert_eq!(site(&map, "::ffff:192.0.2.9"), Some("mapped"));
        // An IPv4-compatible (not mapped) address is IPv6.
        assert_eq!(site(&map, "::198.51.100.7"), None);
    }

    #[test]
    fn default_routes_match_everything_of_their_family() {
        let map = PrefixMap::new(vec![entry("0.0.0.0/0", "any4"), entry("::/0", "any6")]);
        assert_eq!(site(&map, "1.2.3.4"), Some("any4"));
        assert_eq!(site(&map, "255.255.255.255"), Some("any4"));
        assert_eq!(site(&map, "2001:db8::1"), Some("any6"));
        assert_eq!(site(&map, "::ffff:1.2.3.4"), Some("any4"));
    }

    #[test]
    fn masks() {
        assert_eq!(0xffff_ffffu32.masked(0), 0);
        assert_eq!(0xffff_ffffu32.masked(8), 0xff00_0000);
        assert_eq!(0xffff_ffffu32.masked(32), 0xffff_ffff);
        assert_eq!(u128::MAX.masked(0), 0);
        assert_eq!(u128::MAX.masked(128), u128::MAX);
        assert_eq!(u128::MAX.masked(1), 1u128 << 127);
        assert!(PrefixMap::new(Vec::new()).lookup("1.2.3.4".parse().unwrap()).is_none());
    }

    #[test]
    fn canonical_networks() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(canonical_net(n("::ffff:10.0.0.0/104")), n("10.0.0.0/8"));
        assert_eq!(canonical_net(n("::ffff:0.0.0.0/96")), n("0.0.0.0/0"));
        assert_eq!(canonical_net(n("::/64")), n("::/64"));
        assert_eq!(canonical_net(n("10.0.0.0/8")), n("10.0.0.0/8"));
    }
}
