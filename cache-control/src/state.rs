//! The liveness state machine of one edge: a pure function of
//! (previous state, event, now). No clock reads; the shell ticks it.
//!
//! - Missed reports for `missed_intervals` intervals ⇒ `down`
//!   (reason `missed-reports`).
//! - The connection that carried the edge's latest admitted report closed
//!   (a killed process's sockets are closed by its kernel at once), and no
//!   new report came within one interval + `connection_grace` of the close
//!   ⇒ `down` (reason `connection-lost`). A live edge whose connection
//!   merely ended (idle timeout, a middlebox, a replica restart) sends its
//!   next report on a new connection within one interval, so this never
//!   fires for it; a machine or network failure (no FIN) is left to the
//!   missed-reports rule. The shell decides which connection carried the
//!   latest report and sends [`Event::ConnectionClosed`] only for that one.
//! - Back to `up` only after `readmit_reports` consecutive good reports,
//!   each within `missed_intervals` intervals of the previous one.
//! - Load above a threshold ⇒ `overloaded`; back to `up` only once load is
//!   below threshold × `hysteresis`, so an edge hovering at the line does
//!   not flap.
//! - A report with `draining` ⇒ `draining` at once.

pub use outpost_proto::EdgeState;

/// Load thresholds; fractions of the edge's own declared capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// CPU load (0–1) above which an edge is overloaded.
    pub cpu: f64,
    /// Egress / capacity above which an edge is overloaded.
    pub bandwidth: f64,
    /// Connections / max connections above which an edge is overloaded.
    pub connections: f64,
    /// An overloaded edge returns to up below threshold × hysteresis.
    pub hysteresis: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            cpu: 0.9,
            bandwidth: 0.9,
            connections: 0.9,
            hysteresis: 0.85,
        }
    }
}

/// Why an edge went down by itself (the `reasons` of a `down` edge, and
/// the `reason` label of `outpost_cc_down_total`).
pub const MISSED_REPORTS: &str = "missed-reports";
/// See [`MISSED_REPORTS`].
pub const CONNECTION_LOST: &str = "connection-lost";

/// The liveness rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub interval_ms: u64,
    pub missed_intervals: u32,
    pub readmit_reports: u32,
    /// After the connection of the latest report closed, a new report must
    /// come within `interval_ms` + this; `None`: closes are ignored.
    pub connection_grace_ms: Option<u64>,
    pub thresholds: Thresholds,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            interval_ms: 1000,
            missed_intervals: 3,
            readmit_reports: 3,
            connection_grace_ms: Some(500),
            thresholds: Thresholds::default(),
        }
    }
}

impl Policy {
    fn silence_limit_ms(&self) -> u64 {
        self.interval_ms * self.missed_intervals as u64
    }

    /// How long after its report connection closed an edge that sent
    /// nothing since is down (`None`: never, by this rule).
    pub fn connection_limit_ms(&self) -> Option<u64> {
        self.connection_grace_ms.map(|g| self.interval_ms + g)
    }
}

/// The load figures of one report that the state machine looks at.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Load {
    pub cpu: f64,
    pub egress_gbps: f64,
    pub capacity_gbps: f64,
    pub connections: u64,
    pub max_connections: u64,
    pub draining: bool,
}

impl Load {
    pub fn from_report(r: &outpost_proto::HealthReport) -> Self {
        Self {
            cpu: r.cpu_load,
            egress_gbps: r.egress_gbps,
            capacity_gbps: r.capacity_gbps,
            connections: r.connections,
            max_connections: r.max_connections,
            draining: r.draining,
        }
    }

    /// The thresholds this load is above (`scale` < 1 tightens them, for hysteresis).
    pub fn over(&self, t: &Thresholds, scale: f64) -> Vec<&'static str> {
        let mut why = Vec::new();
        if self.cpu > t.cpu * scale {
            why.push("cpu");
        }
        if self.capacity_gbps > 0.0 && self.egress_gbps / self.capacity_gbps > t.bandwidth * scale {
            why.push("bandwidth");
        }
        if self.max_connections > 0 && self.connections as f64 / self.max_connections as f64 > t.connections * scale {
            why.push("connections");
        }
        why
    }
}

/// Something that happened to an edge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// An admitted (authenticated, in-order) report.
    Report(Load),
    /// Time passed; checks for missed reports and lost connections.
    Tick,
    /// The connection that carried the edge's latest admitted report
    /// closed. The caller sends it only for that connection: the close of
    /// an older one, or of one that carried only refused reports, is not
    /// an event.
    ConnectionClosed,
}

/// Everything the machine remembers about one edge.
#[derive(Debug, Clone, PartialEq)]
pub struct Liveness {
    pub state: EdgeState,
    /// Consecutive good reports while not yet admitted.
    pub good_streak: u32,
    pub last_report_ms: Option<u64>,
    /// When the connection of the latest report closed, if it did and no
    /// report came since (only while not `down`).
    pub connection_closed_ms: Option<u64>,
    /// Why the edge is in its state (for `/v1/edges` and logs).
    pub reasons: Vec<&'static str>,
}

impl Liveness {
    /// An edge known from config that has not reported yet.
    pub fn declared() -> Self {
        Self {
            state: EdgeState::Down,
            good_streak: 0,
            last_report_ms: None,
            connection_closed_ms: None,
            reasons: vec!["never-reported"],
        }
    }
}

/// The next liveness of an edge.
pub fn step(prev: &Liveness, event: Event, now_ms: u64, policy: &Policy) -> Liveness {
    let silent_too_long = |last: Option<u64>| last.is_none_or(|l| now_ms.saturating_sub(l) > policy.silence_limit_ms());
    let connection_lost = |closed: Option<u64>| match (closed, policy.connection_limit_ms()) {
        (Some(c), Some(limit)) => now_ms.saturating_sub(c) > limit,
        _ => false,
    };
    match event {
        Event::Tick if prev.state == EdgeState::Down => prev.clone(),
        Event::Tick => {
            let why = if connection_lost(prev.connection_closed_ms) {
                CONNECTION_LOST
            } else if silent_too_long(prev.last_report_ms) {
                MISSED_REPORTS
            } else {
                return prev.clone();
            };
            Liveness {
                state: EdgeState::Down,
                good_streak: 0,
                last_report_ms: prev.last_report_ms,
                connection_closed_ms: None,
                reasons: vec![why],
            }
        }
        Event::ConnectionClosed => {
            let watched = policy.connection_grace_ms.is_some() && prev.last_report_ms.is_some();
            if prev.state == EdgeState::Down || !watched || prev.connection_closed_ms.is_some() {
                // Down already (readmission is left to reports), closes
                // ignored by policy, or the first close already counts.
                prev.clone()
            } else {
                Liveness {
                    connection_closed_ms: Some(now_ms),
                    ..prev.clone()
                }
            }
        }
        Event::Report(load) if load.draining => Liveness {
            state: EdgeState::Draining,
            good_streak: 0,
            last_report_ms: Some(now_ms),
            connection_closed_ms: None,
            reasons: vec!["draining"],
        },
        Event::Report(load) => match prev.state {
            EdgeState::Up | EdgeState::Overloaded => {
                let scale = if prev.state == EdgeState::Overloaded {
                    policy.thresholds.hysteresis
                } else {
                    1.0
                };
                let over = load.over(&policy.thresholds, scale);
                let state = if over.is_empty() {
                    EdgeState::Up
                } else {
                    EdgeState::Overloaded
                };
                Liveness {
                    state,
                    good_streak: prev.good_streak,
                    last_report_ms: Some(now_ms),
                    connection_closed_ms: None,
                    reasons: over,
                }
            }
            EdgeState::Down | EdgeState::Draining => {
                let streak = if silent_too_long(prev.last_report_ms) || prev.state == EdgeState::Draining {
                    1
                } else {
                    prev.good_streak + 1
                };
                if streak >= policy.readmit_reports {
                    let over = load.over(&policy.thresholds, 1.0);
                    let state = if over.is_empty() {
                        EdgeState::Up
                    } else {
                        EdgeState::Overloaded
                    };
                    Liveness {
                        state,
                        good_streak: streak,
                        last_report_ms: Some(now_ms),
                        connection_closed_ms: None,
                        reasons: over,
                    }
                } else {
                    Liveness {
                        state: EdgeState::Down,
                        good_streak: streak,
                        last_report_ms: Some(now_ms),
                        connection_closed_ms: None,
                        reasons: vec!["readmitting"],
                    }
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Policy {
        Policy::default()
    }
    fn ok() -> Event {
        Event::Report(Load {
            cpu: 0.2,
            egress_gbps: 1.0,
            capacity_gbps: 10.0,
            connections: 10,
            max_connections: 100,
            draining: false,
        })
    }
    fn cpu(c: f64) -> Event {
        Event::Report(Load {
            cpu: c,
            egress_gbps: 1.0,
            capacity_gbps: 10.0,
            connections: 10,
            max_connections: 100,
            draining: false,
        })
    }
    fn drain() -> Event {
        Event::Report(Load {
            draining: true,
            ..Default::default()
        })
    }
    fn run(start: Liveness, events: &[(u64, Event)]) -> Liveness {
        events.iter().fold(start, |l, (t, e)| step(&l, *e, *t, &p()))
    }
    fn up_at(t: u64) -> Liveness {
        run(Liveness::declared(), &[(t - 2000, ok()), (t - 1000, ok()), (t, ok())])
    }

    #[test]
    fn declared_edges_need_three_reports() {
        let l = Liveness::declared();
        assert_eq!(l.state, EdgeState::Down);
        let l1 = step(&l, ok(), 1000, &p());
        assert_eq!((l1.state, l1.good_streak), (EdgeState::Down, 1));
        let l2 = step(&l1, ok(), 2000, &p());
        assert_eq!((l2.state, l2.good_streak), (EdgeState::Down, 2));
        let l3 = step(&l2, ok(), 3000, &p());
        assert_eq!(l3.state, EdgeState::Up);
        assert_eq!(
            step(&l, Event::Tick, 99_000, &p()).state,
            EdgeState::Down,
            "a tick never admits"
        );
    }

    #[test]
    fn silence_for_three_intervals_is_down() {
        let l = up_at(10_000);
        assert_eq!(
            step(&l, Event::Tick, 13_000, &p()).state,
            EdgeState::Up,
            "exactly 3 intervals is still up"
        );
        let d = step(&l, Event::Tick, 13_001, &p());
        assert_eq!(d.state, EdgeState::Down);
        assert_eq!(d.reasons, vec!["missed-reports"]);
        let o = run(up_at(10_000), &[(10_500, cpu(0.99))]);
        assert_eq!(o.state, EdgeState::Overloaded);
        assert_eq!(
            step(&o, Event::Tick, 13_501, &p()).state,
            EdgeState::Down,
            "overloaded edges go down too"
        );
        let dr = step(&up_at(10_000), drain(), 10_500, &p());
        assert_eq!(
            step(&dr, Event::Tick, 13_501, &p()).state,
            EdgeState::Down,
            "a draining edge that stops is down"
        );
    }

    #[test]
    fn flapping_does_not_readmit() {
        // up, silent (down), one report, silent again, one report...
        let mut l = up_at(10_000);
        l = step(&l, Event::Tick, 14_000, &p());
        assert_eq!(l.state, EdgeState::Down);
        l = step(&l, ok(), 14_100, &p());
        assert_eq!(l.state, EdgeState::Down, "one good report is not enough");
        l = step(&l, Event::Tick, 17_200, &p());
        assert_eq!(l.state, EdgeState::Down);
        l = step(&l, ok(), 17_300, &p());
        assert_eq!(
            l.good_streak, 1,
            "a gap longer than the silence limit restarts the streak"
        );
        l = step(&l, ok(), 17_400, &p());
        l = step(&l, ok(), 17_500, &p());
        assert_eq!(
            l.state,
            EdgeState::Up,
            "three in a row within one interval each readmit"
        );
    }

    #[test]
    fn up_down_up_within_one_interval() {
        // Reports arrive, then a tick after a long silence, then reports in quick succession.
        let l = run(up_at(10_000), &[(20_000, Event::Tick), (20_100, ok()), (20_200, ok())]);
        assert_eq!(l.state, EdgeState::Down);
        assert_eq!(step(&l, ok(), 20_300, &p()).state, EdgeState::Up);
        // A single bad tick right after a report does nothing.
        let l = up_at(10_000);
        assert_eq!(step(&l, Event::Tick, 10_001, &p()), l);
    }

    #[test]
    fn overload_with_hysteresis() {
        let l = step(&up_at(10_000), cpu(0.95), 11_000, &p());
        assert_eq!(l.state, EdgeState::Overloaded);
        assert_eq!(l.reasons, vec!["cpu"]);
        let l = step(&l, cpu(0.85), 12_000, &p());
        assert_eq!(l.state, EdgeState::Overloaded, "0.85 < 0.9 but not below 0.9 × 0.85");
        let l = step(&l, cpu(0.7), 13_000, &p());
        assert_eq!(l.state, EdgeState::Up);
        let bw = Event::Report(Load {
            cpu: 0.1,
            egress_gbps: 9.5,
            capacity_gbps: 10.0,
            connections: 1,
            max_connections: 100,
            draining: false,
        });
        assert_eq!(step(&up_at(10_000), bw, 11_000, &p()).reasons, vec!["bandwidth"]);
        let conns = Event::Report(Load {
            cpu: 0.1,
            egress_gbps: 0.0,
            capacity_gbps: 10.0,
            connections: 95,
            max_connections: 100,
            draining: false,
        });
        assert_eq!(step(&up_at(10_000), conns, 11_000, &p()).reasons, vec!["connections"]);
    }

    #[test]
    fn readmitted_into_overloaded_when_loaded() {
        let l = run(
            Liveness::declared(),
            &[(1000, cpu(0.99)), (2000, cpu(0.99)), (3000, cpu(0.99))],
        );
        assert_eq!(l.state, EdgeState::Overloaded);
    }

    #[test]
    fn draining_is_immediate_and_needs_readmission_after() {
        for start in [
            up_at(10_000),
            Liveness::declared(),
            step(&up_at(10_000), cpu(0.99), 10_500, &p()),
        ] {
            let d = step(&start, drain(), 10_600, &p());
            assert_eq!(d.state, EdgeState::Draining);
            let l = run(d, &[(10_700, ok()), (10_800, ok())]);
            assert_eq!(
                l.state,
                EdgeState::Down,
                "a restarted edge is readmitted like any other"
            );
            assert_eq!(step(&l, ok(), 10_900, &p()).state, EdgeState::Up);
        }
    }

    /// Every (state, event) pair, in one table.
    #[test]
    fn every_transition() {
        use EdgeState::*;
        // Representative liveness for each state, last report at 10 s.
        let down_streak1 = step(&Liveness::declared(), ok(), 10_000, &p());
        let starts = [
            ("up", up_at(10_000)),
            ("overloaded", step(&up_at(9_000), cpu(0.99), 10_000, &p())),
            ("draining", step(&up_at(9_000), drain(), 10_000, &p())),
            ("down", down_streak1.clone()),
            ("down, streak 2", step(&down_streak1, ok(), 10_000, &p())),
        ];
        // (event, at) -> expected state from each start, in `starts` order.
        let fresh_tick = (Event::Tick, 11_000);
        let silent_tick = (Event::Tick, 13_001);
        let cases: [((Event, u64), [EdgeState; 5]); 7] = [
            (fresh_tick, [Up, Overloaded, Draining, Down, Down]),
            (
                (Event::ConnectionClosed, 11_000),
                [Up, Overloaded, Draining, Down, Down],
            ),
            (silent_tick, [Down, Down, Down, Down, Down]),
            ((ok(), 11_000), [Up, Up, Down, Down, Up]),
            ((cpu(0.8), 11_000), [Up, Overloaded, Down, Down, Up]),
            ((cpu(0.99), 11_000), [Overloaded, Overloaded, Down, Down, Overloaded]),
            ((drain(), 11_000), [Draining, Draining, Draining, Draining, Draining]),
        ];
        for ((event, at), expected) in cases {
            for ((name, start), want) in starts.iter().zip(expected) {
                let got = step(start, event, at, &p());
                assert_eq!(got.state, want, "{name} + {event:?} at {at}");
                if matches!(event, Event::Report(_)) {
                    assert_eq!(got.last_report_ms, Some(at), "a report is remembered");
                }
            }
        }
    }

    /// Random report/tick sequences: a down edge is never `up` or
    /// `overloaded` before `readmit_reports` reports, each within the
    /// silence limit of the previous one (ticks in between do not matter).
    #[test]
    fn no_readmission_without_a_full_streak() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..2_000 {
            let mut l = Liveness::declared();
            let mut now = 0;
            let mut streak: Vec<u64> = Vec::new();
            for _ in 0..40 {
                now += rand(5_000);
                let event = match rand(4) {
                    0 => Event::Tick,
                    1 => ok(),
                    2 => Event::ConnectionClosed,
                    _ => cpu(0.99),
                };
                let was_down = l.state == EdgeState::Down;
                if matches!(event, Event::Report(_)) {
                    if streak.last().is_some_and(|t| now - t > 3_000) {
                        streak.clear();
                    }
                    streak.push(now);
                }
                l = step(&l, event, now, &p());
                if was_down && matches!(l.state, EdgeState::Up | EdgeState::Overloaded) {
                    assert!(streak.len() >= 3, "admitted after {streak:?} at {now}");
                }
            }
        }
    }

    const CLOSED: Event = Event::ConnectionClosed;

    #[test]
    fn a_closed_connection_then_silence_is_down_after_one_interval_and_grace() {
        // Up at 10 s; its connection closes at 10.3 s: down once 1 s + 500 ms
        // have passed since the close with no report, well before 13 s.
        let l = run(up_at(10_000), &[(10_300, CLOSED)]);
        assert_eq!((l.state, l.connection_closed_ms), (EdgeState::Up, Some(10_300)));
        assert_eq!(l.reasons, up_at(10_000).reasons, "a close alone shows nothing");
        assert_eq!(
            step(&l, Event::Tick, 11_800, &p()).state,
            EdgeState::Up,
            "exactly the limit"
        );
        let d = step(&l, Event::Tick, 11_801, &p());
        assert_eq!((d.state, d.good_streak), (EdgeState::Down, 0));
        assert_eq!(d.reasons, vec![CONNECTION_LOST]);
        assert_eq!(d.connection_closed_ms, None);
        assert_eq!(
            d.last_report_ms,
            Some(10_000),
            "the last report is still the last report"
        );
        assert_eq!(step(&d, Event::Tick, 20_000, &p()), d, "down once");
        // Overloaded edges too.
        let o = run(up_at(10_000), &[(10_100, cpu(0.99)), (10_200, CLOSED)]);
        assert_eq!(o.state, EdgeState::Overloaded);
        assert_eq!(step(&o, Event::Tick, 11_701, &p()).reasons, vec![CONNECTION_LOST]);
    }

    #[test]
    fn a_closed_connection_then_a_report_in_time_changes_nothing() {
        // A reconnect: the close, then the next report on a new connection.
        let l = run(up_at(10_000), &[(10_900, CLOSED), (11_050, ok())]);
        assert_eq!((l.state, l.connection_closed_ms), (EdgeState::Up, None));
        assert_eq!(l.good_streak, up_at(10_000).good_streak);
        assert_eq!(step(&l, Event::Tick, 12_500, &p()).state, EdgeState::Up);
        // From then on only the silence rule (or a new close) applies.
        assert_eq!(step(&l, Event::Tick, 14_050, &p()).state, EdgeState::Up);
        assert_eq!(step(&l, Event::Tick, 14_051, &p()).reasons, vec![MISSED_REPORTS]);
        // A draining report in time counts as a report too.
        let d = run(
            up_at(10_000),
            &[(10_100, CLOSED), (10_500, drain()), (12_000, Event::Tick)],
        );
        assert_eq!(d.state, EdgeState::Draining);
    }

    #[test]
    fn a_second_close_does_not_move_the_deadline() {
        let l = run(up_at(10_000), &[(10_100, CLOSED), (11_000, CLOSED)]);
        assert_eq!(l.connection_closed_ms, Some(10_100));
        assert_eq!(step(&l, Event::Tick, 11_601, &p()).reasons, vec![CONNECTION_LOST]);
    }

    #[test]
    fn draining_edges_whose_connection_closes_go_down() {
        // SIGTERM: the draining report, then the process exits.
        let l = run(up_at(10_000), &[(10_200, drain()), (10_250, CLOSED)]);
        assert_eq!(l.state, EdgeState::Draining);
        assert_eq!(step(&l, Event::Tick, 11_700, &p()).state, EdgeState::Draining);
        let d = step(&l, Event::Tick, 11_751, &p());
        assert_eq!(
            (d.state, d.reasons.as_slice()),
            (EdgeState::Down, [CONNECTION_LOST].as_slice())
        );
        // A quick restart reports before the deadline: readmitted as usual.
        let r = run(l, &[(11_000, ok()), (12_000, ok()), (13_000, Event::Tick)]);
        assert_eq!((r.state, r.good_streak), (EdgeState::Down, 2));
        assert_eq!(step(&r, ok(), 13_500, &p()).state, EdgeState::Up);
    }

    #[test]
    fn closes_never_touch_down_edges_or_readmission() {
        // Readmitting (down, streak 2): a close is not an event for it.
        let r = run(Liveness::declared(), &[(1_000, ok()), (2_000, ok())]);
        let c = step(&r, CLOSED, 2_100, &p());
        assert_eq!(c, r);
        assert_eq!(step(&c, ok(), 3_000, &p()).state, EdgeState::Up, "the streak goes on");
        // Never reported: nothing to watch.
        assert_eq!(step(&Liveness::declared(), CLOSED, 1_000, &p()), Liveness::declared());
        // After a connection-lost down, readmission takes a full streak.
        let d = run(up_at(10_000), &[(10_100, CLOSED), (11_700, Event::Tick)]);
        assert_eq!(d.state, EdgeState::Down);
        let l = run(d.clone(), &[(11_800, ok()), (12_000, ok())]);
        assert_eq!((l.state, l.good_streak), (EdgeState::Down, 2));
        assert_eq!(step(&l, ok(), 12_200, &p()).state, EdgeState::Up);
        let again = run(d, &[(11_800, ok()), (11_900, CLOSED), (12_000, ok()), (12_100, ok())]);
        assert_eq!(again.state, EdgeState::Up, "a close while readmitting changes nothing");
    }

    #[test]
    fn closes_are_ignored_when_the_rule_is_off() {
        let off = Policy {
            connection_grace_ms: None,
            ..p()
        };
        let l = step(&up_at(10_000), CLOSED, 10_100, &off);
        assert_eq!(l, up_at(10_000));
        assert_eq!(step(&l, Event::Tick, 13_000, &off).state, EdgeState::Up);
        assert_eq!(step(&l, Event::Tick, 13_001, &off).reasons, vec![MISSED_REPORTS]);
    }

    #[test]
    fn whichever_rule_comes_first_decides() {
        // Silent 2.5 s, then the connection closes (e.g. keepalive gave up):
        // the silence rule fires at 13 s, before the close's deadline.
        let l = run(up_at(10_000), &[(12_500, CLOSED)]);
        assert_eq!(step(&l, Event::Tick, 13_001, &p()).reasons, vec![MISSED_REPORTS]);
        // Once both are past, the lost connection is named.
        let l = run(up_at(10_000), &[(10_000, CLOSED)]);
        assert_eq!(step(&l, Event::Tick, 13_001, &p()).reasons, vec![CONNECTION_LOST]);
    }

    #[test]
    fn labels_are_distinct() {
        let s: std::collections::HashSet<_> = EdgeState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(s.len(), 4);
    }
}
