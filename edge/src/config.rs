//! The edge's one config struct (`outpost edge --config edge.toml`).
//! Every field documents its default; unknown keys are refused.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use outpost_svc::config::de;
use outpost_svc::{Invalid, Validate};
use serde::Deserialize;

use crate::cache::Policy;

fn d<const S: u64>() -> Duration {
    Duration::from_secs(S)
}
fn ms<const MS: u64>() -> Duration {
    Duration::from_millis(MS)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// Edge id used in logs and (later) health reports. Default: "edge".
    #[serde(default = "default_id")]
    pub id: String,
    /// TLS address for TCP (h1/h2) and UDP (h3), one port number. Required.
    pub listen: SocketAddr,
    /// Admin listener (/metrics, /healthz, /readyz). Required.
    pub admin: SocketAddr,
    /// How long in-flight responses may run after SIGTERM. Default: 10s.
    #[serde(default = "d::<10>", deserialize_with = "de::duration")]
    pub shutdown_grace: Duration,
    pub tls: TlsConfig,
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub http3: Http3Config,
    #[serde(default)]
    pub limits: LimitsConfig,
}

fn default_id() -> String {
    "edge".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first). Required. Relative paths are
    /// relative to the working directory.
    pub cert: PathBuf,
    /// PEM private key. Required.
    pub key: PathBuf,
    /// When the files are missing, generate a local CA (`ca.crt`/`ca.key`
    /// beside `cert`) and a leaf for localhost, 127.0.0.1, ::1, the listen
    /// address and `names`. For loopback use only. Default: false.
    #[serde(default)]
    pub generate: bool,
    /// Extra DNS names / IPs for a generated leaf. Default: none.
    #[serde(default)]
    pub names: Vec<String>,
    /// More certificates chosen by SNI; clients without SNI (or with an
    /// unknown name) get `cert`. Default: none.
    #[serde(default)]
    pub sni: Vec<SniCert>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    /// Server name this certificate answers for.
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Parent edge or origin base URLs (http:// or https://), tried in
    /// order: a retry goes to the next one. Required, at least one.
    pub urls: Vec<String>,
    /// Speak HTTP/2 upstream (h2c prior knowledge over http://, ALPN over
    /// https://). Default: false (HTTP/1.1 with keep-alive).
    #[serde(default)]
    pub http2: bool,
    /// PEM CA bundle to verify an https:// upstream. Default: none (an
    /// https upstream then fails to verify).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// TCP connect timeout. Default: 2s.
    #[serde(default = "d::<2>", deserialize_with = "de::duration")]
    pub connect_timeout: Duration,
    /// Time from sending the request to the response head. Default: 10s.
    #[serde(default = "d::<10>", deserialize_with = "de::duration")]
    pub first_byte_timeout: Duration,
    /// Longest pause between body chunks. Default: 10s.
    #[serde(default = "d::<10>", deserialize_with = "de::duration")]
    pub idle_timeout: Duration,
    /// Extra attempts for a fetch that failed before any byte was
    /// received (connect errors, timeouts, 502/503/504). Default: 2.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Backoff before the first retry, doubled each time. Default: 100ms.
    #[serde(default = "ms::<100>", deserialize_with = "de::duration")]
    pub retry_backoff: Duration,
    /// Idle keep-alive connections kept per upstream host. Default: 64.
    #[serde(default = "default_pool")]
    pub pool_max_idle_per_host: usize,
    /// How long an idle pooled connection is kept. Default: 90s.
    #[serde(default = "d::<90>", deserialize_with = "de::duration")]
    pub pool_idle_timeout: Duration,
}

fn default_retries() -> u32 {
    2
}
fn default_pool() -> usize {
    64
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Query parameters that are part of the cache key (and forwarded
    /// upstream); all others are dropped. Default: none.
    #[serde(default)]
    pub key_query_params: Vec<String>,
    /// How long a key found uncacheable goes straight upstream without
    /// queueing behind a fill. Default: 30s.
    #[serde(default = "d::<30>", deserialize_with = "de::duration")]
    pub uncacheable_ttl: Duration,
    /// Keys remembered as uncacheable at most. Default: 65536.
    #[serde(default = "default_uncacheable_max")]
    pub uncacheable_max: usize,
    /// Fraction of (Date − Last-Modified) used as freshness when the origin
    /// gives none (RFC 9111 §4.2.2). 0 disables. Default: 0.1.
    #[serde(default = "default_heuristic")]
    pub heuristic_fraction: f64,
    /// Cap on heuristic freshness. Default: 1h.
    #[serde(default = "d::<3600>", deserialize_with = "de::duration")]
    pub heuristic_max: Duration,
    /// The name in `Cache-Status` (RFC 9211). Default: "outpost".
    #[serde(default = "default_cache_name")]
    pub status_name: String,
    #[serde(default)]
    pub memory: MemoryConfig,
}

fn default_uncacheable_max() -> usize {
    65536
}
fn default_heuristic() -> f64 {
    0.1
}
fn default_cache_name() -> String {
    "outpost".into()
}

impl Default for CacheConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Byte budget of the memory tier ("256MiB", "2GB", or bytes). Default: 256MiB.
    #[serde(default = "default_capacity", deserialize_with = "de::bytes")]
    pub capacity: u64,
    /// Eviction policy: "s3-fifo" (scan-resistant, default) or "lru" (baseline).
    #[serde(default = "default_policy")]
    pub policy: Policy,
}

fn default_capacity() -> u64 {
    256 << 20
}
fn default_policy() -> Policy {
    Policy::S3Fifo
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            capacity: default_capacity(),
            policy: default_policy(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http3Config {
    /// Serve HTTP/3 on UDP at the listen port. Default: true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Connection send window: bytes in flight to one client; must cover
    /// a few multi-MB segments. Default: 16MiB.
    #[serde(default = "default_send_window", deserialize_with = "de::bytes")]
    pub send_window: u64,
    /// Per-stream receive window (clients only send GET heads). Default: 64KiB.
    #[serde(default = "default_stream_rwnd", deserialize_with = "de::bytes")]
    pub stream_receive_window: u64,
    /// Connection receive window. Default: 256KiB.
    #[serde(default = "default_conn_rwnd", deserialize_with = "de::bytes")]
    pub receive_window: u64,
    /// SO_SNDBUF/SO_RCVBUF asked for on the UDP socket (the kernel caps
    /// them at net.core.{w,r}mem_max). Default: 8MiB.
    #[serde(default = "default_udp_buf", deserialize_with = "de::bytes")]
    pub udp_buffer: u64,
    /// Idle timeout of a QUIC connection. Default: 30s.
    #[serde(default = "d::<30>", deserialize_with = "de::duration")]
    pub idle_timeout: Duration,
    /// Concurrent request streams per connection. Default: 128.
    #[serde(default = "default_streams")]
    pub max_concurrent_streams: u32,
}

fn yes() -> bool {
    true
}
fn default_send_window() -> u64 {
    16 << 20
}
fn default_stream_rwnd() -> u64 {
    64 << 10
}
fn default_conn_rwnd() -> u64 {
    256 << 10
}
fn default_udp_buf() -> u64 {
    8 << 20
}
fn default_streams() -> u32 {
    128
}

impl Default for Http3Config {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request head accepted; larger gets 431. Default: 16KiB.
    #[serde(default = "default_header_bytes", deserialize_with = "de::bytes")]
    pub max_header_bytes: u64,
    /// HTTP/1 keep-alive / HTTP/2 idle connections close after this. Default: 60s.
    #[serde(default = "d::<60>", deserialize_with = "de::duration")]
    pub client_idle_timeout: Duration,
}

fn default_header_bytes() -> u64 {
    16 << 10
}

impl Default for LimitsConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

impl Validate for EdgeConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.id.is_empty() {
            return Err(Invalid::new("id", "must not be empty"));
        }
        if self.upstream.urls.is_empty() {
            return Err(Invalid::new("upstream.urls", "needs at least one URL"));
        }
        for (i, u) in self.upstream.urls.iter().enumerate() {
            let uri: http::Uri = u
                .parse()
                .map_err(|e| Invalid::new(format!("upstream.urls[{i}]"), format!("`{u}`: {e}")))?;
            match (uri.scheme_str(), uri.authority()) {
                (Some("http" | "https"), Some(_)) => {}
                _ => {
                    return Err(Invalid::new(
                        format!("upstream.urls[{i}]"),
                        format!("`{u}` must be an http:// or https:// URL with a host"),
                    ))
                }
            }
            if uri.path() != "/" && !uri.path().is_empty() {
                return Err(Invalid::new(
                    format!("upstream.urls[{i}]"),
                    format!("`{u}` must not have a path"),
                ));
            }
        }
        if self.cache.memory.capacity < 1 << 20 {
            return Err(Invalid::new("cache.memory.capacity", "must be at least 1MiB"));
        }
        if !(0.0..=1.0).contains(&self.cache.heuristic_fraction) {
            return Err(Invalid::new("cache.heuristic_fraction", "must be between 0 and 1"));
        }
        if self
            .cache
            .key_query_params
            .iter()
            .any(|p| p.eq_ignore_ascii_case("cat"))
        {
            return Err(Invalid::new(
                "cache.key_query_params",
                "CAT is the playback token and never part of a key",
            ));
        }
        if self.http3.send_window < 1 << 20 {
            return Err(Invalid::new(
                "http3.send_window",
                "must be at least 1MiB for multi-MB segments",
            ));
        }
        if self.http3.stream_receive_window < 1024 || self.http3.receive_window < self.http3.stream_receive_window {
            return Err(Invalid::new(
                "http3.receive_window",
                "must be at least http3.stream_receive_window (>= 1KiB)",
            ));
        }
        if self.http3.max_concurrent_streams == 0 {
            return Err(Invalid::new("http3.max_concurrent_streams", "must be positive"));
        }
        if self.limits.max_header_bytes < 8192 {
            return Err(Invalid::new("limits.max_header_bytes", "must be at least 8KiB"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const MIN: &str = r#"
listen = "127.0.0.1:8443"
admin = "127.0.0.1:9443"
[tls]
cert = "c.pem"
key = "k.pem"
[upstream]
urls = ["http://127.0.0.1:8080"]
"#;

    fn parse(extra: &str) -> Result<EdgeConfig, outpost_svc::ConfigError> {
        outpost_svc::config::parse_config(Path::new("edge.toml"), &format!("{MIN}{extra}"))
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.cache.memory.capacity, 256 << 20);
        assert_eq!(c.cache.memory.policy, Policy::S3Fifo);
        assert!(c.http3.enabled);
        assert_eq!(c.upstream.retries, 2);
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = parse("[cache.memory]\npolicy = \"random\"\n").unwrap_err().to_string();
        assert!(e.contains("edge.toml") && e.contains("policy"), "{e}");
        let e = parse("[cache.memory]\ncapacity = \"10KiB\"\n").unwrap_err().to_string();
        assert!(e.contains("cache.memory.capacity"), "{e}");
        let e = parse("[cache]\nkey_query_params = [\"CAT\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key_query_params"), "{e}");
        let e = parse("[limits]\nmax_header_bites = 3\n").unwrap_err().to_string();
        assert!(e.contains("max_header_bites"), "{e}");
        let e = outpost_svc::config::parse_config::<EdgeConfig>(
            Path::new("edge.toml"),
            &MIN.replace("http://127.0.0.1:8080", "ftp://x"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("upstream.urls[0]"), "{e}");
    }
}
