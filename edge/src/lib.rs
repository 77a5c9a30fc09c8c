//! The Outpost edge cache.
//!
//! What it is: a TLS server on one port number serving HTTP/1.1 and HTTP/2
//! over TCP and HTTP/3 over UDP, answering video requests from a
//! byte-bounded memory cache and filling misses from a parent edge or the
//! origin with one shared, read-while-write fetch per object.
//!
//! What it is not: an origin (it never reads a library from disk), a
//! general-purpose reverse proxy (GET and HEAD only, no request bodies,
//! one variant per URL), or a steering service.
//!
//! Layout: [`cache`] is the pure core (no IO, no clock); [`fill`] and
//! [`edge`] are the async request path; [`server`] holds the TCP and QUIC
//! shells; [`upstream`] the client towards the parent or origin;
//! [`report`] pushes signed health reports to cache-control from the
//! interval counters in [`stats`].
//!
//! Stopping: when the caller's `Shutdown` fires, the edge first reports
//! `draining` to every cache-control replica (bounded by the report
//! timeout), then stops accepting and lets in-flight responses finish
//! within `shutdown_grace`. `POST /drain` and `/undrain` on the admin
//! listener announce draining without stopping.

pub mod cache;
pub mod config;
pub mod cors;
pub mod edge;
pub mod fill;
pub mod metrics;
pub mod report;
pub mod server;
pub mod stats;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use config::EdgeConfig;
use outpost_svc::tls::{self, TlsError};
use outpost_svc::{AdminState, Shutdown};
use tokio::task::JoinHandle;

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamSetupError),
    #[error("http3: {0}")]
    H3(#[from] server::h3::H3Error),
}

/// A started edge.
pub struct RunningEdge {
    /// TLS address (TCP and UDP).
    pub addr: SocketAddr,
    /// Admin listener address.
    pub admin: SocketAddr,
    /// The request path, for in-process inspection (tests, bench).
    pub edge: Arc<edge::Edge>,
    /// The health reporter, when `[report]` is configured.
    pub reporter: Option<Arc<report::Reporter>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningEdge {
    /// Wait until the edge has shut down (after the `Shutdown` fired and
    /// in-flight responses finished or the grace period ran out).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Bind every listener and start serving; returns once the edge is ready.
/// `stop` asks the edge to drain and stop (see the crate docs).
pub async fn start(cfg: EdgeConfig, stop: Shutdown) -> Result<RunningEdge, EdgeError> {
    // Listeners stop on `shutdown`, which fires once draining was announced.
    let shutdown = Shutdown::new();
    let resolver = cfg.tls.resolver(cfg.listen.ip())?;
    let registry = prometheus::Registry::new();
    let metrics = metrics::Metrics::new(&registry);
    let upstream = upstream::Upstream::new(&cfg.upstream)?;
    let admin_state = AdminState::new(registry);
    let admin = outpost_svc::serve_admin(cfg.admin, admin_state.clone(), stop.clone())
        .await
        .map_err(|source| EdgeError::Bind {
            addr: cfg.admin,
            source,
        })?;

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| EdgeError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| EdgeError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let tcp_tls = tls::server_config(resolver.clone(), &[b"h2", b"http/1.1"]);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tcp_tls));
    let quic = if cfg.http3.enabled {
        let quic_tls = tls::server_config(resolver.clone(), &[b"h3"]);
        Some(server::h3::endpoint(addr, quic_tls, &cfg.http3)?)
    } else {
        None
    };
    let alt_svc = Arc::new(server::tcp::AltSvc {
        up: AtomicBool::new(quic.is_some()),
        value: http::HeaderValue::from_str(&format!("h3=\":{}\"; ma=86400", addr.port())).expect("ascii"),
    });
    let report_cfg = cfg.report.clone();
    let edge = edge::Edge::new(cfg, upstream, metrics);
    let reporter = match report_cfg {
        Some(rc) => Some(report::Reporter::new(edge.clone(), rc, addr)?),
        None => None,
    };
    if let Some(r) = &reporter {
        // Reports go on until the process exits: after the stop they say
        // `draining` (set below) through the shutdown grace, so steering
        // keeps the edge out and cache-control does not count it missing
        // while in-flight responses finish.
        tokio::spawn(r.clone().run(Shutdown::new()));
        for (path, draining) in [("/drain", true), ("/undrain", false)] {
            let r = r.clone();
            admin_state.on_post(
                path,
                Arc::new(move || {
                    r.set_draining(draining);
                    format!("draining: {draining}\n")
                }),
            );
        }
    }
    {
        let (stop, shutdown, reporter) = (stop.clone(), shutdown.clone(), reporter.clone());
        tokio::spawn(async move {
            stop.wait().await;
            if let Some(r) = reporter {
                r.set_draining(true);
                let results = r.send_once().await;
                tracing::info!(replicas = ?results, "announced draining");
            }
            shutdown.trigger();
        });
    }
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(server::tcp::serve(
        listener,
        acceptor,
        edge.clone(),
        alt_svc.clone(),
        shutdown.clone(),
    )));
    if let Some(ep) = quic {
        let (edge, shutdown, alt_svc) = (edge.clone(), shutdown.clone(), alt_svc.clone());
        tasks.push(tokio::spawn(async move {
            server::h3::serve(ep, edge, shutdown).await;
            alt_svc.up.store(false, Ordering::Relaxed);
        }));
    }
    {
        let (edge, shutdown, admin_state) = (edge.clone(), shutdown.clone(), admin_state.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = tick.tick() => edge.refresh_gauges(),
                    _ = shutdown.wait() => { admin_state.set_ready(false); break }
                }
            }
        });
    }
    admin_state.set_ready(true);
    tracing::info!(
        id = %edge.cfg.id,
        %addr,
        %admin,
        http3 = edge.cfg.http3.enabled,
        upstream = ?edge.cfg.upstream.urls,
        memory = edge.cfg.cache.memory.capacity,
        policy = edge.cfg.cache.memory.policy.as_str(),
        "edge listening (TCP h1/h2 and UDP h3 on one port)"
    );
    Ok(RunningEdge {
        addr,
        admin,
        edge,
        reporter,
        tasks,
    })
}

/// Run until `shutdown` fires, then drain.
pub async fn run(cfg: EdgeConfig, shutdown: Shutdown) -> Result<(), EdgeError> {
    let running = start(cfg, shutdown.clone()).await?;
    running.wait().await;
    tracing::info!("edge stopped");
    Ok(())
}
