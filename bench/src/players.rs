//! `outpost bench players`: virtual players against the whole system.
//!
//! The real binaries run (origin, one cache-control replica, one edge per
//! loopback ISP reporting to it, steering with a geo database for the
//! ISPs' client networks). K players start over a ramp; each, from its own
//! source address in its ISP's network (`127.<isp+1>.x.y`), over HTTP/3,
//! HTTP/2 or HTTPS/1.1 (a third each, across the ISPs):
//!
//! 1. asks steering for a title (Zipf popularity over the catalog):
//!    `POST /v1/play`;
//! 2. fetches the first edge's multivariant playlist (the token is in the
//!    path, `/t/<token>/…`), picks a rendition, fetches its media playlist
//!    and init segment;
//! 3. fetches segments at the bitrate's pace: back to back until
//!    `--startup-segments` are in (playback starts then), afterwards each
//!    when the buffer ahead falls under `--max-ahead-s`. A segment arriving
//!    after its playback deadline is a stall; playback then resumes from
//!    that moment (later deadlines move by the stall).
//!
//! Reported: sessions without stalls, startup time, segment TTFB, requests
//! per edge and whether players got their own ISP's edge, the edges' hit
//! ratio (their metrics, and the `Cache-Status` players saw) and origin
//! offload (origin requests and bytes against player requests and bytes).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::fleet::{self, Fleet, FleetConfig, ISPS};
use crate::load::{Conn, Proto, Target};
use crate::procs::{metric_sum, metrics};
use crate::report::{f, write_json, Header, Percentiles, Table};
use crate::rig::SEGMENT_SECONDS;
use crate::zipf::{Rng, Zipf};
use crate::Common;

/// Renditions: 0.8, 2.5 and 6 Mbit/s (0.4, 1.25 and 3 MB segments).
const RENDITIONS: [u64; 3] = [800_000, 2_500_000, 6_000_000];

#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    #[command(flatten)]
    pub common: Common,
    /// Virtual players. Default: 240 (quick: 9).
    #[arg(long)]
    pub players: Option<usize>,
    /// Segments each player plays (4 s of media each). Default: 12 (quick: 3).
    #[arg(long)]
    pub segments: Option<u32>,
    /// Playback speed: media seconds per wall second. Default: 1 (quick: 8).
    #[arg(long)]
    pub speed: Option<f64>,
    /// Players start spread evenly over this many seconds. Default: 20 (quick: 0.5).
    #[arg(long)]
    pub ramp_s: Option<f64>,
    /// Segments buffered before playback starts. Default: 2.
    #[arg(long, default_value_t = 2)]
    pub startup_segments: u32,
    /// Media seconds a player keeps buffered ahead at most. Default: 12.
    #[arg(long, default_value_t = 12.0)]
    pub max_ahead_s: f64,
    /// Titles in the catalog. Default: 30 (quick: 6).
    #[arg(long)]
    pub titles: Option<u32>,
    /// Zipf exponent of title popularity. Default: 0.8.
    #[arg(long, default_value_t = 0.8)]
    pub zipf: f64,
    /// Protocol mix, assigned round robin. Default: h3,h2,h1.
    #[arg(long, value_delimiter = ',')]
    pub protocols: Vec<Proto>,
    /// Seed of titles and renditions.
    #[arg(long, default_value_t = 6)]
    pub seed: u64,
}

/// What one player did.
#[derive(Debug, Default, Serialize)]
struct Session {
    player: usize,
    isp: usize,
    source: String,
    proto: String,
    title: String,
    rendition: usize,
    /// The first edge steering named, and why.
    edge: String,
    reason: String,
    own_isp_edge: bool,
    play_ms: f64,
    /// Play request sent to playback start.
    startup_ms: f64,
    segments: usize,
    stalls: usize,
    stall_ms: f64,
    requests: usize,
    hits: usize,
    bytes: u64,
    error: Option<String>,
    #[serde(skip)]
    seg_ttfb: Vec<Duration>,
    #[serde(skip)]
    seg_ttfb_hit: Vec<Duration>,
    #[serde(skip)]
    seg_ttfb_miss: Vec<Duration>,
}

struct Plan {
    players: usize,
    segments: u32,
    speed: f64,
    ramp: Duration,
    startup: u32,
    max_ahead_s: f64,
    titles: Zipf,
    protocols: Vec<Proto>,
    seed: u64,
}

/// `https://ip:port/path` → (address, path).
fn split_url(url: &str) -> Result<(SocketAddr, String)> {
    let uri: http::Uri = url.parse().with_context(|| format!("URL {url:?}"))?;
    let auth = uri.authority().with_context(|| format!("no host in {url:?}"))?;
    let ip: IpAddr = auth
        .host()
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .with_context(|| format!("host of {url:?}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    Ok((SocketAddr::new(ip, auth.port_u16().unwrap_or(443)), path))
}

/// `rel` resolved against the directory of `base` (both paths).
fn resolve(base: &str, rel: &str) -> String {
    if rel.starts_with('/') {
        return rel.to_owned();
    }
    let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
    format!("{dir}{rel}")
}

/// A media playlist: init URI and (duration, URI) per segment.
fn media_playlist(text: &str) -> (Option<String>, Vec<(f64, String)>) {
    let mut init = None;
    let mut segs = Vec::new();
    let mut dur = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:") {
            init = rest
                .split_once("URI=\"")
                .and_then(|(_, r)| r.split_once('"'))
                .map(|(u, _)| u.to_owned());
        } else if let Some(rest) = line.strip_prefix("#EXTINF:") {
            dur = rest.split(',').next().and_then(|d| d.trim().parse::<f64>().ok());
        } else if !line.is_empty() && !line.starts_with('#') {
            segs.push((dur.take().unwrap_or(SEGMENT_SECONDS as f64), line.to_owned()));
        }
    }
    (init, segs)
}

/// The variant URIs of a multivariant playlist.
fn variants(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn is_hit(got: &crate::load::Got) -> bool {
    got.header("cache-status").starts_with("outpost; hit")
}

async fn get(conn: &mut Conn, path: &str, keep: bool, s: &mut Session) -> Result<crate::load::Got> {
    let got = conn.get(path, keep).await.with_context(|| format!("GET {path}"))?;
    s.requests += 1;
    s.bytes += got.len;
    if is_hit(&got) {
        s.hits += 1;
    }
    if got.status != 200 || got.len == 0 {
        bail!("GET {path}: status {}, {} bytes", got.status, got.len);
    }
    Ok(got)
}

async fn play_session(fleet: Arc<FleetView>, plan: Arc<Plan>, i: usize, s: &mut Session) -> Result<()> {
    let mut rng = Rng(plan.seed.wrapping_mul(0x1000_0000_01b3) ^ i as u64);
    s.title = format!("t{:04}", plan.titles.sample(&mut rng));
    s.rendition = rng.below(RENDITIONS.len());
    let start_at = fleet.started + plan.ramp.mul_f64(i as f64 / plan.players.max(1) as f64);
    tokio::time::sleep_until(start_at.into()).await;
    let source = Some(ISPS[s.isp].client_ip(i as u32));
    let proto = plan.protocols[(i / ISPS.len()) % plan.protocols.len()];
    s.proto = proto.as_str().into();

    let asked = Instant::now();
    let mut st = fleet::steering_conn(&fleet.steering, proto, source).await?;
    let (got, named) = fleet::play(&mut st, &s.title).await?;
    s.play_ms = asked.elapsed().as_secs_f64() * 1e3;
    let named = named.with_context(|| format!("play answered {}", got.status))?;
    let first = named.first().context("play answer names no edge")?;
    s.edge = first.id.clone();
    s.reason = first.reason.clone();
    s.own_isp_edge = fleet.isp_of.get(&first.id) == Some(&s.isp);
    drop(st);

    let (addr, master_path) = split_url(&first.hls)?;
    let target = fleet
        .edge_targets
        .get(&addr)
        .context("an edge steering named is not in the fleet")?;
    let mut conn = Conn::connect_from(target, proto, source).await?;
    let master = get(&mut conn, &master_path, true, s).await?;
    let vs = variants(&String::from_utf8_lossy(master.body.as_deref().unwrap_or_default()));
    let variant = vs.get(s.rendition).or(vs.first()).context("no variant")?;
    let media_path = resolve(&master_path, variant);
    let media = get(&mut conn, &media_path, true, s).await?;
    let (init, segs) = media_playlist(&String::from_utf8_lossy(media.body.as_deref().unwrap_or_default()));
    if let Some(init) = init {
        get(&mut conn, &resolve(&media_path, &init), false, s).await?;
    }
    let n = segs.len().min(plan.segments as usize);
    let startup = (plan.startup as usize).clamp(1, n.max(1));
    let wall = |media_s: f64| Duration::from_secs_f64(media_s.max(0.0) / plan.speed);
    // Segment k must have arrived when playback reaches its start
    // (`media_t`, media seconds): playback start + media_t / speed.
    let mut play_start: Option<Instant> = None;
    let mut media_t = 0.0;
    for (k, (dur, uri)) in segs.iter().take(n).enumerate() {
        if let Some(t0) = play_start {
            let deadline = t0 + wall(media_t);
            let earliest = deadline.checked_sub(wall(plan.max_ahead_s)).unwrap_or(deadline);
            tokio::time::sleep_until(earliest.into()).await;
        }
        let got = get(&mut conn, &resolve(&media_path, uri), false, s).await?;
        let arrived = Instant::now();
        s.seg_ttfb.push(got.ttfb);
        if is_hit(&got) {
            s.seg_ttfb_hit.push(got.ttfb);
        } else {
            s.seg_ttfb_miss.push(got.ttfb);
        }
        s.segments += 1;
        match play_start {
            None if k + 1 >= startup => {
                play_start = Some(arrived);
                s.startup_ms = (arrived - asked).as_secs_f64() * 1e3;
            }
            None => {}
            Some(t0) => {
                let deadline = t0 + wall(media_t);
                if arrived > deadline {
                    // Rebuffer: playback resumes now; later deadlines move.
                    s.stalls += 1;
                    s.stall_ms += (arrived - deadline).as_secs_f64() * 1e3;
                    play_start = Some(t0 + (arrived - deadline));
                }
            }
        }
        media_t += dur;
    }
    Ok(())
}

/// What the players need to know about the fleet.
struct FleetView {
    started: Instant,
    steering: Target,
    edge_targets: BTreeMap<SocketAddr, Target>,
    isp_of: BTreeMap<String, usize>,
}

/// Counters read before and after the run.
#[derive(Debug, Default, Clone, Serialize)]
struct Counters {
    origin_requests: f64,
    origin_bytes: f64,
    /// Per edge id: (requests, hits, upstream fetches, bytes sent).
    edges: BTreeMap<String, (f64, f64, f64, f64)>,
}

async fn counters(fleet: &Fleet) -> Result<Counters> {
    let o = metrics(&fleet.origin_admin.to_string()).await?;
    let mut c = Counters {
        origin_requests: metric_sum(&o, "outpost_origin_requests_total", &[]),
        origin_bytes: metric_sum(&o, "outpost_origin_bytes_total", &[]),
        edges: BTreeMap::new(),
    };
    for e in &fleet.edges {
        let m = metrics(&e.admin.to_string()).await?;
        c.edges.insert(
            e.id.clone(),
            (
                metric_sum(&m, "outpost_edge_requests_total", &[]),
                metric_sum(&m, "outpost_edge_requests_total", &["cache=\"hit\""]),
                metric_sum(&m, "outpost_edge_upstream_fetches_total", &[]),
                metric_sum(&m, "outpost_edge_sent_bytes_total", &[]),
            ),
        );
    }
    Ok(c)
}

#[derive(Debug, Serialize)]
struct EdgeRow {
    edge: String,
    isp_site: String,
    /// Requests players sent it (client side).
    requests: usize,
    /// Of which from players of its own ISP.
    from_own_isp: usize,
    sessions: usize,
    /// From the edge's metrics over the run.
    edge_requests: f64,
    edge_hit_ratio: f64,
    upstream_fetches: f64,
    sent_mib: f64,
}

#[derive(Debug, Serialize)]
struct ProtoRow {
    proto: String,
    sessions: usize,
    failed: usize,
    without_stalls: usize,
    startup: Percentiles,
    seg_ttfb: Percentiles,
}

#[derive(Debug, Serialize)]
struct Output {
    #[serde(flatten)]
    header: Header,
    fleet: FleetConfig,
    players: usize,
    segments_per_session: u32,
    speed: f64,
    ramp_s: f64,
    startup_segments: u32,
    max_ahead_s: f64,
    zipf_exponent: f64,
    seconds: f64,
    sessions_ok: usize,
    sessions_failed: usize,
    sessions_without_stalls: usize,
    own_isp_edge_share: f64,
    segment_ttfb: Percentiles,
    segment_ttfb_hit: Percentiles,
    segment_ttfb_miss: Percentiles,
    startup: Percentiles,
    play: Percentiles,
    player_requests: usize,
    player_bytes: u64,
    /// Hits by the `Cache-Status` players saw.
    client_hit_ratio: f64,
    /// Hits by the edges' metrics.
    edge_hit_ratio: f64,
    origin_requests: f64,
    origin_bytes: f64,
    /// 1 − origin requests ÷ player requests.
    origin_offload_requests: f64,
    /// 1 − origin bytes ÷ player bytes.
    origin_offload_bytes: f64,
    by_proto: Vec<ProtoRow>,
    overall: ProtoRow,
    by_edge: Vec<EdgeRow>,
    sessions: Vec<Session>,
}

pub async fn run(o: Opts) -> Result<()> {
    let quick = o.common.quick;
    let titles = o.titles.unwrap_or(if quick { 6 } else { 30 }).max(1);
    let plan = Plan {
        players: o.players.unwrap_or(if quick { 9 } else { 240 }).max(1),
        segments: o.segments.unwrap_or(if quick { 3 } else { 12 }).max(1),
        speed: o.speed.unwrap_or(if quick { 8.0 } else { 1.0 }).max(0.01),
        ramp: Duration::from_secs_f64(o.ramp_s.unwrap_or(if quick { 0.5 } else { 20.0 }).max(0.0)),
        startup: o.startup_segments.max(1),
        max_ahead_s: o.max_ahead_s.max(0.0),
        titles: Zipf::new(titles as usize, o.zipf),
        protocols: if o.protocols.is_empty() {
            vec![Proto::H3, Proto::H2, Proto::H1]
        } else {
            o.protocols.clone()
        },
        seed: o.seed,
    };
    let dir = o.common.fresh_dir("players")?;
    let header = Header::new("players", quick);
    let cfg = FleetConfig {
        edges: ISPS.len(),
        titles,
        renditions: RENDITIONS.to_vec(),
        segments: plan.segments,
        edge_capacity: 2 << 30,
        report_interval: Duration::from_secs(1),
        missed_intervals: 3,
        readmit_reports: 3,
        heartbeat: Duration::from_secs(1),
        tokens_required: true,
    };
    println!(
        "{} players (protocols {:?}) from 3 ISPs, {titles} titles (Zipf {}), {} segments of {SEGMENT_SECONDS} s each at {}x, ramp {:?}, startup {} segment(s), at most {} s ahead",
        plan.players,
        plan.protocols.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        o.zipf,
        plan.segments,
        plan.speed,
        plan.ramp,
        plan.startup,
        plan.max_ahead_s
    );
    let fleet = Fleet::start(&dir, 5, cfg.clone()).await?;
    let view = Arc::new(FleetView {
        started: Instant::now() + Duration::from_millis(200),
        steering: fleet.steering_target()?,
        edge_targets: fleet
            .edges
            .iter()
            .map(|e| Ok((e.addr, fleet.target(e.addr)?)))
            .collect::<Result<_>>()?,
        isp_of: fleet.edges.iter().map(|e| (e.id.clone(), e.isp)).collect(),
    });
    let before = counters(&fleet).await?;
    let plan = Arc::new(plan);
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..plan.players {
        let (view, plan) = (view.clone(), plan.clone());
        set.spawn(async move {
            let isp = i % ISPS.len();
            let mut s = Session {
                player: i,
                isp,
                source: ISPS[isp].client_ip(i as u32).to_string(),
                ..Default::default()
            };
            if let Err(e) = play_session(view, plan, i, &mut s).await {
                s.error = Some(format!("{e:#}"));
            }
            s
        });
    }
    let mut sessions = Vec::new();
    while let Some(s) = set.join_next().await {
        sessions.push(s?);
    }
    sessions.sort_by_key(|s| s.player);
    let seconds = started.elapsed().as_secs_f64();
    // Edges count a request when its body is done; let them settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = counters(&fleet).await?;

    let ok: Vec<&Session> = sessions.iter().filter(|s| s.error.is_none()).collect();
    let all = |g: fn(&Session) -> &Vec<Duration>| -> Vec<Duration> { ok.iter().flat_map(|s| g(s).clone()).collect() };
    let ms = |g: fn(&Session) -> f64, ss: &[&Session]| -> Percentiles {
        Percentiles::of(
            &ss.iter()
                .map(|s| Duration::from_secs_f64(g(s) / 1e3))
                .collect::<Vec<_>>(),
        )
    };
    let player_requests: usize = sessions.iter().map(|s| s.requests).sum();
    let player_bytes: u64 = sessions.iter().map(|s| s.bytes).sum();
    let hits: usize = sessions.iter().map(|s| s.hits).sum();
    let origin_requests = after.origin_requests - before.origin_requests;
    let origin_bytes = after.origin_bytes - before.origin_bytes;
    let delta = |id: &str| {
        let (a, b) = (after.edges.get(id), before.edges.get(id));
        match (a, b) {
            (Some(a), Some(b)) => (a.0 - b.0, a.1 - b.1, a.2 - b.2, a.3 - b.3),
            _ => (0.0, 0.0, 0.0, 0.0),
        }
    };
    let by_edge: Vec<EdgeRow> = fleet
        .edges
        .iter()
        .map(|e| {
            let mine: Vec<&Session> = sessions.iter().filter(|s| s.edge == e.id).collect();
            let d = delta(&e.id);
            EdgeRow {
                edge: e.id.clone(),
                isp_site: ISPS[e.isp].site.into(),
                requests: mine.iter().map(|s| s.requests).sum(),
                from_own_isp: mine.iter().filter(|s| s.isp == e.isp).map(|s| s.requests).sum(),
                sessions: mine.len(),
                edge_requests: d.0,
                edge_hit_ratio: if d.0 > 0.0 { d.1 / d.0 } else { 0.0 },
                upstream_fetches: d.2,
                sent_mib: d.3 / f64::from(1u32 << 20),
            }
        })
        .collect();
    let (edge_req, edge_hits) = fleet
        .edges
        .iter()
        .map(|e| delta(&e.id))
        .fold((0.0, 0.0), |(r, h), d| (r + d.0, h + d.1));
    let proto_row = |name: &str, ss: Vec<&Session>| {
        let good: Vec<&Session> = ss.iter().copied().filter(|s| s.error.is_none()).collect();
        ProtoRow {
            proto: name.into(),
            sessions: ss.len(),
            failed: ss.len() - good.len(),
            without_stalls: good.iter().filter(|s| s.stalls == 0).count(),
            startup: ms(|s| s.startup_ms, &good),
            seg_ttfb: Percentiles::of(&good.iter().flat_map(|s| s.seg_ttfb.clone()).collect::<Vec<_>>()),
        }
    };
    let by_proto: Vec<ProtoRow> = plan
        .protocols
        .iter()
        .map(|p| proto_row(p.as_str(), sessions.iter().filter(|s| s.proto == p.as_str()).collect()))
        .collect();
    let overall = proto_row("all", sessions.iter().collect());
    let out = Output {
        header,
        fleet: cfg,
        players: plan.players,
        segments_per_session: plan.segments,
        speed: plan.speed,
        ramp_s: plan.ramp.as_secs_f64(),
        startup_segments: plan.startup,
        max_ahead_s: plan.max_ahead_s,
        zipf_exponent: o.zipf,
        seconds,
        sessions_ok: ok.len(),
        sessions_failed: sessions.len() - ok.len(),
        sessions_without_stalls: ok.iter().filter(|s| s.stalls == 0).count(),
        own_isp_edge_share: ok.iter().filter(|s| s.own_isp_edge).count() as f64 / ok.len().max(1) as f64,
        segment_ttfb: Percentiles::of(&all(|s| &s.seg_ttfb)),
        segment_ttfb_hit: Percentiles::of(&all(|s| &s.seg_ttfb_hit)),
        segment_ttfb_miss: Percentiles::of(&all(|s| &s.seg_ttfb_miss)),
        startup: ms(|s| s.startup_ms, &ok),
        play: ms(|s| s.play_ms, &ok),
        player_requests,
        player_bytes,
        client_hit_ratio: hits as f64 / player_requests.max(1) as f64,
        edge_hit_ratio: edge_hits / edge_req.max(1.0),
        origin_requests,
        origin_bytes,
        origin_offload_requests: 1.0 - origin_requests / (player_requests.max(1) as f64),
        origin_offload_bytes: 1.0 - origin_bytes / (player_bytes.max(1) as f64),
        by_proto,
        overall,
        by_edge,
        sessions,
    };
    print_tables(&out);
    write_json(&o.common.json_path("players"), &out)?;
    if out.sessions_ok == 0 {
        bail!(
            "no session played: {}",
            out.sessions.iter().find_map(|s| s.error.clone()).unwrap_or_default()
        );
    }
    Ok(())
}

fn print_tables(out: &Output) {
    let mut t = Table::new(&[
        "proto",
        "sessions",
        "failed",
        "without stalls",
        "startup p50 ms",
        "startup p99 ms",
        "segment TTFB p50 ms",
        "p99 ms",
    ]);
    for p in out.by_proto.iter().chain([&out.overall]) {
        t.row(vec![
            p.proto.clone(),
            p.sessions.to_string(),
            p.failed.to_string(),
            p.without_stalls.to_string(),
            f(p.startup.p50_ms, 1),
            f(p.startup.p99_ms, 1),
            f(p.seg_ttfb.p50_ms, 2),
            f(p.seg_ttfb.p99_ms, 2),
        ]);
    }
    println!("\nsessions ({:.0} s)\n{}", out.seconds, t.render());
    let mut t = Table::new(&[
        "edge",
        "site",
        "sessions",
        "player requests",
        "from its own ISP",
        "edge hit ratio",
        "upstream fetches",
        "sent MiB",
    ]);
    for e in &out.by_edge {
        t.row(vec![
            e.edge.clone(),
            e.isp_site.clone(),
            e.sessions.to_string(),
            e.requests.to_string(),
            e.from_own_isp.to_string(),
            format!("{:.1}%", e.edge_hit_ratio * 100.0),
            f(e.upstream_fetches, 0),
            f(e.sent_mib, 1),
        ]);
    }
    println!("edges\n{}", t.render());
    println!(
        "own ISP's edge first: {:.1}% of sessions; segment TTFB hit p50/p99 {:.2}/{:.2} ms, miss p50/p99 {:.2}/{:.2} ms",
        out.own_isp_edge_share * 100.0,
        out.segment_ttfb_hit.p50_ms,
        out.segment_ttfb_hit.p99_ms,
        out.segment_ttfb_miss.p50_ms,
        out.segment_ttfb_miss.p99_ms
    );
    println!(
        "hit ratio: {:.1}% (Cache-Status players saw), {:.1}% (edges' metrics); origin: {:.0} requests for {} player requests (offload {:.1}%), {:.1} MiB for {:.1} MiB (offload {:.1}%)",
        out.client_hit_ratio * 100.0,
        out.edge_hit_ratio * 100.0,
        out.origin_requests,
        out.player_requests,
        out.origin_offload_requests * 100.0,
        out.origin_bytes / f64::from(1u32 << 20),
        out.player_bytes as f64 / f64::from(1u32 << 20),
        out.origin_offload_bytes * 100.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlists_and_urls_parse() {
        let (init, segs) = media_playlist(
            "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:4.000,\nseg00000.m4s\n#EXTINF:3.5,\nseg00001.m4s\n#EXT-X-ENDLIST\n",
        );
        assert_eq!(init.as_deref(), Some("init.mp4"));
        assert_eq!(segs, vec![(4.0, "seg00000.m4s".into()), (3.5, "seg00001.m4s".into())]);
        assert_eq!(
            variants("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nr0/index.m3u8\n"),
            ["r0/index.m3u8"]
        );
        assert_eq!(
            resolve("/t/x/synth/t0001/master.m3u8", "r1/index.m3u8"),
            "/t/x/synth/t0001/r1/index.m3u8"
        );
        assert_eq!(resolve("/a/b", "/c"), "/c");
        let (addr, path) = split_url("https://127.0.0.1:8443/t/tok/synth/t0001/master.m3u8").unwrap();
        assert_eq!(addr, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(path, "/t/tok/synth/t0001/master.m3u8");
        assert!(split_url("not a url").is_err());
        assert_eq!(media_playlist("").1.len(), 0);
    }
}
