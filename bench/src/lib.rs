//! Outpost's bench: load generators, the clients they (and the
//! multi-service tests) use to talk to the real services, and the
//! `outpost bench <scenario>` scenarios.
//!
//! What it is: HTTPS (HTTP/1.1, HTTP/2) and HTTP/3 clients that time each
//! response ([`client`], [`load`]), helpers that start the real `outpost`
//! binary and the peers (nginx, Caddy) as separate processes and read their
//! CPU time from `/proc` ([`procs`], [`peers`]), and the scenarios
//! ([`hit_throughput`], [`stampede`], [`hit_ratio`], [`steering`],
//! [`failover`], [`players`]), each printing a table and writing JSON. The
//! last three run the whole control loop ([`fleet`]).
//! What it is not: a test framework, a mock of any service, or a timing
//! assertion: `--quick` only checks that a scenario works.

pub mod client;
pub mod failover;
pub mod fleet;
pub mod hit_ratio;
pub mod hit_throughput;
pub mod load;
pub mod peers;
pub mod players;
pub mod procs;
pub mod report;
pub mod rig;
pub mod stampede;
pub mod steering;
pub mod zipf;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

/// `outpost bench <scenario> [--quick] [--json PATH]`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The scenarios (issue 6).
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Cached 2–6 MB segments over HTTPS/1.1, HTTP/2 and HTTP/3 from one
    /// edge, against nginx (proxy_cache) and Caddy (file_server).
    HitThroughput(hit_throughput::Opts),
    /// Many concurrent requests for one cold segment against a paced
    /// origin: origin fetches and followers' time to first byte, against
    /// nginx with proxy_cache_lock.
    Stampede(stampede::Opts),
    /// Replay a Zipf workload (or a trace) through the edge's memory tier
    /// for each policy: object and byte hit ratios.
    HitRatio(hit_ratio::Opts),
    /// The ranker in-process (decisions/s, latency for 1,000 edges) and
    /// the playback API over HTTPS from many connections (answers/s,
    /// latency, steering's CPU).
    Steering(steering::Opts),
    /// kill -9 an edge, again and again: time until steering's answers
    /// stop naming it, and until they name it again after a restart.
    Failover(failover::Opts),
    /// Virtual players (HTTP/3, HTTP/2, HTTPS/1.1) from three ISPs' client
    /// networks: play, then playlists and segments at the bitrate's pace;
    /// stalls, segment TTFB, edge choice, hit ratio and origin offload.
    Players(players::Opts),
}

/// Options every scenario takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Small and fast: checks that the scenario works (for CI); no timing
    /// is asserted.
    #[arg(long)]
    pub quick: bool,
    /// Where to write the JSON results. Default: bench/results/<scenario>.json.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Scratch directory for configs, certificates, logs and peer caches,
    /// kept afterwards. Default: <tmp>/outpost-bench-<pid>/<scenario>,
    /// removed when the scenario succeeds.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

impl Common {
    fn json_path(&self, scenario: &str) -> PathBuf {
        self.json
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("bench/results/{scenario}.json")))
    }

    /// A fresh scratch directory for `scenario`.
    fn fresh_dir(&self, scenario: &str) -> Result<PathBuf> {
        let dir = self.work_dir.clone().unwrap_or_else(|| default_root().join(scenario));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(std::path::absolute(&dir)?)
    }
}

/// This process's own scratch root, so concurrent bench runs (a CI run
/// beside a manual one) never share files.
fn default_root() -> PathBuf {
    std::env::temp_dir().join(format!("outpost-bench-{}", std::process::id()))
}

/// Run one scenario (called by `outpost bench`). The default scratch
/// directory is removed after a success and kept (with its logs) after a
/// failure.
pub async fn run(args: BenchArgs) -> Result<()> {
    let result = match args.scenario {
        Scenario::HitThroughput(o) => hit_throughput::run(o).await,
        Scenario::Stampede(o) => stampede::run(o).await,
        Scenario::HitRatio(o) => hit_ratio::run(o).await,
        Scenario::Steering(o) => steering::run(o).await,
        Scenario::Failover(o) => failover::run(o).await,
        Scenario::Players(o) => players::run(o).await,
    };
    match &result {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(default_root());
        }
        Err(_) if default_root().exists() => eprintln!("logs kept in {}", default_root().display()),
        Err(_) => {}
    }
    result
}
