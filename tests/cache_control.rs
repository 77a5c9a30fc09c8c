//! Cache-control with real processes: edges report to replicas over HTTPS
//! with signed reports; replicas decide liveness and stream it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use outpost_cache_control::subscribe::{follow, ReplicaView, StreamClient};
use outpost_proto::{EdgeState, HealthReport};
use outpost_svc::Shutdown;
use tokio::sync::watch;

/// Follows one replica's `/v1/stream` (reconnecting) for the whole test.
struct Watcher {
    rx: watch::Receiver<Arc<ReplicaView>>,
    _stop: StopOnDrop,
}

struct StopOnDrop(Shutdown);
impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

impl Watcher {
    fn start(dir: &std::path::Path, ip: &str) -> Result<Watcher> {
        let client = StreamClient::new(Some(&ca(dir)))?;
        let (tx, rx) = watch::channel(Arc::new(ReplicaView::default()));
        let stop = Shutdown::new();
        tokio::spawn(follow(
            client,
            format!("https://{ip}:{CC_PORT}"),
            Duration::from_secs(3),
            tx,
            stop.clone(),
        ));
        Ok(Watcher {
            rx,
            _stop: StopOnDrop(stop),
        })
    }

    /// Wait until `pred` holds for the view the subscriber has.
    async fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&ReplicaView) -> bool,
    ) -> Result<Arc<ReplicaView>> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.rx.borrow_and_update().clone();
            if pred(&v) {
                return Ok(v);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, self.rx.changed()).await.is_err() {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; last view: {:#?}",
                    summary(&v)
                );
            }
        }
    }
}

fn summary(v: &ReplicaView) -> Vec<String> {
    v.edges
        .values()
        .map(|e| {
            format!(
                "{} {} {:?} streak {}",
                e.edge_id,
                e.state.as_str(),
                e.reasons,
                e.good_streak
            )
        })
        .collect()
}

fn state(v: &ReplicaView, edge: &str) -> Option<EdgeState> {
    v.edges.get(edge).map(|e| e.state)
}

const INTERVAL_MS: u64 = 300;

/// One origin, one replica and one reporting edge `edge-a` on `net`.x,
/// with a subscriber on the replica that has seen the edge up.
struct OneEdge {
    dir: std::path::PathBuf,
    edge_ip: String,
    edge: Service,
    watcher: Watcher,
    _cc: Service,
    _origin: Service,
}

async fn one_edge(name: &str, net: &str, report_extra: &str) -> Result<OneEdge> {
    let dir = test_dir(name);
    let origin_ip = format!("{net}.20");
    let origin = start_origin(&dir, &origin_ip, "").await?;
    let liveness = format!("[liveness]\nreport_interval = \"{INTERVAL_MS}ms\"");
    let cc_ip = format!("{net}.10");
    let cc = start_cache_control(&dir, "cc", &cc_ip, &["edge-a"], &liveness).await?;
    let mut watcher = Watcher::start(&dir, &cc_ip)?;
    let sections = report_section("edge-a", "ams", &[&cc_ip], &format!("{INTERVAL_MS}ms"), report_extra);
    let edge_ip = format!("{net}.1");
    let edge = start_named_edge(&dir, "edge-a", &edge_ip, &origin_ip, &sections).await?;
    watcher
        .until("edge-a up", Duration::from_secs(10), |v| {
            state(v, "edge-a") == Some(EdgeState::Up)
        })
        .await?;
    Ok(OneEdge {
        dir,
        edge_ip,
        edge,
        watcher,
        _cc: cc,
        _origin: origin,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_edges_two_replicas_kill_restart_and_replica_rebuild() -> Result<()> {
    let dir = test_dir("cc-liveness");
    let net = "127.73.1";
    let origin_ip = format!("{net}.20");
    let _origin = start_origin(&dir, &origin_ip, "").await?;
    let edges = ["edge-a", "edge-b", "edge-c"];
    let replicas = [format!("{net}.10"), format!("{net}.11")];
    let liveness = format!("[liveness]\nreport_interval = \"{INTERVAL_MS}ms\"");
    let mut cc = Vec::new();
    for (i, ip) in replicas.iter().enumerate() {
        cc.push(start_cache_control(&dir, &format!("cc-{i}"), ip, &edges, &liveness).await?);
    }
    let replica_ips: Vec<&str> = replicas.iter().map(|s| s.as_str()).collect();
    let mut watchers = vec![Watcher::start(&dir, &replicas[0])?, Watcher::start(&dir, &replicas[1])?];

    // Declared edges are known from the start, as down.
    for w in &mut watchers {
        let v = w
            .until("a snapshot with the declared edges", Duration::from_secs(10), |v| {
                v.edges.len() == 3
            })
            .await?;
        assert!(v.edges.values().all(|e| e.state == EdgeState::Down && e.declared));
    }

    let edge_sections = |id: &str| report_section(id, "ams", &replica_ips, &format!("{INTERVAL_MS}ms"), "");
    let mut procs = Vec::new();
    for (i, id) in edges.iter().enumerate() {
        let ip = format!("{net}.{}", i + 1);
        procs.push(start_named_edge(&dir, id, &ip, &origin_ip, &edge_sections(id)).await?);
    }
    for w in &mut watchers {
        w.until("all three edges up", Duration::from_secs(10), |v| {
            edges.iter().all(|e| state(v, e) == Some(EdgeState::Up))
        })
        .await?;
    }

    // kill -9 edge-b: both replicas mark it down within 3 intervals (by
    // whichever rule comes first: at this short interval the silence rule
    // and the closed connection's deadline, 1 interval + 500 ms, are close).
    procs[1].kill9();
    let killed = Instant::now();
    for w in &mut watchers {
        w.until("edge-b down", Duration::from_secs(10), |v| {
            state(v, "edge-b") == Some(EdgeState::Down)
        })
        .await?;
    }
    let took = killed.elapsed();
    // 3 intervals from the last report (which came at most one interval
    // before the kill), plus the replica's tick (interval / 10) and slack
    // for a loaded CI machine.
    let limit = Duration::from_millis(3 * INTERVAL_MS + INTERVAL_MS / 2);
    eprintln!("edge-b down on both replicas {took:?} after kill -9");
    assert!(took <= limit, "down after {took:?}, limit {limit:?}");
    for w in &mut watchers {
        let v = w.rx.borrow().clone();
        let why = &v.edges["edge-b"].reasons;
        assert!(why == &["missed-reports"] || why == &["connection-lost"], "{why:?}");
        assert_eq!(state(&v, "edge-a"), Some(EdgeState::Up));
        assert_eq!(state(&v, "edge-c"), Some(EdgeState::Up));
    }
    for r in &cc {
        let m = metrics(&r.admin).await?;
        assert_eq!(
            metric_sum(&m, "outpost_cc_transitions_total", &["from=\"up\"", "to=\"down\""]),
            1.0,
            "{m}"
        );
        assert_eq!(metric_sum(&m, "outpost_cc_edges", &["state=\"down\""]), 1.0);
        assert_eq!(metric_sum(&m, "outpost_cc_down_total", &[]), 1.0, "{m}");
    }

    // Restart edge-b: it is readmitted only with its third good report.
    let ip_b = format!("{net}.2");
    procs[1] = start_named_edge(&dir, "edge-b", &ip_b, &origin_ip, &edge_sections("edge-b")).await?;
    for w in &mut watchers {
        let v = w
            .until("edge-b readmitting", Duration::from_secs(10), |v| {
                v.edges["edge-b"].reasons == ["readmitting"] || state(v, "edge-b") == Some(EdgeState::Up)
            })
            .await?;
        if state(&v, "edge-b") != Some(EdgeState::Up) {
            assert!(v.edges["edge-b"].good_streak < 3);
        }
        let v = w
            .until("edge-b up again", Duration::from_secs(10), |v| {
                state(v, "edge-b") == Some(EdgeState::Up)
            })
            .await?;
        assert_eq!(v.edges["edge-b"].good_streak, 3, "up exactly at the third good report");
    }

    // Restart replica cc-1 (kill -9, no saved state): it rebuilds every
    // edge from reports, and the subscriber gets a fresh snapshot.
    let old_epoch = watchers[1].rx.borrow().epoch.clone();
    cc[1].kill9();
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS)).await;
    cc[1] = start_cache_control(&dir, "cc-1", &replicas[1], &edges, &liveness).await?;
    let restarted = Instant::now();
    let v = watchers[1]
        .until(
            "the restarted replica has every edge up",
            Duration::from_secs(15),
            |v| v.epoch != old_epoch && edges.iter().all(|e| state(v, e) == Some(EdgeState::Up)),
        )
        .await?;
    eprintln!("replica rebuilt in {:?}", restarted.elapsed());
    assert!(v
        .edges
        .values()
        .all(|e| e.report.as_ref().is_some_and(|r| r.site == "ams")));
    // The other replica never noticed.
    let v = watchers[0].rx.borrow().clone();
    assert!(edges.iter().all(|e| state(&v, e) == Some(EdgeState::Up)));
    Ok(())
}

/// The shipped liveness config: 1 s reports, down after 3 s of silence or
/// 1 s + 500 ms after the report connection closed.
const SHIPPED_LIVENESS: &str = "[liveness]\nreport_interval = \"1s\"\nconnection_grace = \"500ms\"";

/// An origin (`net`.20) and a replica `cc` (`net`.10, knowing `edge-a`)
/// with [`SHIPPED_LIVENESS`]: (dir, origin, replica).
async fn origin_and_replica(name: &str, net: &str) -> Result<(std::path::PathBuf, Service, Service)> {
    let dir = test_dir(name);
    let origin = start_origin(&dir, &format!("{net}.20"), "").await?;
    let cc = start_cache_control(&dir, "cc", &format!("{net}.10"), &["edge-a"], SHIPPED_LIVENESS).await?;
    Ok((dir, origin, cc))
}

/// At the shipped 1 s interval the silence rule needs 2–3 s after a kill;
/// the closed report connection gets the edge out in about 1.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_edge_is_down_when_its_report_connection_closes() -> Result<()> {
    let net = "127.73.7";
    let (dir, _origin, cc) = origin_and_replica("cc-conn-lost", net).await?;
    let (origin_ip, cc_ip) = (format!("{net}.20"), format!("{net}.10"));
    let mut w = Watcher::start(&dir, &cc_ip)?;
    let sections = report_section("edge-a", "ams", &[&cc_ip], "1s", "");
    let mut edge = start_named_edge(&dir, "edge-a", &format!("{net}.1"), &origin_ip, &sections).await?;
    w.until("edge-a up", Duration::from_secs(10), |v| {
        state(v, "edge-a") == Some(EdgeState::Up)
    })
    .await?;
    // Kill it right after a report (the worst case for the silence rule:
    // a full 3 s to go).
    w.until("a fresh report", Duration::from_secs(5), |v| {
        v.edges["edge-a"].last_report_age_ms.is_some_and(|a| a < 200)
    })
    .await?;
    edge.kill9();
    let killed = Instant::now();
    let v = w
        .until("edge-a down", Duration::from_secs(10), |v| {
            state(v, "edge-a") == Some(EdgeState::Down)
        })
        .await?;
    let took = killed.elapsed();
    eprintln!("edge-a down {took:?} after kill -9");
    assert_eq!(v.edges["edge-a"].reasons, ["connection-lost"]);
    // 1 s + 500 ms after the close, plus a 100 ms check; generous slack,
    // still below the 2 s the silence rule would need at the earliest.
    assert!(took < Duration::from_millis(2500), "down after {took:?}");
    let m = metrics(&cc.admin).await?;
    assert_eq!(
        metric_sum(&m, "outpost_cc_down_total", &["reason=\"connection-lost\""]),
        1.0,
        "{m}"
    );
    assert!(cc.log_text().contains("report connection closed"));
    Ok(())
}

/// A TCP relay between edges and a replica whose connections the test can
/// cut (both sides see an orderly close), like a middlebox or a replica
/// closing idle connections would.
struct Relay {
    conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(listen: &str, upstream: String) -> Result<Relay> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let tracked = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                tracked.lock().unwrap().push(task.abort_handle());
            }
        });
        Ok(Relay { conns, accept })
    }

    /// Close every connection relayed so far; returns how many there were.
    fn cut(&self) -> usize {
        let open: Vec<_> = self.conns.lock().unwrap().drain(..).collect();
        open.iter().for_each(|c| c.abort());
        open.len()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// A live edge whose report connection is closed under it (at any moment
/// of its interval), or whose replica restarts, reconnects and reports
/// within an interval: never down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_edge_whose_connection_closes_or_whose_replica_restarts_stays_up() -> Result<()> {
    let net = "127.73.8";
    let (dir, _origin, mut cc) = origin_and_replica("cc-reconnect", net).await?;
    let (origin_ip, cc_ip) = (format!("{net}.20"), format!("{net}.10"));
    let relay_port = CC_PORT + 1;
    let relay = Relay::start(&format!("{cc_ip}:{relay_port}"), format!("{cc_ip}:{CC_PORT}")).await?;
    let sections = report_section("edge-a", "ams", &[&cc_ip], "1s", "")
        .replace(&format!("{cc_ip}:{CC_PORT}"), &format!("{cc_ip}:{relay_port}"));
    let _edge = start_named_edge(&dir, "edge-a", &format!("{net}.1"), &origin_ip, &sections).await?;
    let mut w = Watcher::start(&dir, &cc_ip)?;
    w.until("edge-a up", Duration::from_secs(10), |v| {
        state(v, "edge-a") == Some(EdgeState::Up)
    })
    .await?;
    // Cut the report connection five times, at different moments of the
    // interval, then watch a while longer than the last deadline.
    let mut cut = 0;
    for pause_ms in [1300, 1150, 1450, 1700, 1050] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        cut += relay.cut();
    }
    let quiet = w
        .until("edge-a leaving up", Duration::from_secs(3), |v| {
            state(v, "edge-a") != Some(EdgeState::Up)
        })
        .await;
    assert!(quiet.is_err(), "edge-a left up: {:?}", quiet.map(|v| summary(&v)));
    assert!(cut >= 5, "{cut} connections cut");
    let m = metrics(&cc.admin).await?;
    assert_eq!(metric_sum(&m, "outpost_cc_down_total", &[]), 0.0, "{m}");
    let accepted = metric_sum(&m, "outpost_cc_reports_accepted_total", &["edge=\"edge-a\""]);
    assert!(accepted >= 10.0, "{accepted} reports accepted");
    let closes = cc.log_text().matches("report connection closed").count();
    assert!(closes >= 4, "the replica saw the closes ({closes}): {}", cc.log_text());

    // Restart the replica (SIGTERM, then a new process: no saved state).
    let old_epoch = w.rx.borrow().epoch.clone();
    cc.terminate();
    assert!(cc.wait_exit(Duration::from_secs(10)).is_some());
    cc = start_cache_control(&dir, "cc", &cc_ip, &["edge-a"], SHIPPED_LIVENESS).await?;
    w.until("edge-a up on the new replica", Duration::from_secs(10), |v| {
        v.epoch != old_epoch && state(v, "edge-a") == Some(EdgeState::Up)
    })
    .await?;
    let quiet = w
        .until("edge-a leaving up", Duration::from_secs(3), |v| {
            state(v, "edge-a") != Some(EdgeState::Up)
        })
        .await;
    assert!(quiet.is_err(), "edge-a left up: {:?}", quiet.map(|v| summary(&v)));
    let m = metrics(&cc.admin).await?;
    assert_eq!(metric_sum(&m, "outpost_cc_down_total", &[]), 0.0, "{m}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_overload_and_recovery_and_reported_contents() -> Result<()> {
    // 8 Mbit/s of capacity: a client pulling cached segments in a loop is far over 90%.
    // (Bind every field: an unbound one would be dropped, killing its process.)
    let OneEdge {
        dir,
        edge_ip,
        watcher: mut w,
        edge: _edge,
        _cc,
        _origin,
    } = one_edge(
        "cc-overload",
        "127.73.2",
        "capacity_gbps = 0.008\nmax_connections = 1000",
    )
    .await?;
    let client = outpost_bench::client::HttpsClient::new(Some(&ca(&dir)), outpost_bench::client::Tcp::H1)?;
    let url = format!("https://{edge_ip}:{EDGE_PORT}/synth/t0001/r1/seg00000.m4s");
    let load = {
        let client = client.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(30);
            while Instant::now() < until {
                if client.get(&url).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        })
    };
    let v = w
        .until("edge-a overloaded", Duration::from_secs(10), |v| {
            state(v, "edge-a") == Some(EdgeState::Overloaded)
        })
        .await?;
    let e = &v.edges["edge-a"];
    assert!(e.reasons.contains(&"bandwidth".to_string()), "{:?}", e.reasons);
    let r = e.report.as_ref().context("report")?;
    assert!(r.egress_gbps > 0.9 * 0.008, "egress {}", r.egress_gbps);
    load.abort();
    let v = w
        .until("edge-a back up", Duration::from_secs(10), |v| {
            state(v, "edge-a") == Some(EdgeState::Up)
        })
        .await?;

    // What the edge reports about itself.
    let r = v.edges["edge-a"].report.clone().context("report")?;
    assert_eq!((r.site.as_str(), r.asns.as_slice()), ("ams", &[64501][..]));
    assert_eq!(r.urls, [format!("https://{edge_ip}:{EDGE_PORT}")]);
    assert_eq!(r.prefixes, ["127.1.0.0/16"]);
    assert!(
        r.memory.used_bytes >= 400_000 && r.memory.objects >= 1,
        "{:?}",
        r.memory
    );
    assert!(r.memory.capacity_bytes > 0);
    assert!(!r.draining);
    assert_eq!(r.version, env!("CARGO_PKG_VERSION"));

    // The digest names the title the edge served, in a report made while
    // it was serving (the latest is idle again). Check via /v1/edges after
    // one more burst.
    for _ in 0..3 {
        client.get(&url).await?;
    }
    let v = w
        .until("digest with synth/t0001", Duration::from_secs(5), |v| {
            v.edges["edge-a"]
                .report
                .as_ref()
                .is_some_and(|r| r.digest.top_titles.iter().any(|t| t == "synth/t0001") && r.hit_ratio > 0.9)
        })
        .await?;
    assert!(v.edges["edge-a"].report.as_ref().unwrap().requests_per_sec > 0.0);
    Ok(())
}

fn ghost_report(seq: u64, timestamp_ms: u64) -> HealthReport {
    HealthReport {
        edge_id: "ghost".into(),
        site: "ams".into(),
        asns: vec![],
        prefixes: vec![],
        lat: 0.0,
        lon: 0.0,
        urls: vec!["https://127.0.0.1:1".into()],
        capacity_gbps: 10.0,
        max_connections: 100,
        egress_gbps: 0.0,
        connections: 0,
        cpu_load: 0.1,
        memory: Default::default(),
        disk: None,
        hit_ratio: 0.0,
        requests_per_sec: 0.0,
        digest: Default::default(),
        version: "test".into(),
        draining: false,
        seq,
        timestamp_ms,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

struct Post {
    key_id: Option<String>,
    secret: Vec<u8>,
    timestamp_ms: u64,
    body: Bytes,
    signed: bool,
}

impl Post {
    fn report(r: &HealthReport) -> Post {
        Post {
            key_id: Some("ghost".into()),
            secret: edge_secret("ghost").into_bytes(),
            timestamp_ms: r.timestamp_ms,
            body: Bytes::from(serde_json::to_vec(r).unwrap()),
            signed: true,
        }
    }
}

/// POST a report over HTTP/2; returns (status, JSON answer).
async fn post(
    client: &outpost_svc::https::Client<Full<Bytes>>,
    url: &str,
    p: Post,
) -> Result<(u16, serde_json::Value)> {
    let mut req = http::Request::post(url).header("content-type", "application/json");
    if let Some(k) = &p.key_id {
        req = req.header("x-outpost-key-id", k);
    }
    if p.signed {
        req = req.header("x-outpost-timestamp", p.timestamp_ms.to_string()).header(
            "x-outpost-signature",
            outpost_proto::sign(&p.secret, p.timestamp_ms, &p.body),
        );
    }
    let resp = client.request(req.body(Full::new(p.body))?).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unknown_replayed_stale_malformed_and_huge_reports_are_refused() -> Result<()> {
    let dir = test_dir("cc-reject");
    let ip = "127.73.3.10";
    let cc = start_cache_control(&dir, "cc", ip, &["ghost"], "").await?;
    let url = format!("https://{ip}:{CC_PORT}/v1/reports");
    let client = outpost_svc::https::client::<Full<Bytes>>(Some(&ca(&dir)), Duration::from_secs(2))?;
    let edges_url = format!("https://{ip}:{CC_PORT}/v1/edges");
    let view = || async {
        let c = outpost_bench::client::HttpsClient::new(Some(&ca(&dir)), outpost_bench::client::Tcp::H1)?;
        let r = c.get(&edges_url).await?;
        let snap: outpost_proto::stream::Snapshot = serde_json::from_slice(&r.body)?;
        let mut ghost = snap.edges.into_iter().find(|e| e.edge_id == "ghost").context("ghost")?;
        ghost.last_report_age_ms = None; // changes with time
        anyhow::Ok(ghost)
    };

    // One good report is accepted: the edge starts re-admission.
    let (status, answer) = post(&client, &url, Post::report(&ghost_report(100, now_ms()))).await?;
    assert_eq!(status, 200, "{answer}");
    let before = view().await?;
    assert_eq!((before.state, before.good_streak), (EdgeState::Down, 1));
    assert_eq!(before.report.as_ref().map(|r| r.seq), Some(100));

    let cases: Vec<(&str, u16, &str, Post)> = vec![
        ("forged signature", 401, "bad-signature", {
            let mut p = Post::report(&ghost_report(101, now_ms()));
            p.secret = b"not-the-secret-of-ghost".to_vec();
            p
        }),
        ("unknown key id", 401, "unknown-edge", {
            let mut p = Post::report(&ghost_report(102, now_ms()));
            p.key_id = Some("stranger".into());
            p
        }),
        ("unsigned", 401, "unsigned", {
            let mut p = Post::report(&ghost_report(103, now_ms()));
            p.signed = false;
            p
        }),
        (
            "replayed sequence",
            409,
            "replay",
            Post::report(&ghost_report(100, now_ms())),
        ),
        ("old sequence", 409, "replay", Post::report(&ghost_report(7, now_ms()))),
        (
            "stale timestamp",
            401,
            "stale-timestamp",
            Post::report(&ghost_report(104, now_ms() - 60_000)),
        ),
        ("malformed JSON", 400, "malformed", {
            let mut p = Post::report(&ghost_report(105, now_ms()));
            p.body = Bytes::from_static(b"{\"edge_id\": \"ghost\", ");
            p
        }),
        ("10 MB body", 413, "too-large", {
            let mut p = Post::report(&ghost_report(106, now_ms()));
            p.body = Bytes::from(vec![b' '; 10 << 20]);
            p
        }),
    ];
    for (what, want_status, reason, p) in cases {
        let m0 = metrics(&cc.admin).await?;
        let (status, answer) = post(&client, &url, p).await.with_context(|| what.to_string())?;
        assert_eq!(status, want_status, "{what}: {answer}");
        assert_eq!(answer["error"], reason, "{what}: {answer}");
        let m1 = metrics(&cc.admin).await?;
        let counted = |m: &str| {
            metric_sum(
                m,
                "outpost_cc_reports_rejected_total",
                &[&format!("reason=\"{reason}\"")],
            )
        };
        assert_eq!(counted(&m1) - counted(&m0), 1.0, "{what} counted once");
        assert_eq!(view().await?, before, "{what} left the state unchanged");
    }
    let m = metrics(&cc.admin).await?;
    assert_eq!(
        metric_sum(&m, "outpost_cc_reports_accepted_total", &["edge=\"ghost\""]),
        1.0
    );

    // A replay answer names the last sequence, so an edge can move past it.
    let (_, answer) = post(&client, &url, Post::report(&ghost_report(50, now_ms()))).await?;
    assert_eq!(answer["last_seq"], 100);
    // Wrong method and unknown paths are clear.
    let c = outpost_bench::client::HttpsClient::new(Some(&ca(&dir)), outpost_bench::client::Tcp::H1)?;
    assert_eq!(c.get(&url).await?.status, 405);
    assert_eq!(c.get(&format!("https://{ip}:{CC_PORT}/nope")).await?.status, 404);
    Ok(())
}

/// An edge listed with two keys (`[[edges]] keys`, mid-rotation) is
/// accepted whichever it signs with, and never with another edge's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_rotating_its_key_is_accepted_with_either_key() -> Result<()> {
    let dir = test_dir("cc-rotate");
    let ip = "127.73.6.10";
    let (old, new) = (edge_secret("ghost"), edge_secret("ghost.r2"));
    let rotating = format!(
        "[[edges]]\nid = \"ghost\"\nkeys = [{{ id = \"ghost.r2\", secret = \"{new}\" }}, {{ id = \"ghost\", secret = \"{old}\" }}]\n"
    );
    let cc = start_cache_control(&dir, "cc", ip, &["other"], &rotating).await?;
    let url = format!("https://{ip}:{CC_PORT}/v1/reports");
    let client = outpost_svc::https::client::<Full<Bytes>>(Some(&ca(&dir)), Duration::from_secs(2))?;

    // The old key (the edge has not switched yet), then the new one.
    let (status, answer) = post(&client, &url, Post::report(&ghost_report(1, now_ms()))).await?;
    assert_eq!(status, 200, "old key: {answer}");
    let mut p = Post::report(&ghost_report(2, now_ms()));
    (p.key_id, p.secret) = (Some("ghost.r2".into()), new.clone().into_bytes());
    let (status, answer) = post(&client, &url, p).await?;
    assert_eq!(status, 200, "new key: {answer}");
    // Another edge's key, with its own secret, cannot report for ghost.
    let mut p = Post::report(&ghost_report(3, now_ms()));
    (p.key_id, p.secret) = (Some("other".into()), edge_secret("other").into_bytes());
    let (status, answer) = post(&client, &url, p).await?;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("wrong-edge")),
        "{answer}"
    );

    let m = metrics(&cc.admin).await?;
    assert_eq!(
        metric_sum(&m, "outpost_cc_reports_accepted_total", &["edge=\"ghost\""]),
        2.0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_by_admin_call_and_on_sigterm() -> Result<()> {
    let OneEdge {
        mut edge,
        watcher: mut w,
        _cc,
        _origin,
        ..
    } = one_edge("cc-drain", "127.73.4", "").await?;
    // The operator drains it, then takes it back: re-admission takes 3 reports.
    let admin = outpost_bench::client::HttpsClient::new(None, outpost_bench::client::Tcp::H1)?;
    let r = admin
        .request(http::Method::POST, &format!("http://{}/drain", edge.admin), &[])
        .await?;
    assert_eq!(r.status, 200);
    w.until("edge-a draining", Duration::from_secs(5), |v| {
        state(v, "edge-a") == Some(EdgeState::Draining)
    })
    .await?;
    admin
        .request(http::Method::POST, &format!("http://{}/undrain", edge.admin), &[])
        .await?;
    let v = w
        .until("edge-a up after undrain", Duration::from_secs(5), |v| {
            state(v, "edge-a") == Some(EdgeState::Up)
        })
        .await?;
    assert_eq!(v.edges["edge-a"].good_streak, 3);

    // SIGTERM: the edge announces draining before it stops.
    edge.terminate();
    let v = w
        .until("edge-a draining or down", Duration::from_secs(5), |v| {
            state(v, "edge-a") != Some(EdgeState::Up)
        })
        .await?;
    assert_eq!(state(&v, "edge-a"), Some(EdgeState::Draining), "{:?}", summary(&v));
    assert!(edge.wait_exit(Duration::from_secs(10)).is_some(), "edge exits");
    assert!(edge.log_text().contains("announced draining"));
    w.until("edge-a down once silent", Duration::from_secs(5), |v| {
        state(v, "edge-a") == Some(EdgeState::Down)
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_delivers_changes_at_once_and_resumes_from_a_cursor() -> Result<()> {
    use outpost_proto::stream::StreamEvent;
    let dir = test_dir("cc-stream");
    let ip = "127.73.5.10";
    let _cc = start_cache_control(&dir, "cc", ip, &["ghost"], "").await?;
    let base = format!("https://{ip}:{CC_PORT}");
    let url = format!("{base}/v1/reports");
    let poster = outpost_svc::https::client::<Full<Bytes>>(Some(&ca(&dir)), Duration::from_secs(2))?;
    let streams = StreamClient::new(Some(&ca(&dir)))?;

    // A fresh subscriber starts with a snapshot.
    let mut sub = streams.connect(&base, None).await?;
    let first = sub.next_within(Duration::from_secs(5)).await?.context("stream ended")?;
    let StreamEvent::Snapshot(snap) = first.event else {
        bail!("expected a snapshot, got {:?}", first.event);
    };
    assert_eq!(snap.edges.len(), 1);

    // A report that changes the edge's state reaches the subscriber at once.
    let sent = Instant::now();
    let (status, _) = post(&poster, &url, Post::report(&ghost_report(1, now_ms()))).await?;
    assert_eq!(status, 200);
    let change = loop {
        let ev = sub.next_within(Duration::from_secs(5)).await?.context("stream ended")?;
        if let StreamEvent::Change(c) = ev.event {
            break c;
        }
    };
    let took = sent.elapsed();
    eprintln!("state change reached the subscriber {took:?} after the report was sent");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!((change.version, change.edge.good_streak), (snap.version + 1, 1));
    let cursor = outpost_proto::stream::Cursor {
        epoch: snap.epoch.clone(),
        version: change.version,
    };
    drop(sub);

    // While nobody listens, two more reports: the second readmission step
    // is a load-only update, published within one interval.
    post(&poster, &url, Post::report(&ghost_report(2, now_ms()))).await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    post(&poster, &url, Post::report(&ghost_report(3, now_ms()))).await?;

    // Reconnecting with the cursor resumes: no snapshot, only what was missed.
    let mut sub = streams.connect(&base, Some(&cursor)).await?;
    let mut view = ReplicaView::default();
    view.apply(StreamEvent::Snapshot(snap));
    view.apply(StreamEvent::Change(change));
    loop {
        let ev = sub.next_within(Duration::from_secs(5)).await?.context("stream ended")?;
        assert!(!matches!(ev.event, StreamEvent::Snapshot(_)), "resumed, not restarted");
        view.apply(ev.event);
        if state(&view, "ghost") == Some(EdgeState::Up) {
            break;
        }
    }
    assert_eq!(view.edges["ghost"].good_streak, 3);

    // A cursor from another run of the replica gets a snapshot.
    let stale = outpost_proto::stream::Cursor {
        epoch: "another-run".into(),
        version: 1,
    };
    let mut sub = streams.connect(&base, Some(&stale)).await?;
    let ev = sub.next_within(Duration::from_secs(5)).await?.context("stream ended")?;
    assert!(matches!(ev.event, StreamEvent::Snapshot(s) if s.edges[0].state == EdgeState::Up));
    Ok(())
}
