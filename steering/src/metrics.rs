//! Steering's Prometheus metrics (`outpost_steering_` prefix).

use prometheus::{
    register_gauge_vec_with_registry, register_histogram_with_registry, register_int_counter_vec_with_registry,
    GaugeVec, Histogram, IntCounterVec, Registry,
};

pub struct Metrics {
    /// Ranking decisions by the first edge's reason (isp, geo, fallback,
    /// overloaded, none).
    pub decisions: IntCounterVec,
    /// Time to locate the client and rank the edges.
    pub decision_seconds: Histogram,
    /// Play requests by outcome (ok, unknown-title, territory, entitlement,
    /// bad-request, no-edge).
    pub play: IntCounterVec,
    /// `GET /v1/steer` requests by outcome.
    pub steer: IntCounterVec,
    /// Steering manifest and session manifest requests by kind and outcome.
    pub manifests: IntCounterVec,
    /// Age of each geo database (now minus its build time), seconds.
    pub geo_age: GaugeVec,
}

impl Metrics {
    pub fn new(r: &Registry) -> Self {
        Self {
            decisions: register_int_counter_vec_with_registry!(
                "outpost_steering_decisions_total",
                "Ranking decisions by the reason of the first edge",
                &["reason"],
                r
            )
            .expect("metric"),
            decision_seconds: register_histogram_with_registry!(
                "outpost_steering_decision_seconds",
                "Locate + rank latency",
                vec![0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.025],
                r
            )
            .expect("metric"),
            play: register_int_counter_vec_with_registry!(
                "outpost_steering_play_requests_total",
                "Play requests by outcome",
                &["outcome"],
                r
            )
            .expect("metric"),
            steer: register_int_counter_vec_with_registry!(
                "outpost_steering_steer_requests_total",
                "GET /v1/steer requests by outcome",
                &["outcome"],
                r
            )
            .expect("metric"),
            manifests: register_int_counter_vec_with_registry!(
                "outpost_steering_manifest_requests_total",
                "Session and steering manifest requests by kind and outcome",
                &["kind", "outcome"],
                r
            )
            .expect("metric"),
            geo_age: register_gauge_vec_with_registry!(
                "outpost_steering_geo_database_age_seconds",
                "Seconds since each geo database was built",
                &["database"],
                r
            )
            .expect("metric"),
        }
    }
}
