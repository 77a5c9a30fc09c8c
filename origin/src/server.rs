//! The content listener: accepting TCP (and TLS) connections, serving
//! HTTP/1.1 and HTTP/2 on each with hyper's auto builder, routing requests
//! to the synthetic catalog or the library, and the graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use outpost_svc::{AdminState, Shutdown};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::body::{self, ResponseBody};
use crate::catalog::Catalog;
use crate::file::Library;
use crate::kind::CachePolicy;
use crate::metrics::{protocol_label, Metrics, RequestRecord};
use crate::object::{self, Object};
use crate::path::RequestPath;
use crate::response::{self, Reply};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an HTTP/1 client may take to send request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a request needs.
pub struct Origin {
    pub library: Option<Library>,
    pub catalog: Option<Catalog>,
    pub cache: CachePolicy,
    /// Bytes per second per response body; 0 = unpaced.
    pub pace: u64,
    pub metrics: Arc<Metrics>,
    /// `Last-Modified` of synthetic objects.
    pub started: SystemTime,
}

impl Origin {
    /// Answer one request. Never fails: every problem is a status.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
        let started = Instant::now();
        let method = req.method().clone();
        let mut record = RequestRecord::new(
            self.metrics.clone(),
            method.clone(),
            req.uri().path().to_owned(),
            protocol_label(req.version()),
            peer,
            started,
        );
        let Reply { status, headers, body } = self.reply(&req).await;
        record.status = status;
        let body = match body {
            Some((stream, len)) => {
                let stream = if self.pace > 0 {
                    body::paced(stream, self.pace)
                } else {
                    stream
                };
                ResponseBody::new(stream, len, record)
            }
            None => ResponseBody::empty(record),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    async fn reply(&self, req: &Request<Incoming>) -> Reply {
        let method = req.method();
        if method != Method::GET && method != Method::HEAD {
            return response::error(method, StatusCode::METHOD_NOT_ALLOWED);
        }
        // HTTP/1 absolute-form (`GET http://host/path`) is refused: this is
        // an origin, not a proxy. (HTTP/2 always carries scheme and authority
        // pseudo-headers, so only HTTP/1 is checked.)
        let http1 = matches!(req.version(), Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11);
        if http1 && (req.uri().scheme().is_some() || req.uri().authority().is_some()) {
            return response::error(method, StatusCode::BAD_REQUEST);
        }
        let path = match RequestPath::parse(req.uri().path()) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(path = %req.uri().path(), reason = %e, "refused path");
                return response::error(method, StatusCode::BAD_REQUEST);
            }
        };
        match self.lookup(&path).await {
            Ok(object) => response::object(method, req.headers(), object, &self.cache),
            Err(status) => response::error(method, status),
        }
    }

    /// The synthetic catalog owns everything under its prefix; the library
    /// the rest.
    async fn lookup(&self, path: &RequestPath) -> Result<Object, StatusCode> {
        if let Some(catalog) = &self.catalog {
            if let Some(rest) = path.strip_prefix(catalog.prefix()) {
                return object::synthetic(catalog, path, rest, self.started).ok_or(StatusCode::NOT_FOUND);
            }
        }
        match &self.library {
            Some(library) => library.lookup(path).await,
            None => Err(StatusCode::NOT_FOUND),
        }
    }
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    b.http2().timer(TokioTimer::new());
    b
}

/// Accept and serve until `shutdown`, then let open connections finish
/// their in-flight responses for up to `grace` and close what is left.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    origin: Arc<Origin>,
    shutdown: Shutdown,
    grace: Duration,
    admin: AdminState,
) {
    let builder = Arc::new(builder());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    // The watcher is taken here, before shutdown can start,
                    // so every connection is counted by `graceful`.
                    let watcher = graceful.watcher();
                    let conn = connection(stream, peer, tls.clone(), builder.clone(), origin.clone(), watcher, shutdown.clone());
                    connections.spawn(conn);
                }
                Err(e) => {
                    // Typically out of file descriptors: back off a little.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    admin.set_ready(false);
    tracing::info!(connections = connections.len(), grace = ?grace, "origin stopped accepting; finishing in-flight responses");
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "shutdown grace expired; closing remaining connections"
        );
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
    tracing::info!("origin stopped");
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    origin: Arc<Origin>,
    watcher: Watcher,
    shutdown: Shutdown,
) {
    let service = service_fn(move |req| {
        let origin = origin.clone();
        async move { Ok::<_, Infallible>(origin.handle(req, peer).await) }
    });
    let result = match tls {
        None => {
            watcher
                .watch(builder.serve_connection(TokioIo::new(stream), service))
                .await
        }
        Some(acceptor) => {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let stream = tokio::select! {
                r = handshake => match r {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                _ = shutdown.wait() => return,
            };
            watcher
                .watch(builder.serve_connection(TokioIo::new(stream), service))
                .await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
