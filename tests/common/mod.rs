//! Test harness: start the real `outpost` binary with generated configs on
//! per-test loopback addresses, wait for readiness, read metrics.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use outpost_bench::client::{HttpsClient, Tcp};

/// A running `outpost` process, killed when dropped.
pub struct Service {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
    pub admin: String,
}

impl Service {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        unsafe_kill(self.child.id(), "TERM");
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh scratch directory for one test.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("outpost-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Start `outpost <role> --config <file>` with `config` written to `dir`.
pub fn spawn(dir: &Path, role: &str, name: &str, config: &str, admin: &str) -> Result<Service> {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, config)?;
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log)?;
    let child = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .arg(role)
        .arg("--config")
        .arg(&cfg)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdout(out.try_clone()?)
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .context("spawn outpost")?;
    Ok(Service {
        name: name.into(),
        child,
        log,
        admin: admin.into(),
    })
}

/// Poll `/readyz` until it answers 200.
pub async fn wait_ready(svc: &mut Service) -> Result<()> {
    let client = HttpsClient::new(None, Tcp::H1)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = svc.child.try_wait() {
            bail!("{} exited with {status} before ready:\n{}", svc.name, svc.log_text());
        }
        if let Ok(r) = client.get(&format!("http://{}/readyz", svc.admin)).await {
            if r.status == 200 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{} not ready after 30s:\n{}", svc.name, svc.log_text());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The admin listener's Prometheus text and metric sums: the bench's own helpers.
pub use outpost_bench::procs::{metric_sum, metrics};

/// Ports every test uses; tests differ by loopback address.
pub const ORIGIN_PORT: u16 = 8080;
pub const ORIGIN_ADMIN: u16 = 9080;
pub const EDGE_PORT: u16 = 8443;
pub const EDGE_ADMIN: u16 = 9443;

/// An origin with a synthetic catalog (1 title, one 8 Mbit/s rendition:
/// 4 MB segments) and a library directory at `dir/library`.
pub async fn start_origin(dir: &Path, ip: &str, extra: &str) -> Result<Service> {
    std::fs::create_dir_all(dir.join("library"))?;
    let cfg = format!(
        r#"
listen = "{ip}:{ORIGIN_PORT}"
admin = "{ip}:{ORIGIN_ADMIN}"
[library]
root = "library"
[synthetic]
enabled = true
prefix = "/synth"
titles = 4
renditions = [8000000, 800000]
segment_seconds = 4
segments = 20
{extra}
"#
    );
    let mut svc = spawn(dir, "origin", "origin", &cfg, &format!("{ip}:{ORIGIN_ADMIN}"))?;
    wait_ready(&mut svc).await?;
    Ok(svc)
}

/// An edge on `ip` in front of the origin on `origin_ip`; certificates are
/// generated into `dir/certs`.
pub async fn start_edge(dir: &Path, ip: &str, origin_ip: &str, extra: &str) -> Result<Service> {
    let cfg = format!(
        r#"
id = "edge-test"
listen = "{ip}:{EDGE_PORT}"
admin = "{ip}:{EDGE_ADMIN}"
shutdown_grace = "5s"
[tls]
cert = "certs/edge.crt"
key = "certs/edge.key"
generate = true
[upstream]
urls = ["http://{origin_ip}:{ORIGIN_PORT}"]
first_byte_timeout = "5s"
idle_timeout = "5s"
{extra}
"#
    );
    let mut svc = spawn(dir, "edge", "edge", &cfg, &format!("{ip}:{EDGE_ADMIN}"))?;
    wait_ready(&mut svc).await?;
    Ok(svc)
}

pub fn ca(dir: &Path) -> PathBuf {
    dir.join("certs/ca.crt")
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// Send raw request bytes over TCP (optionally TLS, trusting `ca`) and
/// return the status code and the rest of the response.
pub async fn raw_request(addr: &str, tls_ca: Option<&Path>, request: &[u8]) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut buf = Vec::new();
    match tls_ca {
        Some(ca) => {
            let cfg = outpost_svc::tls::client_config(Some(ca), &[b"http/1.1"])?;
            let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
            let ip: std::net::IpAddr = addr.rsplit_once(':').unwrap().0.parse()?;
            let mut s = connector
                .connect(rustls::pki_types::ServerName::IpAddress(ip.into()), tcp)
                .await?;
            s.write_all(request).await?;
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        }
        None => {
            let mut s = tcp;
            s.write_all(request).await?;
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {text:?}"))?;
    Ok((status, text))
}

pub const CC_PORT: u16 = 7443;
pub const CC_ADMIN: u16 = 7080;

/// The secret the test edges and replicas share for edge `id`.
pub fn edge_secret(id: &str) -> String {
    format!("test-secret-for-{id}-0123456789")
}

/// A cache-control replica on `ip` that knows `edges` (declared, each with
/// [`edge_secret`]). `extra` goes at the top level (before any table).
pub async fn start_cache_control(dir: &Path, name: &str, ip: &str, edges: &[&str], extra: &str) -> Result<Service> {
    let mut cfg = format!(
        r#"
id = "{name}"
listen = "{ip}:{CC_PORT}"
admin = "{ip}:{CC_ADMIN}"
shutdown_grace = "1s"
{extra}
[tls]
cert = "certs/{name}.crt"
key = "certs/{name}.key"
generate = true
"#
    );
    for e in edges {
        cfg.push_str(&format!("[[edges]]\nid = \"{e}\"\nsecret = \"{}\"\n", edge_secret(e)));
    }
    let mut svc = spawn(dir, "cache-control", name, &cfg, &format!("{ip}:{CC_ADMIN}"))?;
    wait_ready(&mut svc).await?;
    Ok(svc)
}

/// The `[site]` and `[report]` sections for an edge reporting to `replicas`.
pub fn report_section(id: &str, site: &str, replicas: &[&str], interval: &str, extra: &str) -> String {
    let urls: Vec<String> = replicas
        .iter()
        .map(|ip| format!("\"https://{ip}:{CC_PORT}\""))
        .collect();
    format!(
        r#"
[site]
name = "{site}"
lat = 52.37
lon = 4.90
asns = [64501]
prefixes = ["127.1.0.0/16"]
[report]
cache_control = [{}]
ca = "certs/ca.crt"
secret = "{}"
interval = "{interval}"
timeout = "{interval}"
{extra}
"#,
        urls.join(", "),
        edge_secret(id)
    )
}

/// An edge with its own id and certificate (`certs/<id>.crt`), so several
/// edges can share one test directory and CA.
pub async fn start_named_edge(dir: &Path, id: &str, ip: &str, origin_ip: &str, sections: &str) -> Result<Service> {
    let cfg = edge_config(id, ip, origin_ip, sections);
    let mut svc = spawn(dir, "edge", id, &cfg, &format!("{ip}:{EDGE_ADMIN}"))?;
    wait_ready(&mut svc).await?;
    Ok(svc)
}

pub fn edge_config(id: &str, ip: &str, origin_ip: &str, sections: &str) -> String {
    format!(
        r#"
id = "{id}"
listen = "{ip}:{EDGE_PORT}"
admin = "{ip}:{EDGE_ADMIN}"
shutdown_grace = "5s"
[tls]
cert = "certs/{id}.crt"
key = "certs/{id}.key"
generate = true
[upstream]
urls = ["http://{origin_ip}:{ORIGIN_PORT}"]
{sections}
"#
    )
}

impl Service {
    /// SIGKILL: no goodbye, no draining report.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTPS (h1/h2) client whose connections come from `source` (a
/// 127.x address standing for a client network), trusting `ca`.
pub fn client_from(
    source: std::net::IpAddr,
    ca: &Path,
) -> Result<
    hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        http_body_util::Full<bytes::Bytes>,
    >,
> {
    let tls = outpost_svc::tls::client_config(Some(ca), &[])?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_local_address(Some(source));
    let conn = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(conn))
}

/// Send a request with `client`; returns the status and the body.
pub async fn send(
    client: &hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        http_body_util::Full<bytes::Bytes>,
    >,
    method: http::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, bytes::Bytes)> {
    use http_body_util::BodyExt;
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(body)))?)
        .await
        .with_context(|| url.to_string())?;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

pub const STEERING_PORT: u16 = 6443;
pub const STEERING_ADMIN: u16 = 6080;
/// The playback token key steering signs with and edges verify.
pub const TOKEN_KEY_ID: &str = "k1";
pub const TOKEN_SECRET: &str = "playback-token-secret-0123456789";

/// Steering on `ip` following `replicas`; `extra` is appended at the end
/// (tables: `[geo]`, `[catalog]`, `[entitlement]`, ...).
pub async fn start_steering(dir: &Path, ip: &str, replicas: &[&str], origin_ip: &str, extra: &str) -> Result<Service> {
    let urls: Vec<String> = replicas.iter().map(|r| format!("\"https://{r}:{CC_PORT}\"")).collect();
    let cfg = format!(
        r#"
listen = "{ip}:{STEERING_PORT}"
admin = "{ip}:{STEERING_ADMIN}"
steering_ttl = "1s"
[tls]
cert = "certs/steering.crt"
key = "certs/steering.key"
generate = true
[cache_control]
urls = [{}]
ca = "certs/ca.crt"
quiet = "2s"
[origin]
url = "http://{origin_ip}:{ORIGIN_PORT}"
[tokens]
keys = [{{ id = "{TOKEN_KEY_ID}", secret = "{TOKEN_SECRET}" }}]
ttl = "1h"
{extra}
"#,
        urls.join(", ")
    );
    let mut svc = spawn(dir, "steering", "steering", &cfg, &format!("{ip}:{STEERING_ADMIN}"))?;
    wait_ready(&mut svc).await?;
    Ok(svc)
}

/// The edge's `[token]` table requiring steering's tokens.
pub fn token_section() -> String {
    format!("[token]\nrequired = true\nkeys = [{{ id = \"{TOKEN_KEY_ID}\", secret = \"{TOKEN_SECRET}\" }}]\n")
}
