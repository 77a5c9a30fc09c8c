//! HTTPS over TCP: rustls, then hyper's auto builder (HTTP/1.1 or HTTP/2 as
//! ALPN chose). Adds `Alt-Svc` while the HTTP/3 listener is up.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderValue, Request, Response, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use outpost_svc::Shutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::edge::{Edge, EdgeBody, Proto, RequestHead};

pub type Body = BoxBody<Bytes, std::io::Error>;

/// Advertises HTTP/3 on TCP responses while the UDP listener runs.
pub struct AltSvc {
    pub up: AtomicBool,
    pub value: HeaderValue,
}

pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    edge: Arc<Edge>,
    alt_svc: Arc<AltSvc>,
    shutdown: Shutdown,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let max_header = edge.cfg.limits.max_header_bytes as usize;
    let idle = edge.cfg.limits.client_idle_timeout;
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(max_header.max(8192))
        .header_read_timeout(idle)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(max_header as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .max_send_buf_size(1 << 20);
    let builder = Arc::new(builder);
    while let Some((tcp, peer)) = outpost_svc::https::accept(&listener, &shutdown).await {
        let acceptor = acceptor.clone();
        let edge = edge.clone();
        let alt_svc = alt_svc.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Some(tls) = outpost_svc::https::handshake(&acceptor, tcp, peer).await else {
                return;
            };
            let gauge = edge.metrics.connections.with_label_values(&["tcp"]);
            gauge.inc();
            let svc_edge = edge.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let edge = svc_edge.clone();
                let alt_svc = alt_svc.clone();
                async move { Ok::<_, Infallible>(handle(edge, alt_svc, req, peer).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            let _ = watcher.watch(conn).await;
            gauge.dec();
        });
    }
    drop(listener);
    let grace = edge.cfg.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("TCP connections still open after {grace:?}; closing them");
    }
}

async fn handle(edge: Arc<Edge>, alt_svc: Arc<AltSvc>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let proto = if req.version() == Version::HTTP_2 {
        Proto::H2
    } else {
        Proto::H1
    };
    let (parts, _body) = req.into_parts();
    let resp = edge
        .handle(RequestHead {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            proto,
            peer,
        })
        .await;
    let mut out = Response::new(body(resp.body, resp.access));
    *out.status_mut() = resp.status;
    *out.headers_mut() = resp.headers;
    if alt_svc.up.load(Ordering::Relaxed) {
        out.headers_mut().insert(http::header::ALT_SVC, alt_svc.value.clone());
    }
    out
}

/// Stream an [`EdgeBody`] into hyper, counting bytes into the access record.
/// An upstream failure mid-body becomes a body error, which makes hyper cut
/// the connection (h1) or reset the stream (h2) instead of ending cleanly.
fn body(body: EdgeBody, access: crate::edge::AccessRecord) -> Body {
    let s = stream::unfold(Some((body, access)), |state| async move {
        let (mut body, mut access) = state?;
        match body.next().await {
            Ok(Some(chunk)) => {
                access.sent(chunk.len() as u64);
                access.complete = body.is_done();
                Some((Ok(Frame::data(chunk)), Some((body, access))))
            }
            Ok(None) => {
                access.complete = true;
                None
            }
            Err(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    });
    StreamBody::new(s).boxed()
}
