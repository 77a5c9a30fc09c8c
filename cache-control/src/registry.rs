//! Every edge one replica knows, as a pure, versioned state: admitted
//! reports and clock ticks go in (with `now`), numbered changes for the
//! stream come out. No IO, no clock reads; the shell holds it in a mutex.
//!
//! What is published, and when:
//! - a state change (or a change of reasons) is a change at once;
//! - a report that changes only load or digest marks the edge dirty, and
//!   [`Registry::flush`] publishes dirty edges once per report interval, so
//!   subscribers see fresh load without one event per report.
//!
//! Each edge remembers the connection ([`ConnId`], numbered by the shell)
//! that carried its latest admitted report; [`Registry::connection_closed`]
//! arms the `connection-lost` deadline only for edges whose latest report
//! came on the closed connection, so closing some other connection (an
//! older one of the edge, or an attacker's that carried nothing admitted)
//! changes nothing.

use std::collections::{BTreeMap, VecDeque};

use outpost_proto::stream::{Change, Cursor, EdgeView, Snapshot};
use outpost_proto::{EdgeState, HealthReport};

use crate::state::{step, Event, Liveness, Load, Policy};

/// A connection the shell numbered, never reused within one run.
pub type ConnId = u64;

struct Record {
    liveness: Liveness,
    declared: bool,
    report: Option<HealthReport>,
    last_seq: Option<u64>,
    /// The connection of the latest admitted report, until it closes.
    report_conn: Option<ConnId>,
    dirty: bool,
}

/// What a subscriber starting from a cursor should get.
#[derive(Debug, PartialEq)]
pub enum Resume {
    /// The changes after the cursor (possibly none).
    Changes(Vec<Change>),
    /// The cursor is from another run or too old: start from a snapshot.
    Snapshot(Snapshot),
}

/// The edges of one replica.
pub struct Registry {
    replica: String,
    epoch: String,
    policy: Policy,
    version: u64,
    edges: BTreeMap<String, Record>,
    log: VecDeque<Change>,
    log_cap: usize,
}

impl Registry {
    /// `declared`: edge ids known (as `down`) before they report.
    pub fn new(
        replica: impl Into<String>,
        epoch: impl Into<String>,
        policy: Policy,
        declared: impl IntoIterator<Item = String>,
        log_cap: usize,
    ) -> Self {
        let edges = declared
            .into_iter()
            .map(|id| {
                let rec = Record {
                    liveness: Liveness::declared(),
                    declared: true,
                    report: None,
                    last_seq: None,
                    report_conn: None,
                    dirty: false,
                };
                (id, rec)
            })
            .collect();
        Self {
            replica: replica.into(),
            epoch: epoch.into(),
            policy,
            version: 0,
            edges,
            log: VecDeque::new(),
            log_cap: log_cap.max(1),
        }
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The highest sequence number accepted from `edge_id` in this run.
    pub fn last_seq(&self, edge_id: &str) -> Option<u64> {
        self.edges.get(edge_id).and_then(|r| r.last_seq)
    }

    /// Record an admitted report that came on connection `conn`. Returns
    /// the change to publish when the edge's state or reasons changed (or
    /// it was never seen before).
    pub fn report(&mut self, report: HealthReport, conn: ConnId, now_ms: u64) -> Option<Change> {
        let edge_id = report.edge_id.clone();
        let load = Load::from_report(&report);
        let rec = self.edges.entry(edge_id.clone()).or_insert_with(|| Record {
            liveness: Liveness::declared(),
            declared: false,
            report: None,
            last_seq: None,
            report_conn: None,
            dirty: false,
        });
        let first = rec.report.is_none();
        let next = step(&rec.liveness, Event::Report(load), now_ms, &self.policy);
        let previous = rec.liveness.state;
        let visible = first || next.state != previous || next.reasons != rec.liveness.reasons;
        rec.last_seq = Some(report.seq);
        rec.report = Some(report);
        rec.report_conn = Some(conn);
        rec.liveness = next;
        if visible {
            rec.dirty = false;
            Some(self.publish(&edge_id, Some(previous), now_ms))
        } else {
            rec.dirty = true;
            None
        }
    }

    /// Connection `conn` closed; `edges` are the edges it carried admitted
    /// reports for (others are ignored, as are edges whose latest report
    /// came on another connection). Returns the edges that must now report
    /// again within one interval + grace; nothing is published now (a
    /// later [`Registry::tick`] marks them down if they do not).
    pub fn connection_closed<'a>(
        &mut self,
        conn: ConnId,
        edges: impl IntoIterator<Item = &'a str>,
        now_ms: u64,
    ) -> Vec<&'a str> {
        let mut armed = Vec::new();
        for id in edges {
            let Some(rec) = self.edges.get_mut(id).filter(|r| r.report_conn == Some(conn)) else {
                continue;
            };
            rec.report_conn = None;
            let next = step(&rec.liveness, Event::ConnectionClosed, now_ms, &self.policy);
            if next != rec.liveness {
                rec.liveness = next;
                armed.push(id);
            }
        }
        armed
    }

    /// Time passed: edges silent for too long, or whose report connection
    /// closed and who did not report again in time, go down.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Change> {
        let mut changed = Vec::new();
        for (id, rec) in self.edges.iter_mut() {
            let next = step(&rec.liveness, Event::Tick, now_ms, &self.policy);
            if next != rec.liveness {
                changed.push((id.clone(), rec.liveness.state));
                rec.liveness = next;
                rec.dirty = false;
            }
        }
        changed
            .into_iter()
            .map(|(id, prev)| self.publish(&id, Some(prev), now_ms))
            .collect()
    }

    /// Publish the edges whose load or digest changed since they were last
    /// published (call once per report interval).
    pub fn flush(&mut self, now_ms: u64) -> Vec<Change> {
        let dirty: Vec<String> = self
            .edges
            .iter_mut()
            .filter(|(_, r)| r.dirty)
            .map(|(id, r)| {
                r.dirty = false;
                id.clone()
            })
            .collect();
        dirty.into_iter().map(|id| self.publish(&id, None, now_ms)).collect()
    }

    fn publish(&mut self, edge_id: &str, previous: Option<crate::state::EdgeState>, now_ms: u64) -> Change {
        self.version += 1;
        let change = Change {
            version: self.version,
            previous,
            edge: self.view(edge_id, now_ms).expect("publishing a known edge"),
        };
        if self.log.len() == self.log_cap {
            self.log.pop_front();
        }
        self.log.push_back(change.clone());
        change
    }

    /// One edge as of `now_ms`.
    pub fn view(&self, edge_id: &str, now_ms: u64) -> Option<EdgeView> {
        let rec = self.edges.get(edge_id)?;
        Some(EdgeView {
            edge_id: edge_id.to_string(),
            state: rec.liveness.state,
            reasons: rec.liveness.reasons.iter().map(|r| r.to_string()).collect(),
            declared: rec.declared,
            last_report_age_ms: rec.liveness.last_report_ms.map(|t| now_ms.saturating_sub(t)),
            good_streak: rec.liveness.good_streak,
            report: rec.report.clone(),
        })
    }

    /// Every edge, by id.
    pub fn views(&self, now_ms: u64) -> Vec<EdgeView> {
        self.edges.keys().filter_map(|id| self.view(id, now_ms)).collect()
    }

    pub fn snapshot(&self, now_ms: u64) -> Snapshot {
        Snapshot {
            replica: self.replica.clone(),
            epoch: self.epoch.clone(),
            version: self.version,
            edges: self.views(now_ms),
        }
    }

    /// What a subscriber that last saw `cursor` needs.
    pub fn resume(&self, cursor: Option<&Cursor>, now_ms: u64) -> Resume {
        if let Some(c) = cursor {
            let oldest = self.log.front().map_or(self.version + 1, |ch| ch.version);
            // The log holds every change after `oldest - 1`.
            if c.epoch == self.epoch && c.version <= self.version && c.version + 1 >= oldest {
                return Resume::Changes(self.log.iter().filter(|ch| ch.version > c.version).cloned().collect());
            }
        }
        Resume::Snapshot(self.snapshot(now_ms))
    }

    /// How many edges are in each state.
    pub fn counts(&self) -> [(EdgeState, usize); 4] {
        EdgeState::ALL.map(|s| (s, self.edges.values().filter(|r| r.liveness.state == s).count()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_proto::{ContentDigest, TierUsage};

    fn report(id: &str, seq: u64, cpu: f64) -> HealthReport {
        HealthReport {
            edge_id: id.into(),
            site: "ams".into(),
            asns: vec![64501],
            prefixes: vec![],
            lat: 52.4,
            lon: 4.9,
            urls: vec!["https://127.0.1.1:8443".into()],
            capacity_gbps: 10.0,
            max_connections: 1000,
            egress_gbps: 1.0,
            connections: 10,
            cpu_load: cpu,
            memory: TierUsage::default(),
            disk: None,
            hit_ratio: 0.9,
            requests_per_sec: 10.0,
            digest: ContentDigest::default(),
            version: "test".into(),
            draining: false,
            seq,
            timestamp_ms: 0,
        }
    }

    fn reg() -> Registry {
        Registry::new("cc", "e1", Policy::default(), ["a".to_string()], 8)
    }

    #[test]
    fn declared_edges_start_down_and_come_up_after_three_reports() {
        let mut r = reg();
        assert_eq!(r.counts()[3], (EdgeState::Down, 1));
        let c = r.report(report("a", 1, 0.1), 1, 1000).expect("first report is visible");
        assert_eq!((c.version, c.edge.state), (1, EdgeState::Down));
        assert_eq!(c.edge.reasons, ["readmitting"]);
        assert!(
            r.report(report("a", 2, 0.1), 1, 2000).is_none(),
            "same state, same reasons"
        );
        let c = r.report(report("a", 3, 0.1), 1, 3000).unwrap();
        assert_eq!((c.previous, c.edge.state), (Some(EdgeState::Down), EdgeState::Up));
        assert_eq!(r.last_seq("a"), Some(3));
        assert_eq!(r.counts()[0], (EdgeState::Up, 1));
    }

    #[test]
    fn load_only_updates_are_coalesced_until_flush() {
        let mut r = reg();
        for (i, t) in [(1, 1000), (2, 2000), (3, 3000)] {
            r.report(report("a", i, 0.1), 1, t);
        }
        let v = r.version();
        assert!(r.report(report("a", 4, 0.2), 1, 4000).is_none());
        assert!(r.report(report("a", 5, 0.3), 1, 4500).is_none());
        let flushed = r.flush(4600);
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].version, v + 1);
        assert_eq!(flushed[0].previous, None);
        assert_eq!(flushed[0].edge.report.as_ref().unwrap().cpu_load, 0.3);
        assert!(r.flush(4700).is_empty(), "nothing new");
    }

    #[test]
    fn ticks_mark_silent_edges_down_once() {
        let mut r = reg();
        for (i, t) in [(1, 1000), (2, 2000), (3, 3000)] {
            r.report(report("a", i, 0.1), 1, t);
        }
        assert!(r.tick(6000).is_empty(), "exactly 3 intervals is not yet too long");
        let c = r.tick(6001);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].previous, c[0].edge.state), (Some(EdgeState::Up), EdgeState::Down));
        assert_eq!(c[0].edge.last_report_age_ms, Some(3001));
        assert!(r.tick(9000).is_empty());
    }

    fn up(r: &mut Registry, id: &str, conn: ConnId) {
        for (i, t) in [(1, 1000), (2, 2000), (3, 3000)] {
            r.report(report(id, i, 0.1), conn, t);
        }
        assert_eq!(r.view(id, 3000).unwrap().state, EdgeState::Up);
    }

    #[test]
    fn the_connection_of_the_latest_report_closing_then_silence_is_down() {
        let mut r = reg();
        up(&mut r, "a", 7);
        assert_eq!(r.connection_closed(7, ["a"], 3100), ["a"]);
        assert!(
            r.tick(4600).is_empty(),
            "1 s + 500 ms after the close is not yet too long"
        );
        let c = r.tick(4601);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].previous, c[0].edge.state), (Some(EdgeState::Up), EdgeState::Down));
        assert_eq!(c[0].edge.reasons, ["connection-lost"]);
        assert!(r.tick(9000).is_empty(), "down once, not again for the silence");
        // Readmission is unchanged: three good reports (on any connection).
        assert!(r.report(report("a", 4, 0.1), 8, 5000).is_some());
        r.report(report("a", 5, 0.1), 8, 6000);
        assert_eq!(r.view("a", 6000).unwrap().state, EdgeState::Down);
        let c = r.report(report("a", 6, 0.1), 8, 7000).unwrap();
        assert_eq!(c.edge.state, EdgeState::Up);
    }

    #[test]
    fn a_report_on_a_new_connection_in_time_keeps_the_edge_up() {
        let mut r = reg();
        up(&mut r, "a", 7);
        assert_eq!(r.connection_closed(7, ["a"], 3900), ["a"]);
        assert!(r.report(report("a", 4, 0.1), 8, 4050).is_none(), "nothing to publish");
        assert!(r.tick(6000).is_empty());
        assert_eq!(r.view("a", 6000).unwrap().state, EdgeState::Up);
        // The old connection closing again, or late, is not an event.
        assert!(r.connection_closed(7, ["a"], 6100).is_empty());
        assert!(r.tick(7050).is_empty(), "within 3 s of the last report");
        assert_eq!(r.tick(7051)[0].edge.reasons, ["missed-reports"]);
    }

    #[test]
    fn only_the_connection_of_the_latest_report_counts() {
        let mut r = reg();
        up(&mut r, "a", 7);
        // The edge moved to connection 8 (e.g. a second pooled connection).
        r.report(report("a", 4, 0.1), 8, 3500);
        assert!(r.connection_closed(7, ["a"], 3600).is_empty(), "an older connection");
        assert!(r.tick(5200).is_empty());
        // Another edge's connection listing "a" (it never carried a's
        // latest report) changes nothing either; neither do unknown ids.
        up(&mut r, "b", 9);
        assert!(r.connection_closed(9, ["a", "nobody"], 3600).is_empty());
        assert!(r.connection_closed(99, ["a", "b"], 3600).is_empty());
        assert!(r.tick(5300).is_empty());
        // The one that did carry it.
        r.report(report("a", 5, 0.1), 8, 5300);
        assert_eq!(r.connection_closed(8, ["a"], 5400), ["a"]);
        let c = r.tick(6001);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].edge.edge_id.as_str(), c[0].edge.reasons.as_slice()),
            ("b", ["missed-reports".to_string()].as_slice())
        );
        let c = r.tick(6901);
        assert_eq!(
            (c[0].edge.edge_id.as_str(), c[0].edge.reasons.as_slice()),
            ("a", ["connection-lost".to_string()].as_slice())
        );
    }

    #[test]
    fn one_connection_carrying_several_edges() {
        // A proxy in front of the replica: every edge whose latest report
        // came on the closed connection must report again in time.
        let mut r = reg();
        up(&mut r, "a", 5);
        up(&mut r, "b", 5);
        assert_eq!(r.connection_closed(5, ["a", "b"], 3200), ["a", "b"]);
        r.report(report("b", 4, 0.1), 6, 3900);
        let c = r.tick(4701);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].edge.edge_id, "a");
        assert_eq!(r.view("b", 4701).unwrap().state, EdgeState::Up);
    }

    #[test]
    fn draining_edges_and_edges_already_down() {
        let mut r = reg();
        up(&mut r, "a", 7);
        let mut drain = report("a", 4, 0.1);
        drain.draining = true;
        r.report(drain, 7, 3200);
        assert_eq!(r.connection_closed(7, ["a"], 3300), ["a"]);
        let c = r.tick(4801);
        assert_eq!(
            (c[0].previous, c[0].edge.state),
            (Some(EdgeState::Draining), EdgeState::Down)
        );
        assert_eq!(c[0].edge.reasons, ["connection-lost"]);
        // Readmitting after a restart: a close is not an event.
        r.report(report("a", 5, 0.1), 8, 5000);
        assert!(r.connection_closed(8, ["a"], 5100).is_empty());
        assert!(r.tick(6700).is_empty());
        let off = Policy {
            connection_grace_ms: None,
            ..Policy::default()
        };
        let mut r = Registry::new("cc", "e1", off, ["a".to_string()], 8);
        up(&mut r, "a", 7);
        assert!(r.connection_closed(7, ["a"], 3100).is_empty(), "rule off");
        assert!(r.tick(6000).is_empty());
    }

    #[test]
    fn undeclared_edges_appear_on_first_report() {
        let mut r = reg();
        let c = r.report(report("z", 1, 0.1), 1, 1000).unwrap();
        assert!(!c.edge.declared);
        assert_eq!(r.views(1000).len(), 2);
    }

    #[test]
    fn resume_from_cursor_or_snapshot() {
        let mut r = reg();
        for i in 1..=12 {
            r.report(report(&format!("e{i}"), 1, 0.1), 1, 1000);
        }
        assert_eq!(r.version(), 12);
        let at = |v| Cursor {
            epoch: "e1".into(),
            version: v,
        };
        match r.resume(Some(&at(10)), 1000) {
            Resume::Changes(c) => assert_eq!(c.iter().map(|c| c.version).collect::<Vec<_>>(), [11, 12]),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.resume(Some(&at(12)), 1000), Resume::Changes(vec![]));
        // The log holds 8 changes (5..=12): cursor 4 can resume, 3 cannot.
        assert!(matches!(r.resume(Some(&at(4)), 1000), Resume::Changes(c) if c.len() == 8));
        assert!(matches!(r.resume(Some(&at(3)), 1000), Resume::Snapshot(_)));
        assert!(
            matches!(r.resume(Some(&at(13)), 1000), Resume::Snapshot(_)),
            "from the future"
        );
        let other_run = Cursor {
            epoch: "e0".into(),
            version: 11,
        };
        assert!(
            matches!(r.resume(Some(&other_run), 1000), Resume::Snapshot(s) if s.version == 12 && s.edges.len() == 13)
        );
        assert!(matches!(r.resume(None, 1000), Resume::Snapshot(_)));
    }
}
