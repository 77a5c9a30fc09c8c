//! The admin listener every service runs: `/metrics` (Prometheus text),
//! `/healthz` (the process is alive) and `/readyz` (it serves traffic).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;

use crate::Shutdown;

/// An operator action behind `POST <path>`; returns the text answered.
pub type Action = Arc<dyn Fn() -> String + Send + Sync>;

/// What the admin listener reports.
#[derive(Clone)]
pub struct AdminState {
    pub registry: Registry,
    ready: Arc<AtomicBool>,
    actions: Arc<std::sync::RwLock<Vec<(&'static str, Action)>>>,
}

impl AdminState {
    pub fn new(registry: Registry) -> Self {
        Self {
            registry,
            ready: Arc::new(AtomicBool::new(false)),
            actions: Default::default(),
        }
    }

    /// Answer `POST path` by running `action` (e.g. the edge's `/drain`).
    pub fn on_post(&self, path: &'static str, action: Action) {
        self.actions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((path, action));
    }

    fn action(&self, path: &str) -> Option<Action> {
        self.actions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, a)| a.clone())
    }
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// Bind the admin listener and serve it until `shutdown`.
pub async fn serve_admin(addr: SocketAddr, state: AdminState, shutdown: Shutdown) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                _ = shutdown.wait() => break,
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, req)) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(local)
}

fn handle(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .expect("static response")
    };
    if req.method() == Method::POST {
        if let Some(action) = state.action(req.uri().path()) {
            return text(StatusCode::OK, action());
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n".into());
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            let mut buf = Vec::new();
            let enc = TextEncoder::new();
            let _ = enc.encode(&state.registry.gather(), &mut buf);
            Response::builder()
                .header(header::CONTENT_TYPE, enc.format_type())
                .body(Full::new(Bytes::from(buf)))
                .expect("static response")
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" if state.is_ready() => text(StatusCode::OK, "ready\n".into()),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into()),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}
