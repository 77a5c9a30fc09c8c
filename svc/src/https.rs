//! A plain HTTPS listener (HTTP/1.1 and HTTP/2 by ALPN) for the control
//! plane services (cache-control, steering): rustls, hyper's auto builder,
//! and a graceful stop. The edge has its own, tuned for large bodies and
//! HTTP/3.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::tls::{self, CertResolver};
use crate::Shutdown;

/// Response body type of the control plane services.
pub type Body = BoxBody<Bytes, Infallible>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes.into()).boxed()
}

/// The next TCP connection (with `TCP_NODELAY`), or None once `shutdown`
/// fired. Accept errors (e.g. out of file descriptors) are logged and
/// retried after a short pause instead of ending the listener.
pub async fn accept(listener: &TcpListener, shutdown: &Shutdown) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    return Some((tcp, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.wait() => return None,
        }
    }
}

/// The TLS handshake, bounded to 10 s; failures are the client's and are
/// logged at debug.
pub async fn handshake(acceptor: &TlsAcceptor, tcp: TcpStream, peer: SocketAddr) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(t)) => Some(t),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}

/// A JSON answer, never cached, readable by players on other origins.
pub fn json(status: http::StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let mut body = serde_json::to_vec(value).expect("plain data serializes");
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-store")
        .header(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .body(full(body))
        .expect("static response")
}

/// A started control plane service: where it listens and what it shares
/// with its handlers; `wait` returns once it has shut down.
pub struct Running<S> {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub shared: Arc<S>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<S> Running<S> {
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Serve `handler` over TLS on `listener` until `shutdown`, then give open
/// connections `grace` to finish. Long-lived responses (streams) must end
/// themselves on `shutdown`.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    resolver: Arc<CertResolver>,
    shutdown: Shutdown,
    grace: Duration,
    handler: F,
) where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    serve_connections(listener, resolver, shutdown, grace, move |peer| {
        let handler = handler.clone();
        (move |req| handler(req, peer), || ())
    })
    .await
}

/// [`serve`] with a hook per connection: once its TLS handshake is done,
/// `on_connection(peer)` gives the connection's request handler and a
/// `closed` callback, which runs once the connection has ended (the peer
/// closed or reset it, it failed, or a graceful shutdown ended it), after
/// hyper is done with it. Handlers still running then (an HTTP/2 stream
/// hyper let finish) may complete after `closed`.
pub async fn serve_connections<A, H, Fut, C>(
    listener: TcpListener,
    resolver: Arc<CertResolver>,
    shutdown: Shutdown,
    grace: Duration,
    on_connection: A,
) where
    A: Fn(SocketAddr) -> (H, C) + Clone + Send + Sync + 'static,
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
    C: FnOnce() + Send + 'static,
{
    let acceptor = TlsAcceptor::from(Arc::new(tls::server_config(resolver, &[b"h2", b"http/1.1"])));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)));
    let builder = Arc::new(builder);
    while let Some((tcp, peer)) = accept(&listener, &shutdown).await {
        let (acceptor, on_connection, builder, watcher) = (
            acceptor.clone(),
            on_connection.clone(),
            builder.clone(),
            graceful.watcher(),
        );
        tokio::spawn(async move {
            let Some(tls) = handshake(&acceptor, tcp, peer).await else {
                return;
            };
            let (handler, closed) = on_connection(peer);
            // Runs when this task ends, however: a handler panic unwinding
            // the connection task included.
            let _closed = OnDrop(Some(closed));
            let svc = service_fn(move |req| {
                let fut = handler(req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            let _ = watcher.watch(conn).await;
        });
    }
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("grace period over, closing remaining connections");
    }
}

/// Calls its function once, when dropped.
struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// A client for control plane calls (health reports, the state stream,
/// manifests from the origin): HTTP/2 or HTTP/1.1 by ALPN over TLS,
/// trusting only the PEM bundle at `ca`; plain `http://` URLs use HTTP/1.1
/// (callers that must not use cleartext validate their URLs).
pub type Client<B> = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    B,
>;

/// Build a [`Client`] with a connect timeout.
pub fn client<B>(ca: Option<&std::path::Path>, connect_timeout: Duration) -> Result<Client<B>, tls::TlsError>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // hyper-rustls sets ALPN (h2, http/1.1) from the enabled versions.
    let tls = tls::client_config(ca, &[])?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector))
}
