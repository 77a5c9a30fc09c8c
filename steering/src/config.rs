//! The one config struct of `outpost steering --config steering.toml`.
//! Every field documents its default; unknown keys are refused.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use outpost_svc::config::de;
use outpost_svc::tls::ServerTls;
use outpost_svc::{Invalid, Validate};
use serde::Deserialize;

use crate::catalog::CatalogConfig;
use crate::geo::GeoConfig;
use crate::rank;

fn d<const S: u64>() -> Duration {
    Duration::from_secs(S)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteeringConfig {
    /// Name in logs. Default: "steering".
    #[serde(default = "default_id")]
    pub id: String,
    /// HTTPS address of the playback API and steering manifests. Required.
    pub listen: SocketAddr,
    /// Admin listener (/metrics, /healthz, /readyz). Required.
    pub admin: SocketAddr,
    /// The URL players reach this service at (steering and session URLs
    /// are built from it). Default: `https://<listen>`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// How long open connections may run after SIGTERM. Default: 5s.
    #[serde(default = "d::<5>", deserialize_with = "de::duration")]
    pub shutdown_grace: Duration,
    pub tls: ServerTls,
    pub cache_control: CacheControlSource,
    #[serde(default)]
    pub geo: GeoConfig,
    #[serde(default)]
    pub rank: RankConfig,
    pub tokens: TokensConfig,
    #[serde(default)]
    pub entitlement: EntitlementConfig,
    /// Where the titles' own playlists and MPDs are read from, to build
    /// per-session manifests. Required.
    pub origin: OriginSource,
    /// Steering manifest TTL (how often players ask again). Default: 10s.
    #[serde(default = "d::<10>", deserialize_with = "de::duration")]
    pub steering_ttl: Duration,
    /// Proxies (CIDR) whose `X-Forwarded-For` is believed. Default: none.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// The web page at `/`. Default: every field's default.
    #[serde(default)]
    pub page: PageConfig,
}

fn default_id() -> String {
    "steering".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheControlSource {
    /// Replica base URLs (https://host:port); steering follows them all.
    /// Required, at least one.
    pub urls: Vec<String>,
    /// PEM CA that signed the replicas' certificates. Required.
    pub ca: PathBuf,
    /// A replica silent this long (no event, not even a heartbeat) is
    /// treated as gone and reconnected. Default: 5s.
    #[serde(default = "d::<5>", deserialize_with = "de::duration")]
    pub quiet: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankConfig {
    /// Edges per answer. Default: 4.
    #[serde(default = "default_k")]
    pub k: usize,
    /// An edge above this × its site's mean load goes last in its site. Default: 1.25.
    #[serde(default = "default_bounded")]
    pub bounded_load: f64,
    /// Below this load (0..1) an edge is never "over" the bounded-load
    /// limit: near idle, load differences are noise and would move
    /// players for nothing. Default: 0.1.
    #[serde(default = "default_bounded_floor")]
    pub bounded_load_floor: f64,
    /// Sites ranked after every ISP and nearby site, in this order. Default: none.
    #[serde(default)]
    pub fallback_sites: Vec<String>,
}

fn default_k() -> usize {
    4
}
fn default_bounded() -> f64 {
    1.25
}
fn default_bounded_floor() -> f64 {
    0.1
}

impl Default for RankConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

impl RankConfig {
    pub fn policy(&self) -> rank::Policy {
        rank::Policy {
            k: self.k,
            bounded_load: self.bounded_load,
            bounded_load_floor: self.bounded_load_floor,
            fallback_sites: self.fallback_sites.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Key id (in the token, so keys can rotate). Required.
    pub id: String,
    /// HMAC secret, or `file:/path`; at least 16 bytes. Required.
    #[serde(deserialize_with = "de::secret")]
    pub secret: Vec<u8>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensConfig {
    /// Playback token keys; the first signs, the edges accept all of
    /// theirs. Sessions are sealed with a secret derived from the first
    /// and opened with the one of any listed key, so putting a new key
    /// first keeps existing sessions. Required, at least one.
    pub keys: Vec<KeyEntry>,
    /// Token (and session) lifetime. Default: 6h.
    #[serde(default = "d::<21600>", deserialize_with = "de::duration")]
    pub ttl: Duration,
    /// Bind each token to the client's /24 (IPv4) or /48 (IPv6).
    /// Default: false (players behind changing NATs keep playing).
    #[serde(default)]
    pub bind_client_network: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitlementConfig {
    /// Secret that signs subscriber tokens (issued by the subscriber
    /// system; see `outpost_steering::entitlement`), or `file:/path`.
    /// Default: none (subscriber tokens are refused).
    #[serde(default, deserialize_with = "de::optional_secret")]
    pub subscriber_secret: Option<Vec<u8>>,
    /// Backends allowed to call the API with `Authorization: Bearer
    /// <secret>`; they may name the client IP. Default: none.
    #[serde(default)]
    pub api_keys: Vec<KeyEntry>,
    /// Play without any credential (a demo). Default: false.
    #[serde(default)]
    pub open: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginSource {
    /// Origin (or a parent edge) base URL, http:// or https://. Required.
    pub url: String,
    /// PEM CA for an https:// origin. Default: none.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// How long a fetched playlist / MPD is reused. Default: 60s.
    #[serde(default = "d::<60>", deserialize_with = "de::duration")]
    pub cache_for: Duration,
}

/// The `[page]` section: the demo page steering serves at `/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageConfig {
    /// Serve the page. When false, `/` is the text view for every client
    /// (whatever its `Accept`), and `/v1/page-config` and `/assets/*`
    /// answer 404: a production steering host serves the playback API, not
    /// a demo page. Default: true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Base URL (http:// or https://) of a demo supervisor's control API
    /// (`GET {control_url}/v1/edges`, `POST {control_url}/v1/edges/{id}/stop`
    /// and `/start`); the browser calls it directly, so it must answer with
    /// CORS headers. When set, the page shows Stop/Start buttons per edge.
    /// Default: none (the page explains how to drain or stop an edge by hand).
    #[serde(default)]
    pub control_url: Option<String>,
    /// A `node_modules` directory holding the `hls.js` and `dashjs`
    /// packages (`cd web && npm ci`); `/assets/hls.js` and `/assets/dash.js`
    /// are served from their `dist/` files. Default: `web/node_modules`
    /// under the working directory when it exists (without the players the
    /// page still shows the edges and the play answer).
    #[serde(default)]
    pub assets: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

impl Default for PageConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

impl SteeringConfig {
    pub fn public_url(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("https://{bound}"))
            .trim_end_matches('/')
            .to_string()
    }
}

/// An absolute http:// or https:// URL with a host.
fn is_http_url(u: &str) -> bool {
    u.parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some())
}

impl Validate for SteeringConfig {
    fn validate(&self) -> Result<(), Invalid> {
        self.geo.validate()?;
        if self.cache_control.urls.is_empty() {
            return Err(Invalid::new("cache_control.urls", "needs at least one replica URL"));
        }
        for (i, u) in self.cache_control.urls.iter().enumerate() {
            if !u.starts_with("https://") || u.parse::<http::Uri>().is_err() {
                return Err(Invalid::new(
                    format!("cache_control.urls[{i}]"),
                    format!("`{u}` must be an https:// URL"),
                ));
            }
        }
        if self.tokens.keys.is_empty() {
            return Err(Invalid::new("tokens.keys", "needs at least one key"));
        }
        if self.tokens.ttl < Duration::from_secs(60) {
            return Err(Invalid::new("tokens.ttl", "must be at least 60s"));
        }
        if self.rank.k == 0 {
            return Err(Invalid::new("rank.k", "must be at least 1"));
        }
        if !(self.rank.bounded_load >= 1.0 && self.rank.bounded_load.is_finite()) {
            return Err(Invalid::new("rank.bounded_load", "must be at least 1.0"));
        }
        if !(0.0..=1.0).contains(&self.rank.bounded_load_floor) {
            return Err(Invalid::new("rank.bounded_load_floor", "must be between 0 and 1"));
        }
        if !is_http_url(&self.origin.url) {
            return Err(Invalid::new(
                "origin.url",
                format!("`{}` must be an http:// or https:// URL", self.origin.url),
            ));
        }
        for (i, p) in self.trusted_proxies.iter().enumerate() {
            if rank::parse_prefix(p).is_none() {
                return Err(Invalid::new(
                    format!("trusted_proxies[{i}]"),
                    format!("`{p}` is not a CIDR prefix"),
                ));
            }
        }
        for (i, t) in self.catalog.titles.iter().enumerate() {
            if !(t.path.starts_with('/') && t.path.ends_with('/')) {
                return Err(Invalid::new(
                    format!("catalog.titles[{i}].path"),
                    "must start and end with `/`",
                ));
            }
            if t.hls.is_none() && t.dash.is_none() {
                return Err(Invalid::new(format!("catalog.titles[{i}]"), "needs hls or dash"));
            }
        }
        if let Some(u) = &self.page.control_url {
            if !is_http_url(u) {
                return Err(Invalid::new(
                    "page.control_url",
                    format!("`{u}` must be an http:// or https:// URL"),
                ));
            }
        }
        if let Some(u) = &self.public_url {
            if !u.starts_with("https://") {
                return Err(Invalid::new("public_url", "must be an https:// URL"));
            }
        }
        Ok(())
    }
}
