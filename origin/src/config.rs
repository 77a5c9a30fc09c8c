//! The origin's TOML config (`configs/origin.toml`): where it listens, what it
//! serves (a library directory and/or the synthetic catalog), which
//! `Cache-Control` each kind of file gets, TLS and pacing.
//!
//! Every field has a default; relative paths are relative to the current
//! directory of the process. [`Validate`] refuses values that parse but make
//! no sense, naming the dotted key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderValue;
use outpost_svc::config::de;
use outpost_svc::{Invalid, Validate};
use serde::Deserialize;

use crate::path::RequestPath;

/// Largest number of titles the synthetic catalog may have.
pub const MAX_TITLES: u32 = 1_000_000;
/// Largest number of segments per synthetic rendition (a media playlist of
/// this many entries is a few MB).
pub const MAX_SEGMENTS: u32 = 100_000;
/// Largest number of renditions per synthetic title.
pub const MAX_RENDITIONS: usize = 64;
/// Largest synthetic rendition bitrate, bits per second.
pub const MAX_BITRATE: u64 = 100_000_000_000;
/// Longest synthetic segment, seconds.
pub const MAX_SEGMENT_SECONDS: u32 = 3600;

/// The whole origin config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// Address of the content listener (HTTP/1.1 and HTTP/2: h2c with prior
    /// knowledge in cleartext, ALPN `h2`/`http/1.1` with TLS). Port 0 picks a
    /// free port. Default: `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`).
    /// Default: `127.0.0.1:9080`.
    #[serde(default = "default_admin")]
    pub admin: SocketAddr,
    /// How long in-flight responses may take to finish after shutdown is
    /// triggered before their connections are closed. Default: `"10s"`.
    #[serde(default = "default_shutdown_grace", deserialize_with = "de::duration")]
    pub shutdown_grace: Duration,
    /// A directory of files to serve. Default: absent (no library).
    #[serde(default)]
    pub library: Option<LibraryConfig>,
    /// The synthetic catalog. Default: absent (disabled).
    #[serde(default)]
    pub synthetic: Option<SyntheticConfig>,
    /// `Cache-Control` per kind of file. Default: see [`CacheControlConfig`].
    #[serde(default)]
    pub cache_control: CacheControlConfig,
    /// Serve HTTPS instead of cleartext HTTP. Default: absent (cleartext).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Deliberately slow responses. Default: unpaced.
    #[serde(default)]
    pub pace: PaceConfig,
}

/// `[library]`: a directory served as-is (no listings, nothing outside it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryConfig {
    /// The directory of titles; `GET /a/b.m3u8` serves `<root>/a/b.m3u8`. It
    /// must exist when the origin starts. Default: `"library"`.
    #[serde(default = "default_library_root")]
    pub root: PathBuf,
}

/// `[synthetic]`: a generated catalog of HLS titles whose segments are
/// deterministic pseudo-random bytes (see [`crate::synthetic_bytes`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Whether the catalog is served. Default: `true` (when the
    /// `[synthetic]` table is present; an absent table means disabled).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// URL path prefix of the catalog; must start with `/`, name at least
    /// one path segment and not end with `/`. Requests under it never reach
    /// the library. Default: `"/synth"`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Number of titles, named `t0000` … (at most 1,000,000). Default: `100`.
    #[serde(default = "default_titles")]
    pub titles: u32,
    /// Bitrate of each rendition in bits per second, one rendition `r{i}`
    /// each (at most 64, each at most 100 Gbit/s). Default:
    /// `[800_000, 2_500_000, 6_000_000]`.
    #[serde(default = "default_renditions")]
    pub renditions: Vec<u64>,
    /// Duration of every segment in whole seconds (1..=3600); a segment is
    /// `bitrate * segment_seconds / 8` bytes. Default: `4`.
    #[serde(default = "default_segment_seconds")]
    pub segment_seconds: u32,
    /// Segments per rendition (1..=100,000). Default: `150` (10 minutes at
    /// 4 s).
    #[serde(default = "default_segments")]
    pub segments: u32,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            prefix: default_prefix(),
            titles: default_titles(),
            renditions: default_renditions(),
            segment_seconds: default_segment_seconds(),
            segments: default_segments(),
        }
    }
}

impl SyntheticConfig {
    /// Size in bytes of every segment of rendition `bitrate`.
    pub fn segment_size(&self, bitrate: u64) -> u64 {
        bitrate.saturating_mul(u64::from(self.segment_seconds)) / 8
    }
}

/// `[cache_control]`: the `Cache-Control` value sent for each kind of file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheControlConfig {
    /// Media segments and init segments (`.m4s .ts .mp4 .m4a .aac`).
    /// Default: `"public, max-age=31536000, immutable"`.
    #[serde(default = "default_cc_segment")]
    pub segment: String,
    /// Finished playlists: `.m3u8` containing `#EXT-X-ENDLIST`, `.mpd` with
    /// `type="static"` (or no `type`). Default: `"public, max-age=3600"`.
    #[serde(default = "default_cc_vod_playlist")]
    pub vod_playlist: String,
    /// Playlists that still change: `.m3u8` without `#EXT-X-ENDLIST`
    /// (multivariant playlists included), `.mpd` with `type="dynamic"`.
    /// Default: `"public, max-age=2"`.
    #[serde(default = "default_cc_live_playlist")]
    pub live_playlist: String,
    /// Everything else. Default: `"public, max-age=300"`.
    #[serde(default = "default_cc_other")]
    pub other: String,
}

impl Default for CacheControlConfig {
    fn default() -> Self {
        Self {
            segment: default_cc_segment(),
            vod_playlist: default_cc_vod_playlist(),
            live_playlist: default_cc_live_playlist(),
            other: default_cc_other(),
        }
    }
}

/// `[tls]`: serve HTTPS (ALPN `h2`, `http/1.1`) instead of cleartext.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first). Default: `"state/certs/origin.crt"`.
    #[serde(default = "default_tls_cert")]
    pub cert: PathBuf,
    /// PEM private key of the leaf. Default: `"state/certs/origin.key"`.
    #[serde(default = "default_tls_key")]
    pub key: PathBuf,
    /// When `cert` or `key` is missing, create a local CA (`ca.crt`,
    /// `ca.key` in the directory of `cert`, kept if present) and a leaf for
    /// localhost and the loopback addresses at `cert`/`key`. Default: `false`.
    #[serde(default)]
    pub generate: bool,
}

/// `[pace]`: hold every response body to a byte rate (a deliberately slow
/// origin for tests and benchmarks).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaceConfig {
    /// Bytes per second per response; a number or a size such as `"1MiB"`.
    /// `0` means unpaced. Default: `0`.
    #[serde(default, deserialize_with = "de::bytes")]
    pub bytes_per_second: u64,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9080))
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}
fn default_library_root() -> PathBuf {
    PathBuf::from("library")
}
fn default_true() -> bool {
    true
}
fn default_prefix() -> String {
    "/synth".to_owned()
}
fn default_titles() -> u32 {
    100
}
fn default_renditions() -> Vec<u64> {
    vec![800_000, 2_500_000, 6_000_000]
}
fn default_segment_seconds() -> u32 {
    4
}
fn default_segments() -> u32 {
    150
}
fn default_cc_segment() -> String {
    "public, max-age=31536000, immutable".to_owned()
}
fn default_cc_vod_playlist() -> String {
    "public, max-age=3600".to_owned()
}
fn default_cc_live_playlist() -> String {
    "public, max-age=2".to_owned()
}
fn default_cc_other() -> String {
    "public, max-age=300".to_owned()
}
fn default_tls_cert() -> PathBuf {
    PathBuf::from("state/certs/origin.crt")
}
fn default_tls_key() -> PathBuf {
    PathBuf::from("state/certs/origin.key")
}

impl OriginConfig {
    /// The synthetic catalog config, if it is enabled.
    pub fn synthetic_enabled(&self) -> Option<&SyntheticConfig> {
        self.synthetic.as_ref().filter(|s| s.enabled)
    }
}

impl Validate for OriginConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.listen == self.admin && self.listen.port() != 0 {
            return Err(Invalid::new("admin", "must differ from `listen`"));
        }
        if let Some(lib) = &self.library {
            if lib.root.as_os_str().is_empty() {
                return Err(Invalid::new("library.root", "must not be empty"));
            }
        }
        if let Some(s) = self.synthetic_enabled() {
            validate_synthetic(s)?;
        }
        if self.library.is_none() && self.synthetic_enabled().is_none() {
            return Err(Invalid::new(
                "library",
                "nothing to serve: configure [library] or enable [synthetic]",
            ));
        }
        let cc = &self.cache_control;
        for (key, value) in [
            ("cache_control.segment", &cc.segment),
            ("cache_control.vod_playlist", &cc.vod_playlist),
            ("cache_control.live_playlist", &cc.live_playlist),
            ("cache_control.other", &cc.other),
        ] {
            if value.trim().is_empty() {
                return Err(Invalid::new(key, "must not be empty"));
            }
            if HeaderValue::from_str(value).is_err() {
                return Err(Invalid::new(key, format!("`{value}` is not a valid header value")));
            }
        }
        if let Some(tls) = &self.tls {
            if tls.cert.as_os_str().is_empty() {
                return Err(Invalid::new("tls.cert", "must not be empty"));
            }
            if tls.key.as_os_str().is_empty() {
                return Err(Invalid::new("tls.key", "must not be empty"));
            }
        }
        Ok(())
    }
}

fn validate_synthetic(s: &SyntheticConfig) -> Result<(), Invalid> {
    match RequestPath::parse(&s.prefix) {
        Ok(p) if !p.segments().is_empty() && p.normalized() == s.prefix => {}
        _ => {
            return Err(Invalid::new(
                "synthetic.prefix",
                format!(
                    "`{}` must start with `/`, name at least one segment, and contain no empty, `.`, `..` or percent-encoded segments nor a trailing `/` (e.g. \"/synth\")",
                    s.prefix
                ),
            ))
        }
    }
    if s.titles == 0 || s.titles > MAX_TITLES {
        return Err(Invalid::new(
            "synthetic.titles",
            format!("must be between 1 and {MAX_TITLES}"),
        ));
    }
    if s.segments == 0 || s.segments > MAX_SEGMENTS {
        return Err(Invalid::new(
            "synthetic.segments",
            format!("must be between 1 and {MAX_SEGMENTS}"),
        ));
    }
    if s.segment_seconds == 0 || s.segment_seconds > MAX_SEGMENT_SECONDS {
        return Err(Invalid::new(
            "synthetic.segment_seconds",
            format!("must be between 1 and {MAX_SEGMENT_SECONDS}"),
        ));
    }
    if s.renditions.is_empty() {
        return Err(Invalid::new("synthetic.renditions", "must list at least one bitrate"));
    }
    if s.renditions.len() > MAX_RENDITIONS {
        return Err(Invalid::new(
            "synthetic.renditions",
            format!("at most {MAX_RENDITIONS} renditions"),
        ));
    }
    for (i, &bitrate) in s.renditions.iter().enumerate() {
        if bitrate == 0 || bitrate > MAX_BITRATE {
            return Err(Invalid::new(
                format!("synthetic.renditions[{i}]"),
                format!("bitrate {bitrate} must be between 1 and {MAX_BITRATE} bits per second"),
            ));
        }
        if s.segment_size(bitrate) == 0 {
            return Err(Invalid::new(
                format!("synthetic.renditions[{i}]"),
                format!(
                    "bitrate {bitrate} makes empty segments (bitrate * segment_seconds / 8 must be at least 1 byte)"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_svc::config::parse_config;
    use std::path::Path;

    fn parse(text: &str) -> Result<OriginConfig, String> {
        parse_config::<OriginConfig>(Path::new("origin.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn shipped_config_parses() {
        let text = include_str!("../../configs/origin.toml");
        let cfg = parse(text).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(cfg.synthetic_enabled().is_some());
    }

    #[test]
    fn defaults_apply() {
        let cfg = parse("[synthetic]\n").unwrap();
        assert_eq!(cfg.listen, default_listen());
        assert_eq!(cfg.admin, default_admin());
        assert_eq!(cfg.shutdown_grace, Duration::from_secs(10));
        let s = cfg.synthetic_enabled().unwrap();
        assert_eq!(s.prefix, "/synth");
        assert_eq!(s.titles, 100);
        assert_eq!(s.renditions, vec![800_000, 2_500_000, 6_000_000]);
        assert_eq!(s.segment_size(800_000), 400_000);
        assert_eq!(cfg.cache_control.segment, "public, max-age=31536000, immutable");
        assert_eq!(cfg.pace.bytes_per_second, 0);
        assert!(cfg.tls.is_none());
        let cfg = parse("[library]\n").unwrap();
        assert_eq!(cfg.library.unwrap().root, PathBuf::from("library"));
    }

    #[test]
    fn full_example_parses() {
        let cfg = parse(
            r#"
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
shutdown_grace = "2s"
[library]
root = "x"
[synthetic]
enabled = true
prefix = "/s/v1"
titles = 3
renditions = [1_000, 2_000]
segment_seconds = 2
segments = 5
[cache_control]
segment = "public, max-age=60"
[tls]
cert = "a.crt"
key = "a.key"
generate = true
[pace]
bytes_per_second = "1MiB"
"#,
        )
        .unwrap();
        assert_eq!(cfg.shutdown_grace, Duration::from_secs(2));
        assert_eq!(cfg.pace.bytes_per_second, 1 << 20);
        assert_eq!(cfg.cache_control.other, "public, max-age=300");
        assert!(cfg.tls.unwrap().generate);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("", "key `library`"),
            ("[synthetic]\nenabled = false\n", "key `library`"),
            ("[synthetic]\nrenditions = []\n", "key `synthetic.renditions`"),
            ("[synthetic]\nrenditions = [1000, 0]\n", "key `synthetic.renditions[1]`"),
            (
                "[synthetic]\nrenditions = [1]\nsegment_seconds = 1\n",
                "key `synthetic.renditions[0]`",
            ),
            ("[synthetic]\nsegments = 0\n", "key `synthetic.segments`"),
            ("[synthetic]\ntitles = 0\n", "key `synthetic.titles`"),
            ("[synthetic]\nsegment_seconds = 0\n", "key `synthetic.segment_seconds`"),
            ("[synthetic]\nprefix = \"synth\"\n", "key `synthetic.prefix`"),
            ("[synthetic]\nprefix = \"/\"\n", "key `synthetic.prefix`"),
            ("[synthetic]\nprefix = \"/synth/\"\n", "key `synthetic.prefix`"),
            ("[synthetic]\nprefix = \"/a/../b\"\n", "key `synthetic.prefix`"),
            ("[synthetic]\nprefix = \"/a%2fb\"\n", "key `synthetic.prefix`"),
            ("[library]\nroot = \"\"\n", "key `library.root`"),
            (
                "[synthetic]\n[cache_control]\nother = \"a\\nb\"\n",
                "key `cache_control.other`",
            ),
            (
                "[synthetic]\n[cache_control]\nsegment = \" \"\n",
                "key `cache_control.segment`",
            ),
            ("admin = \"127.0.0.1:8080\"\n[synthetic]\n", "key `admin`"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = parse("[synthetic]\nsegmnets = 3\n").unwrap_err();
        assert!(err.contains("segmnets"), "{err}");
        let err = parse("[synthetic]\n[pace]\nrate = 3\n").unwrap_err();
        assert!(err.contains("rate"), "{err}");
    }
}
