//! `outpost demo`: the system on one machine from embedded defaults.
//!
//! Today it runs what has landed: an origin with the synthetic catalog, an
//! edge in front of it (HTTPS h1/h2 + HTTP/3 on one port) that reports its
//! health to a cache-control replica, steering with the playback API
//! following that replica, and certificates generated into the state
//! directory and reused on the next start. The three-site topology, the
//! geo database, real titles and the page come with issue 5.

use std::path::Path;

use anyhow::{Context, Result};
use outpost_svc::config::parse_config;
use outpost_svc::Shutdown;

const ORIGIN_TOML: &str = include_str!("../configs/origin.toml");
const EDGE_TOML: &str = include_str!("../configs/edge.toml");
const CACHE_CONTROL_TOML: &str = include_str!("../configs/cache-control.toml");
const STEERING_TOML: &str = include_str!("../configs/steering.toml");

pub async fn run(state_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(state_dir).with_context(|| format!("state dir {}", state_dir.display()))?;
    let lock = state_dir.join("demo.pid");
    if let Some(pid) = std::fs::read_to_string(&lock)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    {
        if Path::new(&format!("/proc/{pid}")).exists() && pid != std::process::id() {
            anyhow::bail!(
                "an outpost demo is already running (pid {pid}, state dir {})",
                state_dir.display()
            );
        }
    }
    std::fs::write(&lock, std::process::id().to_string())?;

    let origin_cfg: outpost_origin::OriginConfig =
        parse_config(Path::new("configs/origin.toml (embedded)"), ORIGIN_TOML)?;
    let mut edge_cfg: outpost_edge::EdgeConfig = parse_config(Path::new("configs/edge.toml (embedded)"), EDGE_TOML)?;
    let mut cc_cfg: outpost_cache_control::CacheControlConfig =
        parse_config(Path::new("configs/cache-control.toml (embedded)"), CACHE_CONTROL_TOML)?;
    let mut steering_cfg: outpost_steering::SteeringConfig =
        parse_config(Path::new("configs/steering.toml (embedded)"), STEERING_TOML)?;
    let certs = state_dir.join("certs");
    steering_cfg.tls.cert = certs.join("steering.crt");
    steering_cfg.tls.key = certs.join("steering.key");
    steering_cfg.tls.generate = true;
    steering_cfg.cache_control.ca = certs.join("ca.crt");
    edge_cfg.tls.cert = certs.join("edge.crt");
    edge_cfg.tls.key = certs.join("edge.key");
    edge_cfg.tls.generate = true;
    cc_cfg.tls.cert = certs.join("cache-control.crt");
    cc_cfg.tls.key = certs.join("cache-control.key");
    cc_cfg.tls.generate = true;
    if let Some(r) = edge_cfg.report.as_mut() {
        r.ca = certs.join("ca.crt");
    }

    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let origin = outpost_origin::start(origin_cfg, shutdown.clone())
        .await
        .context("origin")?;
    let cc = outpost_cache_control::start(cc_cfg, shutdown.clone())
        .await
        .context("cache-control")?;
    let edge = outpost_edge::start(edge_cfg, shutdown.clone()).await.context("edge")?;
    let steering = outpost_steering::start(steering_cfg, shutdown.clone())
        .await
        .context("steering")?;
    let ca = certs.join("ca.crt");
    let seg = "/synth/t0000/r1/seg00000.m4s";
    println!(
        "\nOutpost demo is running (Ctrl-C stops it)\n\
         \n  origin        {origin}  (admin http://{oadmin}/metrics)\
         \n  edge          https://{edge_addr}  TCP h1/h2 + UDP h3 (admin http://{eadmin}/metrics)\
         \n  cache-control https://{cc_addr}  (admin http://{ccadmin}/metrics)\
         \n  steering      https://{st_addr}  playback API (admin http://{stadmin}/metrics)\
         \n  CA            {ca}\
         \n  state dir     {state}\
         \n\nTry:\
         \n  curl --cacert {ca} -sD - -o /dev/null https://{edge_addr}{seg}   # twice: miss, then hit\
         \n  curl --cacert {ca} -s https://{edge_addr}/synth/t0000/master.m3u8\
         \n  curl -s http://{eadmin}/metrics | grep outpost_edge_requests_total\
         \n  curl --cacert {ca} -s https://{st_addr}/v1/play -d '{{\"title\":\"t0001\"}}'   # ranked edges + token\
         \n  curl --cacert {ca} -s https://{cc_addr}/            # edge health as cache-control sees it\
         \n  curl --cacert {ca} -sN https://{cc_addr}/v1/stream  # the state stream steering follows\
         \n  HTTP/3: any h3 client (e.g. aioquic's) against https://{edge_addr}{seg} with the CA above\n",
        origin = origin.base_url(),
        oadmin = origin.admin_addr(),
        edge_addr = edge.addr,
        eadmin = edge.admin,
        cc_addr = cc.addr,
        st_addr = steering.addr,
        stadmin = steering.admin,
        ccadmin = cc.admin,
        ca = ca.display(),
        state = state_dir.display(),
    );
    edge.wait().await;
    steering.wait().await;
    cc.wait().await;
    origin.wait().await?;
    let _ = std::fs::remove_file(&lock);
    Ok(())
}
