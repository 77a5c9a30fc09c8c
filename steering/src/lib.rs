//! Steering and the playback API (`outpost steering`): maps a client IP to
//! its ISP and place ([`geo`]), ranks nearby healthy edges ([`rank`]) from
//! the state every cache-control replica streams ([`edges`]), and answers
//! play requests with ranked, token-signed edge URLs, per-session HLS/DASH
//! manifests and Content Steering manifests ([`manifest`], [`server`]),
//! and serves a web page that plays through all of it ([`page`]).
//!
//! The pure parts (`rank`, `sticky`, `catalog`, `manifest`, `sealed`,
//! `entitlement`, the merge in `edges`) take inputs and `now` and do no IO.
//!
//! What it is not: a cache or a health checker. It never probes edges; it
//! trusts what cache-control says and keeps answering from the last state
//! it received when cache-control is unreachable.

pub mod catalog;
pub mod config;
pub mod edges;
pub mod entitlement;
pub mod geo;
pub mod manifest;
pub mod metrics;
pub mod page;
pub mod rank;
pub mod sealed;
pub mod server;
pub mod sticky;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use config::SteeringConfig;
use outpost_cache_control::subscribe::StreamClient;
use outpost_proto::token::TokenKey;
use outpost_svc::tls::TlsError;
use outpost_svc::{AdminState, Shutdown};

/// Why steering could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("geo: {0}")]
    Geo(#[from] geo::GeoError),
}

/// A started service.
pub type Running = outpost_svc::https::Running<server::Shared>;

/// Bind and start serving; returns once ready.
pub async fn start(cfg: SteeringConfig, shutdown: Shutdown) -> Result<Running, StartError> {
    let resolver = cfg.tls.resolver(cfg.listen.ip())?;
    let locator = Arc::new(geo::Locator::open(&cfg.geo)?);
    let registry = prometheus::Registry::new();
    let metrics = metrics::Metrics::new(&registry);
    let admin_state = AdminState::new(registry);
    let bind_err = |addr| move |source| StartError::Bind { addr, source };
    let admin = outpost_svc::serve_admin(cfg.admin, admin_state.clone(), shutdown.clone())
        .await
        .map_err(bind_err(cfg.admin))?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(bind_err(cfg.listen))?;
    let addr = listener.local_addr().map_err(bind_err(cfg.listen))?;

    let stream_client = StreamClient::new(Some(&cfg.cache_control.ca))?;
    let edges = edges::EdgeSet::follow(
        stream_client,
        &cfg.cache_control.urls,
        cfg.cache_control.quiet,
        shutdown.clone(),
    );
    let keys: Vec<TokenKey> = cfg
        .tokens
        .keys
        .iter()
        .map(|k| TokenKey {
            id: k.id.clone(),
            secret: k.secret.clone(),
        })
        .collect();
    // Sessions are sealed with a secret derived from the signing token key
    // and opened with the one of any listed key (rotation).
    let session_secrets = server::session_secrets(&keys);
    let origin = outpost_svc::https::client(cfg.origin.ca.as_deref(), Duration::from_secs(2))?;
    let trusted = cfg
        .trusted_proxies
        .iter()
        .filter_map(|p| rank::parse_prefix(p))
        .collect();
    let shared = Arc::new(server::Shared {
        public: cfg.public_url(addr),
        policy: cfg.rank.policy(),
        edges,
        locator: locator.clone(),
        keys,
        session_secrets,
        metrics,
        trusted,
        origin,
        fetched: Mutex::new(Default::default()),
        cfg: cfg.clone(),
    });

    let mut tasks = Vec::new();
    let handler_shared = shared.clone();
    tasks.push(tokio::spawn(outpost_svc::https::serve(
        listener,
        resolver,
        shutdown.clone(),
        cfg.shutdown_grace,
        move |req, peer| server::handle(handler_shared.clone(), req, peer),
    )));
    tokio::spawn(geo::watch(locator.clone(), cfg.geo.reload_interval, shutdown.clone()));
    {
        let (shared, shutdown, admin_state) = (shared.clone(), shutdown.clone(), admin_state.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.wait() => { admin_state.set_ready(false); return }
                }
                let now = server::unix_now();
                for (db, built) in shared.locator.database_ages() {
                    shared
                        .metrics
                        .geo_age
                        .with_label_values(&[db])
                        .set(now.saturating_sub(built) as f64);
                }
            }
        });
    }
    admin_state.set_ready(true);
    tracing::info!(%addr, %admin, public = %shared.public, replicas = ?cfg.cache_control.urls, "steering listening");
    if cfg.page.enabled {
        tracing::info!(page = %format!("{}/", shared.public), players = %page::players_note(&cfg.page), "web page");
    } else {
        tracing::info!("web page turned off ([page] enabled = false); / is the text view");
    }
    Ok(Running {
        addr,
        admin,
        shared,
        tasks,
    })
}

/// Run until `shutdown` fires.
pub async fn run(cfg: SteeringConfig, shutdown: Shutdown) -> Result<(), StartError> {
    let running = start(cfg, shutdown).await?;
    running.wait().await;
    tracing::info!("steering stopped");
    Ok(())
}
