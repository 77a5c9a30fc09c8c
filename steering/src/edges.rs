//! What steering believes about the edges: the views of every
//! cache-control replica it follows, merged into one list for the ranker.
//!
//! Merging is pure ([`merge`]): for each edge, the view carrying the
//! newest report (the edge's own sequence number) wins; on a tie the more
//! severe state wins, so one replica noticing silence is enough to take an
//! edge out. Views of disconnected replicas are used only when no replica
//! is connected: steering then keeps answering from the last state it had.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use outpost_cache_control::subscribe::{follow, ReplicaView, StreamClient};
use outpost_proto::{EdgeState, EdgeView};
use outpost_svc::Shutdown;
use tokio::sync::watch;

use crate::rank;

fn severity(s: EdgeState) -> u8 {
    match s {
        EdgeState::Up => 0,
        EdgeState::Overloaded => 1,
        EdgeState::Draining => 2,
        EdgeState::Down => 3,
    }
}

/// Merge replica views into one view per edge.
pub fn merge(replicas: &[Arc<ReplicaView>]) -> Vec<EdgeView> {
    let any_connected = replicas.iter().any(|r| r.connected);
    let mut best: BTreeMap<&str, &EdgeView> = BTreeMap::new();
    for r in replicas.iter().filter(|r| r.connected || !any_connected) {
        for (id, v) in &r.edges {
            let seq = |v: &EdgeView| v.report.as_ref().map_or(0, |r| r.seq);
            match best.get(id.as_str()) {
                Some(b) if (seq(b), severity(b.state)) >= (seq(v), severity(v.state)) => {}
                _ => {
                    best.insert(id, v);
                }
            }
        }
    }
    best.into_values().cloned().collect()
}

/// The ranker's view of one edge; None until it has reported.
pub fn to_rank_edge(v: &EdgeView) -> Option<rank::Edge> {
    let r = v.report.as_ref()?;
    let frac = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let load = r
        .cpu_load
        .max(frac(r.egress_gbps, r.capacity_gbps))
        .max(frac(r.connections as f64, r.max_connections as f64));
    Some(rank::Edge {
        id: v.edge_id.clone(),
        site: r.site.clone(),
        state: v.state,
        asns: r.asns.clone(),
        prefixes: r.prefixes.iter().filter_map(|p| rank::parse_prefix(p)).collect(),
        lat: r.lat,
        lon: r.lon,
        url: r.urls.first()?.trim_end_matches('/').to_string(),
        weight: r.capacity_gbps,
        load: if load.is_finite() { load } else { 1.0 },
        titles: r.digest.top_titles.clone(),
    })
}

/// The merged edge list, rebuilt whenever a replica's view changes.
pub struct EdgeSet {
    rx: watch::Receiver<Arc<rank::Prepared>>,
    views: watch::Receiver<Arc<Vec<EdgeView>>>,
}

impl EdgeSet {
    /// The ranker input as of now, indexed once per change (cheap: an
    /// `Arc` clone).
    pub fn current(&self) -> Arc<rank::Prepared> {
        self.rx.borrow().clone()
    }

    /// The merged views (for `/v1/edges` and the page).
    pub fn views(&self) -> Arc<Vec<EdgeView>> {
        self.views.borrow().clone()
    }

    /// Follow every replica until `shutdown`.
    pub fn follow(client: StreamClient, replicas: &[String], quiet: Duration, shutdown: Shutdown) -> EdgeSet {
        let (tx, rx) = watch::channel(Arc::new(rank::Prepared::default()));
        let (vtx, views) = watch::channel(Arc::new(Vec::new()));
        let mut receivers = Vec::new();
        for base in replicas {
            let (rtx, rrx) = watch::channel(Arc::new(ReplicaView::default()));
            tokio::spawn(follow(client.clone(), base.clone(), quiet, rtx, shutdown.clone()));
            receivers.push(rrx);
        }
        tokio::spawn(async move {
            loop {
                let current: Vec<Arc<ReplicaView>> =
                    receivers.iter_mut().map(|r| r.borrow_and_update().clone()).collect();
                let merged = merge(&current);
                let edges: Vec<rank::Edge> = merged.iter().filter_map(to_rank_edge).collect();
                tx.send_replace(Arc::new(rank::Prepared::new(edges)));
                vtx.send_replace(Arc::new(merged));
                let changed = futures_util::future::select_all(receivers.iter_mut().map(|r| Box::pin(r.changed())));
                tokio::select! {
                    (r, _, _) = changed => if r.is_err() { return },
                    _ = shutdown.wait() => return,
                }
            }
        });
        EdgeSet { rx, views }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_proto::HealthReport;

    fn report(seq: u64) -> HealthReport {
        serde_json::from_value(serde_json::json!({
            "edge_id": "a", "site": "ams", "lat": 52.0, "lon": 4.0, "urls": ["https://127.0.1.1:8443/"],
            "capacity_gbps": 10.0, "max_connections": 100, "egress_gbps": 2.0, "connections": 50,
            "cpu_load": 0.1, "memory": {"used_bytes": 0, "capacity_bytes": 1, "objects": 0},
            "hit_ratio": 0.0, "requests_per_sec": 0.0, "version": "t", "draining": false,
            "seq": seq, "timestamp_ms": 0, "prefixes": ["127.1.0.0/16", "bogus"]
        }))
        .unwrap()
    }

    fn replica(connected: bool, state: EdgeState, seq: u64) -> Arc<ReplicaView> {
        let mut v = EdgeView::bare("a", state);
        v.report = Some(report(seq));
        let mut r = ReplicaView {
            connected,
            ..Default::default()
        };
        r.edges.insert("a".into(), v);
        Arc::new(r)
    }

    #[test]
    fn newest_report_wins_then_the_worse_state() {
        let m = merge(&[replica(true, EdgeState::Up, 5), replica(true, EdgeState::Down, 4)]);
        assert_eq!(
            m[0].state,
            EdgeState::Up,
            "the replica with the newer report knows better"
        );
        let m = merge(&[replica(true, EdgeState::Up, 5), replica(true, EdgeState::Down, 5)]);
        assert_eq!(
            m[0].state,
            EdgeState::Down,
            "same report: one replica noticing silence is enough"
        );
    }

    #[test]
    fn disconnected_replicas_count_only_when_none_is_connected() {
        let m = merge(&[replica(false, EdgeState::Up, 9), replica(true, EdgeState::Down, 5)]);
        assert_eq!(m[0].state, EdgeState::Down);
        let m = merge(&[replica(false, EdgeState::Up, 9), replica(false, EdgeState::Down, 5)]);
        assert_eq!(
            m[0].state,
            EdgeState::Up,
            "last known state when cache-control is unreachable"
        );
        assert!(merge(&[]).is_empty());
    }

    #[test]
    fn rank_edges_take_the_highest_load_and_skip_unreported() {
        let m = merge(&[replica(true, EdgeState::Up, 1)]);
        let e = to_rank_edge(&m[0]).unwrap();
        assert_eq!(e.load, 0.5, "connections 50/100 beats egress 0.2 and cpu 0.1");
        assert_eq!(e.url, "https://127.0.1.1:8443");
        assert_eq!(e.prefixes.len(), 1, "a bad prefix is skipped");
        assert!(to_rank_edge(&EdgeView::bare("x", EdgeState::Down)).is_none());
    }
}
