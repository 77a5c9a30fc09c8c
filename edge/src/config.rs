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
    pub tls: outpost_svc::tls::ServerTls,
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub http3: Http3Config,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Where this edge is and whom it serves (sent in health reports).
    #[serde(default)]
    pub site: SiteConfig,
    /// Health reports to cache-control. Default: none (the edge does not
    /// report, and steering will not know it).
    #[serde(default)]
    pub report: Option<ReportConfig>,
    /// Playback tokens (CTA-5007 Common Access Tokens that steering
    /// signs). Default: not required.
    #[serde(default)]
    pub token: TokenConfig,
    /// Cross-origin access for browser players. Default: any origin may
    /// read responses (tokens, not cookies, guard the content).
    #[serde(default)]
    pub cors: crate::cors::CorsConfig,
}

fn default_id() -> String {
    "edge".into()
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
    /// Send the playback token of the request that started a fill (or a
    /// revalidation) upstream in the `CTA-Common-Access-Token` header, so a
    /// parent edge with `token.required` can check it. Never in the URL
    /// and never in the cache key: requests joining the fill share it.
    /// Needs `token.required` (only a token this edge verified is sent).
    /// The token is a bearer credential, so it goes only to the https://
    /// URLs in `urls` (an origin ignores it), never to an http:// one; a
    /// config with `forward_token` and only http:// upstreams is refused.
    /// A 401/403 answered to a fill that carried the token to that URL and
    /// marked as a token refusal (`outpost-refused: token`, which an edge
    /// adds to its own token refusals) is not the player's answer (this
    /// edge accepted the token): the fill fails, every request of the wave
    /// gets 502 saying the upstream refused the forwarded token, nothing is
    /// stored or remembered as uncacheable, and a stale copy within
    /// `stale-if-error` is served instead when there is one. Any other
    /// 401/403 (an origin forbidding an object) is answered as it is.
    /// Default: false (a credential goes upstream only where asked for:
    /// set it on child edges whose parent requires tokens).
    #[serde(default)]
    pub forward_token: bool,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Site name (a PoP or an ISP location). Default: "local".
    #[serde(default = "default_site")]
    pub name: String,
    /// Latitude in degrees. Default: 0.
    #[serde(default)]
    pub lat: f64,
    /// Longitude in degrees. Default: 0.
    #[serde(default)]
    pub lon: f64,
    /// ASNs of the ISPs this edge is embedded in. Default: none (an IXP
    /// or transit site).
    #[serde(default)]
    pub asns: Vec<u32>,
    /// Client prefixes (CIDR) the ISP sends to this edge. Default: none.
    #[serde(default)]
    pub prefixes: Vec<String>,
}

fn default_site() -> String {
    "local".into()
}

impl Default for SiteConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Cache-control replica base URLs (https://host:port); every report
    /// goes to all of them. Required, at least one.
    pub cache_control: Vec<String>,
    /// PEM CA bundle that signed the replicas' certificates. Required.
    pub ca: PathBuf,
    /// Key id the replicas know this edge's secret by. Default: the edge id.
    #[serde(default)]
    pub key_id: Option<String>,
    /// Shared HMAC secret, or `file:/path`. At least 16 bytes. Required.
    #[serde(deserialize_with = "de::secret")]
    pub secret: Vec<u8>,
    /// How often to report. Default: 1s.
    #[serde(default = "d::<1>", deserialize_with = "de::duration")]
    pub interval: Duration,
    /// Per-request timeout (connect + answer). Default: 1s.
    #[serde(default = "d::<1>", deserialize_with = "de::duration")]
    pub timeout: Duration,
    /// The URLs players use for this edge. Default: `https://<listen>`.
    #[serde(default)]
    pub public_urls: Vec<String>,
    /// Egress capacity in Gbit/s (load = egress / capacity). Default: 10.
    #[serde(default = "default_capacity_gbps")]
    pub capacity_gbps: f64,
    /// Connections this edge is sized for. Default: 10000.
    #[serde(default = "default_max_connections")]
    pub max_connections: u64,
    /// Leading path segments that name a title (`/synth/t0001/...` at 2
    /// is `synth/t0001`), for the content digest. Default: 2.
    #[serde(default = "default_title_depth")]
    pub title_depth: usize,
    /// Titles in the content digest (most requested in the interval).
    /// Default: 32.
    #[serde(default = "default_digest_titles")]
    pub digest_titles: usize,
}

fn default_capacity_gbps() -> f64 {
    10.0
}
fn default_max_connections() -> u64 {
    10_000
}
fn default_title_depth() -> usize {
    2
}
fn default_digest_titles() -> usize {
    32
}

impl ReportConfig {
    pub fn key_id<'a>(&'a self, edge_id: &'a str) -> &'a str {
        self.key_id.as_deref().unwrap_or(edge_id)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Refuse requests without a valid token (401/403, before the cache).
    /// Default: false: a token in the path (`/t/<token>/`) or query (`CAT`)
    /// is still stripped before the cache key, but not checked.
    #[serde(default)]
    pub required: bool,
    /// Keys tokens may be signed with: `[{ id, secret }]`, the secret
    /// literal or `file:/path`, at least 16 bytes. List the new and the old
    /// key while rotating. At least one when `required`. Default: none.
    #[serde(default, deserialize_with = "token_keys")]
    pub keys: Vec<outpost_proto::token::TokenKey>,
    /// Leeway for the token's expiry and not-before times. Default: 30s.
    #[serde(default = "d::<30>", deserialize_with = "de::duration")]
    pub clock_skew: Duration,
    /// Networks (CIDR) of child edges that forward their players' tokens
    /// (`upstream.forward_token` on the child). A token from such a peer is
    /// checked like any other except for its client network (`catnip`):
    /// this edge sees the child's address, and the child checked the
    /// network against the player. Only needed when steering binds tokens
    /// to client networks. Default: none.
    #[serde(default)]
    pub forwarders: Vec<String>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

fn token_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<outpost_proto::token::TokenKey>, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Key {
        id: String,
        #[serde(deserialize_with = "de::secret")]
        secret: Vec<u8>,
    }
    let keys = Vec::<Key>::deserialize(d)?;
    Ok(keys
        .into_iter()
        .map(|k| outpost_proto::token::TokenKey {
            id: k.id,
            secret: k.secret,
        })
        .collect())
}

/// Whether `ip` is in `cidr` (`addr/len`); false for anything that is not
/// a CIDR of `ip`'s family (an IPv4-mapped IPv6 address counts as IPv4).
pub fn cidr_contains(cidr: &str, ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let Some((addr, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(addr), Ok(len)) = (addr.parse::<IpAddr>(), len.parse::<u32>()) else {
        return false;
    };
    let (a, b, bits) = match (ip.to_canonical(), addr.to_canonical()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    if len > bits {
        return false;
    }
    let shift = bits - len;
    shift == bits || (a >> shift) == (b >> shift)
}

/// `addr/len` with a valid address and prefix length.
pub fn valid_cidr(s: &str) -> bool {
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(len) = len.parse::<u8>() else { return false };
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => len <= 32,
        Ok(std::net::IpAddr::V6(_)) => len <= 128,
        Err(_) => false,
    }
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
        if !(-90.0..=90.0).contains(&self.site.lat) || !(-180.0..=180.0).contains(&self.site.lon) {
            return Err(Invalid::new(
                "site.lat",
                "lat must be in [-90, 90] and lon in [-180, 180]",
            ));
        }
        for (i, p) in self.site.prefixes.iter().enumerate() {
            if !valid_cidr(p) {
                return Err(Invalid::new(
                    format!("site.prefixes[{i}]"),
                    format!("`{p}` is not a CIDR prefix"),
                ));
            }
        }
        if let Some(r) = &self.report {
            if r.cache_control.is_empty() {
                return Err(Invalid::new("report.cache_control", "needs at least one URL"));
            }
            for (i, u) in r.cache_control.iter().chain(&r.public_urls).enumerate() {
                let ok = u
                    .parse::<http::Uri>()
                    .is_ok_and(|uri| uri.scheme_str() == Some("https") && uri.authority().is_some());
                if !ok {
                    let key = if i < r.cache_control.len() {
                        format!("report.cache_control[{i}]")
                    } else {
                        format!("report.public_urls[{}]", i - r.cache_control.len())
                    };
                    return Err(Invalid::new(key, format!("`{u}` must be an https:// URL with a host")));
                }
            }
            if r.interval < Duration::from_millis(50) {
                return Err(Invalid::new("report.interval", "must be at least 50ms"));
            }
            if !(r.capacity_gbps > 0.0 && r.capacity_gbps.is_finite()) {
                return Err(Invalid::new("report.capacity_gbps", "must be positive"));
            }
            if r.max_connections == 0 {
                return Err(Invalid::new("report.max_connections", "must be positive"));
            }
            if r.title_depth == 0 {
                return Err(Invalid::new("report.title_depth", "must be at least 1"));
            }
        }
        if self.token.required && self.token.keys.is_empty() {
            return Err(Invalid::new(
                "token.keys",
                "needs at least one key when token.required is true",
            ));
        }
        for (i, k) in self.token.keys.iter().enumerate() {
            if k.id.is_empty() {
                return Err(Invalid::new(format!("token.keys[{i}].id"), "must not be empty"));
            }
            if self.token.keys[..i].iter().any(|o| o.id == k.id) {
                return Err(Invalid::new(
                    format!("token.keys[{i}].id"),
                    format!("`{}` is listed twice", k.id),
                ));
            }
        }
        for (i, f) in self.token.forwarders.iter().enumerate() {
            if !valid_cidr(f) {
                return Err(Invalid::new(
                    format!("token.forwarders[{i}]"),
                    format!("`{f}` is not a CIDR prefix"),
                ));
            }
        }
        if self.upstream.forward_token && !self.token.required {
            return Err(Invalid::new(
                "upstream.forward_token",
                "needs token.required = true (only a token this edge verified is forwarded)",
            ));
        }
        if self.upstream.forward_token && !self.upstream.urls.iter().any(|u| is_https(u)) {
            return Err(Invalid::new(
                "upstream.forward_token",
                "the playback token is a bearer credential and is only sent to https:// upstreams, \
                 but every upstream.urls entry is http://: reach the parent over https:// (with \
                 upstream.ca) or set forward_token = false",
            ));
        }
        if self.limits.max_header_bytes < 8192 {
            return Err(Invalid::new("limits.max_header_bytes", "must be at least 8KiB"));
        }
        Ok(())
    }
}

/// Whether an upstream URL is https:// (the only kind a forwarded token
/// goes to).
pub fn is_https(url: &str) -> bool {
    url.parse::<http::Uri>()
        .is_ok_and(|u| u.scheme() == Some(&http::uri::Scheme::HTTPS))
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
        assert!(!c.token.required && c.token.keys.is_empty());
        assert_eq!(c.token.clock_skew, Duration::from_secs(30));
        assert!(!c.upstream.forward_token && c.token.forwarders.is_empty());
    }

    #[test]
    fn forwarding_tokens_needs_required_tokens_and_forwarders_are_cidrs() {
        let keys = "[[token.keys]]\nid = \"k1\"\nsecret = \"0123456789abcdef\"\n";
        let with = |upstream: &str, token: &str| {
            outpost_svc::config::parse_config::<EdgeConfig>(
                Path::new("edge.toml"),
                &format!(
                    "{}{upstream}\n[token]\n{token}\n{keys}",
                    if upstream.contains("urls") {
                        MIN.replace("urls = [\"http://127.0.0.1:8080\"]\n", "")
                    } else {
                        MIN.to_string()
                    }
                ),
            )
        };
        let c = with(
            "urls = [\"https://parent.example:8443\", \"http://127.0.0.1:8080\"]\nforward_token = true",
            "required = true\nforwarders = [\"10.0.0.0/24\", \"::1/128\"]",
        )
        .unwrap();
        assert!(c.upstream.forward_token);
        assert_eq!(c.token.forwarders.len(), 2);
        // Only http:// upstreams: the token would go in the clear, refused.
        let e = with("forward_token = true", "required = true").unwrap_err().to_string();
        assert!(
            e.contains("edge.toml") && e.contains("upstream.forward_token") && e.contains("https://"),
            "{e}"
        );
        assert!(is_https("HTTPS://x:1") && !is_https("http://x") && !is_https("x"));
        let e = with("forward_token = true", "required = false")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("upstream.forward_token") && e.contains("token.required"),
            "{e}"
        );
        let e = with("", "required = true\nforwarders = [\"10.0.0.1\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("token.forwarders[0]"), "{e}");
    }

    #[test]
    fn cidr_membership() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(cidr_contains("10.1.2.0/24", ip("10.1.2.255")));
        assert!(!cidr_contains("10.1.2.0/24", ip("10.1.3.0")));
        assert!(cidr_contains("10.1.2.3/32", ip("10.1.2.3")));
        assert!(cidr_contains("0.0.0.0/0", ip("192.0.2.1")));
        assert!(cidr_contains("10.0.0.0/8", ip("::ffff:10.9.9.9")), "mapped IPv4");
        assert!(cidr_contains("2001:db8::/32", ip("2001:db8:1::1")));
        assert!(cidr_contains("::/0", ip("2001:db8:1::1")));
        assert!(!cidr_contains("2001:db8::/32", ip("10.0.0.1")), "other family");
        for bad in ["10.0.0.1", "10.0.0.0/33", "x/8", "10.0.0.0/-1", ""] {
            assert!(!cidr_contains(bad, ip("10.0.0.1")), "{bad}");
        }
    }

    #[test]
    fn the_example_config_parses_with_its_token_section_enabled() {
        let text = include_str!("../../configs/edge.toml");
        let (head, tail) = text.split_at(text.find("# [token]").expect("a commented [token] example"));
        let tail: Vec<&str> = tail.lines().map(|l| l.strip_prefix("# ").unwrap_or(l)).collect();
        let c: EdgeConfig =
            outpost_svc::config::parse_config(Path::new("configs/edge.toml"), &format!("{head}{}\n", tail.join("\n")))
                .unwrap();
        assert!(c.token.required);
        assert_eq!(c.token.keys[0].id, "k1");
    }

    #[test]
    fn token_section() {
        let c = parse(
            "[token]\nrequired = true\nclock_skew = \"5s\"\n\
             [[token.keys]]\nid = \"k1\"\nsecret = \"0123456789abcdef\"\n\
             [[token.keys]]\nid = \"k2\"\nsecret = \"fedcba9876543210\"\n",
        )
        .unwrap();
        assert!(c.token.required);
        assert_eq!(c.token.clock_skew, Duration::from_secs(5));
        assert_eq!(c.token.keys[1].id, "k2");
        assert!(
            !format!("{c:?}").contains("0123456789abcdef"),
            "secrets stay out of Debug"
        );
        let e = parse("[token]\nrequired = true\n").unwrap_err().to_string();
        assert!(e.contains("token.keys"), "{e}");
        let e = parse("[token]\n[[token.keys]]\nid = \"k\"\nsecret = \"short\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("16 bytes"), "{e}");
        let twice = "[[token.keys]]\nid = \"k\"\nsecret = \"0123456789abcdef\"\n";
        let e = parse(&format!("[token]\n{twice}{twice}")).unwrap_err().to_string();
        assert!(e.contains("token.keys[1].id"), "{e}");
        let e = parse("[token]\nrequire = true\n").unwrap_err().to_string();
        assert!(e.contains("require"), "{e}");
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
