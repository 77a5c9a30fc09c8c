//! The edge's Prometheus metrics (`outpost_` prefix), registered on the
//! registry the admin listener serves.

use prometheus::{
    register_histogram_vec_with_registry, register_int_counter_vec_with_registry, register_int_counter_with_registry,
    register_int_gauge_with_registry, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry,
};

pub struct Metrics {
    /// Requests by protocol (h1/h2/h3), status code and cache status.
    pub requests: IntCounterVec,
    /// Body bytes sent to clients, by protocol.
    pub bytes_sent: IntCounterVec,
    /// Time to first byte (response head ready) by protocol and cache status.
    pub ttfb: HistogramVec,
    /// Upstream fetches by outcome (ok, connect, timeout, upstream, truncated).
    pub upstream_fetches: IntCounterVec,
    /// Upstream attempts that were retries.
    pub upstream_retries: IntCounter,
    /// Requests that joined a fill another request started.
    pub collapsed: IntCounter,
    /// Fills in flight.
    pub fills_in_flight: IntGauge,
    /// Responses found uncacheable, by reason.
    pub uncacheable: IntCounterVec,
    pub memory_bytes: IntGauge,
    pub memory_objects: IntGauge,
    pub memory_capacity: IntGauge,
    pub memory_evictions: IntGauge,
    /// Open client connections by transport (tcp, quic).
    pub connections: prometheus::IntGaugeVec,
    /// Requests refused before the cache, by reason.
    pub refused: IntCounterVec,
    /// Health reports sent, by outcome (accepted, refused, failed).
    pub reports: IntCounterVec,
    /// HTTP/3 body bytes that went to quinn copied instead of handed over
    /// as they are (`server::h3_send`); stays 0 unless h3's internals changed.
    pub h3_body_copied: IntCounter,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Self {
        let r = registry;
        let ttfb_buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        Self {
            requests: register_int_counter_vec_with_registry!(
                "outpost_edge_requests_total",
                "Requests by protocol, status and cache status",
                &["protocol", "status", "cache"],
                r
            )
            .expect("metric"),
            bytes_sent: register_int_counter_vec_with_registry!(
                "outpost_edge_sent_bytes_total",
                "Body bytes sent to clients",
                &["protocol"],
                r
            )
            .expect("metric"),
            ttfb: register_histogram_vec_with_registry!(
                "outpost_edge_ttfb_seconds",
                "Time from request to response head",
                &["protocol", "cache"],
                ttfb_buckets,
                r
            )
            .expect("metric"),
            upstream_fetches: register_int_counter_vec_with_registry!(
                "outpost_edge_upstream_fetches_total",
                "Upstream fetches by outcome",
                &["outcome"],
                r
            )
            .expect("metric"),
            upstream_retries: register_int_counter_with_registry!(
                "outpost_edge_upstream_retries_total",
                "Upstream attempts that were retries",
                r
            )
            .expect("metric"),
            collapsed: register_int_counter_with_registry!(
                "outpost_edge_collapsed_total",
                "Requests that joined an in-flight fill",
                r
            )
            .expect("metric"),
            fills_in_flight: register_int_gauge_with_registry!(
                "outpost_edge_fills_in_flight",
                "Upstream fills in flight",
                r
            )
            .expect("metric"),
            uncacheable: register_int_counter_vec_with_registry!(
                "outpost_edge_uncacheable_total",
                "Upstream responses not stored, by reason",
                &["reason"],
                r
            )
            .expect("metric"),
            memory_bytes: register_int_gauge_with_registry!("outpost_edge_memory_bytes", "Bytes in the memory tier", r)
                .expect("metric"),
            memory_objects: register_int_gauge_with_registry!(
                "outpost_edge_memory_objects",
                "Objects in the memory tier",
                r
            )
            .expect("metric"),
            memory_capacity: register_int_gauge_with_registry!(
                "outpost_edge_memory_capacity_bytes",
                "Byte budget of the memory tier",
                r
            )
            .expect("metric"),
            memory_evictions: register_int_gauge_with_registry!(
                "outpost_edge_memory_evictions",
                "Objects evicted from the memory tier since start",
                r
            )
            .expect("metric"),
            connections: prometheus::register_int_gauge_vec_with_registry!(
                "outpost_edge_connections",
                "Open client connections",
                &["transport"],
                r
            )
            .expect("metric"),
            refused: register_int_counter_vec_with_registry!(
                "outpost_edge_refused_total",
                "Requests refused before reaching the cache",
                &["reason"],
                r
            )
            .expect("metric"),
            reports: register_int_counter_vec_with_registry!(
                "outpost_edge_health_reports_total",
                "Health reports sent to cache-control replicas, by outcome",
                &["outcome"],
                r
            )
            .expect("metric"),
            h3_body_copied: register_int_counter_with_registry!(
                "outpost_edge_h3_body_copied_bytes_total",
                "HTTP/3 body bytes copied into quinn instead of handed over without a copy (0 unless h3 changed)",
                r
            )
            .expect("metric"),
        }
    }
}
