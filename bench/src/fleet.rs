//! The whole control loop for the steering, failover and players
//! scenarios: an origin, one cache-control replica, edges reporting to it
//! (each embedded in one of three loopback "ISPs"), and steering following
//! the replica with a geo database built for the ISPs' client networks.
//! Every service is the real `outpost` binary, one process each, on its
//! own address in a free `127.<78+n>.<c>.0/24`.
//!
//! Client networks: ISP `i` (0..3) is `127.<i+1>.0.0/16`; the geo
//! database gives it an ASN, a country and coordinates, and the edges of
//! that ISP's site list the ASN, so steering ranks them first for clients
//! from there. Clients bind their sockets to those addresses
//! ([`Isp::client_ip`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::Method;
use outpost_svc::tls::LocalCertPaths;
use serde::Serialize;
use serde_json::Value;

use crate::client::{HttpsClient, Tcp};
use crate::load::{Conn, Proto, Target};
use crate::procs::Proc;
use crate::rig::{self, Catalog, EdgeSpec};

/// One loopback ISP: its client network, its AS and where it is.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Isp {
    /// Second octet of its client network `127.<net>.0.0/16`.
    pub net: u8,
    pub asn: u32,
    /// The site its edges are in.
    pub site: &'static str,
    pub country: &'static str,
    pub city: &'static str,
    pub lat: f64,
    pub lon: f64,
}

pub const ISPS: [Isp; 3] = [
    Isp {
        net: 1,
        asn: 64601,
        site: "ams",
        country: "NL",
        city: "Amsterdam",
        lat: 52.37,
        lon: 4.90,
    },
    Isp {
        net: 2,
        asn: 64602,
        site: "fra",
        country: "DE",
        city: "Frankfurt",
        lat: 50.11,
        lon: 8.68,
    },
    Isp {
        net: 3,
        asn: 64603,
        site: "nyc",
        country: "US",
        city: "New York",
        lat: 40.71,
        lon: -74.01,
    },
];

impl Isp {
    /// The `n`th client address of this ISP (`127.<net>.x.y`, y in 1..=250).
    pub fn client_ip(&self, n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, self.net, (n / 250 % 256) as u8, (n % 250 + 1) as u8))
    }

    pub fn network(&self) -> String {
        format!("127.{}.0.0/16", self.net)
    }
}

/// What the fleet runs.
#[derive(Debug, Clone, Serialize)]
pub struct FleetConfig {
    /// Edges; edge `i` is in ISP `i % 3`.
    pub edges: usize,
    /// Synthetic titles (origin and steering's catalog).
    pub titles: u32,
    pub renditions: Vec<u64>,
    pub segments: u32,
    /// Each edge's memory tier, bytes.
    pub edge_capacity: u64,
    /// Edges' `report.interval`, cache-control's `liveness.report_interval`.
    #[serde(with = "ms")]
    pub report_interval: Duration,
    /// cache-control's `liveness.missed_intervals`.
    pub missed_intervals: u32,
    /// cache-control's `liveness.readmit_reports`.
    pub readmit_reports: u32,
    /// cache-control's `stream.heartbeat`.
    #[serde(with = "ms")]
    pub heartbeat: Duration,
    /// Edges refuse requests without steering's playback token.
    pub tokens_required: bool,
}

mod ms {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

/// One edge of the fleet; `proc` is None while it is killed.
pub struct FleetEdge {
    pub id: String,
    pub isp: usize,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub proc: Option<Proc>,
    config: String,
    dir: PathBuf,
}

impl FleetEdge {
    /// kill -9 (no draining report).
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// Start it again with the same config (returns once it is ready).
    pub async fn restart(&mut self) -> Result<()> {
        self.kill9();
        self.proc = Some(rig::start_edge_with(&self.dir, &self.id, &self.config, self.admin).await?);
        Ok(())
    }
}

pub struct Fleet {
    pub cfg: FleetConfig,
    pub certs: LocalCertPaths,
    pub origin: Proc,
    pub origin_admin: SocketAddr,
    pub cache_control: Proc,
    pub steering: Proc,
    pub steering_addr: SocketAddr,
    pub steering_admin: SocketAddr,
    pub edges: Vec<FleetEdge>,
}

const ORIGIN_HOST: u8 = 2;
const CC_HOST: u8 = 5;
const STEERING_HOST: u8 = 6;
const EDGE_HOST: u8 = 10;
const TOKEN_KEY: &str = "bench-playback-token-secret-0123456789";

fn edge_secret(id: &str) -> String {
    format!("bench-report-secret-for-{id}-0123456789")
}

/// Every address of the fleet in `127.b.c.0/24`.
struct Layout {
    b: u8,
    c: u8,
    edges: usize,
}

impl Layout {
    fn ip(&self, host: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, self.b, self.c, host))
    }
    fn origin(&self) -> (SocketAddr, SocketAddr) {
        (
            SocketAddr::new(self.ip(ORIGIN_HOST), 8080),
            SocketAddr::new(self.ip(ORIGIN_HOST), 9080),
        )
    }
    fn cc(&self) -> (SocketAddr, SocketAddr) {
        (
            SocketAddr::new(self.ip(CC_HOST), 7443),
            SocketAddr::new(self.ip(CC_HOST), 7080),
        )
    }
    fn steering(&self) -> (SocketAddr, SocketAddr) {
        (
            SocketAddr::new(self.ip(STEERING_HOST), 6443),
            SocketAddr::new(self.ip(STEERING_HOST), 6080),
        )
    }
    fn edge(&self, i: usize) -> (SocketAddr, SocketAddr) {
        let ip = self.ip(EDGE_HOST + i as u8);
        (SocketAddr::new(ip, 8443), SocketAddr::new(ip, 9443))
    }
    fn free(&self) -> bool {
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        for (a, b) in [self.origin(), self.cc(), self.steering()]
            .into_iter()
            .chain((0..self.edges).map(|i| self.edge(i)))
        {
            tcp.extend([a, b]);
        }
        for i in 0..self.edges {
            udp.push(self.edge(i).0);
        }
        rig::bindable(&tcp, &udp)
    }
}

/// City and ASN databases for the ISPs' client networks.
fn write_geo(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    use outpost_steering::geo::write::{asn_db, city_db, AsnEntry, CityEntry};
    let mut cities = Vec::new();
    let mut asns = Vec::new();
    for isp in &ISPS {
        cities.push(CityEntry {
            network: isp.network().parse()?,
            country: Some(isp.country.into()),
            city: Some(isp.city.into()),
            lat: Some(isp.lat),
            lon: Some(isp.lon),
            accuracy_km: Some(20),
        });
        asns.push(AsnEntry {
            network: isp.network().parse()?,
            asn: isp.asn,
            org: Some(format!("Bench ISP {}", isp.site)),
        });
    }
    let now = std::time::SystemTime::now();
    let (city, asn) = (dir.join("city.mmdb"), dir.join("asn.mmdb"));
    std::fs::write(&city, city_db(&cities, now)?)?;
    std::fs::write(&asn, asn_db(&asns, now)?)?;
    Ok((city, asn))
}

impl Fleet {
    /// Start everything under `dir` in a free `127.<78+n>.c.0/24` and wait
    /// until steering names every edge as up.
    pub async fn start(dir: &Path, n: u8, cfg: FleetConfig) -> Result<Self> {
        if cfg.edges == 0 || cfg.edges > 200 {
            bail!("edges must be 1..=200, not {}", cfg.edges);
        }
        let (b, c) = rig::free_net(n, |b, c| Layout { b, c, edges: cfg.edges }.free())?;
        let l = Layout { b, c, edges: cfg.edges };
        let ips: Vec<IpAddr> = [ORIGIN_HOST, CC_HOST, STEERING_HOST]
            .into_iter()
            .chain((0..cfg.edges).map(|i| EDGE_HOST + i as u8))
            .map(|h| l.ip(h))
            .collect();
        let certs = rig::certs_for(dir, &ips)?;
        let (origin_addr, origin_admin) = l.origin();
        let catalog = Catalog {
            titles: cfg.titles,
            renditions: &cfg.renditions,
            segments: cfg.segments,
        };
        let origin = rig::start_origin_at(&rig::sub(dir, "origin")?, origin_addr, origin_admin, &catalog, 0).await?;

        let ids: Vec<String> = (0..cfg.edges)
            .map(|i| format!("edge-{}-{i}", ISPS[i % ISPS.len()].site))
            .collect();
        let tls = format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            certs.cert.display(),
            certs.key.display()
        );
        let (cc_addr, cc_admin) = l.cc();
        let mut cc_cfg = format!(
            r#"
id = "cc-bench"
listen = "{cc_addr}"
admin = "{cc_admin}"
shutdown_grace = "1s"
{tls}
[liveness]
report_interval = "{interval}ms"
missed_intervals = {missed}
readmit_reports = {readmit}
[stream]
heartbeat = "{heartbeat}ms"
"#,
            interval = cfg.report_interval.as_millis(),
            missed = cfg.missed_intervals,
            readmit = cfg.readmit_reports,
            heartbeat = cfg.heartbeat.as_millis(),
        );
        for id in &ids {
            cc_cfg.push_str(&format!("[[edges]]\nid = \"{id}\"\nsecret = \"{}\"\n", edge_secret(id)));
        }
        let mut cache_control = Proc::outpost("cache-control", "cache-control", &rig::sub(dir, "cc")?, &cc_cfg)?;
        cache_control.wait_http(&format!("http://{cc_admin}/readyz")).await?;

        let edge_dir = rig::sub(dir, "edges")?;
        let mut edges = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let isp = &ISPS[i % ISPS.len()];
            let (listen, admin) = l.edge(i);
            let token = if cfg.tokens_required {
                format!("[token]\nrequired = true\nkeys = [{{ id = \"k1\", secret = \"{TOKEN_KEY}\" }}]\n")
            } else {
                String::new()
            };
            let extra = format!(
                r#"
[site]
name = "{site}"
lat = {lat}
lon = {lon}
asns = [{asn}]
[report]
cache_control = ["https://{cc_addr}"]
ca = "{ca}"
secret = "{secret}"
interval = "{interval}ms"
timeout = "{interval}ms"
{token}
"#,
                site = isp.site,
                lat = isp.lat,
                lon = isp.lon,
                asn = isp.asn,
                ca = certs.ca_cert.display(),
                secret = edge_secret(id),
                interval = cfg.report_interval.as_millis(),
            );
            let spec = EdgeSpec {
                id,
                listen,
                admin,
                origin: origin_addr,
                capacity: cfg.edge_capacity,
            };
            let config = rig::edge_config(&spec, &certs, &extra);
            let proc = rig::start_edge_with(&edge_dir, id, &config, admin).await?;
            edges.push(FleetEdge {
                id: id.clone(),
                isp: i % ISPS.len(),
                addr: listen,
                admin,
                proc: Some(proc),
                config,
                dir: edge_dir.clone(),
            });
        }

        let sdir = rig::sub(dir, "steering")?;
        let (city, asn) = write_geo(&sdir)?;
        let (steering_addr, steering_admin) = l.steering();
        let st_cfg = format!(
            r#"
listen = "{steering_addr}"
admin = "{steering_admin}"
shutdown_grace = "1s"
{tls}
[cache_control]
urls = ["https://{cc_addr}"]
ca = "{ca}"
[origin]
url = "http://{origin_addr}"
[tokens]
keys = [{{ id = "k1", secret = "{TOKEN_KEY}" }}]
[entitlement]
open = true
[catalog.synthetic]
titles = {titles}
[geo]
city_db = "{city}"
asn_db = "{asn}"
"#,
            ca = certs.ca_cert.display(),
            titles = cfg.titles,
            city = city.display(),
            asn = asn.display(),
        );
        let mut steering = Proc::outpost("steering", "steering", &sdir, &st_cfg)?;
        steering.wait_http(&format!("http://{steering_admin}/readyz")).await?;
        let fleet = Self {
            cfg,
            certs,
            origin,
            origin_admin,
            cache_control,
            steering,
            steering_addr,
            steering_admin,
            edges,
        };
        let ids: Vec<&str> = fleet.edges.iter().map(|e| e.id.as_str()).collect();
        fleet.wait_edges_up(&ids, Duration::from_secs(30)).await?;
        Ok(fleet)
    }

    /// A load target for steering's playback API.
    pub fn steering_target(&self) -> Result<Target> {
        rig::target(self.steering_addr, &self.certs)
    }

    /// A load target for the edge at `addr`.
    pub fn target(&self, addr: SocketAddr) -> Result<Target> {
        rig::target(addr, &self.certs)
    }

    /// Poll steering's `/v1/edges` until every edge in `ids` is up.
    pub async fn wait_edges_up(&self, ids: &[&str], max: Duration) -> Result<()> {
        let client = HttpsClient::new(Some(&self.certs.ca_cert), Tcp::H1)?;
        let url = format!("https://{}/v1/edges", self.steering_addr);
        let deadline = Instant::now() + max;
        loop {
            let mut last = String::new();
            if let Ok(r) = client.get(&url).await {
                let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                let up: Vec<&str> = v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|e| e["state"] == "up")
                            .filter_map(|e| e["edge_id"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                if ids.iter().all(|id| up.contains(id)) {
                    return Ok(());
                }
                last = v.to_string();
            }
            if Instant::now() > deadline {
                bail!("steering does not see {ids:?} up after {max:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One edge of a play answer.
#[derive(Debug, Clone)]
pub struct Named {
    pub id: String,
    pub reason: String,
    /// The title's HLS multivariant playlist on this edge (token in the path).
    pub hls: String,
}

/// `POST /v1/play` for `title` on `conn` (a connection to steering).
/// Ok(None) when steering answered but not 200.
pub async fn play(conn: &mut Conn, title: &str) -> Result<(crate::load::Got, Option<Vec<Named>>)> {
    let body = Bytes::from(format!("{{\"title\":\"{title}\"}}"));
    let got = conn
        .request(
            Method::POST,
            "/v1/play",
            &[("content-type", "application/json")],
            body,
            true,
        )
        .await?;
    if got.status != 200 {
        return Ok((got, None));
    }
    let v: Value = serde_json::from_slice(got.body.as_deref().unwrap_or_default()).context("play answer")?;
    let named = v["edges"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| Named {
                    id: e["id"].as_str().unwrap_or_default().to_owned(),
                    reason: e["reason"].as_str().unwrap_or_default().to_owned(),
                    hls: e["hls"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((got, Some(named)))
}

/// A connection to steering from `source` (HTTPS/1.1 or HTTP/2; steering
/// does not speak HTTP/3).
pub async fn steering_conn(target: &Target, proto: Proto, source: Option<IpAddr>) -> Result<Conn> {
    let proto = if proto == Proto::H3 { Proto::H2 } else { proto };
    Conn::connect_from(target, proto, source).await
}
