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
//! shells; [`upstream`] the client towards the parent or origin.

pub mod cache;
pub mod config;
pub mod edge;
pub mod fill;
pub mod metrics;
pub mod server;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use config::EdgeConfig;
use outpost_svc::tls::{self, CertResolver, LocalCertPaths, TlsError};
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

fn cert_resolver(cfg: &config::TlsConfig, listen: SocketAddr) -> Result<Arc<CertResolver>, TlsError> {
    if cfg.generate {
        let dir = cfg.cert.parent().map(PathBuf::from).unwrap_or_default();
        let paths = LocalCertPaths {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            cert: cfg.cert.clone(),
            key: cfg.key.clone(),
        };
        let mut names = cfg.names.clone();
        names.push(listen.ip().to_string());
        if tls::ensure_local_certs(&paths, &names)? {
            tracing::info!(cert = %paths.cert.display(), ca = %paths.ca_cert.display(), "generated a local CA and leaf certificate");
        }
    }
    let mut resolver = CertResolver::new(tls::load_certified_key(&cfg.cert, &cfg.key)?);
    for sni in &cfg.sni {
        resolver.add(&sni.name, tls::load_certified_key(&sni.cert, &sni.key)?);
    }
    Ok(Arc::new(resolver))
}

/// Bind every listener and start serving; returns once the edge is ready.
pub async fn start(cfg: EdgeConfig, shutdown: Shutdown) -> Result<RunningEdge, EdgeError> {
    let resolver = cert_resolver(&cfg.tls, cfg.listen)?;
    let registry = prometheus::Registry::new();
    let metrics = metrics::Metrics::new(&registry);
    let upstream = upstream::Upstream::new(&cfg.upstream)?;
    let admin_state = AdminState::new(registry);
    let admin = outpost_svc::serve_admin(cfg.admin, admin_state.clone(), shutdown.clone())
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
    let edge = edge::Edge::new(cfg, upstream, metrics);
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
