//! Cache-control: decides which edges are alive from their signed health
//! reports and streams that state to steering.
//!
//! What it is: an HTTPS service (`outpost cache-control`) that admits
//! signed reports ([`admission`]), runs each edge through a liveness state
//! machine ([`state`]) inside a versioned registry ([`registry`]), and
//! serves `GET /v1/edges`, a text view at `/`, and `GET /v1/stream`, a
//! Server-Sent-Events stream of a snapshot then changes that subscribers
//! resume by cursor ([`subscribe`] is the client side). The pure cores
//! (`state`, `admission`, `registry`) take `now` and never do IO.
//!
//! An edge is `down` when it has been silent for `missed_intervals` report
//! intervals (`missed-reports`), or sooner, when the connection that
//! carried its latest admitted report closes and it does not report again
//! within one interval + `[liveness] connection_grace` (`connection-lost`).
//! The kernel of a killed or crashed edge process closes its connections
//! at once, so a dead edge is out after about 1.5 s instead of up to 3 s;
//! a live edge whose connection merely ended reports again on a new one
//! within an interval and is never affected. A machine that vanishes (power,
//! network) closes nothing and is caught by the silence rule. Only admitted
//! reports tie an edge to a connection, so closing a connection of one's
//! own never marks somebody else's edge down. `outpost_cc_down_total`
//! counts transitions to `down` by `reason`.
//!
//! What it is not: a database or a consensus system. State is soft: a
//! restarted replica rebuilds it from the next few reports, and several
//! replicas run side by side without talking to each other.

pub mod admission;
pub mod config;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod state;
pub mod subscribe;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use config::CacheControlConfig;
use outpost_svc::tls::TlsError;
use outpost_svc::{AdminState, Shutdown};

use crate::admission::{EdgeKey, Keys, Limits};
use crate::registry::Registry;
use crate::server::Shared;

/// Why cache-control could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A started service.
pub type Running = outpost_svc::https::Running<server::Shared>;

fn epoch() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", nanos as u64, std::process::id())
}

/// Bind and start serving; returns once the replica is ready.
pub async fn start(cfg: CacheControlConfig, shutdown: Shutdown) -> Result<Running, StartError> {
    let resolver = cfg.tls.resolver(cfg.listen.ip())?;
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

    // Every key id of every edge (several during a key rotation).
    let keys: Keys = cfg
        .edges
        .iter()
        .flat_map(|e| {
            e.keys().into_iter().map(|(key_id, secret)| {
                let key = EdgeKey {
                    edge_id: e.id.clone(),
                    secret: secret.to_vec(),
                };
                (key_id.to_string(), key)
            })
        })
        .collect();
    let declared = cfg.edges.iter().filter(|e| e.declared).map(|e| e.id.clone());
    let reg = Registry::new(cfg.id.clone(), epoch(), cfg.policy(), declared, cfg.stream.resume_log);
    metrics.set_counts(reg.counts());
    let (events, _) = tokio::sync::broadcast::channel(1024);
    let shared = Arc::new(Shared {
        registry: Mutex::new(reg),
        keys,
        limits: Limits {
            max_body: cfg.reports.max_body as usize,
            max_skew_ms: cfg.reports.max_skew.as_millis() as u64,
        },
        metrics,
        events,
        heartbeat: cfg.stream.heartbeat,
        shutdown: shutdown.clone(),
        started: Instant::now(),
        next_conn: AtomicU64::new(1),
    });

    let mut tasks = Vec::new();
    let handler_shared = shared.clone();
    tasks.push(tokio::spawn(outpost_svc::https::serve_connections(
        listener,
        resolver,
        shutdown.clone(),
        cfg.shutdown_grace,
        move |peer| {
            let conn = server::Connection::new(&handler_shared, peer);
            let (shared, closing, on_close) = (handler_shared.clone(), handler_shared.clone(), conn.clone());
            (
                move |req| server::handle(shared.clone(), req, conn.clone()),
                move || server::closed(&closing, &on_close),
            )
        },
    )));
    tasks.push(tokio::spawn(server::ticker(shared.clone())));
    admin_state.set_ready(true);
    {
        let (admin_state, shutdown) = (admin_state.clone(), shutdown.clone());
        tokio::spawn(async move {
            shutdown.wait().await;
            admin_state.set_ready(false);
        });
    }
    tracing::info!(
        replica = %cfg.id,
        %addr,
        %admin,
        edges = cfg.edges.len(),
        interval = ?cfg.liveness.report_interval,
        "cache-control listening"
    );
    Ok(Running {
        addr,
        admin,
        shared,
        tasks,
    })
}

/// Run until `shutdown` fires.
pub async fn run(cfg: CacheControlConfig, shutdown: Shutdown) -> Result<(), StartError> {
    let running = start(cfg, shutdown).await?;
    running.wait().await;
    tracing::info!("cache-control stopped");
    Ok(())
}
