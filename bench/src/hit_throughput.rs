//! `outpost bench hit-throughput`: many connections fetching cached 2–6 MB
//! segments from one server over HTTPS/1.1, HTTP/2 and HTTP/3, for the
//! Outpost edge, nginx (`proxy_cache`, warmed, in front of the same origin)
//! and Caddy (`file_server` on the same bytes written to files), runs
//! alternating between servers, with the ratio Outpost/peer per protocol.
//!
//! Measured per run: requests/s, MiB/s, time to first byte (request sent to
//! response head), and the server's CPU seconds per GiB served (utime +
//! stime of the server process and its children from `/proc`, over the
//! timed phase only).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::load::{self, Conn, Object, Proto, Target};
use crate::peers::{self, Peer};
use crate::procs::{self, Proc};
use crate::report::{f, median, write_json, Header, Percentiles, Table};
use crate::rig::{self, Addrs};
use crate::Common;

/// Renditions of the catalog: 4, 8 and 12 Mbit/s × 4 s = 2, 4 and 6 MB segments.
pub const RENDITIONS: [u64; 3] = [4_000_000, 8_000_000, 12_000_000];

const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;

#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent connections per run. Default: 32 (quick: 4).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Seconds per timed run. Default: 8 (quick: 1).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Rounds; each round runs every server once per protocol, in turn.
    /// Default: 3 (quick: 1).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Segments per rendition (3 renditions: 2, 4 and 6 MB). Default: 8 (quick: 1).
    #[arg(long)]
    pub segments: Option<u32>,
    /// Protocols to measure. Default: h1,h2,h3.
    #[arg(long, value_delimiter = ',')]
    pub protocols: Vec<Proto>,
    /// Leave nginx out.
    #[arg(long)]
    pub no_nginx: bool,
    /// Leave Caddy out.
    #[arg(long)]
    pub no_caddy: bool,
    #[command(flatten)]
    pub settle: procs::SettleOpts,
    #[command(flatten)]
    pub peers: peers::PeerOpts,
}

/// A server under load.
struct Server {
    name: &'static str,
    proc: Proc,
    target: Target,
    protos: &'static [Proto],
}

/// Is `got` served from the server's cache?
fn is_hit(server: &str, got: &load::Got) -> bool {
    match server {
        "outpost" => got.header("cache-status").starts_with("outpost; hit"),
        "nginx" => got.header("x-cache-status") == "HIT",
        _ => true, // Caddy serves files.
    }
}

/// Fetch every object until a whole pass is served from cache (at most 6
/// passes), checking every byte on the first pass.
async fn warm(s: &Server, objects: &[Object]) -> Result<usize> {
    let mut conn = Conn::connect(&s.target, Proto::H1).await?;
    for pass in 1..=6 {
        let mut misses = 0;
        for o in objects {
            let got = conn.get(&o.path, pass == 1).await?;
            if got.status != 200 || got.len != o.size {
                bail!(
                    "{} {}: status {}, {} of {} bytes",
                    s.name,
                    o.path,
                    got.status,
                    got.len,
                    o.size
                );
            }
            if let Some(body) = &got.body {
                if body[..] != outpost_origin::synthetic_bytes(&o.path, 0, o.size as usize)[..] {
                    bail!("{} {}: body differs from the origin's bytes", s.name, o.path);
                }
            }
            if !is_hit(s.name, &got) {
                misses += 1;
            }
        }
        if misses == 0 {
            return Ok(pass);
        }
    }
    bail!("{}: objects still missing the cache after 6 passes", s.name)
}

/// Write the catalog's segments as files under `root` (for Caddy).
fn materialize(root: &Path, objects: &[Object]) -> Result<()> {
    for o in objects {
        let path = root.join(o.path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().context("segment path")?)?;
        std::fs::write(&path, outpost_origin::synthetic_bytes(&o.path, 0, o.size as usize))?;
    }
    Ok(())
}

/// One timed run.
#[derive(Debug, Serialize)]
struct Run {
    server: String,
    proto: Proto,
    round: usize,
    requests: u64,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    req_per_s: f64,
    mib_per_s: f64,
    ttfb: Percentiles,
    server_cpu_s: f64,
    server_cpu_s_per_gib: f64,
    client_cpu_s: f64,
    /// CPU seconds of every other process during the run (noise).
    other_cpu_s: f64,
    #[serde(flatten)]
    quiet: procs::Quiet,
    #[serde(skip)]
    ttfb_samples: Vec<Duration>,
}

/// All runs of one server and protocol together.
#[derive(Debug, Serialize)]
struct Summary {
    server: String,
    proto: Proto,
    runs: usize,
    requests: u64,
    errors: u64,
    req_per_s: f64,
    mib_per_s: f64,
    mib_per_s_by_round: Vec<f64>,
    ttfb: Percentiles,
    server_cpu_s_per_gib: f64,
    /// CPU seconds of every other process during these runs (noise).
    other_cpu_s: f64,
}

/// Outpost against one peer on one protocol.
#[derive(Debug, Serialize)]
struct Ratio {
    proto: Proto,
    peer: String,
    /// Median over rounds of Outpost MiB/s ÷ peer MiB/s (same round).
    throughput: f64,
    throughput_by_round: Vec<f64>,
    /// Peer CPU s/GiB ÷ Outpost CPU s/GiB (above 1: Outpost spends less CPU per byte).
    cpu_efficiency: f64,
    /// Peer TTFB p99 ÷ Outpost TTFB p99 (above 1: Outpost answers sooner).
    ttfb_p99: f64,
}

#[derive(Debug, Serialize)]
struct Skipped {
    peer: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct Output {
    #[serde(flatten)]
    header: Header,
    cipher: &'static str,
    connections: usize,
    seconds_per_run: f64,
    rounds: usize,
    objects: Vec<Object>,
    skipped: Vec<Skipped>,
    summary: Vec<Summary>,
    ratios: Vec<Ratio>,
    /// Outpost's HTTP/3 MiB/s ÷ its own HTTPS/1.1 MiB/s (design target ≥ 0.7).
    outpost_h3_vs_h1: Option<f64>,
    runs: Vec<Run>,
}

pub async fn run(o: Opts) -> Result<()> {
    let quick = o.common.quick;
    let connections = o.connections.unwrap_or(if quick { 4 } else { 32 });
    let seconds = o.seconds.unwrap_or(if quick { 1.0 } else { 8.0 });
    let rounds = o.rounds.unwrap_or(if quick { 1 } else { 3 });
    let segments = o.segments.unwrap_or(if quick { 1 } else { 8 });
    let protocols = if o.protocols.is_empty() {
        Proto::ALL.to_vec()
    } else {
        o.protocols.clone()
    };
    let dir = o.common.fresh_dir("hit-throughput")?;
    let header = Header::new("hit-throughput", quick);

    let addrs = Addrs::for_scenario(1)?;
    let certs = rig::certs(&dir, &addrs)?;
    let objects: Vec<Object> = RENDITIONS
        .iter()
        .enumerate()
        .flat_map(|(r, &bps)| (0..segments).map(move |n| rig::segment(r, bps, n)))
        .collect();
    let total: u64 = objects.iter().map(|o| o.size).sum();
    println!(
        "{} objects, {:.1} MiB in all; {connections} connections, {seconds} s per run, {rounds} round(s)",
        objects.len(),
        total as f64 / MIB
    );

    let _origin = rig::start_origin(&rig::sub(&dir, "origin")?, &addrs, &RENDITIONS, segments, 0).await?;
    let edge = rig::start_edge(&rig::sub(&dir, "edge")?, &addrs, &certs, 2 * total + (256 << 20)).await?;
    let mut servers = vec![Server {
        name: "outpost",
        proc: edge,
        target: rig::target(addrs.edge, &certs)?,
        protos: &Proto::ALL,
    }];
    let mut skipped = Vec::new();
    let mut skip = |peer: Peer, reason: String| {
        println!("{}: skipped: {reason}", peer.name());
        skipped.push(Skipped {
            peer: peer.name().into(),
            reason,
        });
    };

    for peer in [Peer::Nginx, Peer::Caddy] {
        if (peer == Peer::Nginx && o.no_nginx) || (peer == Peer::Caddy && o.no_caddy) {
            skip(peer, "left out on the command line".into());
            continue;
        }
        if let Err(reason) = peers::ensure_installed(peer, &dir, &o.peers) {
            skip(peer, reason);
            continue;
        }
        let pdir = rig::sub(&dir, peer.name())?;
        let started = match peer {
            Peer::Nginx => peers::start_nginx(&o.peers, &pdir, addrs.nginx, addrs.origin, &certs.cert, &certs.key)
                .await
                .map(|p| (p, addrs.nginx, &[Proto::H1, Proto::H2][..])),
            Peer::Caddy => {
                let root = rig::sub(&dir, "files")?;
                materialize(&root, &objects)?;
                peers::start_caddy(
                    &o.peers,
                    &pdir,
                    addrs.caddy,
                    rig::SERVER_NAME,
                    &root,
                    &certs.cert,
                    &certs.key,
                )
                .await
                .map(|p| (p, addrs.caddy, &Proto::ALL[..]))
            }
        };
        match started {
            Ok((proc, addr, protos)) => servers.push(Server {
                name: peer.name(),
                proc,
                target: rig::target(addr, &certs)?,
                protos,
            }),
            Err(e) => skip(peer, format!("did not start: {e:#}")),
        }
    }

    // Warm every cache (and check every byte once); a peer that fails is skipped.
    let mut ready = Vec::new();
    for s in servers {
        match warm(&s, &objects).await {
            Ok(passes) => {
                println!("{}: warm after {passes} pass(es), every byte checked", s.name);
                ready.push(s);
            }
            Err(e) if s.name != "outpost" => {
                let peer = if s.name == "nginx" { Peer::Nginx } else { Peer::Caddy };
                skip(peer, format!("warm-up failed: {e:#}"));
            }
            Err(e) => return Err(e.context("warming the Outpost edge")),
        }
    }
    let servers = ready;

    let objects = Arc::new(objects);
    let duration = Duration::from_secs_f64(seconds);
    let mut runs = Vec::new();
    for &proto in &protocols {
        for round in 0..rounds {
            for s in servers.iter().filter(|s| s.protos.contains(&proto)) {
                let what = format!("{} {}", proto.as_str(), s.name);
                let (r, quiet) = o
                    .settle
                    .measured(quick, &what, || {
                        let objects = objects.clone();
                        async move {
                            let r = load::run(&s.target, proto, connections, duration, objects, || {
                                s.proc.cpu_seconds()
                            })
                            .await
                            .with_context(|| format!("{} over {}", s.name, proto.as_str()))?;
                            let noise = r.other_cpu / r.elapsed.as_secs_f64();
                            Ok((r, noise))
                        }
                    })
                    .await?;
                let gib = r.bytes as f64 / GIB;
                let secs = r.elapsed.as_secs_f64();
                let run = Run {
                    server: s.name.into(),
                    proto,
                    round,
                    requests: r.requests,
                    bytes: r.bytes,
                    errors: r.errors,
                    first_error: r.first_error,
                    seconds: secs,
                    req_per_s: r.requests as f64 / secs,
                    mib_per_s: r.bytes as f64 / MIB / secs,
                    ttfb: Percentiles::of(&r.ttfb),
                    server_cpu_s: r.server_cpu,
                    server_cpu_s_per_gib: if gib > 0.0 { r.server_cpu / gib } else { 0.0 },
                    client_cpu_s: r.client_cpu,
                    other_cpu_s: r.other_cpu,
                    quiet,
                    ttfb_samples: r.ttfb,
                };
                println!(
                    "  {} {:<7} round {}: {:>7.1} req/s {:>8.1} MiB/s  ttfb p50 {:>6.2} ms p99 {:>7.2} ms  server {:.3} CPU s/GiB  client {:.1} s, others {:.1} s  errors {}",
                    proto.as_str(),
                    s.name,
                    round + 1,
                    run.req_per_s,
                    run.mib_per_s,
                    run.ttfb.p50_ms,
                    run.ttfb.p99_ms,
                    run.server_cpu_s_per_gib,
                    run.client_cpu_s,
                    run.other_cpu_s,
                    run.errors
                );
                if let Some(e) = &run.first_error {
                    println!("    first error: {e}");
                }
                runs.push(run);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    let summary = summarize(&runs);
    let ratios = ratios(&runs, &summary);
    let mib = |server: &str, proto: Proto| {
        summary
            .iter()
            .find(|s| s.server == server && s.proto == proto)
            .map(|s| s.mib_per_s)
    };
    let outpost_h3_vs_h1 = mib("outpost", Proto::H3)
        .zip(mib("outpost", Proto::H1))
        .map(|(a, b)| a / b);

    let mut t = Table::new(&[
        "proto",
        "server",
        "req/s",
        "MiB/s",
        "TTFB p50 ms",
        "TTFB p99 ms",
        "server CPU s/GiB",
        "errors",
        "others' CPU s",
    ]);
    for s in &summary {
        t.row(vec![
            s.proto.as_str().into(),
            s.server.clone(),
            f(s.req_per_s, 1),
            f(s.mib_per_s, 1),
            f(s.ttfb.p50_ms, 2),
            f(s.ttfb.p99_ms, 2),
            f(s.server_cpu_s_per_gib, 3),
            s.errors.to_string(),
            f(s.other_cpu_s, 1),
        ]);
    }
    println!("\n{}", t.render());
    let mut t = Table::new(&[
        "proto",
        "peer",
        "throughput Outpost/peer",
        "CPU per GiB peer/Outpost",
        "TTFB p99 peer/Outpost",
    ]);
    for r in &ratios {
        t.row(vec![
            r.proto.as_str().into(),
            r.peer.clone(),
            f(r.throughput, 2),
            f(r.cpu_efficiency, 2),
            f(r.ttfb_p99, 2),
        ]);
    }
    println!("{}", t.render());
    if let Some(x) = outpost_h3_vs_h1 {
        println!("Outpost HTTP/3 ÷ HTTPS/1.1 throughput: {x:.2}");
    }
    for s in &skipped {
        println!("{} skipped: {}", s.peer, s.reason);
    }

    let ok = runs.iter().filter(|r| r.server == "outpost").all(|r| r.requests > 0);
    let out = Output {
        header,
        cipher: load::CIPHER,
        connections,
        seconds_per_run: seconds,
        rounds,
        objects: objects.to_vec(),
        skipped,
        summary,
        ratios,
        outpost_h3_vs_h1,
        runs,
    };
    write_json(&o.common.json_path("hit-throughput"), &out)?;
    if !ok {
        bail!("an Outpost run completed no request");
    }
    Ok(())
}

fn summarize(runs: &[Run]) -> Vec<Summary> {
    let mut groups: BTreeMap<(usize, usize), Vec<&Run>> = BTreeMap::new();
    let order = |r: &Run| {
        let p = Proto::ALL.iter().position(|p| *p == r.proto).unwrap_or(0);
        let s = ["outpost", "nginx", "caddy"]
            .iter()
            .position(|s| *s == r.server)
            .unwrap_or(9);
        (p, s)
    };
    for r in runs {
        groups.entry(order(r)).or_default().push(r);
    }
    groups
        .into_values()
        .map(|rs| {
            let requests: u64 = rs.iter().map(|r| r.requests).sum();
            let bytes: u64 = rs.iter().map(|r| r.bytes).sum();
            let secs: f64 = rs.iter().map(|r| r.seconds).sum();
            let cpu: f64 = rs.iter().map(|r| r.server_cpu_s).sum();
            let samples: Vec<Duration> = rs.iter().flat_map(|r| r.ttfb_samples.iter().copied()).collect();
            let gib = bytes as f64 / GIB;
            Summary {
                server: rs[0].server.clone(),
                proto: rs[0].proto,
                runs: rs.len(),
                requests,
                errors: rs.iter().map(|r| r.errors).sum(),
                req_per_s: requests as f64 / secs,
                mib_per_s: bytes as f64 / MIB / secs,
                mib_per_s_by_round: rs.iter().map(|r| r.mib_per_s).collect(),
                ttfb: Percentiles::of(&samples),
                server_cpu_s_per_gib: if gib > 0.0 { cpu / gib } else { 0.0 },
                other_cpu_s: rs.iter().map(|r| r.other_cpu_s).sum(),
            }
        })
        .collect()
}

fn ratios(runs: &[Run], summary: &[Summary]) -> Vec<Ratio> {
    let mut out = Vec::new();
    for us in summary.iter().filter(|s| s.server == "outpost") {
        for peer in summary.iter().filter(|s| s.server != "outpost" && s.proto == us.proto) {
            let per_round: Vec<f64> = runs
                .iter()
                .filter(|r| r.server == "outpost" && r.proto == us.proto)
                .filter_map(|ours| {
                    let theirs = runs
                        .iter()
                        .find(|r| r.server == peer.server && r.proto == us.proto && r.round == ours.round)?;
                    (theirs.mib_per_s > 0.0).then(|| ours.mib_per_s / theirs.mib_per_s)
                })
                .collect();
            out.push(Ratio {
                proto: us.proto,
                peer: peer.server.clone(),
                throughput: median(&per_round),
                throughput_by_round: per_round.clone(),
                cpu_efficiency: peer.server_cpu_s_per_gib / us.server_cpu_s_per_gib,
                ttfb_p99: peer.ttfb.p99_ms / us.ttfb.p99_ms,
            });
        }
    }
    out
}
