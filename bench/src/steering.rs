//! `outpost bench steering`: how fast steering decides.
//!
//! 1. The ranker in-process (`outpost_steering::rank::Prepared::rank`, the
//!    pure function every answer calls, over a snapshot indexed once as
//!    steering does when cache-control streams a change): a synthetic
//!    snapshot of 1,000 edges over 80 sites (and other sizes), clients from
//!    many places and ISPs, Zipf titles; one thread; decisions/s and each
//!    decision's latency, and how long indexing the snapshot takes.
//! 2. The playback API over HTTPS: the real binaries (origin,
//!    cache-control, three edges reporting to it, steering) on loopback;
//!    many connections from the three ISPs' client networks loop `POST
//!    /v1/play` (or `GET /v1/steering/{session}`, the steering manifest
//!    players poll) for Zipf titles. Answers/s, latency, and steering's CPU
//!    seconds (answers per steering CPU-second is the per-core figure).

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use http::Method;
use outpost_proto::EdgeState;
use outpost_steering::rank::{Client, Edge, Policy, Prepared};
use serde::Serialize;

use crate::fleet::{self, Fleet, FleetConfig, ISPS};
use crate::load::{self, Call, Proto};
use crate::procs;
use crate::report::{f, write_json, Header, Percentiles, Table};
use crate::zipf::{Rng, Zipf};
use crate::Common;

#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    #[command(flatten)]
    pub common: Common,
    /// Seconds of ranking per snapshot. Default: 3 (quick: 0.2).
    #[arg(long)]
    pub ranker_seconds: Option<f64>,
    /// Concurrent HTTPS connections to steering. Default: 64 (quick: 4).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Seconds per API run. Default: 8 (quick: 1).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Protocols for the API runs (h1, h2). Default: h1,h2.
    #[arg(long, value_delimiter = ',')]
    pub protocols: Vec<Proto>,
    /// Titles in the catalog (Zipf popularity, exponent 0.8). Default: 10000.
    #[arg(long, default_value_t = 10_000)]
    pub titles: u32,
    /// Skip the API runs (ranker only: no processes).
    #[arg(long)]
    pub ranker_only: bool,
    #[command(flatten)]
    pub settle: procs::SettleOpts,
}

/// One synthetic snapshot.
#[derive(Debug, Clone, Copy, Serialize)]
struct Snapshot {
    edges: usize,
    sites: usize,
    /// Share of edges not up (down, draining, overloaded).
    not_up: f64,
}

const SNAPSHOTS: [Snapshot; 4] = [
    Snapshot {
        edges: 1000,
        sites: 80,
        not_up: 0.0,
    },
    Snapshot {
        edges: 1000,
        sites: 80,
        not_up: 0.2,
    },
    Snapshot {
        edges: 100,
        sites: 10,
        not_up: 0.0,
    },
    Snapshot {
        edges: 10_000,
        sites: 400,
        not_up: 0.0,
    },
];

fn snapshot(s: &Snapshot, titles: &Zipf, rng: &mut Rng) -> Vec<Edge> {
    let sites: Vec<(f64, f64)> = (0..s.sites)
        .map(|_| (-50.0 + 110.0 * rng.unit(), -125.0 + 270.0 * rng.unit()))
        .collect();
    (0..s.edges)
        .map(|i| {
            let site = i % s.sites;
            let state = if rng.unit() >= s.not_up {
                EdgeState::Up
            } else {
                [EdgeState::Down, EdgeState::Draining, EdgeState::Overloaded][rng.below(3)]
            };
            Edge {
                id: format!("edge-{site:03}-{i:05}"),
                site: format!("site-{site:03}"),
                state,
                asns: vec![65000 + site as u32],
                prefixes: if i % 4 == 0 {
                    vec![(IpAddr::from([10, (site / 256) as u8, (site % 256) as u8, 0]), 24)]
                } else {
                    vec![]
                },
                lat: sites[site].0,
                lon: sites[site].1,
                url: format!("https://10.{}.{}.{}:8443", i / 65536, i / 256 % 256, i % 256),
                weight: [10.0, 40.0, 100.0][rng.below(3)],
                load: 0.6 * rng.unit(),
                titles: (0..32).map(|_| format!("t{:04}", titles.sample(rng))).collect(),
            }
        })
        .collect()
}

/// A client: half in some site's ISP, a tenth without coordinates.
fn client(s: &Snapshot, rng: &mut Rng) -> Client {
    let site = rng.below(s.sites);
    let located = rng.unit() >= 0.1;
    Client {
        ip: Some(IpAddr::from([10, (site / 256) as u8, (site % 256) as u8, 7])),
        asn: (rng.unit() < 0.5).then_some(65000 + site as u32),
        site: None,
        lat: located.then(|| -50.0 + 110.0 * rng.unit()),
        lon: located.then(|| -125.0 + 270.0 * rng.unit()),
    }
}

#[derive(Debug, Serialize)]
struct RankerRun {
    #[serde(flatten)]
    snapshot: Snapshot,
    decisions: usize,
    decisions_per_s: f64,
    latency_us: Micros,
    /// Median time to index the snapshot (`Prepared::new`, once per
    /// change steering sees), microseconds.
    prepare_us: f64,
    #[serde(flatten)]
    quiet: procs::Quiet,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Serialize)]
struct Micros {
    p50: f64,
    p99: f64,
    max: f64,
}

fn ranker(s: &Snapshot, seconds: f64, titles: u32) -> RankerRun {
    let mut rng = Rng(0x5eed ^ s.edges as u64);
    let popularity = Zipf::new(titles as usize, 0.8);
    let edges = snapshot(s, &popularity, &mut rng);
    let mut builds: Vec<Duration> = (0..21)
        .map(|_| {
            let copy = edges.clone();
            let t0 = Instant::now();
            let prepared = black_box(Prepared::new(black_box(copy)));
            let took = t0.elapsed();
            drop(prepared);
            took
        })
        .collect();
    builds.sort_unstable();
    let prepare_us = builds[builds.len() / 2].as_secs_f64() * 1e6;
    let edges = Prepared::new(edges);
    let clients: Vec<Client> = (0..4096).map(|_| client(s, &mut rng)).collect();
    let names: Vec<String> = (0..4096)
        .map(|_| format!("t{:04}", popularity.sample(&mut rng)))
        .collect();
    let policy = Policy::default();
    let mut lat = Vec::new();
    let started = Instant::now();
    let budget = Duration::from_secs_f64(seconds);
    let mut i = 0usize;
    while started.elapsed() < budget || i == 0 {
        let (c, t) = (&clients[i % clients.len()], &names[(i * 7 + i / 4096) % names.len()]);
        let t0 = Instant::now();
        black_box(black_box(&edges).rank(c, t, &policy));
        lat.push(t0.elapsed());
        i += 1;
    }
    let wall = started.elapsed().as_secs_f64();
    let p = Percentiles::of(&lat);
    RankerRun {
        snapshot: *s,
        decisions: i,
        decisions_per_s: i as f64 / wall,
        latency_us: Micros {
            p50: p.p50_ms * 1e3,
            p99: p.p99_ms * 1e3,
            max: p.max_ms * 1e3,
        },
        prepare_us,
        quiet: procs::Quiet::default(),
    }
}

#[derive(Debug, Serialize)]
struct ApiRun {
    endpoint: &'static str,
    proto: Proto,
    connections: usize,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    req_per_s: f64,
    latency: Percentiles,
    steering_cpu_s: f64,
    /// Answers per CPU-second of the steering process (per core).
    req_per_steering_cpu_s: f64,
    client_cpu_s: f64,
    other_cpu_s: f64,
    #[serde(flatten)]
    quiet: procs::Quiet,
}

#[derive(Debug, Serialize)]
struct Output {
    #[serde(flatten)]
    header: Header,
    titles: u32,
    zipf_exponent: f64,
    ranker: Vec<RankerRun>,
    fleet: Option<FleetConfig>,
    api: Vec<ApiRun>,
}

const ALPHA: f64 = 0.8;

/// The sessions (`/v1/steering/<id>` paths) of one play per connection.
async fn sessions(fleet: &Fleet, sources: &[Option<IpAddr>]) -> Result<Vec<String>> {
    let target = fleet.steering_target()?;
    let mut out = Vec::new();
    for (i, &source) in sources.iter().enumerate() {
        let mut conn = fleet::steering_conn(&target, Proto::H1, source).await?;
        let (got, _) = fleet::play(&mut conn, &format!("t{:04}", i % 10)).await?;
        let v: serde_json::Value = serde_json::from_slice(got.body.as_deref().unwrap_or_default())?;
        let url = v["steering"].as_str().unwrap_or_default();
        match url.find("/v1/steering/") {
            Some(at) => out.push(url[at..].to_owned()),
            None => bail!("play answer without a steering URL: {v}"),
        }
    }
    Ok(out)
}

pub async fn run(o: Opts) -> Result<()> {
    let quick = o.common.quick;
    let header = Header::new("steering", quick);
    let ranker_seconds = o.ranker_seconds.unwrap_or(if quick { 0.2 } else { 3.0 });
    let connections = o.connections.unwrap_or(if quick { 4 } else { 64 });
    let seconds = o.seconds.unwrap_or(if quick { 1.0 } else { 8.0 });
    let protocols: Vec<Proto> = if o.protocols.is_empty() {
        vec![Proto::H1, Proto::H2]
    } else {
        o.protocols.clone()
    };
    if protocols.contains(&Proto::H3) {
        bail!("steering serves HTTPS/1.1 and HTTP/2 only");
    }
    let titles = o.titles.max(1);

    // 1. The ranker in-process.
    let snaps: Vec<&Snapshot> = SNAPSHOTS.iter().filter(|s| !quick || s.edges <= 1000).collect();
    let mut rruns = Vec::new();
    for s in snaps {
        let (mut r, quiet) = o
            .settle
            .measured(quick, "ranker", || async {
                let (busy0, self0) = (procs::machine_busy_seconds(), procs::self_cpu_seconds());
                let r = ranker(s, ranker_seconds, titles);
                let other = procs::machine_busy_seconds() - busy0 - (procs::self_cpu_seconds() - self0);
                Ok((r, other.max(0.0) / ranker_seconds.max(1e-3)))
            })
            .await?;
        r.quiet = quiet;
        println!(
            "  ranker {} edges / {} sites, {:.0}% not up: {:.0} decisions/s, p50 {:.1} µs, p99 {:.1} µs, max {:.0} µs; indexing the snapshot {:.0} µs",
            s.edges,
            s.sites,
            s.not_up * 100.0,
            r.decisions_per_s,
            r.latency_us.p50,
            r.latency_us.p99,
            r.latency_us.max,
            r.prepare_us
        );
        rruns.push(r);
    }
    let mut t = Table::new(&[
        "edges",
        "sites",
        "not up",
        "decisions",
        "decisions/s",
        "p50 µs",
        "p99 µs",
        "max µs",
        "index µs",
    ]);
    for r in &rruns {
        t.row(vec![
            r.snapshot.edges.to_string(),
            r.snapshot.sites.to_string(),
            format!("{:.0}%", r.snapshot.not_up * 100.0),
            r.decisions.to_string(),
            f(r.decisions_per_s, 0),
            f(r.latency_us.p50, 1),
            f(r.latency_us.p99, 1),
            f(r.latency_us.max, 0),
            f(r.prepare_us, 0),
        ]);
    }
    println!("\nranker (one thread, in-process)\n{}", t.render());

    // 2. The playback API over HTTPS.
    let mut api = Vec::new();
    let mut fleet_cfg = None;
    if !o.ranker_only {
        let dir = o.common.fresh_dir("steering")?;
        let cfg = FleetConfig {
            edges: 3,
            titles,
            renditions: vec![800_000],
            segments: 4,
            edge_capacity: 64 << 20,
            report_interval: Duration::from_millis(500),
            missed_intervals: 3,
            readmit_reports: 3,
            heartbeat: Duration::from_secs(1),
            tokens_required: true,
        };
        fleet_cfg = Some(cfg.clone());
        let fleet = Fleet::start(&dir, 3, cfg).await?;
        let target = fleet.steering_target()?;
        let sources: Vec<Option<IpAddr>> = (0..connections)
            .map(|i| Some(ISPS[i % ISPS.len()].client_ip(i as u32)))
            .collect();
        let sids = Arc::new(sessions(&fleet, &sources).await?);
        let popularity = Arc::new(Zipf::new(titles as usize, ALPHA));
        for endpoint in ["play", "steering-manifest"] {
            for &proto in &protocols {
                let (r, quiet) = o
                    .settle
                    .measured(quick, endpoint, || {
                        let (popularity, sids) = (popularity.clone(), sids.clone());
                        let next: Arc<dyn Fn(usize, u64) -> Call + Send + Sync> = if endpoint == "play" {
                            Arc::new(move |conn: usize, seq: u64| {
                                let mut rng = Rng((conn as u64) << 32 ^ seq);
                                let title = popularity.sample(&mut rng);
                                Call {
                                    method: Method::POST,
                                    path: "/v1/play".into(),
                                    body: Bytes::from(format!("{{\"title\":\"t{title:04}\"}}")),
                                    expect_len: None,
                                }
                            })
                        } else {
                            Arc::new(move |conn: usize, _| Call {
                                method: Method::GET,
                                path: sids[conn % sids.len()].clone(),
                                body: Bytes::new(),
                                expect_len: None,
                            })
                        };
                        let (target, sources, steering) = (&target, &sources, &fleet.steering);
                        async move {
                            let r =
                                load::run_calls(target, proto, sources, Duration::from_secs_f64(seconds), next, || {
                                    steering.cpu_seconds()
                                })
                                .await?;
                            let noise = r.other_cpu / r.elapsed.as_secs_f64().max(1e-3);
                            Ok((r, noise))
                        }
                    })
                    .await?;
                let secs = r.elapsed.as_secs_f64();
                let run = ApiRun {
                    endpoint,
                    proto,
                    connections,
                    requests: r.requests,
                    errors: r.errors,
                    first_error: r.first_error.clone(),
                    seconds: secs,
                    req_per_s: r.requests as f64 / secs,
                    latency: Percentiles::of(&r.ttfb),
                    steering_cpu_s: r.server_cpu,
                    req_per_steering_cpu_s: r.requests as f64 / r.server_cpu.max(1e-3),
                    client_cpu_s: r.client_cpu,
                    other_cpu_s: r.other_cpu,
                    quiet,
                };
                println!(
                    "  {endpoint} {}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, steering CPU {:.2} s ({:.0} answers per CPU-second), errors {}",
                    proto.as_str(),
                    run.req_per_s,
                    run.latency.p50_ms,
                    run.latency.p99_ms,
                    run.steering_cpu_s,
                    run.req_per_steering_cpu_s,
                    run.errors
                );
                if let Some(e) = &run.first_error {
                    println!("    first error: {e}");
                }
                api.push(run);
            }
        }
        let mut t = Table::new(&[
            "endpoint",
            "proto",
            "connections",
            "req/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "steering CPU s",
            "answers per steering CPU-s",
            "client CPU s",
            "errors",
        ]);
        for r in &api {
            t.row(vec![
                r.endpoint.into(),
                r.proto.as_str().into(),
                r.connections.to_string(),
                f(r.req_per_s, 0),
                f(r.latency.p50_ms, 2),
                f(r.latency.p99_ms, 2),
                f(r.latency.max_ms, 2),
                f(r.steering_cpu_s, 2),
                f(r.req_per_steering_cpu_s, 0),
                f(r.client_cpu_s, 2),
                r.errors.to_string(),
            ]);
        }
        println!("\nplayback API over HTTPS ({seconds} s per run)\n{}", t.render());
    }

    let out = Output {
        header,
        titles,
        zipf_exponent: ALPHA,
        ranker: rruns,
        fleet: fleet_cfg,
        api,
    };
    write_json(&o.common.json_path("steering"), &out)?;
    if out.api.iter().any(|r| r.requests == 0) {
        bail!("an API run got no good answer");
    }
    Ok(())
}
