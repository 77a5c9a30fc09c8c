//! The system under test for the network scenarios: one origin and one
//! edge (the real `outpost` binary, one process each), the peers beside
//! them, each on its own loopback address, all with one certificate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use outpost_svc::tls::{ensure_local_certs, LocalCertPaths};

use crate::load::Target;
use crate::procs::Proc;

/// The name every server's certificate carries and the client sends as SNI.
pub const SERVER_NAME: &str = "bench.outpost.test";

/// The loopback addresses of one scenario run: `127.<78+n>.<k>.1..4`,
/// with `k` chosen so that no other process (another bench run) holds them.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub edge: SocketAddr,
    pub edge_admin: SocketAddr,
    pub origin: SocketAddr,
    pub origin_admin: SocketAddr,
    pub nginx: SocketAddr,
    pub caddy: SocketAddr,
}

impl Addrs {
    pub fn for_scenario(n: u8) -> Result<Self> {
        let (b, c) = free_net(n, |b, c| Self::at(b, c).free())?;
        Ok(Self::at(b, c))
    }

    fn at(b: u8, c: u8) -> Self {
        let ip = |host: u8| IpAddr::V4(Ipv4Addr::new(127, b, c, host));
        Self {
            edge: SocketAddr::new(ip(1), 8443),
            edge_admin: SocketAddr::new(ip(1), 9443),
            origin: SocketAddr::new(ip(2), 8080),
            origin_admin: SocketAddr::new(ip(2), 9080),
            nginx: SocketAddr::new(ip(3), 8443),
            caddy: SocketAddr::new(ip(4), 8443),
        }
    }

    /// Can every address be bound (TCP, and UDP where HTTP/3 listens)?
    fn free(&self) -> bool {
        let tcp = [
            self.edge,
            self.edge_admin,
            self.origin,
            self.origin_admin,
            self.nginx,
            self.caddy,
        ];
        bindable(&tcp, &[self.edge, self.caddy])
    }
}

/// The first `127.<78+n>.<c>.0/24` (`c` in 1..=250, starting at a place
/// that depends on this process) for which `free(78 + n, c)` holds, so
/// concurrent bench runs never share addresses.
pub fn free_net(n: u8, free: impl Fn(u8, u8) -> bool) -> Result<(u8, u8)> {
    let start = (std::process::id() % 250) as u8;
    for i in 0..250u8 {
        let c = (start + i) % 250 + 1;
        if free(78 + n, c) {
            return Ok((78 + n, c));
        }
    }
    anyhow::bail!("no free loopback addresses under 127.{}.0.0/16", 78 + n)
}

/// Can every address be bound over TCP, and the `udp` ones over UDP too?
pub fn bindable(tcp: &[SocketAddr], udp: &[SocketAddr]) -> bool {
    tcp.iter().all(|a| std::net::TcpListener::bind(a).is_ok())
        && udp.iter().all(|a| std::net::UdpSocket::bind(a).is_ok())
}

/// A local CA and one leaf for every server of the scenario.
pub fn certs(dir: &Path, addrs: &Addrs) -> Result<LocalCertPaths> {
    certs_for(dir, &[addrs.edge.ip(), addrs.nginx.ip(), addrs.caddy.ip()])
}

/// A local CA and one leaf naming [`SERVER_NAME`] and every address in `ips`.
pub fn certs_for(dir: &Path, ips: &[IpAddr]) -> Result<LocalCertPaths> {
    let paths = LocalCertPaths::in_dir(&dir.join("certs"), "server");
    let names: Vec<String> = ips
        .iter()
        .map(IpAddr::to_string)
        .chain([SERVER_NAME.to_owned()])
        .collect();
    ensure_local_certs(&paths, &names).context("generate certificates")?;
    Ok(paths)
}

/// A load target for the server at `addr`, trusting the scenario's CA.
pub fn target(addr: SocketAddr, certs: &LocalCertPaths) -> Result<Target> {
    Target::new(addr, SERVER_NAME, &certs.ca_cert)
}

/// Start the origin with a synthetic catalog of one title (`renditions`
/// in bit/s, 4 s segments, `segments` each), paced to `pace` bytes/s (0:
/// unpaced). Cleartext HTTP/1.1 (the edge's and nginx's default upstream).
pub async fn start_origin(dir: &Path, addrs: &Addrs, renditions: &[u64], segments: u32, pace: u64) -> Result<Proc> {
    let catalog = Catalog {
        titles: 1,
        renditions,
        segments,
    };
    start_origin_at(dir, addrs.origin, addrs.origin_admin, &catalog, pace).await
}

/// The origin's synthetic catalog: `titles` titles, `renditions` in bit/s,
/// [`SEGMENT_SECONDS`] segments, `segments` of them per rendition.
#[derive(Debug, Clone, Copy)]
pub struct Catalog<'a> {
    pub titles: u32,
    pub renditions: &'a [u64],
    pub segments: u32,
}

/// Start the origin on `listen` (admin on `admin`) with `catalog`.
pub async fn start_origin_at(
    dir: &Path,
    listen: SocketAddr,
    admin: SocketAddr,
    catalog: &Catalog<'_>,
    pace: u64,
) -> Result<Proc> {
    let renditions: Vec<String> = catalog.renditions.iter().map(u64::to_string).collect();
    let cfg = format!(
        r#"
listen = "{listen}"
admin = "{admin}"
shutdown_grace = "1s"
[synthetic]
enabled = true
prefix = "/synth"
titles = {titles}
renditions = [{renditions}]
segment_seconds = {SEGMENT_SECONDS}
segments = {segments}
[pace]
bytes_per_second = {pace}
"#,
        titles = catalog.titles,
        renditions = renditions.join(", "),
        segments = catalog.segments,
    );
    let mut p = Proc::outpost("origin", "origin", dir, &cfg)?;
    p.wait_http(&format!("http://{admin}/readyz")).await?;
    Ok(p)
}

/// Seconds per synthetic segment: a segment is `bitrate * 4 / 8` bytes.
pub const SEGMENT_SECONDS: u64 = 4;

/// The URL path and size of segment `n` of rendition `r` (bitrate `bps`).
pub fn segment(r: usize, bps: u64, n: u32) -> crate::load::Object {
    crate::load::Object {
        path: format!("/synth/t0000/r{r}/seg{n:05}.m4s"),
        size: bps * SEGMENT_SECONDS / 8,
    }
}

/// Start the edge in front of the origin with a memory tier of `capacity`
/// bytes, HTTPS (h1/h2) and HTTP/3 on one port.
pub async fn start_edge(dir: &Path, addrs: &Addrs, certs: &LocalCertPaths, capacity: u64) -> Result<Proc> {
    let edge = EdgeSpec {
        id: "edge-bench",
        listen: addrs.edge,
        admin: addrs.edge_admin,
        origin: addrs.origin,
        capacity,
    };
    start_edge_with(dir, "edge", &edge_config(&edge, certs, ""), addrs.edge_admin).await
}

/// Where one edge listens and what it caches.
#[derive(Debug, Clone, Copy)]
pub struct EdgeSpec<'a> {
    pub id: &'a str,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub origin: SocketAddr,
    /// Memory tier bytes (S3-FIFO).
    pub capacity: u64,
}

/// An edge's config: HTTPS (h1/h2) and HTTP/3 on one port, the scenario's
/// certificate, `extra` tables (`[site]`, `[report]`, `[token]`) at the end.
pub fn edge_config(e: &EdgeSpec<'_>, certs: &LocalCertPaths, extra: &str) -> String {
    format!(
        r#"
id = "{id}"
listen = "{listen}"
admin = "{admin}"
shutdown_grace = "1s"
[tls]
cert = "{cert}"
key = "{key}"
[upstream]
urls = ["http://{origin}"]
[cache.memory]
capacity = {capacity}
policy = "s3-fifo"
[http3]
enabled = true
{extra}
"#,
        id = e.id,
        listen = e.listen,
        admin = e.admin,
        cert = certs.cert.display(),
        key = certs.key.display(),
        origin = e.origin,
        capacity = e.capacity,
    )
}

/// Start `outpost edge` as `name` with `config`; ready when `admin` says so.
pub async fn start_edge_with(dir: &Path, name: &str, config: &str, admin: SocketAddr) -> Result<Proc> {
    let mut p = Proc::outpost("edge", name, dir, config)?;
    p.wait_http(&format!("http://{admin}/readyz")).await?;
    Ok(p)
}

/// A subdirectory of the scenario's scratch directory.
pub fn sub(dir: &Path, name: &str) -> Result<PathBuf> {
    let d = dir.join(name);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
