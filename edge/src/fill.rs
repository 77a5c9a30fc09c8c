//! Upstream fills: the async shell around [`FillState`].
//!
//! A fill runs as its own task, detached from the request that started it,
//! so a client that goes away never cancels bytes other clients (and the
//! cache) are waiting for. Every request for the key reads the fill's
//! chunks as they arrive (read-while-write). Retries with backoff happen
//! only before the head is published, i.e. before any byte could have
//! reached a client.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use tokio::sync::Notify;

use crate::cache::lock::{HeadStep, ReadStep};
use crate::cache::{freshness, CacheKey, CachedObject, FetchError, FillState, ObjectHead};
use crate::edge::Edge;
use crate::upstream::Validators;

/// One shared upstream fetch.
pub struct Fill {
    state: Mutex<FillState>,
    notify: Notify,
    /// The fill answered with a stale copy because upstream failed.
    stale_on_error: AtomicBool,
}

impl Fill {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(FillState::new()),
            notify: Notify::new(),
            stale_on_error: AtomicBool::new(false),
        })
    }

    fn update<R>(&self, f: impl FnOnce(&mut FillState) -> R) -> R {
        let r = f(&mut self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        self.notify.notify_waiters();
        r
    }

    async fn wait<T>(&self, mut check: impl FnMut(&FillState) -> Option<T>) -> T {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(t) = check(&self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)) {
                return t;
            }
            notified.await;
        }
    }

    /// Wait for the response head (or the failure that replaced it).
    pub async fn head(&self) -> Result<Arc<ObjectHead>, FetchError> {
        self.wait(|s| match s.head() {
            HeadStep::Ready(h) => Some(Ok(h)),
            HeadStep::Failed(e) => Some(Err(e)),
            HeadStep::Pending => None,
        })
        .await
    }

    /// Wait for chunk `idx`; `Ok(None)` once the body is complete.
    pub async fn chunk(&self, idx: usize) -> Result<Option<Bytes>, FetchError> {
        self.wait(|s| match s.read(idx) {
            ReadStep::Chunk(c) => Some(Ok(Some(c))),
            ReadStep::End => Some(Ok(None)),
            ReadStep::Failed(e) => Some(Err(e)),
            ReadStep::Pending => None,
        })
        .await
    }

    /// The failure, if the fill already failed (even mid-body).
    pub fn failure(&self) -> Option<FetchError> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .failure()
    }

    pub fn is_stale_on_error(&self) -> bool {
        self.stale_on_error.load(Ordering::Relaxed)
    }

    /// Publish a whole stored object as this fill's answer.
    fn publish_object(&self, obj: &CachedObject) {
        self.update(|s| {
            let _ = s.publish_head(obj.head.clone());
            let _ = s.push(obj.body.clone());
            let _ = s.complete();
        });
    }
}

/// A reader of a fill that yields only the bytes of a window
/// (`skip` bytes dropped, then at most `remaining`).
pub struct FillBody {
    fill: Arc<Fill>,
    next: usize,
    skip: u64,
    remaining: Option<u64>,
}

impl FillBody {
    pub fn new(fill: Arc<Fill>, skip: u64, remaining: Option<u64>) -> Self {
        Self {
            fill,
            next: 0,
            skip,
            remaining,
        }
    }

    pub fn is_done(&self) -> bool {
        self.remaining == Some(0)
    }

    /// The next piece of the window, `Ok(None)` at its end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, FetchError> {
        loop {
            if self.remaining == Some(0) {
                return Ok(None);
            }
            let Some(mut chunk) = self.fill.chunk(self.next).await? else {
                return Ok(None);
            };
            self.next += 1;
            if self.skip > 0 {
                let drop = self.skip.min(chunk.len() as u64);
                self.skip -= drop;
                chunk = chunk.slice(drop as usize..);
            }
            if let Some(rem) = self.remaining.as_mut() {
                if (chunk.len() as u64) > *rem {
                    chunk.truncate(*rem as usize);
                }
                *rem -= chunk.len() as u64;
            }
            if !chunk.is_empty() {
                return Ok(Some(chunk));
            }
        }
    }
}

fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 502..=504)
}

/// Whether an answer to a fill that carried a forwarded token to this
/// upstream means the upstream refused the token (a parent edge's 401/403
/// marked `outpost-refused: token`), not the object: any other 401/403 (an
/// origin forbidding an object) is passed on as it is. Pure.
fn refuses_token(status: StatusCode, headers: &http::HeaderMap) -> bool {
    matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
        && headers.get(crate::server::REFUSED_HEADER).is_some_and(|v| {
            v.as_bytes()
                .eq_ignore_ascii_case(crate::server::REFUSED_TOKEN.as_bytes())
        })
}

/// The failure for a refused forwarded token: the status and the start of
/// the upstream's explanation (a parent edge says why in one text line).
async fn token_refused(
    up: &crate::upstream::Upstream,
    resp: &mut http::Response<hyper::body::Incoming>,
    sent: bool,
) -> FetchError {
    const MAX: usize = 200;
    let why = match up.next_chunk(resp.body_mut()).await {
        Ok(Some(b)) => String::from_utf8_lossy(&b[..b.len().min(MAX)])
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
        _ => String::new(),
    };
    let status = resp.status();
    let what = if sent {
        ""
    } else {
        " (none was forwarded: http:// upstream or forward_token off)"
    };
    FetchError::TokenRefused(if why.is_empty() {
        format!("{status}{what}")
    } else {
        format!("{status}: {why}{what}")
    })
}

/// Ends a fill however its task ends (normally, by error, or by a panic):
/// waiters learn of a failure instead of waiting forever, and a registered
/// fill leaves the in-flight map.
struct FillGuard {
    edge: Arc<Edge>,
    key: CacheKey,
    fill: Arc<Fill>,
    registered: bool,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        self.fill
            .update(|s| s.fail(FetchError::Upstream("fill ended unexpectedly (internal)".into())));
        if self.registered {
            self.edge.fill_done(&self.key, &self.fill);
        }
        self.edge.metrics.fills_in_flight.dec();
    }
}

/// Run a fill to its end. `stale` is the stored copy being revalidated,
/// if any; `store` says whether the result may enter the cache (false for
/// a pass-through fetch, which is also not in the in-flight map). `token`
/// is the verified playback token of the request that started the fill,
/// captured when it started, when `upstream.forward_token` is on: every
/// attempt sends it, and requests joining the fill share it.
pub async fn run(
    edge: Arc<Edge>,
    key: CacheKey,
    fill: Arc<Fill>,
    stale: Option<Arc<CachedObject>>,
    store: bool,
    token: Option<HeaderValue>,
) {
    edge.metrics.fills_in_flight.inc();
    let guard = FillGuard {
        edge,
        key,
        fill,
        registered: store,
    };
    let outcome = fetch(
        &guard.edge,
        &guard.key,
        &guard.fill,
        stale.as_deref(),
        store,
        token.as_ref(),
    )
    .await;
    guard
        .edge
        .metrics
        .upstream_fetches
        .with_label_values(&[outcome.as_ref().map_or_else(|e| e.as_str(), |_| "ok")])
        .inc();
    if let Err(e) = outcome {
        tracing::warn!(key = %guard.key, error = %e, "upstream fill failed");
    }
}

async fn fetch(
    edge: &Edge,
    key: &CacheKey,
    fill: &Arc<Fill>,
    stale: Option<&CachedObject>,
    store: bool,
    token: Option<&HeaderValue>,
) -> Result<(), FetchError> {
    let up = &edge.upstream;
    let validators = stale.map(|s| Validators {
        etag: s.head.etag.clone(),
        last_modified: s.head.last_modified,
    });
    let mut attempt = 0;
    let resp = loop {
        let r = up.get(key.as_str(), validators.as_ref(), token, attempt).await;
        let retry = match &r {
            Ok(resp) => retryable(resp.status()),
            Err(_) => true,
        };
        if retry && attempt < edge.cfg.upstream.retries {
            let backoff = edge
                .cfg
                .upstream
                .retry_backoff
                .saturating_mul(2u32.saturating_pow(attempt));
            tokio::time::sleep(backoff).await;
            attempt += 1;
            edge.metrics.upstream_retries.inc();
            continue;
        }
        break r;
    };
    let resp = match resp {
        // An upstream edge refused a token: the one forwarded to it, or
        // none (an http:// upstream never gets it). Either way the player's
        // token was good here; this is the tiers' configuration, a 502.
        Ok(mut r) if edge.cfg.token.required && refuses_token(r.status(), r.headers()) => {
            let sent = token.is_some() && up.sends_token(attempt);
            Err(token_refused(up, &mut r, sent).await)
        }
        other => other,
    };
    let now = SystemTime::now();
    let mut resp = match resp {
        Ok(r) => r,
        Err(e) => {
            if let Some(s) = stale.filter(|s| s.freshness.usable_on_error(now)) {
                fill.stale_on_error.store(true, Ordering::Relaxed);
                fill.publish_object(s);
                return Err(e);
            }
            fill.update(|s| s.fail(e.clone()));
            return Err(e);
        }
    };
    let status = resp.status();
    if let (Some(s), StatusCode::NOT_MODIFIED) = (stale, status) {
        // Revalidated: the stored body stands, with the 304's headers.
        let mut merged = s.head.headers.clone();
        for (k, v) in resp.headers() {
            merged.insert(k.clone(), v.clone());
        }
        let mut head = s.head.updated_by_304(resp.headers(), s.freshness.refreshed(now));
        let fresh = freshness::freshness(s.head.status, &merged, now, edge.heuristic);
        head.freshness = fresh;
        let freshness = fresh.unwrap_or_else(|_| s.freshness.refreshed(now));
        let obj = Arc::new(CachedObject {
            head: Arc::new(head),
            body: s.body.clone(),
            freshness,
        });
        match fresh {
            Ok(_) if store => {
                edge.memory.insert(key.clone(), obj.clone());
            }
            Ok(_) => {}
            Err(reason) => {
                // The 304 made it private, no-store or cookie-setting: the
                // old copy goes, and only the request that asked gets this.
                edge.memory.remove(key);
                edge.metrics.uncacheable.with_label_values(&[reason.as_str()]).inc();
            }
        }
        fill.publish_object(&obj);
        return Ok(());
    }
    if stale.is_some() && status.is_server_error() {
        if let Some(s) = stale.filter(|s| s.freshness.usable_on_error(now)) {
            fill.stale_on_error.store(true, Ordering::Relaxed);
            fill.publish_object(s);
            return Err(FetchError::Upstream(format!("upstream answered {status}")));
        }
    }
    let fresh = freshness::freshness(status, resp.headers(), now, edge.heuristic);
    let mut head = ObjectHead::from_upstream(status, resp.headers(), fresh);
    if let (Some(len), true) = (head.content_length, head.is_storable()) {
        if len > edge.memory.max_weight() {
            head.freshness = Err(freshness::NotStorable::TooLarge);
        }
    }
    if let Err(reason) = head.freshness {
        edge.metrics.uncacheable.with_label_values(&[reason.as_str()]).inc();
        if stale.is_some() {
            edge.memory.remove(key);
        }
        // Only answers nobody else may use are remembered, so later
        // requests go straight upstream instead of queueing; error statuses
        // and oversized objects keep collapsing.
        if store && !reason.shareable() {
            edge.mark_uncacheable(key, now);
        }
    }
    let will_store = store && head.is_storable();
    let head = Arc::new(head);
    fill.update(|s| s.publish_head(head.clone()))
        .map_err(|v| FetchError::Upstream(v.to_string()))?;
    // References held by this task and, when registered, the in-flight map:
    // at or below this count nobody is reading.
    let unread = 1 + usize::from(store);
    let body = resp.body_mut();
    loop {
        if !will_store && Arc::strong_count(fill) <= unread {
            // Nothing will be stored and every reader left: stop fetching.
            let e = FetchError::Upstream("all readers left an unstored fill".into());
            fill.update(|s| s.fail(e.clone()));
            return Ok(());
        }
        match up.next_chunk(body).await {
            Ok(Some(chunk)) => fill
                .update(|s| s.push(chunk))
                .map_err(|v| FetchError::Upstream(v.to_string()))?,
            Ok(None) => break,
            Err(e) => {
                fill.update(|s| s.fail(e.clone()));
                return Err(e);
            }
        }
    }
    let (result, chunks) = fill.update(|s| (s.complete(), if will_store { s.chunks() } else { None }));
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(v) => return Err(FetchError::Upstream(v.to_string())),
    }
    if let (Ok(fr), Some(chunks)) = (head.freshness, chunks) {
        let body = crate::cache::lock::concat(&chunks);
        let obj = Arc::new(CachedObject {
            head: head.clone(),
            body,
            freshness: fr,
        });
        if !edge.memory.insert(key.clone(), obj) {
            edge.metrics.uncacheable.with_label_values(&["too-large"]).inc();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn only_a_marked_401_or_403_is_a_refused_token() {
        let marked = {
            let mut h = HeaderMap::new();
            h.insert(crate::server::REFUSED_HEADER, HeaderValue::from_static("token"));
            h
        };
        assert!(refuses_token(StatusCode::UNAUTHORIZED, &marked));
        assert!(refuses_token(StatusCode::FORBIDDEN, &marked));
        // An origin forbidding an object: its own 403, passed on.
        assert!(!refuses_token(StatusCode::FORBIDDEN, &HeaderMap::new()));
        assert!(!refuses_token(StatusCode::UNAUTHORIZED, &HeaderMap::new()));
        let mut other = HeaderMap::new();
        other.insert(crate::server::REFUSED_HEADER, HeaderValue::from_static("geo"));
        assert!(!refuses_token(StatusCode::FORBIDDEN, &other));
        assert!(!refuses_token(StatusCode::NOT_FOUND, &marked));
    }
}
