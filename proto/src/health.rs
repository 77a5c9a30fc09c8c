//! The health report an edge pushes to every cache-control replica
//! (JSON over HTTPS, signed with [`crate::signature`]).

use serde::{Deserialize, Serialize};

/// Bytes used and available in one cache tier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TierUsage {
    pub used_bytes: u64,
    pub capacity_bytes: u64,
    pub objects: u64,
}

/// A compact summary of what an edge holds: the titles it served most in
/// the last interval (steering prefers edges that already hold a title).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContentDigest {
    /// Title ids, most requested first.
    pub top_titles: Vec<String>,
}

/// One health report.
///
/// Unknown fields are ignored, not refused: during a rolling upgrade a
/// newer edge must still be able to report to an older cache-control.
/// Missing required fields are refused (the report is malformed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub edge_id: String,
    pub site: String,
    /// ASNs of the ISPs this edge is embedded in (empty for IXP/transit sites).
    #[serde(default)]
    pub asns: Vec<u32>,
    /// Client prefixes (CIDR) this edge serves, as announced by its ISP.
    #[serde(default)]
    pub prefixes: Vec<String>,
    pub lat: f64,
    pub lon: f64,
    /// Public base URLs players use (https://host:port).
    pub urls: Vec<String>,
    pub capacity_gbps: f64,
    pub max_connections: u64,
    /// Egress rate over the last interval.
    pub egress_gbps: f64,
    pub connections: u64,
    /// CPU load, 0.0–1.0 of all cores, over the last interval.
    pub cpu_load: f64,
    pub memory: TierUsage,
    #[serde(default)]
    pub disk: Option<TierUsage>,
    /// Byte hit ratio over the last interval (0.0–1.0).
    pub hit_ratio: f64,
    pub requests_per_sec: f64,
    #[serde(default)]
    pub digest: ContentDigest,
    pub version: String,
    /// The edge is shutting down: send no new players.
    pub draining: bool,
    /// Strictly increasing per edge process and across restarts (the edge
    /// seeds it from the wall clock), so replays and reordering are refused.
    pub seq: u64,
    /// When the report was made, ms since the Unix epoch.
    pub timestamp_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> HealthReport {
        HealthReport {
            edge_id: "edge-ams-1".into(),
            site: "ams".into(),
            asns: vec![64501],
            prefixes: vec!["127.1.0.0/16".into()],
            lat: 52.37,
            lon: 4.9,
            urls: vec!["https://127.0.1.1:8443".into()],
            capacity_gbps: 10.0,
            max_connections: 10_000,
            egress_gbps: 1.5,
            connections: 120,
            cpu_load: 0.3,
            memory: TierUsage {
                used_bytes: 1 << 30,
                capacity_bytes: 4 << 30,
                objects: 500,
            },
            disk: None,
            hit_ratio: 0.95,
            requests_per_sec: 800.0,
            digest: ContentDigest {
                top_titles: vec!["t0001".into()],
            },
            version: "0.1.0".into(),
            draining: false,
            seq: 7,
            timestamp_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn round_trips_ignores_unknown_fields_and_refuses_missing_ones() {
        let r = sample();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<HealthReport>(&json).unwrap(), r);
        let extra = json.replacen('{', "{\"added_in_v2\":1,", 1);
        assert_eq!(serde_json::from_str::<HealthReport>(&extra).unwrap(), r);
        assert!(serde_json::from_str::<HealthReport>("{\"edge_id\":\"x\"}").is_err());
    }
}
