//! Cache-control's Prometheus metrics (`outpost_cc_` prefix).

use prometheus::{
    register_histogram_with_registry, register_int_counter_vec_with_registry, register_int_gauge_vec_with_registry,
    register_int_gauge_with_registry, Histogram, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};

use crate::state::EdgeState;

pub struct Metrics {
    /// Reports accepted, by edge.
    pub accepted: IntCounterVec,
    /// Reports refused, by reason (`too-large`, `unsigned`, `unknown-edge`,
    /// `bad-signature`, `stale-timestamp`, `malformed`, `wrong-edge`, `replay`).
    pub rejected: IntCounterVec,
    /// Edges in each state.
    pub edges: IntGaugeVec,
    /// State transitions, by from and to.
    pub transitions: IntCounterVec,
    /// Transitions to `down`, by the reason the edge is down:
    /// `missed-reports`, `connection-lost`, or `readmitting` (a draining
    /// edge that reports again, i.e. restarted).
    pub down: IntCounterVec,
    /// Seconds since each edge's last accepted report.
    pub report_age: prometheus::GaugeVec,
    /// Receive time minus the report's own timestamp (transit + clock skew).
    pub report_delay: Histogram,
    /// Connected stream subscribers.
    pub subscribers: IntGauge,
}

impl Metrics {
    pub fn new(r: &Registry) -> Self {
        Self {
            accepted: register_int_counter_vec_with_registry!(
                "outpost_cc_reports_accepted_total",
                "Health reports accepted, by edge",
                &["edge"],
                r
            )
            .expect("metric"),
            rejected: register_int_counter_vec_with_registry!(
                "outpost_cc_reports_rejected_total",
                "Health reports refused, by reason",
                &["reason"],
                r
            )
            .expect("metric"),
            edges: register_int_gauge_vec_with_registry!("outpost_cc_edges", "Edges by state", &["state"], r)
                .expect("metric"),
            transitions: register_int_counter_vec_with_registry!(
                "outpost_cc_transitions_total",
                "Edge state transitions",
                &["from", "to"],
                r
            )
            .expect("metric"),
            down: register_int_counter_vec_with_registry!(
                "outpost_cc_down_total",
                "Edges marked down, by reason",
                &["reason"],
                r
            )
            .expect("metric"),
            report_age: prometheus::register_gauge_vec_with_registry!(
                "outpost_cc_report_age_seconds",
                "Seconds since the edge's last accepted report",
                &["edge"],
                r
            )
            .expect("metric"),
            report_delay: register_histogram_with_registry!(
                "outpost_cc_report_delay_seconds",
                "Receive time minus report timestamp",
                vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                r
            )
            .expect("metric"),
            subscribers: register_int_gauge_with_registry!(
                "outpost_cc_stream_subscribers",
                "Connected state-stream subscribers",
                r
            )
            .expect("metric"),
        }
    }

    /// Set the per-state gauges.
    pub fn set_counts(&self, counts: [(EdgeState, usize); 4]) {
        for (state, n) in counts {
            self.edges.with_label_values(&[state.as_str()]).set(n as i64);
        }
    }
}
