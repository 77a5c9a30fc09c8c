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
        let start = (std::process::id() % 250) as u8;
        for i in 0..250u8 {
            let addrs = Self::at(78 + n, (start + i) % 250 + 1);
            if addrs.free() {
                return Ok(addrs);
            }
        }
        anyhow::bail!("no free loopback addresses under 127.{}.0.0/16", 78 + n)
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
        tcp.iter().all(|a| std::net::TcpListener::bind(a).is_ok())
            && [self.edge, self.caddy]
                .iter()
                .all(|a| std::net::UdpSocket::bind(a).is_ok())
    }
}

/// A local CA and one leaf for every server of the scenario.
pub fn certs(dir: &Path, addrs: &Addrs) -> Result<LocalCertPaths> {
    let paths = LocalCertPaths::in_dir(&dir.join("certs"), "server");
    let names: Vec<String> = [addrs.edge, addrs.nginx, addrs.caddy]
        .iter()
        .map(|a| a.ip().to_string())
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
    let renditions: Vec<String> = renditions.iter().map(u64::to_string).collect();
    let cfg = format!(
        r#"
listen = "{listen}"
admin = "{admin}"
shutdown_grace = "1s"
[synthetic]
enabled = true
prefix = "/synth"
titles = 1
renditions = [{renditions}]
segment_seconds = {SEGMENT_SECONDS}
segments = {segments}
[pace]
bytes_per_second = {pace}
"#,
        listen = addrs.origin,
        admin = addrs.origin_admin,
        renditions = renditions.join(", "),
    );
    let mut p = Proc::outpost("origin", "origin", dir, &cfg)?;
    p.wait_http(&format!("http://{}/readyz", addrs.origin_admin)).await?;
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
    let cfg = format!(
        r#"
id = "edge-bench"
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
"#,
        listen = addrs.edge,
        admin = addrs.edge_admin,
        cert = certs.cert.display(),
        key = certs.key.display(),
        origin = addrs.origin,
    );
    let mut p = Proc::outpost("edge", "edge", dir, &cfg)?;
    p.wait_http(&format!("http://{}/readyz", addrs.edge_admin)).await?;
    Ok(p)
}

/// A subdirectory of the scenario's scratch directory.
pub fn sub(dir: &Path, name: &str) -> Result<PathBuf> {
    let d = dir.join(name);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
