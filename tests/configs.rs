//! The example configs are real: every file in `configs/` and
//! `configs/multi-host/` parses and validates with the config struct of its
//! role, every key in them is one the struct knows (renaming any key makes
//! the file fail), and the multi-host files agree with each other (edge ids,
//! report keys, token keys, replica URLs, parent tier, sites, prefix map),
//! with the systemd units and with the sysctl drop-in.
//!
//! `secret = "file:/etc/outpost/keys/…"` is read while parsing, so each test
//! points those paths into a scratch directory holding a made-up secret per
//! path (the same path always gives the same secret). Nothing else the
//! configs name (certificates, GeoLite2 files, the library) has to exist:
//! those are opened when a service starts, not when its config is parsed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_cache_control::CacheControlConfig;
use outpost_edge::EdgeConfig;
use outpost_origin::OriginConfig;
use outpost_steering::geo::Locator;
use outpost_steering::rank;
use outpost_steering::SteeringConfig;
use outpost_svc::config::{de, parse_config};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One parsed config, by role.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Origin(OriginConfig),
    Edge(EdgeConfig),
    CacheControl(CacheControlConfig),
    Steering(SteeringConfig),
}

/// The role a config file is for, from its name: `origin*.toml`,
/// `edge*.toml`, `cache-control*.toml`, `steering*.toml`.
fn role(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    ["origin", "edge", "cache-control", "steering"]
        .into_iter()
        .find(|r| name.starts_with(r))
}

/// A scratch directory standing in for `/` when `file:` secrets are read.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("outpost-configs-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// `text` with every `"file:/abs/path"` pointing under the scratch
    /// directory, where a secret derived from the original path is written.
    fn localize_secrets(&self, text: &str) -> String {
        text.lines()
            .map(|l| {
                if l.trim_start().starts_with('#') {
                    l.to_owned()
                } else {
                    self.localize_line(l)
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn localize_line(&self, line: &str) -> String {
        let mut out = String::new();
        let mut rest = line;
        while let Some(i) = rest.find("\"file:") {
            let (head, tail) = rest.split_at(i + "\"file:".len());
            out.push_str(head);
            let end = tail.find('"').expect("a closing quote after file:");
            let original = &tail[..end];
            assert!(
                original.starts_with("/etc/outpost/keys/"),
                "secret files live in /etc/outpost/keys: {original}"
            );
            let local = self.0.join(original.trim_start_matches('/'));
            std::fs::create_dir_all(local.parent().unwrap()).unwrap();
            std::fs::write(&local, format!("made-up secret for {original}\n")).unwrap();
            out.push_str(local.to_str().unwrap());
            rest = &tail[end..];
        }
        out.push_str(rest);
        out
    }

    fn parse_text(&self, path: &Path, text: &str) -> Result<Parsed, String> {
        let text = self.localize_secrets(text);
        let role = role(path).ok_or_else(|| format!("{}: no role in the file name", path.display()))?;
        let err = |e: outpost_svc::ConfigError| e.to_string();
        Ok(match role {
            "origin" => Parsed::Origin(parse_config(path, &text).map_err(err)?),
            "edge" => Parsed::Edge(parse_config(path, &text).map_err(err)?),
            "cache-control" => Parsed::CacheControl(parse_config(path, &text).map_err(err)?),
            "steering" => Parsed::Steering(parse_config(path, &text).map_err(err)?),
            _ => unreachable!(),
        })
    }

    fn parse(&self, path: &Path) -> Parsed {
        let text = std::fs::read_to_string(path).unwrap();
        self.parse_text(path, &text).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The role configs in `dir` (sorted), and the other `.toml` files.
fn toml_files(dir: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files.into_iter().partition(|p| role(p).is_some())
}

fn all_role_configs() -> Vec<PathBuf> {
    let (mut a, others) = toml_files("configs");
    assert!(others.is_empty(), "configs/ has files of no role: {others:?}");
    let (b, others) = toml_files("configs/multi-host");
    let names: Vec<_> = others.iter().map(|p| p.file_name().unwrap().to_owned()).collect();
    assert_eq!(names, ["prefixes.toml"], "configs/multi-host has unchecked files");
    a.extend(b);
    a
}

#[test]
fn every_example_config_parses_and_validates() {
    let scratch = Scratch::new("parse");
    let files = all_role_configs();
    let mut roles = BTreeMap::<&str, usize>::new();
    for f in &files {
        scratch.parse(f);
        if f.parent().unwrap().ends_with("multi-host") {
            *roles.entry(role(f).unwrap()).or_default() += 1;
        }
    }
    let want: BTreeMap<&str, usize> = [("origin", 1), ("edge", 3), ("cache-control", 2), ("steering", 1)].into();
    assert_eq!(roles, want);
}

/// Every `key = value` line of every config, with the key renamed, must be
/// refused naming the renamed key: so every key written in the examples is
/// one a `deny_unknown_fields` struct reads.
#[test]
fn every_key_in_the_examples_is_a_real_key() {
    let scratch = Scratch::new("keys");
    let mut checked = 0;
    for f in all_role_configs() {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let Some((key, _)) = line.split_once(" = ") else {
                continue;
            };
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                continue; // comments, table headers, continuation lines
            }
            let mut mutated = lines.clone();
            let renamed = format!("{key}_typo{}", &line[key.len()..]);
            mutated[n] = &renamed;
            let err = match scratch.parse_text(&f, &mutated.join("\n")) {
                Ok(_) => panic!("{}:{}: `{key}_typo` was accepted", f.display(), n + 1),
                Err(e) => e,
            };
            assert!(
                err.contains(&format!("{key}_typo")),
                "{}:{}: the error does not name `{key}_typo`: {err}",
                f.display(),
                n + 1
            );
            checked += 1;
        }
    }
    assert!(checked > 200, "only {checked} keys found: is the line scan broken?");
}

/// What the multi-host directory holds, parsed.
struct Deployment {
    origin: OriginConfig,
    edges: BTreeMap<String, EdgeConfig>,
    replicas: Vec<CacheControlConfig>,
    steering: SteeringConfig,
}

fn deployment(scratch: &Scratch) -> Deployment {
    let (files, _) = toml_files("configs/multi-host");
    let (mut origin, mut edges, mut replicas, mut steering) = (None, BTreeMap::new(), Vec::new(), None);
    for f in files {
        match scratch.parse(&f) {
            Parsed::Origin(c) => origin = Some(c),
            Parsed::Edge(c) => {
                let stem = f.file_stem().unwrap().to_str().unwrap().to_owned();
                assert_eq!(c.id, stem, "an edge's file is named after its id");
                edges.insert(c.id.clone(), c);
            }
            Parsed::CacheControl(c) => replicas.push(c),
            Parsed::Steering(c) => steering = Some(c),
        }
    }
    Deployment {
        origin: origin.unwrap(),
        edges,
        replicas,
        steering: steering.unwrap(),
    }
}

/// Host and port of an `https://host[:port]` URL.
fn host_port(url: &str) -> (String, u16) {
    let uri: http::Uri = url.parse().unwrap();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
    (uri.host().unwrap().to_owned(), port)
}

#[test]
fn multi_host_files_agree_with_each_other() {
    let scratch = Scratch::new("agree");
    let d = deployment(&scratch);
    let reporting: BTreeMap<&str, &EdgeConfig> = d
        .edges
        .iter()
        .filter(|(_, e)| e.report.is_some())
        .map(|(id, e)| (id.as_str(), e))
        .collect();
    assert_eq!(reporting.len(), 2, "the two player-facing edges report");

    // Report keys: every replica knows every reporting edge, with the key
    // id and secret it signs with among the edge's keys, and no one else.
    let replica_urls: BTreeSet<(String, u16)> = d.steering.cache_control.urls.iter().map(|u| host_port(u)).collect();
    assert_eq!(replica_urls.len(), d.replicas.len(), "steering follows every replica");
    for r in &d.replicas {
        let ids: BTreeSet<&str> = r.edges.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, reporting.keys().copied().collect(), "{}: [[edges]]", r.id);
        assert!(
            replica_urls.iter().any(|(_, p)| *p == r.listen.port()),
            "{} listens where steering looks",
            r.id
        );
        assert!(!r.tls.generate, "{}: no generated certificates", r.id);
        for e in &r.edges {
            let edge = reporting[e.id.as_str()];
            let rep = edge.report.as_ref().unwrap();
            let signing = (rep.key_id(&edge.id), rep.secret.as_slice());
            assert!(
                e.keys().contains(&signing),
                "{}: {} lists the key `{}` the edge signs with, with its secret",
                r.id,
                e.id,
                signing.0
            );
            assert_eq!(
                r.liveness.report_interval, rep.interval,
                "{}: report interval of {}",
                r.id, e.id
            );
        }
    }
    for (id, e) in &reporting {
        let rep = e.report.as_ref().unwrap();
        let urls: BTreeSet<_> = rep.cache_control.iter().map(|u| host_port(u)).collect();
        assert_eq!(urls, replica_urls, "{id} reports to every replica steering follows");
        assert!(
            !rep.public_urls.is_empty(),
            "{id}: players need a name, not the bind address"
        );
        assert!(
            rep.public_urls.iter().all(|u| host_port(u).1 == e.listen.port()),
            "{id}: public URL port"
        );
        // Player-facing edges check tokens, with every key steering signs with.
        assert!(e.token.required, "{id} requires playback tokens");
        let signing = &d.steering.tokens.keys[0];
        let key = e.token.keys.iter().find(|k| k.id == signing.id);
        assert!(
            key.is_some_and(|k| k.secret == signing.secret),
            "{id} knows steering's signing key `{}`",
            signing.id
        );
    }

    // The parent tier: a non-reporting edge that children list first, that
    // fills from the origin, and that requires the tokens its children
    // forward: every key a child accepts (a token a child let through is
    // never refused upstream), and it forwards none to the origin.
    let origin_port = d.origin.listen.port();
    let parents: Vec<&EdgeConfig> = d.edges.values().filter(|e| e.report.is_none()).collect();
    assert_eq!(parents.len(), 1);
    let parent = parents[0];
    assert!(parent.token.required, "the parent checks the children's tokens");
    assert!(!parent.upstream.forward_token, "the origin needs no token");
    let parent_url = host_port(&parent.upstream.urls[0]);
    assert_eq!(parent_url.1, origin_port, "the parent fills from the origin");
    let mut children = 0;
    for e in d.edges.values() {
        assert!(!e.tls.generate, "{}: no generated certificates", e.id);
        assert!(e.upstream.ca.is_some(), "{}: https upstreams need a CA", e.id);
        let first = host_port(&e.upstream.urls[0]);
        if first.0.contains(parent.id.as_str()) {
            children += 1;
            assert_eq!(first.1, parent.listen.port(), "{}: parent port", e.id);
            assert!(e.upstream.forward_token, "{}: forwards tokens to the parent", e.id);
            assert!(
                outpost_edge::config::is_https(&e.upstream.urls[0]),
                "{}: the token (a bearer credential) goes to the parent over https://",
                e.id
            );
            for k in &e.token.keys {
                assert!(
                    parent.token.keys.contains(k),
                    "{}: the parent knows its token key `{}`",
                    e.id,
                    k.id
                );
            }
            assert!(
                parent
                    .token
                    .forwarders
                    .iter()
                    .any(|f| f == &format!("{}/32", e.listen.ip())),
                "{}: the parent lists it in token.forwarders",
                e.id
            );
            assert_eq!(
                host_port(e.upstream.urls.last().unwrap()).1,
                origin_port,
                "{}: the origin is the last resort",
                e.id
            );
        } else {
            assert_eq!(first.1, origin_port, "{}: no parent => the origin", e.id);
            assert!(!e.upstream.forward_token, "{}: no token to the origin", e.id);
        }
    }
    assert_eq!(children, 1, "one child edge behind the parent");
    assert_eq!(
        host_port(&d.steering.origin.url).1,
        origin_port,
        "steering reads the origin"
    );
    assert!(
        d.steering.origin.ca.is_some() && d.origin.tls.is_some(),
        "origin over TLS"
    );
    assert!(!d.steering.entitlement.open, "no anonymous play in production");
}

/// The operator prefix map (`prefixes.toml`, loaded by the real locator)
/// sends each ISP's clients to its own site, and the ranker then puts that
/// site's edge first.
#[test]
fn multi_host_prefix_map_steers_each_isp_to_its_own_edge() {
    let scratch = Scratch::new("steer");
    let d = deployment(&scratch);
    let mut geo = d.steering.geo.clone();
    assert!(
        geo.city_db.is_some() && geo.asn_db.is_some(),
        "GeoLite2 City and ASN are configured"
    );
    assert_eq!(
        geo.prefix_file.as_deref(),
        Some(Path::new("/etc/outpost/prefixes.toml"))
    );
    // The databases are not in the repository; the prefix file is.
    (geo.city_db, geo.asn_db) = (None, None);
    geo.prefix_file = Some(repo().join("configs/multi-host/prefixes.toml"));
    let locator = Locator::open(&geo).unwrap_or_else(|e| panic!("{e}"));

    let edges: Vec<rank::Edge> = d
        .edges
        .values()
        .filter_map(|e| {
            let r = e.report.as_ref()?;
            Some(rank::Edge {
                id: e.id.clone(),
                site: e.site.name.clone(),
                state: outpost_proto::EdgeState::Up,
                asns: e.site.asns.clone(),
                prefixes: e.site.prefixes.iter().filter_map(|p| rank::parse_prefix(p)).collect(),
                lat: e.site.lat,
                lon: e.site.lon,
                url: r.public_urls[0].clone(),
                weight: r.capacity_gbps,
                load: 0.1,
                titles: vec![],
            })
        })
        .collect();
    let sites: BTreeSet<&str> = edges.iter().map(|e| e.site.as_str()).collect();
    assert_eq!(sites.len(), edges.len(), "one reporting edge per site here");

    let mut clients = 0;
    for e in &edges {
        for &(net, _) in &e.prefixes {
            // A client address inside the edge's prefix (net + 1).
            let ip = match net {
                IpAddr::V4(v4) => IpAddr::from(std::net::Ipv4Addr::from(u32::from(v4) + 1)),
                IpAddr::V6(v6) => IpAddr::from(std::net::Ipv6Addr::from(u128::from(v6) + 1)),
            };
            let loc = locator.locate(ip);
            assert_eq!(loc.site.as_deref(), Some(e.site.as_str()), "{ip}: prefix map site");
            assert!(
                e.asns.contains(&loc.asn.unwrap()),
                "{ip}: the prefix map's ASN is the edge's"
            );
            let client = rank::Client {
                ip: Some(ip),
                asn: loc.asn,
                site: loc.site.clone(),
                lat: loc.lat.or(d.steering.geo.fallback.lat),
                lon: loc.lon.or(d.steering.geo.fallback.lon),
            };
            let ranked = rank::rank(&edges, &client, "synth/t0001", &d.steering.rank.policy());
            assert_eq!(ranked.len(), edges.len(), "{ip}: every edge is offered");
            assert_eq!(edges[ranked[0].index].id, e.id, "{ip}: its ISP's edge first");
            assert_eq!(ranked[0].reason, rank::Reason::Isp, "{ip}");
            clients += 1;
        }
    }
    assert_eq!(clients, 4, "an IPv4 and an IPv6 prefix per ISP");
}

/// `Key=Value` lines of a systemd unit (comments skipped; last one wins).
fn unit(role: &str) -> BTreeMap<String, String> {
    let path = repo().join(format!("configs/systemd/outpost-{role}.service"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn systemd_units_and_sysctl_fit_the_multi_host_configs() {
    let scratch = Scratch::new("units");
    let d = deployment(&scratch);
    // (role, how long a stop may take, lowest listen port) per config.
    let mut stops: Vec<(&str, Duration, u16)> = vec![("origin", d.origin.shutdown_grace, d.origin.listen.port())];
    for e in d.edges.values() {
        let announce = e.report.as_ref().map_or(Duration::ZERO, |r| r.timeout);
        stops.push(("edge", announce + e.shutdown_grace, e.listen.port()));
    }
    for r in &d.replicas {
        stops.push(("cache-control", r.shutdown_grace, r.listen.port()));
    }
    stops.push(("steering", d.steering.shutdown_grace, d.steering.listen.port()));

    for role in ["origin", "edge", "cache-control", "steering"] {
        let u = unit(role);
        assert_eq!(
            u["ExecStart"],
            format!("/usr/local/bin/outpost {role} --config /etc/outpost/{role}.toml")
        );
        assert_eq!(u["User"], "outpost");
        assert_eq!(u["Restart"], "on-failure");
        assert_eq!(u["KillSignal"], "SIGTERM");
        assert_eq!(u["NoNewPrivileges"], "yes");
        assert_eq!(u["ProtectSystem"], "strict");
        assert!(u["ReadWritePaths"].contains("/var/lib/outpost"));
        assert!(u["LimitNOFILE"].parse::<u64>().unwrap() >= 65536);
        let timeout = de::parse_duration(&u["TimeoutStopSec"]).unwrap();
        let mut low_port = false;
        for (_, stop, port) in stops.iter().filter(|(r, _, _)| *r == role) {
            assert!(
                timeout >= *stop + Duration::from_secs(5),
                "{role}: TimeoutStopSec {timeout:?} leaves no margin over {stop:?}"
            );
            low_port |= *port < 1024;
        }
        let caps = u.get("AmbientCapabilities").map_or("", String::as_str);
        assert_eq!(
            caps == "CAP_NET_BIND_SERVICE",
            low_port,
            "{role}: CAP_NET_BIND_SERVICE exactly when a port < 1024 is bound"
        );
        assert_eq!(u.get("CapabilityBoundingSet").map_or("", String::as_str), caps);
    }

    let sysctl = std::fs::read_to_string(repo().join("configs/sysctl/90-outpost-udp.conf")).unwrap();
    let value = |key: &str| -> u64 {
        sysctl
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().strip_prefix('=')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} in the sysctl drop-in"))
    };
    for e in d.edges.values().filter(|e| e.http3.enabled) {
        assert!(value("net.core.rmem_max") >= e.http3.udp_buffer, "{}: rmem_max", e.id);
        assert!(value("net.core.wmem_max") >= e.http3.udp_buffer, "{}: wmem_max", e.id);
    }
}
