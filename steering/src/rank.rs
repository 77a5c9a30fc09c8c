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
//!
//! [`Prepared`] indexes a snapshot once (candidates grouped by site, mean
//! loads, positions, ASN and prefix tables), so a decision costs
//! O(sites + members of the sites it visits); [`rank`] builds that index
//! per call (O(n log n)). Both give the same answer.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::IpAddr;
use std::ops::Range;

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
    haversine(&Position::new(lat1, lon1), &Position::new(lat2, lon2))
}

/// [`distance_km`] with each latitude's radians and cosine computed once.
fn haversine(a: &Position, b: &Position) -> f64 {
    let dp = b.lat_rad - a.lat_rad;
    let dl = (b.lon - a.lon).to_radians();
    let h = (dp / 2.0).sin().powi(2) + a.cos_lat * b.cos_lat * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
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

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`, continuing from `h`.
fn fnv(mut h: u64, bytes: impl IntoIterator<Item = u8>) -> u64 {
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The 64-bit finalizer (splitmix).
fn finish(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The rendezvous hash of (title, edge) is FNV-1a over `title`, 0xff,
/// `edge`, then splitmix: stable across runs and platforms, which
/// rendezvous hashing needs (every steering replica must agree). This is
/// the FNV state after `title` and 0xff, computed once per decision.
fn title_seed(title: &str) -> u64 {
    fnv(FNV_OFFSET, title.bytes().chain([0xff]))
}

/// Weighted rendezvous score (higher wins): `-w / ln(u)`, u in (0, 1).
fn rendezvous(seed: u64, e: &Edge) -> f64 {
    let u = ((finish(fnv(seed, e.id.bytes())) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
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
///
/// Indexes `edges` first (O(n log n)); steering ranks a [`Prepared`]
/// snapshot instead, which keeps the index between decisions. Both give
/// the same answer.
pub fn rank(edges: &[Edge], client: &Client, title: &str, policy: &Policy) -> Vec<Ranked> {
    rank_indexed(edges, &Index::new(edges), client, title, policy)
}

/// An edge snapshot prepared for ranking: the edges plus what every
/// decision would otherwise recompute from them (the candidates grouped by
/// site, each site's mean load and distinct positions, ASN and prefix
/// lookup tables). Build it once per snapshot; [`Prepared::rank`] then
/// costs O(sites + the members of the sites it visits), not
/// O(sites × edges). It derefs to the edges (indices in [`Ranked`] point
/// into them).
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    edges: Vec<Edge>,
    index: Index,
}

impl Prepared {
    pub fn new(edges: Vec<Edge>) -> Self {
        let index = Index::new(&edges);
        Self { edges, index }
    }

    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }

    /// Same answer as [`rank`] over [`Prepared::edges`].
    pub fn rank(&self, client: &Client, title: &str, policy: &Policy) -> Vec<Ranked> {
        rank_indexed(&self.edges, &self.index, client, title, policy)
    }
}

impl std::ops::Deref for Prepared {
    type Target = [Edge];

    fn deref(&self) -> &[Edge] {
        &self.edges
    }
}

/// One candidate site. Sites are sorted by name, so a site's index is
/// also its place in the final tie-break.
#[derive(Debug, Clone)]
struct Site {
    /// Its candidates: a range of `Index::members`.
    members: Range<usize>,
    /// Their distinct positions: a range of `Index::positions`.
    positions: Range<usize>,
    /// Mean of the members' loads (negative counted as 0).
    mean_load: f64,
}

/// A position with its latitude in radians and that latitude's cosine,
/// as [`haversine`] needs them.
#[derive(Debug, Clone, Copy)]
struct Position {
    lat_rad: f64,
    cos_lat: f64,
    lon: f64,
}

impl Position {
    fn new(lat: f64, lon: f64) -> Self {
        let lat_rad = lat.to_radians();
        Self {
            lat_rad,
            cos_lat: lat_rad.cos(),
            lon,
        }
    }
}

/// The candidate sites announcing networks of one family and length.
#[derive(Debug, Clone)]
struct PrefixTable {
    v4: bool,
    mask: u128,
    /// Masked network → sites (ascending, distinct).
    nets: HashMap<u128, Vec<usize>>,
}

/// What ranking needs from a snapshot, derived from the edges alone.
#[derive(Debug, Clone, Default)]
struct Index {
    /// No edge is up: the candidates are the overloaded ones.
    only_overloaded: bool,
    sites: Vec<Site>,
    /// Candidate edge indices grouped by site, ascending inside a site.
    members: Vec<usize>,
    positions: Vec<Position>,
    /// ASN → sites with a candidate listing it (ascending, distinct).
    by_asn: HashMap<u32, Vec<usize>>,
    by_prefix: Vec<PrefixTable>,
}

/// An IP as bits plus family; IPv4-mapped IPv6 addresses count as IPv4
/// (as in [`in_prefix`]).
fn ip_bits(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (true, u32::from(v4) as u128),
            None => (false, u128::from(v6)),
        },
        IpAddr::V4(v4) => (true, u32::from(v4) as u128),
    }
}

/// The mask of a prefix of `len` bits; None when `len` is too long for
/// the family (such a prefix never matches).
fn prefix_mask(v4: bool, len: u8) -> Option<u128> {
    match (v4, len) {
        (_, 0) => Some(0),
        (true, 1..=32) => Some((u32::MAX << (32 - len)) as u128),
        (false, 1..=128) => Some(u128::MAX << (128 - len)),
        _ => None,
    }
}

/// Push `x` unless it is already last (callers push in ascending order).
fn push_distinct(v: &mut Vec<usize>, x: usize) {
    if v.last() != Some(&x) {
        v.push(x);
    }
}

impl Index {
    fn new(edges: &[Edge]) -> Self {
        let only_overloaded = !edges.iter().any(|e| e.state == EdgeState::Up);
        let pool = if only_overloaded {
            EdgeState::Overloaded
        } else {
            EdgeState::Up
        };
        let mut members: Vec<usize> = (0..edges.len()).filter(|&i| edges[i].state == pool).collect();
        // Stable: ascending indices inside a site.
        members.sort_by(|&a, &b| edges[a].site.cmp(&edges[b].site));

        let mut ix = Index {
            only_overloaded,
            ..Default::default()
        };
        let mut prefixes: BTreeMap<(bool, u8), HashMap<u128, Vec<usize>>> = BTreeMap::new();
        let mut start = 0;
        while start < members.len() {
            let name = &edges[members[start]].site;
            let len = members[start..].iter().take_while(|&&i| edges[i].site == *name).count();
            let group = &members[start..start + len];
            let s = ix.sites.len();

            let mean_load = group.iter().map(|&i| edges[i].load.max(0.0)).sum::<f64>() / group.len() as f64;
            let mut spots: Vec<(u64, u64)> = group
                .iter()
                .map(|&i| (edges[i].lat.to_bits(), edges[i].lon.to_bits()))
                .collect();
            spots.sort_unstable();
            spots.dedup();
            let first_position = ix.positions.len();
            ix.positions.extend(
                spots
                    .into_iter()
                    .map(|(lat, lon)| Position::new(f64::from_bits(lat), f64::from_bits(lon))),
            );
            for &i in group {
                for &asn in &edges[i].asns {
                    push_distinct(ix.by_asn.entry(asn).or_default(), s);
                }
                for &(net, len) in &edges[i].prefixes {
                    let (v4, bits) = match net {
                        IpAddr::V4(n) => (true, u32::from(n) as u128),
                        IpAddr::V6(n) => (false, u128::from(n)),
                    };
                    if let Some(mask) = prefix_mask(v4, len) {
                        push_distinct(
                            prefixes.entry((v4, len)).or_default().entry(bits & mask).or_default(),
                            s,
                        );
                    }
                }
            }
            ix.sites.push(Site {
                members: start..start + len,
                positions: first_position..ix.positions.len(),
                mean_load,
            });
            start += len;
        }
        ix.members = members;
        ix.by_prefix = prefixes
            .into_iter()
            .filter_map(|((v4, len), nets)| {
                Some(PrefixTable {
                    v4,
                    mask: prefix_mask(v4, len)?,
                    nets,
                })
            })
            .collect();
        ix
    }

    /// The candidate site named `name`.
    fn site(&self, edges: &[Edge], name: &str) -> Option<usize> {
        self.sites
            .binary_search_by(|s| {
                let first = self.members.get(s.members.start).and_then(|&i| edges.get(i));
                first.map_or("", |e| e.site.as_str()).cmp(name)
            })
            .ok()
    }

    /// Sites with a candidate announcing a prefix that holds `ip`.
    fn prefix_sites(&self, ip: IpAddr) -> impl Iterator<Item = usize> + '_ {
        let (v4, bits) = ip_bits(ip);
        self.by_prefix
            .iter()
            .filter(move |t| t.v4 == v4)
            .filter_map(move |t| t.nets.get(&(bits & t.mask)))
            .flatten()
            .copied()
    }

    /// The distance from `here` to the site's nearest candidate.
    fn distance(&self, site: &Site, here: &Position) -> Option<f64> {
        self.positions
            .get(site.positions.clone())?
            .iter()
            .map(|p| haversine(here, p))
            .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.min(d))))
    }
}

/// A site's place in the answer: tier (ISP, geo, fallback), fallback
/// position, distance, then name (its index).
#[derive(Debug, Clone, Copy)]
struct SiteKey {
    tier: u8,
    pos: usize,
    dist: f64,
    site: usize,
}

impl Ord for SiteKey {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.tier, self.pos)
            .cmp(&(o.tier, o.pos))
            .then(self.dist.total_cmp(&o.dist))
            .then(self.site.cmp(&o.site))
    }
}

impl PartialOrd for SiteKey {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl PartialEq for SiteKey {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}

impl Eq for SiteKey {}

fn rank_indexed(edges: &[Edge], ix: &Index, client: &Client, title: &str, policy: &Policy) -> Vec<Ranked> {
    const ISP: (u8, usize) = (0, 0);
    const GEO: (u8, usize) = (1, 0);
    if ix.sites.is_empty() {
        return Vec::new();
    }

    // Sites in tiers: ISP over fallback over geo; the first listing of a
    // fallback site counts.
    let mut tier = vec![GEO; ix.sites.len()];
    for (pos, name) in policy.fallback_sites.iter().enumerate().rev() {
        if let Some(s) = ix.site(edges, name) {
            tier[s] = (2, pos);
        }
    }
    if let Some(s) = client.site.as_deref().and_then(|name| ix.site(edges, name)) {
        tier[s] = ISP;
    }
    for &s in client.asn.and_then(|a| ix.by_asn.get(&a)).into_iter().flatten() {
        tier[s] = ISP;
    }
    if let Some(ip) = client.ip {
        for s in ix.prefix_sites(ip) {
            tier[s] = ISP;
        }
    }
    let here = match (client.lat, client.lon) {
        (Some(lat), Some(lon)) => Some(Position::new(lat, lon)),
        _ => None,
    };
    let keys: Vec<Reverse<SiteKey>> = ix
        .sites
        .iter()
        .zip(tier)
        .enumerate()
        .map(|(s, (site, (tier, pos)))| {
            let d = || here.as_ref().and_then(|h| ix.distance(site, h));
            let dist = match tier {
                0 => d().unwrap_or(0.0),
                // Unknown distance sorts after every known one.
                1 => d().unwrap_or(f64::MAX),
                _ => 0.0,
            };
            Reverse(SiteKey {
                tier,
                pos,
                dist,
                site: s,
            })
        })
        .collect();
    // A heap: usually the first site or two fill the answer.
    let mut order = BinaryHeap::from(keys);

    let seed = title_seed(title);
    let mut out: Vec<Ranked> = Vec::with_capacity(policy.k.min(ix.members.len()));
    let mut hosts: Vec<&str> = Vec::with_capacity(out.capacity());
    let mut keyed: Vec<(bool, bool, f64, usize)> = Vec::new();
    while let Some(Reverse(key)) = order.pop() {
        let reason = match (ix.only_overloaded, key.tier) {
            (true, _) => Reason::Overloaded,
            (_, 0) => Reason::Isp,
            (_, 1) => Reason::Geo,
            _ => Reason::Fallback,
        };
        let Some(site) = ix.sites.get(key.site) else {
            continue;
        };
        let mean = site.mean_load;
        let over = |i: usize| {
            let load = edges[i].load;
            mean > 0.0 && load > policy.bounded_load_floor && load > policy.bounded_load * mean + 1e-9
        };
        let holds = |i: usize| edges[i].titles.iter().any(|t| t == title);
        keyed.clear();
        keyed.extend(
            ix.members[site.members.clone()]
                .iter()
                .map(|&i| (over(i), !holds(i), -rendezvous(seed, &edges[i]), i)),
        );
        keyed.sort_by(|a, b| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then(a.2.total_cmp(&b.2))
                .then(a.3.cmp(&b.3))
        });
        for &(over_bounded_load, _, _, i) in &keyed {
            let e = &edges[i];
            let h = host(&e.url);
            if hosts.contains(&h) {
                continue;
            }
            hosts.push(h);
            out.push(Ranked {
                index: i,
                reason,
                distance_km: here.as_ref().map(|h| haversine(h, &Position::new(e.lat, e.lon))),
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

    /// The ranker before the index (O(sites × edges)), kept as the
    /// reference the indexed one must agree with.
    mod reference {
        use super::super::{in_prefix, Client, Edge, EdgeState, Policy, Ranked, Reason};

        fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
            let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
            let dp = p2 - p1;
            let dl = (lon2 - lon1).to_radians();
            let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
            2.0 * 6371.0 * a.sqrt().min(1.0).asin()
        }

        /// FNV-1a then a 64-bit finalizer (splitmix): stable across runs and
        /// platforms, which rendezvous hashing needs (every steering replica
        /// must agree).
        pub(super) fn hash(title: &str, edge: &str) -> u64 {
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
        pub(crate) fn rank(edges: &[Edge], client: &Client, title: &str, policy: &Policy) -> Vec<Ranked> {
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

    /// SplitMix64, for seeded random snapshots.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
            xs[self.below(xs.len())].clone()
        }
        fn chance(&mut self, p: f64) -> bool {
            self.unit() < p
        }
    }

    const SITES: [&str; 7] = ["ams", "fra", "nyc", "lon", "sfo", "ams2", ""];
    const TITLES: [&str; 5] = ["t1", "t2", "t3", "", "t1 "];
    const ODD: [f64; 8] = [0.0, -0.0, -1.0, 1e-12, f64::NAN, f64::INFINITY, 0.1, 0.125];

    fn some_ip(rng: &mut Rng) -> IpAddr {
        match rng.below(4) {
            0 => IpAddr::from([10, rng.below(3) as u8, rng.below(3) as u8, rng.below(256) as u8]),
            1 => IpAddr::from([0x2001, 0xdb8, rng.below(3) as u16, 0, 0, 0, 0, rng.below(9) as u16]),
            2 => IpAddr::from([
                0,
                0,
                0,
                0,
                0,
                0xffff,
                0x0a00 + rng.below(3) as u16,
                rng.below(700) as u16,
            ]),
            _ => IpAddr::from([rng.below(256) as u8, 2, 3, 4]),
        }
    }

    fn random_edge(rng: &mut Rng, i: usize, places: &[(f64, f64)]) -> Edge {
        let site = rng.below(SITES.len());
        let (lat, lon) = if rng.chance(0.8) {
            places[site]
        } else if rng.chance(0.9) {
            (-90.0 + 180.0 * rng.unit(), -180.0 + 360.0 * rng.unit())
        } else {
            (rng.pick(&ODD), rng.pick(&ODD))
        };
        let prefixes = (0..rng.below(3))
            .map(|_| {
                let ip = some_ip(rng);
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let any = rng.below(max as usize + 1) as u8;
                (ip, rng.pick(&[0, 8, 16, 24, max, max + 1, any]))
            })
            .collect();
        Edge {
            id: format!("e{}", rng.below(1000) + i * 1000),
            site: SITES[site].into(),
            state: rng.pick(&[
                EdgeState::Up,
                EdgeState::Up,
                EdgeState::Overloaded,
                EdgeState::Down,
                EdgeState::Draining,
            ]),
            asns: (0..rng.below(3)).map(|_| 64500 + rng.below(6) as u32).collect(),
            prefixes,
            lat,
            lon,
            // Some edges share a host.
            url: format!("https://h{}:8443/x", rng.below(12)),
            weight: if rng.chance(0.8) {
                rng.pick(&[1.0, 10.0, 40.0, 100.0])
            } else {
                rng.pick(&ODD)
            },
            load: if rng.chance(0.8) { rng.unit() } else { rng.pick(&ODD) },
            titles: (0..rng.below(3)).map(|_| rng.pick(&TITLES).to_string()).collect(),
        }
    }

    fn random_world(rng: &mut Rng) -> Vec<Edge> {
        let places: Vec<(f64, f64)> = SITES
            .iter()
            .map(|_| (-60.0 + 120.0 * rng.unit(), -180.0 + 360.0 * rng.unit()))
            .collect();
        let n = rng.pick(&[0, 1, 2, 5, 12, 40]);
        let mut w: Vec<Edge> = (0..n).map(|i| random_edge(rng, i, &places)).collect();
        if rng.chance(0.2) {
            // Nothing up: the overloaded edges are the last resort.
            for e in &mut w {
                if e.state == EdgeState::Up {
                    e.state = EdgeState::Overloaded;
                }
            }
        }
        w
    }

    fn random_client(rng: &mut Rng) -> Client {
        Client {
            ip: rng.chance(0.8).then(|| some_ip(rng)),
            asn: rng.chance(0.5).then(|| 64500 + rng.below(7) as u32),
            site: rng
                .chance(0.2)
                .then(|| rng.pick(&SITES).to_string() + rng.pick(&["", "x"])),
            lat: rng.chance(0.8).then(|| -90.0 + 180.0 * rng.unit()),
            lon: rng.chance(0.8).then(|| -180.0 + 360.0 * rng.unit()),
        }
    }

    fn random_policy(rng: &mut Rng) -> Policy {
        Policy {
            k: rng.pick(&[0, 1, 2, 4, 100]),
            bounded_load: rng.pick(&[1.0, 1.25, 2.0, 0.5]),
            bounded_load_floor: rng.pick(&[0.0, 0.1, 0.5]),
            fallback_sites: (0..rng.below(4)).map(|_| rng.pick(&SITES).to_string()).collect(),
        }
    }

    /// Comparable form of an answer (NaN distances compare by bits).
    fn bits(r: &[Ranked]) -> Vec<(usize, Reason, Option<u64>, bool)> {
        r.iter()
            .map(|x| (x.index, x.reason, x.distance_km.map(f64::to_bits), x.over_bounded_load))
            .collect()
    }

    #[test]
    fn indexed_ranker_agrees_with_the_reference_on_random_snapshots() {
        let mut rng = Rng(0x7574_706f_7374);
        let mut seen = std::collections::HashMap::new();
        for _ in 0..3000 {
            let w = random_world(&mut rng);
            let prepared = Prepared::new(w.clone());
            for _ in 0..8 {
                let c = random_client(&mut rng);
                let t = rng.pick(&TITLES);
                let p = random_policy(&mut rng);
                let want = reference::rank(&w, &c, t, &p);
                assert_eq!(bits(&rank(&w, &c, t, &p)), bits(&want), "{w:?}\n{c:?} {t:?} {p:?}");
                assert_eq!(bits(&prepared.rank(&c, t, &p)), bits(&want), "{w:?}\n{c:?} {t:?} {p:?}");
                for r in &want {
                    let by_prefix = r.reason == Reason::Isp && c.asn.is_none() && c.site.is_none();
                    *seen
                        .entry((r.reason.as_str(), r.over_bounded_load, by_prefix))
                        .or_insert(0) += 1;
                }
            }
        }
        // The snapshots exercise every tier, the bounded load and ISP by prefix.
        for reason in ["isp", "geo", "fallback", "overloaded"] {
            assert!(seen.get(&(reason, false, false)) > Some(&100), "{reason}: {seen:?}");
        }
        assert!(seen.get(&("geo", true, false)) > Some(&100), "{seen:?}");
        assert!(seen.get(&("isp", false, true)) > Some(&100), "{seen:?}");
    }

    #[test]
    fn rendezvous_hash_is_unchanged() {
        for (t, e) in [("t1", "e1"), ("", ""), ("title", "edge-001-00042"), ("é", "x")] {
            assert_eq!(finish(fnv(title_seed(t), e.bytes())), reference::hash(t, e));
        }
        // Pinned: every steering replica, of every version, must agree.
        assert_eq!(reference::hash("t1", "e1"), 0x7e9d_3991_5ff9_ad5e);
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
