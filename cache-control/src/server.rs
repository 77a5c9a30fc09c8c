//! The HTTPS shell around the [`Registry`]: report intake, `/v1/edges`,
//! the `/v1/stream` event stream and a text view at `/`.
//!
//! Every TLS connection gets a [`Connection`]: a number, and the edges
//! whose reports on it were admitted. When it ends, [`closed`] tells the
//! registry, which arms `connection-lost` only for the edges whose latest
//! report it carried. Refused reports never bind an edge to a connection,
//! so nobody can get an edge marked down by closing a connection of their
//! own: they would need a report the edge signed and the replica has not
//! seen (a replay is refused by sequence number).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use outpost_proto::signature::{KEY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use outpost_proto::stream::{Change, Cursor, Heartbeat, StreamEvent};
use outpost_proto::EdgeState;
use outpost_svc::https::{full, json, Body};
use outpost_svc::Shutdown;
use tokio::sync::{broadcast, mpsc};

use crate::admission::{admit, Keys, Limits, Reject, Signed};
use crate::metrics::Metrics;
use crate::registry::{ConnId, Registry, Resume};

/// Wall-clock milliseconds (for signed timestamps only).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One published change, encoded once for every subscriber.
pub struct Published {
    pub version: u64,
    pub sse: Bytes,
}

/// Everything the handlers share.
pub struct Shared {
    pub registry: Mutex<Registry>,
    pub keys: Keys,
    pub limits: Limits,
    pub metrics: Metrics,
    pub events: broadcast::Sender<Arc<Published>>,
    pub heartbeat: Duration,
    pub shutdown: Shutdown,
    /// Monotonic origin of the registry's clock.
    pub started: Instant,
    /// The number of the next connection.
    pub next_conn: AtomicU64,
}

/// One client connection, as far as liveness cares.
pub struct Connection {
    pub id: ConnId,
    pub peer: SocketAddr,
    carried: Mutex<Carried>,
}

#[derive(Default)]
struct Carried {
    /// Edges with an admitted report on this connection.
    edges: Vec<String>,
    closed: bool,
}

impl Connection {
    /// A new connection from `peer`, numbered.
    pub fn new(shared: &Shared, peer: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            id: shared.next_conn.fetch_add(1, Ordering::Relaxed),
            peer,
            carried: Mutex::new(Carried::default()),
        })
    }

    fn carried(&self) -> std::sync::MutexGuard<'_, Carried> {
        // Plain data: a panic elsewhere cannot leave it half-written.
        self.carried.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The connection has ended: edges whose latest admitted report it
/// carried must report again within one interval + grace, or go down.
pub fn closed(shared: &Shared, conn: &Connection) {
    if shared.shutdown.is_triggered() {
        // Our own graceful stop closes every connection; that says nothing.
        return;
    }
    // A report admitted after this point sees `closed` and arms itself
    // (it records the edge under the registry lock, before looking).
    let edges = {
        let mut c = conn.carried();
        c.closed = true;
        std::mem::take(&mut c.edges)
    };
    if edges.is_empty() {
        return;
    }
    let mut reg = shared.registry.lock().expect("registry lock");
    let limit = reg.policy().connection_limit_ms();
    let armed = reg.connection_closed(conn.id, edges.iter().map(String::as_str), shared.mono_ms());
    drop(reg);
    for edge in armed {
        tracing::info!(%edge, peer = %conn.peer, limit_ms = ?limit, "report connection closed; down unless the edge reports again in time");
    }
}

impl Shared {
    /// Milliseconds on the monotonic clock the registry runs on (liveness
    /// must not jump with the wall clock).
    pub fn mono_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Publish changes made under the registry lock (`reg`), so a
    /// subscriber that took its snapshot under the same lock sees exactly
    /// the changes after it.
    pub fn publish(&self, reg: &Registry, changes: Vec<Change>) {
        for c in changes {
            if let Some(prev) = c.previous.filter(|p| *p != c.edge.state) {
                self.metrics
                    .transitions
                    .with_label_values(&[prev.as_str(), c.edge.state.as_str()])
                    .inc();
                if c.edge.state == EdgeState::Down {
                    let reason = c.edge.reasons.first().map_or("unknown", String::as_str);
                    self.metrics.down.with_label_values(&[reason]).inc();
                }
                tracing::info!(edge = %c.edge.edge_id, from = prev.as_str(), to = c.edge.state.as_str(), reasons = ?c.edge.reasons, "edge state changed");
            }
            let version = c.version;
            let sse = Bytes::from(StreamEvent::Change(Box::new(c)).to_sse(reg.epoch()));
            // No subscribers is fine.
            let _ = self.events.send(Arc::new(Published { version, sse }));
        }
        self.metrics.set_counts(reg.counts());
    }
}

fn error(status: StatusCode, reason: &str, message: String) -> Response<Body> {
    json(status, &serde_json::json!({ "error": reason, "message": message }))
}

/// Route one request that came on `conn`.
pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>, conn: Arc<Connection>) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/v1/reports") => report(&shared, req, &conn).await,
        (Method::GET, "/v1/edges") => {
            let reg = shared.registry.lock().expect("registry lock");
            json(StatusCode::OK, &reg.snapshot(shared.mono_ms()))
        }
        (Method::GET, "/v1/stream") => stream(&shared, req.uri().query(), req.headers()),
        (Method::GET, "/") => text_view(&shared),
        (_, "/v1/reports") => method_not_allowed("POST"),
        (_, "/v1/edges" | "/v1/stream" | "/") => method_not_allowed("GET"),
        _ => error(StatusCode::NOT_FOUND, "not-found", format!("no such endpoint: {path}")),
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method", format!("use {allow}"));
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    r
}

fn refuse(shared: &Shared, reject: Reject, peer: SocketAddr) -> Response<Body> {
    shared.metrics.rejected.with_label_values(&[reject.as_str()]).inc();
    tracing::warn!(%peer, reason = reject.as_str(), error = %reject, "health report refused");
    let status = StatusCode::from_u16(reject.status()).expect("valid status");
    let mut body = serde_json::json!({ "error": reject.as_str(), "message": reject.to_string() });
    if let Reject::Replay { last, .. } = reject {
        // The edge may only move forward; telling it where lets a restarted
        // edge whose clock went back recover.
        body["last_seq"] = last.into();
    }
    json(status, &body)
}

async fn report(shared: &Shared, req: Request<Incoming>, conn: &Connection) -> Response<Body> {
    let peer = conn.peer;
    let max = shared.limits.max_body;
    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared_len.filter(|l| *l > max as u64) {
        // Refused before reading a byte of it.
        return refuse(shared, Reject::TooLarge(len as usize), peer);
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return refuse(shared, Reject::TooLarge(max + 1), peer)
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "report body not received");
            return error(StatusCode::BAD_REQUEST, "body", format!("could not read the body: {e}"));
        }
    };
    let h = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let signed = Signed {
        key_id: h(KEY_ID_HEADER),
        timestamp: h(TIMESTAMP_HEADER),
        signature: h(SIGNATURE_HEADER),
        body: &body,
    };
    let wall = wall_ms();
    let mut reg = shared.registry.lock().expect("registry lock");
    let report = match admit(signed, &shared.keys, |id| reg.last_seq(id), wall, shared.limits) {
        Ok(r) => r,
        Err(reject) => {
            drop(reg);
            return refuse(shared, reject, peer);
        }
    };
    let edge_id = report.edge_id.clone();
    shared
        .metrics
        .report_delay
        .observe(wall.saturating_sub(report.timestamp_ms) as f64 / 1000.0);
    shared.metrics.accepted.with_label_values(&[&edge_id]).inc();
    let now = shared.mono_ms();
    let change = reg.report(report, conn.id, now);
    let gone = {
        let mut c = conn.carried();
        if !c.edges.contains(&edge_id) {
            c.edges.push(edge_id.clone());
        }
        c.closed
    };
    if gone {
        // The connection ended while this report was being admitted.
        reg.connection_closed(conn.id, [edge_id.as_str()], now);
    }
    shared.publish(&reg, change.into_iter().collect());
    let view = reg.view(&edge_id, shared.mono_ms()).expect("just recorded");
    let version = reg.version();
    drop(reg);
    json(
        StatusCode::OK,
        &serde_json::json!({ "state": view.state, "reasons": view.reasons, "version": version }),
    )
}

/// The cursor a subscriber resumes from: `?since=` or `Last-Event-ID`.
fn cursor(query: Option<&str>, headers: &HeaderMap) -> Option<Cursor> {
    let from_query = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("since="))
            .and_then(|v| Cursor::parse(&v.replace("%3A", ":").replace("%3a", ":")))
    });
    from_query.or_else(|| {
        headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(Cursor::parse)
    })
}

fn stream(shared: &Arc<Shared>, query: Option<&str>, headers: &HeaderMap) -> Response<Body> {
    let cursor = cursor(query, headers);
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    // Subscribe and read the starting point under one lock: nothing
    // published in between can be missed or seen twice.
    let (mut events, initial) = {
        let reg = shared.registry.lock().expect("registry lock");
        let events = shared.events.subscribe();
        let initial: Vec<Bytes> = match reg.resume(cursor.as_ref(), shared.mono_ms()) {
            Resume::Snapshot(s) => vec![Bytes::from(StreamEvent::Snapshot(s).to_sse(reg.epoch()))],
            Resume::Changes(cs) => cs
                .into_iter()
                .map(|c| Bytes::from(StreamEvent::Change(Box::new(c)).to_sse(reg.epoch())))
                .collect(),
        };
        (events, initial)
    };
    let shared2 = shared.clone();
    tokio::spawn(async move {
        let shared = shared2;
        shared.metrics.subscribers.inc();
        let mut heartbeat = tokio::time::interval(shared.heartbeat);
        heartbeat.tick().await;
        'run: {
            for b in initial {
                if tx.send(b).await.is_err() {
                    break 'run;
                }
            }
            loop {
                let next = tokio::select! {
                    r = events.recv() => match r {
                        Ok(p) => p.sse.clone(),
                        // Too slow, or shutting down: the subscriber
                        // reconnects with its cursor.
                        Err(_) => break,
                    },
                    _ = heartbeat.tick() => {
                        let reg = shared.registry.lock().expect("registry lock");
                        Bytes::from(StreamEvent::Heartbeat(Heartbeat { version: reg.version() }).to_sse(reg.epoch()))
                    }
                    _ = shared.shutdown.wait() => break,
                    _ = tx.closed() => break,
                };
                if tx.send(next).await.is_err() {
                    break;
                }
            }
        }
        shared.metrics.subscribers.dec();
    });
    let body = futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|b| (Ok(Frame::data(b)), rx)) },
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-accel-buffering", "no")
        .body(StreamBody::new(body).boxed())
        .expect("static response")
}

fn text_view(shared: &Shared) -> Response<Body> {
    let reg = shared.registry.lock().expect("registry lock");
    let snap = reg.snapshot(shared.mono_ms());
    drop(reg);
    let mut out = format!(
        "replica {}  epoch {}  version {}\n\n{:<20} {:<11} {:<8} {:>9} {:>6} {:>7} {:>8}  {}\n",
        snap.replica, snap.epoch, snap.version, "EDGE", "STATE", "SITE", "AGE(ms)", "CPU", "GBPS", "CONNS", "REASONS"
    );
    for e in &snap.edges {
        let r = e.report.as_ref();
        out.push_str(&format!(
            "{:<20} {:<11} {:<8} {:>9} {:>6} {:>7} {:>8}  {}\n",
            e.edge_id,
            e.state.as_str(),
            r.map_or("-", |r| r.site.as_str()),
            e.last_report_age_ms.map_or("-".into(), |a| a.to_string()),
            r.map_or("-".into(), |r| format!("{:.2}", r.cpu_load)),
            r.map_or("-".into(), |r| format!("{:.2}", r.egress_gbps)),
            r.map_or("-".into(), |r| r.connections.to_string()),
            e.reasons.join(",")
        ));
    }
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(full(out))
        .expect("static response")
}

/// The periodic work: missed-report checks several times per interval,
/// load updates and gauges once per interval.
pub async fn ticker(shared: Arc<Shared>) {
    let interval_ms = shared.registry.lock().expect("registry lock").policy().interval_ms;
    let mut tick = tokio::time::interval(Duration::from_millis((interval_ms / 10).max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_flush = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.shutdown.wait() => return,
        }
        let now = shared.mono_ms();
        let mut reg = shared.registry.lock().expect("registry lock");
        let mut changes = reg.tick(now);
        let flush = last_flush.elapsed() >= Duration::from_millis(interval_ms);
        if flush {
            last_flush = Instant::now();
            changes.extend(reg.flush(now));
            for v in reg.views(now) {
                if let Some(age) = v.last_report_age_ms {
                    shared
                        .metrics
                        .report_age
                        .with_label_values(&[&v.edge_id])
                        .set(age as f64 / 1000.0);
                }
            }
        }
        if !changes.is_empty() || flush {
            shared.publish(&reg, changes);
        }
    }
}
