//! The edge ranker: a pure function of (edge snapshot, client location,
//! title, policy). No IO, no clock; deterministic for the same inputs.
//!
//! 1. Candidates: edges `up`; only if none is up, `overloaded` ones.
//!    Never `down` or `draining`.
//! 2. Sites in tiers: the client's ISP first (the edge's ASNs contain the
//!    client's ASN, the operator prefix map assigned the client to the
//!    site, or the client IP is in a prefix the edge announces), then by
//!    great-circle distance, then the configured fallback sites in their
//!    order.
//! 3. Inside a site: edges over `bounded_load` × the site's mean load
//!    (and over `bounded_load_floor`) go last; then edges whose digest
//!    says they hold the title; then weighted rendezvous hashing of the
//!    title over the site's edges (weight = capacity), so each title
//!    concentrates on few edges.
//! 4. The top `k` on distinct hosts, each with its reason.

use std::net::IpAddr;

use outpost_proto::EdgeState;

/// One edge as the ranker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub id: String,
    pub site: String,
    pub state: EdgeState,
    pub asns: Vec<u32>,
    /// Client prefixes the edge announces, parsed.
    pub prefixes: Vec<(IpAddr, u8)>,
    pub lat: f64,
    pub lon: f64,
    /// Base URL players use (`https://host:port`).
    pub url: String,
    /// Rendezvous weight (its capacity in Gbit/s).
    pub weight: f64,
    /// 0..1: the highest of CPU, egress / capacity, connections / max.
    pub load: f64,
    /// Titles its digest says it holds.
    pub titles: Vec<String>,
}

/// Where the client is, as far as steering knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Client {
    pub ip: Option<IpAddr>,
    pub asn: Option<u32>,
    /// Site the operator prefix map assigns the client to.
    pub site: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

/// Ranking knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// How many edges to return.
    pub k: usize,
    /// Skip (rank last in its site) an edge above this × its site's mean load.
    pub bounded_load: f64,
    /// ... but only when its load is above this: near idle, differences
    /// between edges are noise, not hot spots.
    pub bounded_load_floor: f64,
    /// Sites ranked last, in this order (peering / origin-adjacent tiers).
    pub fallback_sites: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            k: 4,
            bounded_load: 1.25,
            bounded_load_floor: 0.1,
            fallback_sites: Vec::new(),
        }
    }
}

/// Why an edge is in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Embedded in the client's ISP (or assigned by the prefix map).
    Isp,
    /// Nearest by great-circle distance.
    Geo,
    /// A configured fallback site.
    Fallback,
    /// Only overloaded edges were left.
    Overloaded,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Isp => "isp",
            Reason::Geo => "geo",
            Reason::Fallback => "fallback",
            Reason::Overloaded => "overloaded",
        }
    }
}

/// One ranked edge (an index into the input slice).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    pub index: usize,
    pub reason: Reason,
    /// Kilometres from the client, when both positions are known.
    pub distance_km: Option<f64>,
    /// Above `bounded_load` × its site's mean load (ranked last in its site).
    pub over_bounded_load: bool,
}

/// Great-circle distance in km (haversine).
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().min(1.0).asin()
}

/// Is `ip` inside `net/len`? IPv4-mapped IPv6 addresses count as IPv4.
pub fn in_prefix(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if len <= 128 => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Parse `addr/len`.
pub fn parse_prefix(s: &str) -> Option<(IpAddr, u8)> {
    let (a, l) = s.split_once('/')?;
    let ip: IpAddr = a.trim().parse().ok()?;
    let len: u8 = l.trim().parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// FNV-1a then a 64-bit finalizer (splitmix): stable across runs and
/// platforms, which rendezvous hashing needs (every steering replica
/// must agree).
fn hash(title: &str, edge: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in title.bytes().chain([0xff]).chain(edge.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Weighted rendezvous score (higher wins): `-w / ln(u)`, u in (0, 1).
fn rendezvous(title: &str, e: &Edge) -> f64 {
    let u = ((hash(title, &e.id) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let w = if e.weight.is_finite() && e.weight > 0.0 {
        e.weight
    } else {
        1.0
    };
    -w / u.ln()
}

fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// Rank `edges` for `client` and `title`.
pub fn rank(edges: &[Edge], client: &Client, title: &str, policy: &Policy) -> Vec<Ranked> {
    let usable = |s: EdgeState| edges.iter().any(|e| e.state == s);
    let (pool_state, only_overloaded) = if usable(EdgeState::Up) {
        (EdgeState::Up, false)
    } else {
        (EdgeState::Overloaded, true)
    };
    let candidates: Vec<usize> = (0..edges.len()).filter(|&i| edges[i].state == pool_state).collect();

    // Sites and their tier.
    let mut sites: Vec<&str> = candidates.iter().map(|&i| edges[i].site.as_str()).collect();
    sites.sort_unstable();
    sites.dedup();
    let in_isp = |site: &str| {
        client.site.as_deref() == Some(site)
            || candidates
                .iter()
                .map(|&i| &edges[i])
                .filter(|e| e.site == site)
                .any(|e| {
                    client.asn.is_some_and(|a| e.asns.contains(&a))
                        || client
                            .ip
                            .is_some_and(|ip| e.prefixes.iter().any(|&(n, l)| in_prefix(ip, n, l)))
                })
    };
    let site_distance = |site: &str| -> Option<f64> {
        let (lat, lon) = (client.lat?, client.lon?);
        candidates
            .iter()
            .map(|&i| &edges[i])
            .filter(|e| e.site == site)
            .map(|e| distance_km(lat, lon, e.lat, e.lon))
            .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.min(d))))
    };
    let mut tiered: Vec<(u8, usize, f64, &str, Reason)> = sites
        .iter()
        .map(|&s| {
            let d = site_distance(s);
            if in_isp(s) {
                (0, 0, d.unwrap_or(0.0), s, Reason::Isp)
            } else if let Some(pos) = policy.fallback_sites.iter().position(|f| f == s) {
                (2, pos, 0.0, s, Reason::Fallback)
            } else {
                // Unknown distance sorts after every known one.
                (1, 0, d.unwrap_or(f64::MAX), s, Reason::Geo)
            }
        })
        .collect();
    tiered.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(a.2.total_cmp(&b.2)).then(a.3.cmp(b.3)));

    let mut out: Vec<Ranked> = Vec::new();
    let mut hosts: Vec<&str> = Vec::new();
    for (_, _, _, site, reason) in tiered {
        let mut members: Vec<usize> = candidates.iter().copied().filter(|&i| edges[i].site == site).collect();
        let mean = members.iter().map(|&i| edges[i].load.max(0.0)).sum::<f64>() / members.len() as f64;
        let over = |i: usize| {
            let load = edges[i].load;
            mean > 0.0 && load > policy.bounded_load_floor && load > policy.bounded_load * mean + 1e-9
        };
        let holds = |i: usize| edges[i].titles.iter().any(|t| t == title);
        let mut keyed: Vec<(bool, bool, f64, usize)> = members
            .drain(..)
            .map(|i| (over(i), !holds(i), -rendezvous(title, &edges[i]), i))
            .collect();
        keyed.sort_by(|a, b| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then(a.2.total_cmp(&b.2))
                .then(a.3.cmp(&b.3))
        });
        for (over_bounded_load, _, _, i) in keyed {
            let e = &edges[i];
            let h = host(&e.url);
            if hosts.contains(&h) {
                continue;
            }
            hosts.push(h);
            let distance_km = match (client.lat, client.lon) {
                (Some(lat), Some(lon)) => Some(distance_km(lat, lon, e.lat, e.lon)),
                _ => None,
            };
            out.push(Ranked {
                index: i,
                reason: if only_overloaded { Reason::Overloaded } else { reason },
                distance_km,
                over_bounded_load,
            });
            if out.len() == policy.k {
                return out;
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An up edge with no ISP data, load 0.1, weight 10 (other modules' tests use it too).
    pub(crate) fn edge(id: &str, site: &str, lat: f64, lon: f64) -> Edge {
        Edge {
            id: id.into(),
            site: site.into(),
            state: EdgeState::Up,
            asns: vec![],
            prefixes: vec![],
            lat,
            lon,
            url: format!("https://{id}:8443"),
            weight: 10.0,
            load: 0.1,
            titles: vec![],
        }
    }

    pub(crate) const AMS: (f64, f64) = (52.37, 4.90);
    pub(crate) const FRA: (f64, f64) = (50.11, 8.68);
    pub(crate) const NYC: (f64, f64) = (40.71, -74.01);

    fn world() -> Vec<Edge> {
        let mut ams1 = edge("ams1", "ams", AMS.0, AMS.1);
        ams1.asns = vec![64501];
        let mut ams2 = edge("ams2", "ams", AMS.0, AMS.1);
        ams2.asns = vec![64501];
        let mut fra1 = edge("fra1", "fra", FRA.0, FRA.1);
        fra1.asns = vec![64502];
        fra1.prefixes = vec![parse_prefix("127.2.0.0/16").unwrap()];
        let nyc1 = edge("nyc1", "nyc", NYC.0, NYC.1);
        vec![ams1, ams2, fra1, nyc1]
    }

    fn ids(edges: &[Edge], r: &[Ranked]) -> Vec<String> {
        r.iter().map(|x| edges[x.index].id.clone()).collect()
    }

    fn near(lat: f64, lon: f64) -> Client {
        Client {
            lat: Some(lat),
            lon: Some(lon),
            ..Default::default()
        }
    }

    #[test]
    fn isp_first_then_distance_then_fallback() {
        let w = world();
        let p = Policy {
            fallback_sites: vec!["ams".into()],
            ..Default::default()
        };
        // An AS64502 subscriber in New York: its ISP's site (fra) first, then
        // nyc by distance, then the fallback site ams last.
        let c = Client {
            asn: Some(64502),
            ..near(NYC.0, NYC.1)
        };
        let r = rank(&w, &c, "t1", &p);
        assert_eq!(&ids(&w, &r)[..2], ["fra1", "nyc1"]);
        assert_eq!(r[0].reason, Reason::Isp);
        assert_eq!(r[1].reason, Reason::Geo);
        assert!(r[2..].iter().all(|x| x.reason == Reason::Fallback));
        // Without the ISP: purely by distance from Frankfurt.
        let r = rank(&w, &near(FRA.0, FRA.1), "t1", &Policy::default());
        assert_eq!(ids(&w, &r)[0], "fra1");
        assert_eq!(w[r.last().unwrap().index].site, "nyc");
    }

    #[test]
    fn prefix_and_prefix_map_site_count_as_isp() {
        let w = world();
        let c = Client {
            ip: Some("127.2.9.9".parse().unwrap()),
            ..near(NYC.0, NYC.1)
        };
        assert_eq!(ids(&w, &rank(&w, &c, "t", &Policy::default()))[0], "fra1");
        let c = Client {
            site: Some("nyc".into()),
            ..near(AMS.0, AMS.1)
        };
        let r = rank(&w, &c, "t", &Policy::default());
        assert_eq!((ids(&w, &r)[0].as_str(), r[0].reason), ("nyc1", Reason::Isp));
        let mapped = Client {
            ip: Some("::ffff:127.2.0.1".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(ids(&w, &rank(&w, &mapped, "t", &Policy::default()))[0], "fra1");
    }

    #[test]
    fn never_down_or_draining_and_overloaded_only_as_last_resort() {
        let mut w = world();
        w[0].state = EdgeState::Down;
        w[1].state = EdgeState::Draining;
        w[2].state = EdgeState::Overloaded;
        let c = Client {
            asn: Some(64501),
            ..near(AMS.0, AMS.1)
        };
        assert_eq!(ids(&w, &rank(&w, &c, "t", &Policy::default())), ["nyc1"]);
        w[3].state = EdgeState::Down;
        let r = rank(&w, &c, "t", &Policy::default());
        assert_eq!(ids(&w, &r), ["fra1"]);
        assert_eq!(r[0].reason, Reason::Overloaded);
        w[2].state = EdgeState::Draining;
        assert!(rank(&w, &c, "t", &Policy::default()).is_empty());
    }

    #[test]
    fn titles_concentrate_and_spread_by_rendezvous() {
        let w: Vec<Edge> = (0..8).map(|i| edge(&format!("e{i}"), "ams", AMS.0, AMS.1)).collect();
        let c = near(AMS.0, AMS.1);
        let p = Policy::default();
        let mut firsts = std::collections::HashMap::new();
        for t in 0..4000 {
            let title = format!("t{t:04}");
            let a = rank(&w, &c, &title, &p);
            assert_eq!(a, rank(&w, &c, &title, &p), "deterministic");
            *firsts.entry(a[0].index).or_insert(0) += 1;
        }
        // Every edge is first for some titles, none for far more than its share.
        assert_eq!(firsts.len(), 8);
        assert!(firsts.values().all(|&n| (350..650).contains(&n)), "{firsts:?}");
    }

    #[test]
    fn removing_an_edge_moves_only_its_titles() {
        let w: Vec<Edge> = (0..5).map(|i| edge(&format!("e{i}"), "ams", AMS.0, AMS.1)).collect();
        let c = near(AMS.0, AMS.1);
        let p = Policy::default();
        let mut less = w.clone();
        less[2].state = EdgeState::Down;
        for t in 0..1000 {
            let title = format!("t{t}");
            let before = w[rank(&w, &c, &title, &p)[0].index].id.clone();
            let after = less[rank(&less, &c, &title, &p)[0].index].id.clone();
            if before != "e2" {
                assert_eq!(before, after, "{title} moved although its edge stayed");
            }
        }
    }

    #[test]
    fn weights_skew_the_share() {
        let mut w: Vec<Edge> = (0..2).map(|i| edge(&format!("e{i}"), "ams", AMS.0, AMS.1)).collect();
        w[0].weight = 30.0;
        w[1].weight = 10.0;
        let c = near(AMS.0, AMS.1);
        let first0 = (0..4000)
            .filter(|t| rank(&w, &c, &format!("t{t}"), &Policy::default())[0].index == 0)
            .count();
        assert!((2700..3300).contains(&first0), "{first0} of 4000 (expected ~3000)");
    }

    #[test]
    fn bounded_load_skips_a_hot_edge_and_digest_is_preferred() {
        let mut w: Vec<Edge> = (0..3).map(|i| edge(&format!("e{i}"), "ams", AMS.0, AMS.1)).collect();
        let c = near(AMS.0, AMS.1);
        let p = Policy::default();
        let first = rank(&w, &c, "hot", &p)[0].index;
        // The title's edge gets hot: above 1.25x the site's mean -> it goes last.
        w[first].load = 0.6;
        let r = rank(&w, &c, "hot", &p);
        assert_ne!(r[0].index, first);
        assert_eq!(r.last().unwrap().index, first);
        assert!(r.last().unwrap().over_bounded_load);
        assert!(!r[0].over_bounded_load);
        // At the limit (not above it) it keeps the title.
        w[first].load = 0.1;
        for (i, e) in w.iter_mut().enumerate() {
            e.load = if i == first { 0.125 } else { 0.0875 };
        }
        assert_eq!(rank(&w, &c, "hot", &p)[0].index, first);
        // An edge whose digest holds the title comes before rendezvous order.
        for e in &mut w {
            e.load = 0.1;
        }
        let other = (first + 1) % 3;
        w[other].titles = vec!["hot".into()];
        assert_eq!(rank(&w, &c, "hot", &p)[0].index, other);
        // Near idle (under the floor), differences are noise: nothing is "over".
        w[other].titles.clear();
        for (i, e) in w.iter_mut().enumerate() {
            e.load = if i == first { 0.09 } else { 0.001 };
        }
        assert_eq!(rank(&w, &c, "hot", &p)[0].index, first);
        assert!(rank(&w, &c, "hot", &p).iter().all(|r| !r.over_bounded_load));
        // Zero load everywhere: nothing is "over".
        for e in &mut w {
            e.load = 0.0;
            e.titles.clear();
        }
        assert_eq!(rank(&w, &c, "hot", &p)[0].index, first);
    }

    #[test]
    fn k_distinct_hosts_and_unknown_client_position() {
        let mut w = world();
        w[1].url = w[0].url.clone(); // two edges behind one host
        let r = rank(
            &w,
            &Client::default(),
            "t",
            &Policy {
                k: 10,
                ..Default::default()
            },
        );
        assert_eq!(r.len(), 3, "one answer per host");
        assert!(r.iter().all(|x| x.distance_km.is_none()));
        let r = rank(
            &w,
            &Client::default(),
            "t",
            &Policy {
                k: 2,
                ..Default::default()
            },
        );
        assert_eq!(r.len(), 2);
        assert!(rank(&[], &Client::default(), "t", &Policy::default()).is_empty());
    }

    #[test]
    fn prefixes_and_distances() {
        let (n, l) = parse_prefix("10.0.0.0/8").unwrap();
        assert!(in_prefix("10.9.9.9".parse().unwrap(), n, l));
        assert!(!in_prefix("11.0.0.1".parse().unwrap(), n, l));
        let (n6, l6) = parse_prefix("2001:db8::/32").unwrap();
        assert!(in_prefix("2001:db8::1".parse().unwrap(), n6, l6));
        assert!(!in_prefix("10.0.0.1".parse().unwrap(), n6, l6));
        assert!(in_prefix("1.2.3.4".parse().unwrap(), "0.0.0.0".parse().unwrap(), 0));
        assert_eq!(parse_prefix("10.0.0.0/33"), None);
        assert_eq!(parse_prefix("nonsense"), None);
        let d = distance_km(AMS.0, AMS.1, FRA.0, FRA.1);
        assert!((360.0..370.0).contains(&d), "{d}");
        assert_eq!(distance_km(1.0, 2.0, 1.0, 2.0), 0.0);
    }
}
