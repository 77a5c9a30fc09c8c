//! `outpost`: one binary for every Outpost role. Each subcommand reads one
//! TOML config (`--config`) and runs one service; this file only parses the
//! command line and hands over to the service crates.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

mod demo;
use outpost_svc::{load_config, Shutdown};

#[derive(Parser)]
#[command(
    name = "outpost",
    version,
    about = "Outpost: an open edge CDN and playback steering system for video"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a video library (files and/or a synthetic catalog).
    Origin {
        #[arg(long, default_value = "configs/origin.toml")]
        config: PathBuf,
        /// Only read, parse and validate the config (secret files too), then exit.
        #[arg(long)]
        check: bool,
    },
    /// Run an edge cache (HTTPS h1/h2 + HTTP/3 on one port).
    Edge {
        #[arg(long, default_value = "configs/edge.toml")]
        config: PathBuf,
        /// Only read, parse and validate the config (secret files too), then exit.
        #[arg(long)]
        check: bool,
    },
    /// Collect signed edge health reports and stream edge state to steering.
    CacheControl {
        #[arg(long, default_value = "configs/cache-control.toml")]
        config: PathBuf,
        /// Only read, parse and validate the config (secret files too), then exit.
        #[arg(long)]
        check: bool,
    },
    /// Steering and the playback API: ranked edges, tokens, Content Steering.
    Steering {
        #[arg(long, default_value = "configs/steering.toml")]
        config: PathBuf,
        /// Only read, parse and validate the config (secret files too), then exit.
        #[arg(long)]
        check: bool,
    },
    /// Run the whole system locally: origin, three edges in three ISPs, two
    /// cache-control replicas, steering and its page (Ctrl-C stops it).
    Demo {
        /// Where everything generated is kept (certificates, secrets, geo
        /// databases, the title, configs, logs; reused on the next start).
        #[arg(long, default_value = "outpost-state")]
        state_dir: PathBuf,
    },
    /// Benchmarks against peers: `outpost bench <scenario> [--quick] [--json PATH]`.
    Bench(outpost_bench::BenchArgs),
    /// Generate a local CA and a leaf certificate for loopback use.
    Certs {
        /// Directory for ca.crt/ca.key and <name>.crt/<name>.key.
        #[arg(long, default_value = "state/certs")]
        dir: PathBuf,
        /// Base name of the leaf files.
        #[arg(long, default_value = "server")]
        name: String,
        /// Extra DNS names or IP addresses for the leaf (localhost, 127.0.0.1 and ::1 are always in).
        #[arg(long = "san")]
        sans: Vec<String>,
    },
}

fn main() -> std::process::ExitCode {
    outpost_svc::logging::init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain on one line (file, key, reason), each
            // cause once even where an error repeats its source's text.
            let message = outpost_svc::error_chain(e.as_ref());
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `--check`: load the config as the service would (read, parse, validate,
/// read `file:` secrets) and report, without binding or opening anything else.
fn check_only(command: &Command) -> Option<Result<()>> {
    let (config, loaded) = match command {
        Command::Origin { config, check: true } => {
            (config, load_config::<outpost_origin::OriginConfig>(config).map(drop))
        }
        Command::Edge { config, check: true } => (config, load_config::<outpost_edge::EdgeConfig>(config).map(drop)),
        Command::CacheControl { config, check: true } => (
            config,
            load_config::<outpost_cache_control::CacheControlConfig>(config).map(drop),
        ),
        Command::Steering { config, check: true } => (
            config,
            load_config::<outpost_steering::SteeringConfig>(config).map(drop),
        ),
        _ => return None,
    };
    Some(match loaded {
        Ok(()) => {
            println!("{}: ok", config.display());
            Ok(())
        }
        Err(e) => Err(e.into()),
    })
}

fn run(cli: Cli) -> Result<()> {
    if let Some(checked) = check_only(&cli.command) {
        return checked;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let shutdown = Shutdown::new();
        match cli.command {
            Command::Origin { config, .. } => {
                let cfg = load_config(&config)?;
                shutdown.on_signals();
                outpost_origin::run(cfg, shutdown).await.context("origin")
            }
            Command::Edge { config, .. } => {
                let cfg = load_config(&config)?;
                shutdown.on_signals();
                outpost_edge::run(cfg, shutdown).await.context("edge")
            }
            Command::Certs { dir, name, sans } => {
                let paths = outpost_svc::tls::LocalCertPaths::in_dir(&dir, &name);
                let made = outpost_svc::tls::ensure_local_certs(&paths, &sans)?;
                println!(
                    "{} {} (CA: {})",
                    if made { "wrote" } else { "kept existing" },
                    paths.cert.display(),
                    paths.ca_cert.display()
                );
                Ok(())
            }
            Command::CacheControl { config, .. } => {
                let cfg = load_config(&config)?;
                shutdown.on_signals();
                outpost_cache_control::run(cfg, shutdown).await.context("cache-control")
            }
            Command::Steering { config, .. } => {
                let cfg = load_config(&config)?;
                shutdown.on_signals();
                outpost_steering::run(cfg, shutdown).await.context("steering")
            }
            Command::Demo { state_dir } => demo::run(&state_dir).await,
            Command::Bench(args) => outpost_bench::run(args).await,
        }
    })
}
