//! The protocol-independent request path: one `Edge` shared by the
//! HTTP/1.1, HTTP/2 and HTTP/3 shells. A request head goes in; a response
//! head plus a body source (a slice of a stored object or a window of a
//! fill) comes out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use outpost_proto::token::{self, TokenError};

use crate::cache::lock::{follower_may_use, plan};
use crate::cache::{
    Age, CacheKey, CacheStatus, CachedObject, FetchError, Heuristic, MemoryTier, ObjectHead, Outcome, Plan,
};
use crate::config::EdgeConfig;
use crate::fill::{self, Fill, FillBody};
use crate::metrics::Metrics;
use crate::upstream::Upstream;
use outpost_proto::conditional;
use outpost_proto::range::{self, Resolution};

/// The client protocol, a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
    H3,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::H1 => "h1",
            Proto::H2 => "h2",
            Proto::H3 => "h3",
        }
    }
}

/// What the shells pass in.
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub proto: Proto,
    /// The connection's peer (a token's client network is checked against it).
    pub peer: SocketAddr,
}

/// Where a response body comes from.
pub enum EdgeBody {
    Empty,
    Full(Bytes),
    Fill(FillBody),
}

impl EdgeBody {
    /// Next piece of the body; `Ok(None)` at the end. An error means the
    /// upstream failed after the head was sent: the shell must cut the
    /// response rather than end it cleanly.
    pub async fn next(&mut self) -> Result<Option<Bytes>, FetchError> {
        match self {
            EdgeBody::Empty => Ok(None),
            EdgeBody::Full(b) => Ok(if b.is_empty() { None } else { Some(std::mem::take(b)) }),
            EdgeBody::Fill(f) => f.next().await,
        }
    }

    /// Nothing is left to send (lets a shell that stops polling once
    /// Content-Length bytes went out still record a complete response).
    pub fn is_done(&self) -> bool {
        match self {
            EdgeBody::Empty => true,
            EdgeBody::Full(b) => b.is_empty(),
            EdgeBody::Fill(f) => f.is_done(),
        }
    }
}

/// What the shells send back.
pub struct EdgeResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: EdgeBody,
    /// Logged and counted when the body is done (see [`AccessRecord`]).
    pub access: AccessRecord,
}

struct Pending {
    fills: HashMap<CacheKey, Arc<Fill>>,
    uncacheable: lru::LruCache<CacheKey, SystemTime>,
}

pub struct Edge {
    pub cfg: EdgeConfig,
    pub memory: MemoryTier,
    pub upstream: Upstream,
    pub metrics: Metrics,
    pub heuristic: Heuristic,
    /// Interval counters for health reports.
    pub stats: crate::stats::Stats,
    cors: crate::cors::Cors,
    pending: Mutex<Pending>,
}

impl Edge {
    pub fn new(cfg: EdgeConfig, upstream: Upstream, metrics: Metrics) -> Arc<Self> {
        let memory = MemoryTier::new(cfg.cache.memory.policy, cfg.cache.memory.capacity);
        metrics.memory_capacity.set(cfg.cache.memory.capacity as i64);
        let heuristic = Heuristic {
            fraction: cfg.cache.heuristic_fraction,
            max: cfg.cache.heuristic_max,
        };
        let cap = std::num::NonZeroUsize::new(cfg.cache.uncacheable_max.max(1)).expect("non-zero");
        Arc::new(Self {
            memory,
            upstream,
            metrics,
            heuristic,
            stats: Default::default(),
            cors: crate::cors::Cors::new(&cfg.cors),
            pending: Mutex::new(Pending {
                fills: HashMap::new(),
                uncacheable: lru::LruCache::new(cap),
            }),
            cfg,
        })
    }

    /// Called by a registered fill when it ends: it leaves the in-flight map
    /// only after its object was stored, so no request falls between the two.
    pub(crate) fn fill_done(&self, key: &CacheKey, fill: &Arc<Fill>) {
        let mut p = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if p.fills.get(key).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            p.fills.remove(key);
        }
    }

    pub(crate) fn mark_uncacheable(&self, key: &CacheKey, now: SystemTime) {
        self.pending
            .lock()
            .expect("pending lock")
            .uncacheable
            .put(key.clone(), now + self.cfg.cache.uncacheable_ttl);
    }

    /// Refresh the memory-tier gauges (called on scrape and periodically).
    pub fn refresh_gauges(&self) {
        self.metrics.memory_bytes.set(self.memory.bytes() as i64);
        self.metrics.memory_objects.set(self.memory.objects() as i64);
        self.metrics.memory_evictions.set(self.memory.evictions() as i64);
    }

    /// Start `fill` as its own task. `token` is the verified playback token
    /// of the request starting it: with `upstream.forward_token` it goes
    /// upstream (in a header, captured now; the fill outlives the request).
    fn spawn_fill(
        self: &Arc<Self>,
        key: &CacheKey,
        fill: &Arc<Fill>,
        stale: Option<Arc<CachedObject>>,
        store: bool,
        token: Option<&str>,
    ) {
        // Only a verified token gets here: forwarding needs `token.required`
        // (validated), and a refused request never reaches a fill.
        let token = token
            .filter(|_| self.cfg.upstream.forward_token)
            .and_then(|t| HeaderValue::from_str(t).ok());
        tokio::spawn(fill::run(self.clone(), key.clone(), fill.clone(), stale, store, token));
    }

    /// Answer one request.
    pub async fn handle(self: &Arc<Self>, req: RequestHead) -> EdgeResponse {
        let started = Instant::now();
        let mut access = AccessRecord::new(self.clone(), &req, started);
        // The token never reaches the key (nor, so, the upstream target),
        // the access log or the title counts, whatever the answer:
        // `/t/<token>` is cut from the path here and `CAT` is never a key
        // parameter. Only `upstream.forward_token` sends it upstream, in a
        // header of the fill it starts (see `spawn_fill`).
        let (token, path) = token_of(&req);
        access.path_skip = req.uri.path().len().saturating_sub(path.len()); // `path` is a suffix
        let mut resp = match self.cors.preflight(&req.method, &req.headers) {
            Some((status, headers)) => (status, headers, EdgeBody::Empty),
            None => {
                let mut resp = self.route(&req, token, &path, &mut access).await;
                self.cors.decorate(&req.headers, &mut resp.1);
                resp
            }
        };
        if req.method == Method::HEAD {
            // Refusals and errors carry a text body; a HEAD answer never does.
            resp.2 = EdgeBody::Empty;
        }
        self.metrics
            .ttfb
            .with_label_values(&[req.proto.as_str(), access.cache.as_str()])
            .observe(started.elapsed().as_secs_f64());
        access.status = resp.0;
        access.complete = matches!(resp.2, EdgeBody::Empty);
        EdgeResponse {
            status: resp.0,
            headers: resp.1,
            body: resp.2,
            access,
        }
    }

    async fn route(
        self: &Arc<Self>,
        req: &RequestHead,
        token: Option<&str>,
        path: &str,
        access: &mut AccessRecord,
    ) -> (StatusCode, HeaderMap, EdgeBody) {
        if req.method != Method::GET && req.method != Method::HEAD {
            self.metrics.refused.with_label_values(&["method"]).inc();
            let mut h = HeaderMap::new();
            h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", h);
        }
        let key = match CacheKey::new(path, req.uri.query(), &self.cfg.cache.key_query_params) {
            Ok(k) => k,
            Err(e) => {
                self.metrics.refused.with_label_values(&["bad-path"]).inc();
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("bad request target: {e}"),
                    HeaderMap::new(),
                );
            }
        };
        access.key = key.as_str().to_owned();
        let now = SystemTime::now();
        if self.cfg.token.required {
            if let Err(e) = self.check_token(token, key.path(), req.peer, now, access) {
                self.metrics
                    .refused
                    .with_label_values(&[&format!("token-{}", e.as_str())])
                    .inc();
                let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
                // Marked, so a child edge that forwarded this token tells
                // a refused token from any other 401/403 (see `fill.rs`).
                let mut h = HeaderMap::new();
                h.insert(
                    crate::server::REFUSED_HEADER,
                    HeaderValue::from_static(crate::server::REFUSED_TOKEN),
                );
                return error(status, &e.to_string(), h);
            }
        }
        let mut stored = self.memory.get(&key);
        // Hit fast path: a fresh copy is served whatever is in flight
        // (`plan` says so too), so the in-flight map's lock is not taken.
        if let Some(obj) = stored.as_ref().filter(|o| o.freshness.state(now) == Age::Fresh) {
            return self.serve_object(req, obj, CacheStatus::Hit, now, access);
        }
        let (plan, fill) = {
            let mut p = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let in_flight = p.fills.get(&key).cloned();
            if in_flight.is_none() {
                // A fill may have stored its object and left the map since
                // we looked: look again under the lock (see `fill_done`).
                stored = self.memory.get(&key);
            }
            let age = stored.as_ref().map(|o| o.freshness.state(now));
            let uncacheable = match p.uncacheable.get(&key) {
                Some(until) if *until > now => true,
                Some(_) => {
                    p.uncacheable.pop(&key);
                    false
                }
                None => false,
            };
            let plan = plan(age, in_flight.is_some(), uncacheable);
            let fill = match plan {
                Plan::Join => in_flight,
                Plan::Fetch { .. } | Plan::ServeStaleAndRevalidate { start_fill: true } => {
                    let f = Fill::new();
                    p.fills.insert(key.clone(), f.clone());
                    Some(f)
                }
                Plan::Pass => Some(Fill::new()),
                _ => None,
            };
            (plan, fill)
        };
        match (plan, fill) {
            (Plan::Serve, _) => {
                let obj = stored.expect("serve implies stored");
                self.serve_object(req, &obj, CacheStatus::Hit, now, access)
            }
            (Plan::ServeStaleAndRevalidate { start_fill }, fill) => {
                let obj = stored.expect("stale implies stored");
                if let (true, Some(f)) = (start_fill, fill) {
                    self.spawn_fill(&key, &f, Some(obj.clone()), true, token);
                }
                self.serve_object(req, &obj, CacheStatus::StaleHit, now, access)
            }
            (Plan::Join, Some(f)) => {
                self.metrics.collapsed.inc();
                self.serve_fill(req, &key, f, false, CacheStatus::Collapsed, access)
                    .await
            }
            (Plan::Fetch { revalidate }, Some(f)) => {
                self.spawn_fill(&key, &f, if revalidate { stored } else { None }, true, token);
                let status = if revalidate {
                    CacheStatus::Revalidated
                } else {
                    CacheStatus::Miss
                };
                self.serve_fill(req, &key, f, true, status, access).await
            }
            (Plan::Pass, Some(f)) => {
                self.spawn_fill(&key, &f, None, false, token);
                self.serve_fill(req, &key, f, true, CacheStatus::Pass, access).await
            }
            _ => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error: no fill for plan",
                HeaderMap::new(),
            ),
        }
    }

    /// Verify a request's playback token against the normalized path and
    /// the connection's peer; the outcome goes into the access record. A
    /// peer in `token.forwarders` is a child edge forwarding its player's
    /// token: everything but the client network is checked (the child
    /// checked that against the player; here the peer is the child).
    fn check_token(
        &self,
        token: Option<&str>,
        path: &str,
        peer: SocketAddr,
        now: SystemTime,
        access: &mut AccessRecord,
    ) -> Result<(), TokenError> {
        let now = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let verify = |t: &str, ip| {
            token::verify_with_skew(
                &self.cfg.token.keys,
                t,
                path,
                ip,
                now,
                self.cfg.token.clock_skew.as_secs(),
            )
        };
        let result = token
            .ok_or(TokenError::Missing)
            .and_then(|t| match verify(t, peer.ip()) {
                // The network claim is checked last, so all else verified:
                // check again from inside the token's own network.
                Err(TokenError::WrongNetwork { network, .. }) if self.is_forwarder(peer) => {
                    match network_address(&network) {
                        Some(ip) => verify(t, ip),
                        None => Err(TokenError::Malformed("catnip is not a network".into())),
                    }
                }
                other => other,
            });
        match result {
            Ok(grant) => {
                access.token = "ok";
                access.session = grant.session;
                Ok(())
            }
            Err(e) => {
                access.token = e.as_str();
                Err(e)
            }
        }
    }

    fn is_forwarder(&self, peer: SocketAddr) -> bool {
        let ip = peer.ip();
        self.cfg
            .token
            .forwarders
            .iter()
            .any(|c| crate::config::cidr_contains(c, ip))
    }

    fn serve_object(
        &self,
        req: &RequestHead,
        obj: &CachedObject,
        status: CacheStatus,
        now: SystemTime,
        access: &mut AccessRecord,
    ) -> (StatusCode, HeaderMap, EdgeBody) {
        let age = obj.freshness.age(now);
        let mut outcome = Outcome::new(status);
        outcome.ttl = Some(obj.freshness.lifetime.as_secs() as i64 - age.as_secs() as i64);
        access.cache = status;
        let body = obj.body.clone();
        self.respond(
            req,
            &obj.head,
            Some(body.len() as u64),
            Some(age),
            outcome,
            |start, len| EdgeBody::Full(body.slice(start as usize..(start + len) as usize)),
        )
    }

    async fn serve_fill(
        self: &Arc<Self>,
        req: &RequestHead,
        key: &CacheKey,
        fill: Arc<Fill>,
        owner: bool,
        status: CacheStatus,
        access: &mut AccessRecord,
    ) -> (StatusCode, HeaderMap, EdgeBody) {
        let head = match (fill.head().await, fill.failure()) {
            (Ok(h), None) => h,
            // Failed before or while streaming: nothing reached this client
            // yet, so it gets a clean error rather than a cut body.
            (Err(e), _) | (Ok(_), Some(e)) => {
                access.cache = status;
                return error(e.status(), &e.to_string(), HeaderMap::new());
            }
        };
        if !follower_may_use(owner, &head) {
            // A private answer is not ours to share: fetch alone.
            let own = Fill::new();
            // Its own fetch carries its own (verified) token.
            self.spawn_fill(key, &own, None, false, token_of(req).0);
            return Box::pin(self.serve_fill(req, key, own, true, CacheStatus::Pass, access)).await;
        }
        let status = if fill.is_stale_on_error() {
            CacheStatus::StaleOnError
        } else {
            status
        };
        access.cache = status;
        let mut outcome = Outcome::new(status);
        if !status.is_hit() {
            outcome.fwd_status = Some(head.fwd_status);
            outcome.stored = head.is_storable() && status != CacheStatus::Pass;
        }
        self.respond(
            req,
            &head,
            head.content_length,
            Some(
                head.freshness
                    .as_ref()
                    .map_or(Duration::ZERO, |f| f.age(SystemTime::now())),
            ),
            outcome,
            |start, len| EdgeBody::Fill(FillBody::new(fill.clone(), start, Some(len))),
        )
    }

    /// Build the response for a head whose body is `len` bytes (when
    /// known): 304 for a matching conditional, 206/416 for a range, else 200.
    /// `slice(start, len)` makes the body for the chosen window.
    fn respond(
        &self,
        req: &RequestHead,
        head: &ObjectHead,
        len: Option<u64>,
        age: Option<Duration>,
        outcome: Outcome,
        slice: impl FnOnce(u64, u64) -> EdgeBody,
    ) -> (StatusCode, HeaderMap, EdgeBody) {
        let mut headers = head.headers.clone();
        if let Some(age) = age {
            headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
        }
        if let Some(v) = outcome
            .header_value(&self.cfg.cache.status_name)
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            headers.insert("cache-status", v);
        }
        let is_head = req.method == Method::HEAD;
        if head.status != StatusCode::OK {
            if let Some(l) = len {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(l));
            }
            let body = if is_head || len == Some(0) {
                EdgeBody::Empty
            } else {
                slice(0, len.unwrap_or(u64::MAX))
            };
            return (head.status, headers, body);
        }
        if conditional::not_modified(&req.headers, head.etag.as_deref(), head.last_modified) {
            for h in [header::CONTENT_TYPE, header::CONTENT_ENCODING, header::CONTENT_LANGUAGE] {
                headers.remove(h);
            }
            return (StatusCode::NOT_MODIFIED, headers, EdgeBody::Empty);
        }
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let Some(len) = len else {
            // Unknown length (chunked upstream, still filling): whole body, streamed.
            return (
                StatusCode::OK,
                headers,
                if is_head { EdgeBody::Empty } else { slice(0, u64::MAX) },
            );
        };
        // Range is defined for GET only (RFC 9110 §14.2): HEAD gets the 200 head.
        let wanted = if is_head {
            Resolution::Full
        } else {
            range::evaluate(&req.headers, head.etag.as_deref(), head.last_modified, len)
        };
        match wanted {
            Resolution::Unsatisfiable => {
                headers.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&range::unsatisfied_content_range(len)).expect("ascii"),
                );
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
                headers.remove(header::CONTENT_TYPE);
                (StatusCode::RANGE_NOT_SATISFIABLE, headers, EdgeBody::Empty)
            }
            Resolution::Partial(r) => {
                headers.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&r.content_range(len)).expect("ascii"),
                );
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(r.len()));
                (
                    StatusCode::PARTIAL_CONTENT,
                    headers,
                    if is_head {
                        EdgeBody::Empty
                    } else {
                        slice(r.first, r.len())
                    },
                )
            }
            Resolution::Full => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                (
                    StatusCode::OK,
                    headers,
                    if is_head || len == 0 {
                        EdgeBody::Empty
                    } else {
                        slice(0, len)
                    },
                )
            }
        }
    }
}

/// The request's playback token, if any, and its path without a
/// `/t/<token>` prefix (a suffix of the request path).
fn token_of(req: &RequestHead) -> (Option<&str>, std::borrow::Cow<'_, str>) {
    token::extract(
        req.uri.path(),
        req.uri.query(),
        req.headers.get(token::HEADER).and_then(|v| v.to_str().ok()),
    )
}

/// An address inside a token's client network (`addr/len` or `addr`).
fn network_address(network: &str) -> Option<std::net::IpAddr> {
    network.split('/').next()?.parse().ok()
}

fn error(status: StatusCode, msg: &str, mut headers: HeaderMap) -> (StatusCode, HeaderMap, EdgeBody) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let body = Bytes::from(format!("{msg}\n"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    (status, headers, EdgeBody::Full(body))
}

/// One access-log line and the request metrics, written when the
/// response is done (or dropped: a client that went away is logged too).
pub struct AccessRecord {
    edge: Arc<Edge>,
    proto: Proto,
    method: Method,
    uri: Uri,
    /// Bytes of the path before the part the cache saw (`/t/<token>`), so
    /// the log and the title statistics never see a token.
    path_skip: usize,
    key: String,
    /// Playback token outcome: "-" when not checked, "ok", or the refusal.
    token: &'static str,
    /// The verified token's session id.
    session: Option<String>,
    pub status: StatusCode,
    pub cache: CacheStatus,
    started: Instant,
    pub bytes: u64,
    pub complete: bool,
}

impl AccessRecord {
    /// Body bytes just handed to the client.
    pub fn sent(&mut self, n: u64) {
        self.bytes += n;
        self.edge.stats.sent(n);
    }

    fn new(edge: Arc<Edge>, req: &RequestHead, started: Instant) -> Self {
        Self {
            edge,
            proto: req.proto,
            method: req.method.clone(),
            uri: req.uri.clone(),
            path_skip: 0,
            key: String::new(),
            token: "-",
            session: None,
            status: StatusCode::OK,
            cache: CacheStatus::None,
            started,
            bytes: 0,
            complete: false,
        }
    }
}

impl Drop for AccessRecord {
    fn drop(&mut self) {
        let m = &self.edge.metrics;
        let proto = self.proto.as_str();
        m.requests
            .with_label_values(&[proto, self.status.as_str(), self.cache.as_str()])
            .inc();
        m.bytes_sent.with_label_values(&[proto]).inc_by(self.bytes);
        let depth = self.edge.cfg.report.as_ref().map_or(2, |r| r.title_depth);
        let path = self.uri.path().get(self.path_skip..).unwrap_or("/");
        let title = crate::stats::title_of(path, depth);
        self.edge.stats.finished(title, self.cache, self.bytes);
        tracing::info!(
            target: "access",
            proto,
            method = %self.method,
            path = %path.get(..512).unwrap_or(path),
            key = %self.key,
            token = self.token,
            session = self.session.as_deref().unwrap_or("-"),
            status = self.status.as_u16(),
            cache = self.cache.as_str(),
            bytes = self.bytes,
            complete = self.complete,
            ms = self.started.elapsed().as_millis() as u64,
        );
    }
}
