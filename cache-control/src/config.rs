//! The one config struct of `outpost cache-control --config cc.toml`.
//! Every field documents its default; unknown keys are refused.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use outpost_svc::config::de;
use outpost_svc::tls::ServerTls;
use outpost_svc::{Invalid, Validate};
use serde::Deserialize;

use crate::state::{Policy, Thresholds};

fn d<const S: u64>() -> Duration {
    Duration::from_secs(S)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheControlConfig {
    /// This replica's name, shown in the stream and `/v1/edges`.
    /// Default: "cache-control".
    #[serde(default = "default_id")]
    pub id: String,
    /// HTTPS address for reports, `/v1/edges` and `/v1/stream`. Required.
    pub listen: SocketAddr,
    /// Admin listener (/metrics, /healthz, /readyz). Required.
    pub admin: SocketAddr,
    /// How long open connections may run after SIGTERM. Default: 5s.
    #[serde(default = "d::<5>", deserialize_with = "de::duration")]
    pub shutdown_grace: Duration,
    pub tls: ServerTls,
    #[serde(default)]
    pub liveness: LivenessConfig,
    #[serde(default)]
    pub overload: OverloadConfig,
    #[serde(default)]
    pub reports: ReportsConfig,
    #[serde(default)]
    pub stream: StreamConfig,
    /// The edges allowed to report, with their keys. Each is known from
    /// the start (as `down`) unless `declared = false`.
    #[serde(default)]
    pub edges: Vec<EdgeEntry>,
}

fn default_id() -> String {
    "cache-control".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LivenessConfig {
    /// The interval edges report at (their `report.interval`). Default: 1s.
    #[serde(default = "d::<1>", deserialize_with = "de::duration")]
    pub report_interval: Duration,
    /// Silence for this many intervals ⇒ `down`. Default: 3.
    #[serde(default = "three")]
    pub missed_intervals: u32,
    /// Consecutive good reports before a down edge is `up` again. Default: 3.
    #[serde(default = "three")]
    pub readmit_reports: u32,
    /// Watch report connections: when the connection that carried an
    /// edge's latest admitted report closes (a killed edge's kernel closes
    /// it at once) and no new report comes within `report_interval` +
    /// `connection_grace`, the edge is `down` (reason `connection-lost`),
    /// well before `missed_intervals` run out. Turn it off when reports
    /// come through something that opens a connection per report (a proxy
    /// with `Connection: close`): there, one lost report would be enough.
    /// Edges must report at least every `report_interval` (their
    /// `[report] interval` no longer than it), or an ordinary connection
    /// close marks them down. Default: true.
    #[serde(default = "yes")]
    pub connection_lost: bool,
    /// Time beyond one interval a live edge has to report again after its
    /// connection closed: a new TCP + TLS handshake (about 2 round trips)
    /// and scheduling delays. At least 100ms. Default: 500ms.
    #[serde(default = "half_second", deserialize_with = "de::duration")]
    pub connection_grace: Duration,
}

fn three() -> u32 {
    3
}

fn half_second() -> Duration {
    Duration::from_millis(500)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverloadConfig {
    /// CPU load (0–1 of all cores) above which an edge is `overloaded`. Default: 0.9.
    #[serde(default = "nine_tenths")]
    pub cpu: f64,
    /// Egress / capacity above which an edge is `overloaded`. Default: 0.9.
    #[serde(default = "nine_tenths")]
    pub bandwidth: f64,
    /// Connections / max connections above which an edge is `overloaded`. Default: 0.9.
    #[serde(default = "nine_tenths")]
    pub connections: f64,
    /// An overloaded edge is `up` again only below threshold × this. Default: 0.85.
    #[serde(default = "hysteresis")]
    pub hysteresis: f64,
}

fn nine_tenths() -> f64 {
    0.9
}
fn hysteresis() -> f64 {
    0.85
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsConfig {
    /// Largest report body; larger is refused with 413 before it is read
    /// whole or parsed. Default: 64KiB.
    #[serde(default = "default_max_body", deserialize_with = "de::bytes")]
    pub max_body: u64,
    /// Largest difference between a report's signed timestamp and this
    /// replica's clock. Default: 5s.
    #[serde(default = "d::<5>", deserialize_with = "de::duration")]
    pub max_skew: Duration,
}

fn default_max_body() -> u64 {
    64 << 10
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// A heartbeat event is sent when nothing else was sent for this long,
    /// so subscribers can tell a quiet replica from a dead one. Default: 1s.
    #[serde(default = "d::<1>", deserialize_with = "de::duration")]
    pub heartbeat: Duration,
    /// Changes kept for subscribers that reconnect (older cursors get a
    /// snapshot). Default: 4096.
    #[serde(default = "default_log")]
    pub resume_log: usize,
}

fn default_log() -> usize {
    4096
}

/// One edge allowed to report, with the key (or keys) it signs with. Give
/// either `key_id` + `secret` (one key) or `keys` (several, for rotating
/// without downtime), not both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeEntry {
    /// The edge id (its `id` in edge.toml). Required.
    pub id: String,
    /// The key id the edge signs with. Only with `secret`. Default: the
    /// edge id.
    #[serde(default)]
    pub key_id: Option<String>,
    /// The shared HMAC secret, or `file:/path/to/secret`. At least 16
    /// bytes. Required unless `keys` is given.
    #[serde(default, deserialize_with = "de::optional_secret")]
    pub secret: Option<Vec<u8>>,
    /// Every key the edge may sign with, e.g. `[{ id = "edge-a.r2", secret
    /// = "file:…" }, { id = "edge-a.r1", secret = "file:…" }]`: a report
    /// signed with any of them is accepted. Instead of `key_id` + `secret`;
    /// at least one. Default: none (the `key_id` + `secret` form).
    #[serde(default)]
    pub keys: Option<Vec<ReportKey>>,
    /// Known (as `down`) before its first report. Default: true.
    #[serde(default = "yes")]
    pub declared: bool,
}

/// One report key of an edge, in `[[edges]] keys`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportKey {
    /// The key id the edge sends (its `[report] key_id`). Required.
    pub id: String,
    /// The shared HMAC secret, or `file:/path/to/secret`. At least 16
    /// bytes. Required.
    #[serde(deserialize_with = "de::secret")]
    pub secret: Vec<u8>,
}

fn yes() -> bool {
    true
}

macro_rules! defaults_from_empty_toml {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                toml::from_str("").expect("defaults")
            }
        }
    )*};
}
defaults_from_empty_toml!(LivenessConfig, OverloadConfig, ReportsConfig, StreamConfig);

impl EdgeEntry {
    /// The keys this edge may sign with, as (key id, secret), in config
    /// order: `keys`, or the one `key_id` (default: the edge id) + `secret`.
    /// Empty only for an entry validation refuses.
    pub fn keys(&self) -> Vec<(&str, &[u8])> {
        match (&self.keys, &self.secret) {
            (Some(keys), _) => keys.iter().map(|k| (k.id.as_str(), k.secret.as_slice())).collect(),
            (None, Some(secret)) => vec![(self.key_id.as_deref().unwrap_or(&self.id), secret.as_slice())],
            (None, None) => Vec::new(),
        }
    }

    /// Either `keys` or `key_id` + `secret`, and every key id non-empty.
    fn validate(&self, at: &str) -> Result<(), Invalid> {
        match (&self.keys, &self.secret) {
            (Some(_), Some(_)) => {
                return Err(Invalid::new(
                    format!("{at}.keys"),
                    "give either `keys` or `key_id` + `secret`, not both",
                ))
            }
            (Some(_), None) if self.key_id.is_some() => {
                return Err(Invalid::new(
                    format!("{at}.key_id"),
                    "goes with `secret`; with `keys`, each key has its own `id`",
                ))
            }
            (Some(keys), None) if keys.is_empty() => {
                return Err(Invalid::new(format!("{at}.keys"), "needs at least one key"))
            }
            (None, None) => {
                return Err(Invalid::new(
                    format!("{at}.secret"),
                    "required (or `keys`, a list of `{ id, secret }`)",
                ))
            }
            _ => {}
        }
        for (j, k) in self.keys.iter().flatten().enumerate() {
            if k.id.is_empty() {
                return Err(Invalid::new(format!("{at}.keys[{j}].id"), "must not be empty"));
            }
        }
        Ok(())
    }
}

impl CacheControlConfig {
    /// The liveness rules this config describes.
    pub fn policy(&self) -> Policy {
        Policy {
            interval_ms: self.liveness.report_interval.as_millis() as u64,
            missed_intervals: self.liveness.missed_intervals,
            readmit_reports: self.liveness.readmit_reports,
            connection_grace_ms: self
                .liveness
                .connection_lost
                .then_some(self.liveness.connection_grace.as_millis() as u64),
            thresholds: Thresholds {
                cpu: self.overload.cpu,
                bandwidth: self.overload.bandwidth,
                connections: self.overload.connections,
                hysteresis: self.overload.hysteresis,
            },
        }
    }
}

impl Validate for CacheControlConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.id.is_empty() {
            return Err(Invalid::new("id", "must not be empty"));
        }
        let l = &self.liveness;
        if l.report_interval < Duration::from_millis(50) {
            return Err(Invalid::new("liveness.report_interval", "must be at least 50ms"));
        }
        if l.missed_intervals == 0 {
            return Err(Invalid::new("liveness.missed_intervals", "must be at least 1"));
        }
        if l.readmit_reports == 0 {
            return Err(Invalid::new("liveness.readmit_reports", "must be at least 1"));
        }
        if l.connection_lost && l.connection_grace < Duration::from_millis(100) {
            return Err(Invalid::new(
                "liveness.connection_grace",
                "must be at least 100ms (a reconnect takes a TCP + TLS handshake)",
            ));
        }
        for (key, v) in [
            ("overload.cpu", self.overload.cpu),
            ("overload.bandwidth", self.overload.bandwidth),
            ("overload.connections", self.overload.connections),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(Invalid::new(key, "must be a positive fraction"));
            }
        }
        if !(self.overload.hysteresis > 0.0 && self.overload.hysteresis <= 1.0) {
            return Err(Invalid::new("overload.hysteresis", "must be in (0, 1]"));
        }
        if self.reports.max_body < 1024 {
            return Err(Invalid::new("reports.max_body", "must be at least 1KiB"));
        }
        if self.stream.heartbeat < Duration::from_millis(50) {
            return Err(Invalid::new("stream.heartbeat", "must be at least 50ms"));
        }
        let (mut ids, mut keys) = (HashSet::new(), HashSet::new());
        for (i, e) in self.edges.iter().enumerate() {
            if e.id.is_empty() {
                return Err(Invalid::new(format!("edges[{i}].id"), "must not be empty"));
            }
            if !ids.insert(e.id.as_str()) {
                return Err(Invalid::new(
                    format!("edges[{i}].id"),
                    format!("`{}` is listed twice", e.id),
                ));
            }
            e.validate(&format!("edges[{i}]"))?;
            for (j, (key_id, _)) in e.keys().into_iter().enumerate() {
                if !keys.insert(key_id) {
                    let at = match e.keys {
                        Some(_) => format!("edges[{i}].keys[{j}].id"),
                        None => format!("edges[{i}].key_id"),
                    };
                    return Err(Invalid::new(at, format!("`{key_id}` is used twice")));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
listen = "127.0.0.1:7443"
admin = "127.0.0.1:7080"
[tls]
cert = "c.crt"
key = "c.key"
"#;

    fn parse(extra: &str) -> Result<CacheControlConfig, String> {
        outpost_svc::config::parse_config(Path::new("cc.toml"), &format!("{BASE}{extra}")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = parse("").unwrap();
        assert_eq!(c.liveness.report_interval, Duration::from_secs(1));
        assert_eq!(c.policy().missed_intervals, 3);
        assert_eq!(c.policy().readmit_reports, 3);
        assert_eq!(c.policy().connection_grace_ms, Some(500));
        assert_eq!(c.policy().connection_limit_ms(), Some(1500));
        let off = parse("[liveness]\nconnection_lost = false\nconnection_grace = \"200ms\"\n").unwrap();
        assert_eq!(off.policy().connection_grace_ms, None);
        assert!(parse("[liveness]\nconnection_grace = \"10ms\"\n").is_err());
        let short = parse("[liveness]\nreport_interval = \"300ms\"\nconnection_grace = \"100ms\"\n").unwrap();
        assert_eq!(short.policy().connection_limit_ms(), Some(400));
        assert_eq!(c.reports.max_body, 64 << 10);
        assert!(c.edges.is_empty());
    }

    #[test]
    fn bad_configs_name_the_key() {
        let e = parse("[[edges]]\nid = \"a\"\nsecret = \"short\"\n").unwrap_err();
        assert!(e.contains("cc.toml") && e.contains("16 bytes"), "{e}");
        let two = "[[edges]]\nid = \"a\"\nsecret = \"0123456789abcdef\"\n";
        let e = parse(&format!("{two}{two}")).unwrap_err();
        assert!(e.contains("edges[1].id"), "{e}");
        let e = parse("[liveness]\nreport_interval = \"1ms\"\n").unwrap_err();
        assert!(e.contains("liveness.report_interval"), "{e}");
        let e = parse("[overload]\nhysteresis = 1.5\n").unwrap_err();
        assert!(e.contains("overload.hysteresis"), "{e}");
        let e = parse("surprise = 1\n").unwrap_err();
        assert!(e.contains("surprise"), "{e}");
        let e = parse("[[edges]]\nid = \"a\"\nsecret = \"file:/nonexistent/secret\"\n").unwrap_err();
        assert!(e.contains("/nonexistent/secret"), "{e}");
    }

    #[test]
    fn an_edge_has_one_key_or_a_list_of_keys() {
        const S1: &str = "0123456789abcdef-one";
        const S2: &str = "0123456789abcdef-two";
        // The one-key form: key id defaults to the edge id.
        let c = parse(&format!("[[edges]]\nid = \"a\"\nsecret = \"{S1}\"\n")).unwrap();
        assert_eq!(c.edges[0].keys(), [("a", S1.as_bytes())]);
        let c = parse(&format!(
            "[[edges]]\nid = \"a\"\nkey_id = \"a.r1\"\nsecret = \"{S1}\"\n"
        ))
        .unwrap();
        assert_eq!(c.edges[0].keys(), [("a.r1", S1.as_bytes())]);
        // The list form, in config order.
        let two = format!(
            "[[edges]]\nid = \"a\"\nkeys = [{{ id = \"a.r2\", secret = \"{S2}\" }}, {{ id = \"a.r1\", secret = \"{S1}\" }}]\n"
        );
        let c = parse(&two).unwrap();
        assert_eq!(c.edges[0].keys(), [("a.r2", S2.as_bytes()), ("a.r1", S1.as_bytes())]);
        assert!(c.edges[0].declared);

        let refused = |extra: &str, key: &str, why: &str| {
            let e = parse(extra).unwrap_err();
            assert!(
                e.contains("cc.toml") && e.contains(&format!("`{key}`")) && e.contains(why),
                "{extra}: {e}"
            );
        };
        refused(
            &format!("{two}secret = \"{S1}\"\n"),
            "edges[0].keys",
            "either `keys` or `key_id` + `secret`",
        );
        refused(
            &format!("{two}key_id = \"a.r3\"\n"),
            "edges[0].key_id",
            "goes with `secret`",
        );
        refused(
            "[[edges]]\nid = \"a\"\nkeys = []\n",
            "edges[0].keys",
            "at least one key",
        );
        refused("[[edges]]\nid = \"a\"\n", "edges[0].secret", "required");
        refused(
            &format!("[[edges]]\nid = \"a\"\nkeys = [{{ id = \"\", secret = \"{S1}\" }}]\n"),
            "edges[0].keys[0].id",
            "must not be empty",
        );
        // A key id belongs to one edge, once.
        refused(
            &format!("{two}[[edges]]\nid = \"b\"\nkey_id = \"a.r1\"\nsecret = \"{S1}\"\n"),
            "edges[1].key_id",
            "`a.r1` is used twice",
        );
        refused(
            &format!("[[edges]]\nid = \"a\"\nkeys = [{{ id = \"k\", secret = \"{S1}\" }}, {{ id = \"k\", secret = \"{S2}\" }}]\n"),
            "edges[0].keys[1].id",
            "`k` is used twice",
        );
        // Unknown fields, in an edge or in a key, are refused; so are short secrets.
        let e = parse(&format!(
            "[[edges]]\nid = \"a\"\nkeys = [{{ id = \"k\", secret = \"{S1}\", kid = 1 }}]\n"
        ))
        .unwrap_err();
        assert!(e.contains("kid"), "{e}");
        let e = parse("[[edges]]\nid = \"a\"\nkeys = [{ id = \"k\", secret = \"short\" }]\n").unwrap_err();
        assert!(e.contains("16 bytes"), "{e}");
    }
}
