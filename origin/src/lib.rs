//! `outpost-origin`: the origin server of Outpost, the place edges fetch
//! from on a miss.
//!
//! It serves a video library over HTTP/1.1 and HTTP/2 (cleartext with h2c
//! prior knowledge, or TLS with ALPN), from two sources:
//!
//! - a **library** directory, served as-is through airtight path checks
//!   (no traversal, no escaping symlinks, no directory listings);
//! - a **synthetic catalog** of HLS titles generated from the config, whose
//!   segment bytes are a deterministic function of path and offset (see
//!   [`synthetic_bytes`]), so tests and benchmarks can have thousands of
//!   titles without any files and can check every byte they receive.
//!
//! Every response carries `Content-Type` by extension, `Cache-Control` by
//! kind of file (segment, finished or live playlist, other), a strong
//! `ETag`, `Last-Modified`, `Accept-Ranges: bytes` and `Content-Length`.
//! Conditional GETs (`If-None-Match`, `If-Modified-Since`), single byte
//! ranges with `If-Range`, and HEAD are supported; bodies are streamed, and
//! can be paced to a byte rate to play a slow origin.
//!
//! It is **not** a cache, a proxy or a packager: it does not fetch from
//! anywhere, transcode, segment, sign or check tokens, rewrite playlists,
//! list directories, accept uploads (only GET and HEAD), serve
//! multi-range (`multipart/byteranges`) responses, compress, or speak
//! HTTP/3. Those belong to the edge and the rest of Outpost.
//!
//! Entry points: [`run`] for the CLI, [`start`] to get the bound addresses
//! first (tests with port 0).

pub mod catalog;
pub mod config;

mod body;
mod file;
mod kind;
mod metrics;
mod object;
mod path;
mod response;
mod server;

#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use outpost_svc::tls::{ensure_local_certs, load_certified_key, server_config, CertResolver, LocalCertPaths, TlsError};
use outpost_svc::{serve_admin, AdminState, Invalid, Shutdown, Validate};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use catalog::synthetic_bytes;
pub use config::{CacheControlConfig, LibraryConfig, OriginConfig, PaceConfig, SyntheticConfig, TlsConfig};

/// Why the origin could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// A config value is unacceptable (when [`start`] is given a config
    /// that did not go through `outpost_svc::load_config`).
    #[error("config key `{key}`: {reason}")]
    Config { key: String, reason: String },
    /// The library directory is missing or not a directory.
    #[error("config key `library.root`: {}: {source}", path.display())]
    LibraryRoot { path: PathBuf, source: io::Error },
    /// TLS material could not be loaded or generated.
    #[error("config key `tls`: {0}")]
    Tls(#[from] TlsError),
    /// A listener could not be bound.
    #[error("config key `{key}`: cannot listen on {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    /// Metrics could not be registered (internal).
    #[error("metrics registration failed (internal): {0}")]
    Metrics(#[from] prometheus::Error),
    /// The server task panicked or was cancelled (internal).
    #[error("origin server task failed (internal): {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<Invalid> for OriginError {
    fn from(Invalid { key, reason }: Invalid) -> Self {
        OriginError::Config { key, reason }
    }
}

/// A started origin.
#[derive(Debug)]
pub struct RunningOrigin {
    listen: SocketAddr,
    admin: SocketAddr,
    tls: bool,
    task: JoinHandle<()>,
}

impl RunningOrigin {
    /// The bound content address (the real port when configured with 0).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Whether the content listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `http://addr` or `https://addr`, for building URLs.
    pub fn base_url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.listen)
    }

    /// Wait until the origin has shut down (after the `Shutdown` given to
    /// [`start`] is triggered and in-flight responses finished or the grace
    /// period ran out).
    pub async fn wait(self) -> Result<(), OriginError> {
        self.task.await?;
        Ok(())
    }
}

/// Start the origin: check the config, open the library, prepare TLS, bind
/// both listeners, mark the admin listener ready and serve in a background
/// task until `shutdown`.
pub async fn start(cfg: OriginConfig, shutdown: Shutdown) -> Result<RunningOrigin, OriginError> {
    cfg.validate()?;
    let library = match &cfg.library {
        Some(lib) => Some(
            file::Library::open(&lib.root).map_err(|source| OriginError::LibraryRoot {
                path: lib.root.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let catalog = cfg.synthetic_enabled().map(catalog::Catalog::new);
    let cache = kind::CachePolicy::new(&cfg.cache_control).map_err(|key| OriginError::Config {
        key: key.to_owned(),
        reason: "not a valid header value".to_owned(),
    })?;
    let tls = match &cfg.tls {
        Some(t) => Some(tls_acceptor(t, cfg.listen)?),
        None => None,
    };

    let registry = Registry::new();
    let metrics = Arc::new(metrics::Metrics::new(&registry)?);
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| OriginError::Bind {
            key: "listen",
            addr: cfg.listen,
            source,
        })?;
    let listen = listener.local_addr().map_err(|source| OriginError::Bind {
        key: "listen",
        addr: cfg.listen,
        source,
    })?;
    let admin_state = AdminState::new(registry);
    let admin = serve_admin(cfg.admin, admin_state.clone(), shutdown.clone())
        .await
        .map_err(|source| OriginError::Bind {
            key: "admin",
            addr: cfg.admin,
            source,
        })?;

    let scheme = if tls.is_some() { "https" } else { "http" };
    let library_shown = library
        .as_ref()
        .map_or_else(|| "-".to_owned(), |l| l.root().display().to_string());
    let synthetic_shown = cfg.synthetic_enabled().map_or_else(
        || "-".to_owned(),
        |s| {
            format!(
                "{} titles at {scheme}://{listen}{}/{}/master.m3u8",
                s.titles,
                s.prefix,
                catalog::title_name(0)
            )
        },
    );
    tracing::info!(
        listen = %listen,
        admin = %admin,
        scheme,
        protocols = "http/1.1, h2",
        library = %library_shown,
        synthetic = %synthetic_shown,
        pace_bytes_per_second = cfg.pace.bytes_per_second,
        "origin listening"
    );

    let origin = Arc::new(server::Origin {
        library,
        catalog,
        cache,
        pace: cfg.pace.bytes_per_second,
        metrics,
        // Fixed, so every origin replica (and every restart) gives the
        // synthetic catalog the same validators.
        started: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_704_067_200),
    });
    let is_tls = tls.is_some();
    let task = tokio::spawn(server::serve(
        listener,
        tls,
        origin,
        shutdown,
        cfg.shutdown_grace,
        admin_state.clone(),
    ));
    admin_state.set_ready(true);
    Ok(RunningOrigin {
        listen,
        admin,
        tls: is_tls,
        task,
    })
}

/// Run the origin until `shutdown` and until in-flight responses finished
/// (at most `shutdown_grace` later).
pub async fn run(cfg: OriginConfig, shutdown: Shutdown) -> Result<(), OriginError> {
    start(cfg, shutdown).await?.wait().await
}

/// Load (and with `generate`, first create) the certificate and build the
/// TLS acceptor, advertising `h2` and `http/1.1`.
fn tls_acceptor(t: &TlsConfig, listen: SocketAddr) -> Result<TlsAcceptor, OriginError> {
    if t.generate {
        let dir = t
            .cert
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let paths = LocalCertPaths {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            cert: t.cert.clone(),
            key: t.key.clone(),
        };
        let ip = listen.ip();
        let extra: Vec<String> = if ip.is_unspecified() {
            Vec::new()
        } else {
            vec![ip.to_string()]
        };
        if ensure_local_certs(&paths, &extra)? {
            tracing::info!(cert = %t.cert.display(), ca = %paths.ca_cert.display(), "generated a local certificate");
        }
    }
    let key = load_certified_key(&t.cert, &t.key)?;
    let config = server_config(Arc::new(CertResolver::new(key)), &[b"h2", b"http/1.1"]);
    Ok(TlsAcceptor::from(Arc::new(config)))
}
