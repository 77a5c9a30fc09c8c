//! `outpost bench stampede`: N clients (1,000 by default), each on its own
//! HTTPS/1.1 connection, ask at the same moment for one cold 4 MB segment
//! that a paced origin sends slowly. Measured: how many requests reach the
//! origin (its `outpost_origin_requests_total`), the leader's time to first
//! byte, and the followers' time to first byte and to the last byte. The
//! same against nginx with `proxy_cache_lock on`, rounds alternating, a new
//! cold segment every run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::load::{Conn, Proto, Target};
use crate::peers::{self, Peer};
use crate::procs::{self, metric_sum, metrics};
use crate::report::{f, median, write_json, Header, Percentiles, Table};
use crate::rig::{self, Addrs};
use crate::Common;

/// One 8 Mbit/s rendition: 4 MB segments.
const BITRATE: u64 = 8_000_000;

#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent requests (one connection each). Default: 1000 (quick: 100).
    #[arg(long)]
    pub requests: Option<usize>,
    /// Rounds; each runs every server once on a new cold segment.
    /// Default: 3 (quick: 1).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Origin pace in bytes per second per response (a 4 MB segment takes
    /// 4 MB / pace to arrive). Default: 4194304 (4 MiB/s).
    #[arg(long, default_value_t = 4 << 20)]
    pub pace: u64,
    /// Leave nginx out.
    #[arg(long)]
    pub no_nginx: bool,
    #[command(flatten)]
    pub settle: procs::SettleOpts,
    #[command(flatten)]
    pub peers: peers::PeerOpts,
}

/// One request of the stampede.
struct Answer {
    ttfb: Duration,
    total: Duration,
    /// When it was sent, after the common start.
    sent_after: Duration,
    cache: String,
    ok: bool,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Run {
    server: String,
    round: usize,
    path: String,
    requests: usize,
    ok: usize,
    errors: usize,
    first_error: Option<String>,
    origin_fetches: f64,
    leader_ttfb_ms: f64,
    leader_total_ms: f64,
    followers_ttfb: Percentiles,
    followers_total: Percentiles,
    /// Followers' p99 TTFB minus the leader's TTFB (design target ≤ 5 ms).
    followers_p99_minus_leader_ms: f64,
    /// Latest send after the common start (client-side spread).
    send_spread_ms: f64,
    /// Responses by cache header (`Cache-Status` / `X-Cache-Status`).
    by_cache_status: BTreeMap<String, usize>,
    #[serde(flatten)]
    quiet: procs::Quiet,
    /// From the start signal to the last answer.
    seconds: f64,
    /// CPU seconds of every process but the servers, the origin and the
    /// bench during the run (noise).
    other_cpu_s: f64,
}

#[derive(Debug, Serialize)]
struct Summary {
    server: String,
    rounds: usize,
    origin_fetches_median: f64,
    leader_ttfb_ms_median: f64,
    followers_ttfb_p50_ms_median: f64,
    followers_ttfb_p99_ms_median: f64,
    followers_ttfb_max_ms_median: f64,
    followers_total_p99_ms_median: f64,
    errors: usize,
}

#[derive(Debug, Serialize)]
struct Output {
    #[serde(flatten)]
    header: Header,
    requests: usize,
    rounds: usize,
    segment_bytes: u64,
    origin_pace_bytes_per_s: u64,
    skipped: Vec<(String, String)>,
    summary: Vec<Summary>,
    runs: Vec<Run>,
}

/// Is this answer the one that went to the origin (the leader)?
fn is_leader(server: &str, cache: &str) -> bool {
    match server {
        "outpost" => cache.contains("fwd=miss") && !cache.contains("collapsed"),
        _ => cache == "MISS",
    }
}

async fn origin_requests(admin: &str) -> Result<f64> {
    Ok(metric_sum(&metrics(admin).await?, "outpost_origin_requests_total", &[]))
}

/// Open `n` connections (at most 100 handshakes at a time).
async fn connect_all(target: &Target, n: usize) -> Result<Vec<Conn>> {
    let limit = Arc::new(tokio::sync::Semaphore::new(100));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (target, limit) = (target.clone(), limit.clone());
        set.spawn(async move {
            let _permit = limit.acquire().await?;
            Conn::connect(&target, Proto::H1).await
        });
    }
    let mut conns = Vec::with_capacity(n);
    while let Some(c) = set.join_next().await {
        conns.push(c??);
    }
    Ok(conns)
}

async fn stampede(
    server: &str,
    target: &Target,
    origin_admin: &str,
    path: &str,
    n: usize,
    round: usize,
    own_pids: &[u32],
) -> Result<Run> {
    let conns = connect_all(target, n).await?;
    let before = origin_requests(origin_admin).await?;
    let barrier = Arc::new(tokio::sync::Barrier::new(n + 1));
    let start = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut set = tokio::task::JoinSet::new();
    for mut conn in conns {
        let (barrier, start, path) = (barrier.clone(), start.clone(), path.to_owned());
        let header = if server == "outpost" {
            "cache-status"
        } else {
            "x-cache-status"
        };
        set.spawn(async move {
            barrier.wait().await;
            let sent_after = start.get().map_or(Duration::ZERO, |t| t.elapsed());
            match conn.get(&path, false).await {
                Ok(got) => Answer {
                    ttfb: got.ttfb,
                    total: got.total,
                    sent_after,
                    cache: got.header(header).to_owned(),
                    ok: got.status == 200 && got.len == BITRATE * rig::SEGMENT_SECONDS / 8,
                    error: (got.status != 200).then(|| format!("status {}", got.status)),
                },
                Err(e) => Answer {
                    ttfb: Duration::ZERO,
                    total: Duration::ZERO,
                    sent_after,
                    cache: String::new(),
                    ok: false,
                    error: Some(format!("{e:#}")),
                },
            }
        });
    }
    let ours =
        || -> f64 { own_pids.iter().map(|p| procs::tree_cpu_seconds(*p)).sum::<f64>() + procs::self_cpu_seconds() };
    let (busy0, ours0) = (procs::machine_busy_seconds(), ours());
    let _ = start.set(Instant::now());
    barrier.wait().await;
    let mut answers = Vec::with_capacity(n);
    while let Some(a) = set.join_next().await {
        answers.push(a?);
    }
    let seconds = start.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
    let other_cpu_s = (procs::machine_busy_seconds() - busy0 - (ours() - ours0)).max(0.0);
    // The origin counts a request when its body is done.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let origin_fetches = origin_requests(origin_admin).await? - before;

    let ok: Vec<&Answer> = answers.iter().filter(|a| a.ok).collect();
    let leader = ok
        .iter()
        .filter(|a| is_leader(server, &a.cache))
        .min_by_key(|a| a.ttfb)
        .or_else(|| ok.iter().min_by_key(|a| a.ttfb))
        .copied();
    let followers: Vec<&Answer> = ok
        .iter()
        .filter(|a| !leader.is_some_and(|l| std::ptr::eq(**a, l)))
        .copied()
        .collect();
    let mut by_cache_status = BTreeMap::new();
    for a in &answers {
        *by_cache_status
            .entry(if a.ok { a.cache.clone() } else { "error".into() })
            .or_insert(0) += 1;
    }
    let followers_ttfb = Percentiles::of(&followers.iter().map(|a| a.ttfb).collect::<Vec<_>>());
    let leader_ttfb_ms = leader.map_or(0.0, |l| l.ttfb.as_secs_f64() * 1e3);
    Ok(Run {
        server: server.into(),
        round,
        path: path.into(),
        requests: n,
        ok: ok.len(),
        errors: n - ok.len(),
        first_error: answers.iter().find_map(|a| a.error.clone()),
        origin_fetches,
        leader_ttfb_ms,
        leader_total_ms: leader.map_or(0.0, |l| l.total.as_secs_f64() * 1e3),
        followers_p99_minus_leader_ms: followers_ttfb.p99_ms - leader_ttfb_ms,
        followers_ttfb,
        followers_total: Percentiles::of(&followers.iter().map(|a| a.total).collect::<Vec<_>>()),
        send_spread_ms: answers
            .iter()
            .map(|a| a.sent_after)
            .max()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
        by_cache_status,
        quiet: procs::Quiet::default(),
        seconds,
        other_cpu_s,
    })
}

pub async fn run(o: Opts) -> Result<()> {
    let quick = o.common.quick;
    let n = o.requests.unwrap_or(if quick { 100 } else { 1000 });
    let rounds = o.rounds.unwrap_or(if quick { 1 } else { 3 });
    let dir = o.common.fresh_dir("stampede")?;
    let header = Header::new("stampede", quick);
    let addrs = Addrs::for_scenario(2)?;
    let certs = rig::certs(&dir, &addrs)?;
    // A new cold segment for every run, retries included.
    let segments = 10_000;
    let origin = rig::start_origin(&rig::sub(&dir, "origin")?, &addrs, &[BITRATE], segments, o.pace).await?;
    let edge = rig::start_edge(&rig::sub(&dir, "edge")?, &addrs, &certs, 512 << 20).await?;
    let mut servers = vec![("outpost", rig::target(addrs.edge, &certs)?, edge.pid())];
    let mut skipped = Vec::new();
    let mut _nginx = None;
    let nginx = if o.no_nginx {
        Err("left out on the command line".to_owned())
    } else {
        peers::ensure_installed(Peer::Nginx, &dir, &o.peers)
    };
    match nginx {
        Ok(()) => match peers::start_nginx(
            &o.peers,
            &rig::sub(&dir, "nginx")?,
            addrs.nginx,
            addrs.origin,
            &certs.cert,
            &certs.key,
        )
        .await
        {
            Ok(p) => {
                servers.push(("nginx", rig::target(addrs.nginx, &certs)?, p.pid()));
                _nginx = Some(p);
            }
            Err(e) => skipped.push(("nginx".to_owned(), format!("did not start: {e:#}"))),
        },
        Err(reason) => skipped.push(("nginx".to_owned(), reason)),
    }
    for (peer, reason) in &skipped {
        println!("{peer}: skipped: {reason}");
    }
    println!(
        "{n} concurrent HTTPS/1.1 requests for one cold {} MB segment, origin paced to {:.1} MiB/s, {rounds} round(s)",
        BITRATE * rig::SEGMENT_SECONDS / 8 / 1_000_000,
        o.pace as f64 / f64::from(1u32 << 20)
    );

    let origin_admin = addrs.origin_admin.to_string();
    let mut runs = Vec::new();
    let mut next_segment = 0u32;
    for round in 0..rounds {
        for (name, target, pid) in &servers {
            let own = [*pid, origin.pid()];
            let (mut r, quiet) = o
                .settle
                .measured(quick, name, || {
                    let seg = rig::segment(0, BITRATE, next_segment);
                    next_segment += 1;
                    let origin_admin = &origin_admin;
                    let own = &own;
                    async move {
                        let r = stampede(name, target, origin_admin, &seg.path, n, round, own)
                            .await
                            .with_context(|| format!("{name} stampede"))?;
                        let noise = r.other_cpu_s / r.seconds.max(1e-3);
                        Ok((r, noise))
                    }
                })
                .await?;
            r.quiet = quiet;
            println!(
                "  {name:<7} round {}: origin fetches {}, leader TTFB {:.2} ms, followers TTFB p50 {:.2} p99 {:.2} max {:.2} ms, last byte p99 {:.0} ms, errors {}, others' CPU {:.1} s",
                round + 1,
                r.origin_fetches,
                r.leader_ttfb_ms,
                r.followers_ttfb.p50_ms,
                r.followers_ttfb.p99_ms,
                r.followers_ttfb.max_ms,
                r.followers_total.p99_ms,
                r.errors,
                r.other_cpu_s
            );
            if let Some(e) = &r.first_error {
                println!("    first error: {e}");
            }
            runs.push(r);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    let summary: Vec<Summary> = servers
        .iter()
        .map(|(name, _, _)| {
            let rs: Vec<&Run> = runs.iter().filter(|r| r.server == *name).collect();
            let med = |g: &dyn Fn(&Run) -> f64| median(&rs.iter().map(|r| g(r)).collect::<Vec<_>>());
            Summary {
                server: (*name).into(),
                rounds: rs.len(),
                origin_fetches_median: med(&|r| r.origin_fetches),
                leader_ttfb_ms_median: med(&|r| r.leader_ttfb_ms),
                followers_ttfb_p50_ms_median: med(&|r| r.followers_ttfb.p50_ms),
                followers_ttfb_p99_ms_median: med(&|r| r.followers_ttfb.p99_ms),
                followers_ttfb_max_ms_median: med(&|r| r.followers_ttfb.max_ms),
                followers_total_p99_ms_median: med(&|r| r.followers_total.p99_ms),
                errors: rs.iter().map(|r| r.errors).sum(),
            }
        })
        .collect();

    let mut t = Table::new(&[
        "server",
        "round",
        "origin fetches",
        "leader TTFB ms",
        "followers TTFB p50 ms",
        "p99 ms",
        "max ms",
        "followers last byte p99 ms",
        "errors",
    ]);
    for r in &runs {
        t.row(vec![
            r.server.clone(),
            (r.round + 1).to_string(),
            f(r.origin_fetches, 0),
            f(r.leader_ttfb_ms, 2),
            f(r.followers_ttfb.p50_ms, 2),
            f(r.followers_ttfb.p99_ms, 2),
            f(r.followers_ttfb.max_ms, 2),
            f(r.followers_total.p99_ms, 0),
            r.errors.to_string(),
        ]);
    }
    println!("\n{}", t.render());

    let out = Output {
        header,
        requests: n,
        rounds,
        segment_bytes: BITRATE * rig::SEGMENT_SECONDS / 8,
        origin_pace_bytes_per_s: o.pace,
        skipped,
        summary,
        runs,
    };
    write_json(&o.common.json_path("stampede"), &out)?;
    let ours: Vec<&Run> = out.runs.iter().filter(|r| r.server == "outpost").collect();
    if ours.iter().any(|r| r.ok == 0 || r.origin_fetches < 1.0) {
        bail!("an Outpost stampede got no answer or no origin fetch was counted");
    }
    Ok(())
}
