//! `outpost bench failover`: how long a dead edge stays in steering's
//! answers. The real binaries run (origin, one cache-control replica, N
//! edges reporting to it, steering following it); each trial kill -9s one
//! edge (round robin) at a random moment of its report interval, then asks
//! steering (`POST /v1/play`, every `--poll-ms`) until the answer no longer
//! names it. The edge is then started again and the trial waits until
//! answers name it again (re-admission) before the next one.
//!
//! The figure is decided by cache-control's liveness config: an edge is
//! `down` when the connection that carried its last report closed (the
//! killed process's kernel closes it at once) and no report came within
//! `report_interval` + `connection_grace` (500 ms, the default), or after
//! `missed_intervals × report_interval` of silence since its last report,
//! whichever comes first (checked ten times per interval); the change is
//! then streamed to steering at once. The config is recorded with the
//! results.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::fleet::{self, Fleet, FleetConfig, ISPS};
use crate::load::{Conn, Proto};
use crate::report::{f, write_json, Header, Percentiles, Table};
use crate::zipf::Rng;
use crate::Common;

#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    #[command(flatten)]
    pub common: Common,
    /// Kill/restart trials. Default: 20 (quick: 3).
    #[arg(long)]
    pub trials: Option<usize>,
    /// Edges running (each trial kills one, round robin). Default: 3.
    #[arg(long, default_value_t = 3)]
    pub edges: usize,
    /// Edges' report interval and cache-control's `liveness.report_interval`,
    /// in ms. Default: 1000, the shipped default (quick: 200).
    #[arg(long)]
    pub report_interval_ms: Option<u64>,
    /// cache-control's `liveness.missed_intervals`. Default: 3.
    #[arg(long, default_value_t = 3)]
    pub missed_intervals: u32,
    /// cache-control's `liveness.readmit_reports`. Default: 3.
    #[arg(long, default_value_t = 3)]
    pub readmit_reports: u32,
    /// How often steering is asked while waiting, in ms. Default: 20.
    #[arg(long, default_value_t = 20)]
    pub poll_ms: u64,
}

#[derive(Debug, Serialize)]
struct Trial {
    trial: usize,
    edge: String,
    /// Kill to the first answer without the edge.
    out_ms: f64,
    /// Answers asked for while waiting.
    polls: usize,
    /// Restart (process start) to the first answer naming the edge again.
    back_ms: f64,
    /// Of which: until the restarted edge was ready.
    start_ms: f64,
    /// The random pause before the kill (0..interval), so kills fall
    /// anywhere between two reports.
    pause_ms: f64,
}

#[derive(Debug, Serialize)]
struct Output {
    #[serde(flatten)]
    header: Header,
    fleet: FleetConfig,
    /// missed_intervals × report_interval: the silence after the last
    /// report that makes an edge down.
    silence_limit_ms: u64,
    /// report_interval + connection_grace: the time after the report
    /// connection closed that makes an edge down.
    connection_limit_ms: u64,
    poll_ms: u64,
    trials: Vec<Trial>,
    out: Percentiles,
    back: Percentiles,
    errors: usize,
    first_error: Option<String>,
}

/// Ask steering until `pred(named ids)` holds; returns the time from
/// `since` and the number of answers asked for.
async fn until(
    conn: &mut Conn,
    poll: Duration,
    since: Instant,
    max: Duration,
    errors: &mut (usize, Option<String>),
    pred: impl Fn(&[String]) -> bool,
) -> Result<(Duration, usize)> {
    let mut polls = 0;
    loop {
        let asked = Instant::now();
        polls += 1;
        match fleet::play(conn, "t0000").await {
            Ok((_, Some(named))) => {
                let ids: Vec<String> = named.into_iter().map(|n| n.id).collect();
                if pred(&ids) {
                    return Ok((since.elapsed(), polls));
                }
            }
            Ok((got, None)) => {
                errors.0 += 1;
                errors.1.get_or_insert(format!("play answered {}", got.status));
            }
            Err(e) => {
                errors.0 += 1;
                errors.1.get_or_insert(format!("{e:#}"));
            }
        }
        if since.elapsed() > max {
            bail!("steering's answers did not change within {max:?}");
        }
        tokio::time::sleep(poll.saturating_sub(asked.elapsed())).await;
    }
}

pub async fn run(o: Opts) -> Result<()> {
    let quick = o.common.quick;
    let trials = o.trials.unwrap_or(if quick { 3 } else { 20 });
    let interval = Duration::from_millis(o.report_interval_ms.unwrap_or(if quick { 200 } else { 1000 }).max(10));
    if o.edges < 2 {
        bail!("--edges must be at least 2 (one must stay up)");
    }
    let dir = o.common.fresh_dir("failover")?;
    let header = Header::new("failover", quick);
    let cfg = FleetConfig {
        edges: o.edges,
        titles: 10,
        renditions: vec![800_000],
        segments: 4,
        edge_capacity: 64 << 20,
        report_interval: interval,
        missed_intervals: o.missed_intervals,
        readmit_reports: o.readmit_reports,
        heartbeat: Duration::from_secs(1),
        tokens_required: true,
    };
    let silence_limit_ms = interval.as_millis() as u64 * u64::from(o.missed_intervals);
    // cache-control's default `liveness.connection_grace` (the fleet keeps it).
    let connection_limit_ms = interval.as_millis() as u64 + 500;
    println!(
        "{} edges, report interval {} ms, down {connection_limit_ms} ms after the report connection closed or after {} missed intervals ({silence_limit_ms} ms of silence), up after {} good reports; {trials} trials",
        o.edges,
        interval.as_millis(),
        o.missed_intervals,
        o.readmit_reports
    );
    let mut fleet = Fleet::start(&dir, 4, cfg.clone()).await?;
    let target = fleet.steering_target()?;
    let mut conn = fleet::steering_conn(&target, Proto::H1, Some(ISPS[0].client_ip(1))).await?;
    let poll = Duration::from_millis(o.poll_ms.max(1));
    let max = Duration::from_secs(30) + interval * (o.missed_intervals + o.readmit_reports) * 2;
    let mut rng = Rng(0xfa11);
    let mut errors = (0usize, None);
    let mut out = Vec::new();
    for trial in 0..trials {
        let i = trial % fleet.edges.len();
        let id = fleet.edges[i].id.clone();
        // Kill at a random moment of the report interval.
        let phase = interval.mul_f64(rng.unit());
        tokio::time::sleep(phase).await;
        fleet.edges[i].kill9();
        let killed = Instant::now();
        let (gone, polls) = until(&mut conn, poll, killed, max, &mut errors, |ids| !ids.contains(&id))
            .await
            .with_context(|| format!("{id} still named after kill -9"))?;
        let restarted = Instant::now();
        fleet.edges[i].restart().await?;
        let start = restarted.elapsed();
        let (back, _) = until(&mut conn, poll, restarted, max, &mut errors, |ids| ids.contains(&id))
            .await
            .with_context(|| format!("{id} not named again after its restart"))?;
        let t = Trial {
            trial: trial + 1,
            edge: id,
            out_ms: gone.as_secs_f64() * 1e3,
            polls,
            back_ms: back.as_secs_f64() * 1e3,
            start_ms: start.as_secs_f64() * 1e3,
            pause_ms: phase.as_secs_f64() * 1e3,
        };
        println!(
            "  trial {:>2}: {} out of the answers {:.0} ms after kill -9 ({} polls); named again {:.0} ms after restart",
            t.trial, t.edge, t.out_ms, t.polls, t.back_ms
        );
        out.push(t);
    }
    let ms = |v: &[f64]| -> Vec<Duration> { v.iter().map(|x| Duration::from_secs_f64(x / 1e3)).collect() };
    let out_p = Percentiles::of(&ms(&out.iter().map(|t| t.out_ms).collect::<Vec<_>>()));
    let back_p = Percentiles::of(&ms(&out.iter().map(|t| t.back_ms).collect::<Vec<_>>()));
    let mut t = Table::new(&["what", "trials", "p50 ms", "p99 ms", "max ms"]);
    for (what, p) in [
        ("kill -9 → out of steering's answers", &out_p),
        ("restart → named again", &back_p),
    ] {
        t.row(vec![
            what.into(),
            p.n.to_string(),
            f(p.p50_ms, 0),
            f(p.p99_ms, 0),
            f(p.max_ms, 0),
        ]);
    }
    println!(
        "\nreport interval {} ms, missed_intervals {}, readmit_reports {}, poll every {} ms\n{}",
        interval.as_millis(),
        o.missed_intervals,
        o.readmit_reports,
        poll.as_millis(),
        t.render()
    );
    if errors.0 > 0 {
        println!("steering errors while polling: {} (first: {:?})", errors.0, errors.1);
    }
    let output = Output {
        header,
        fleet: cfg,
        silence_limit_ms,
        connection_limit_ms,
        poll_ms: poll.as_millis() as u64,
        trials: out,
        out: out_p,
        back: back_p,
        errors: errors.0,
        first_error: errors.1,
    };
    write_json(&o.common.json_path("failover"), &output)?;
    Ok(())
}
