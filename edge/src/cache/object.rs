//! What the cache stores: a response head and its whole body as one
//! `Bytes`, so a hit (or a range of it) is a reference-counted slice.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};

use super::freshness::{Freshness, NotStorable};

/// An upstream response head as the edge keeps it.
#[derive(Debug, Clone)]
pub struct ObjectHead {
    pub status: StatusCode,
    /// End-to-end headers to replay to clients (hop-by-hop and
    /// length/range headers removed).
    pub headers: HeaderMap,
    /// Body length when upstream said it.
    pub content_length: Option<u64>,
    pub etag: Option<String>,
    pub last_modified: Option<SystemTime>,
    /// How it ages, or why it may not be stored.
    pub freshness: Result<Freshness, NotStorable>,
    /// The status upstream actually sent (304 for a revalidation).
    pub fwd_status: u16,
}

/// Headers never replayed from upstream: hop-by-hop ones (RFC 9110 §7.6.1)
/// and those the edge computes itself.
const DROPPED: &[&str] = &[
    // An upstream edge's own token refusal, never ours to pass on.
    "outpost-refused",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "content-length",
    "content-range",
    "accept-ranges",
    "alt-svc",
    "age",
    "date",
    "cache-status",
    "server",
];

impl ObjectHead {
    /// Build from an upstream response head.
    pub fn from_upstream(status: StatusCode, upstream: &HeaderMap, freshness: Result<Freshness, NotStorable>) -> Self {
        let mut headers = HeaderMap::with_capacity(upstream.len());
        for (name, value) in upstream {
            if !DROPPED.contains(&name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
        let content_length = upstream
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse().ok());
        let etag = upstream
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let last_modified = upstream
            .get(header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok());
        Self {
            status,
            headers,
            content_length,
            etag,
            last_modified,
            freshness,
            fwd_status: status.as_u16(),
        }
    }

    /// Apply a 304's updated headers to a stored head (RFC 9111 §4.3.4).
    pub fn updated_by_304(&self, not_modified: &HeaderMap, freshness: Freshness) -> Self {
        let mut head = self.clone();
        for name in not_modified.keys() {
            if DROPPED.contains(&name.as_str()) {
                continue;
            }
            head.headers.remove(name);
            for v in not_modified.get_all(name) {
                head.headers.append(name.clone(), v.clone());
            }
        }
        if let Some(e) = not_modified.get(header::ETAG).and_then(|v| v.to_str().ok()) {
            head.etag = Some(e.to_owned());
        }
        head.freshness = Ok(freshness);
        head.fwd_status = 304;
        head
    }

    pub fn is_storable(&self) -> bool {
        self.freshness.is_ok()
    }

    /// May requests other than the one that started the fetch use it?
    pub fn is_shareable(&self) -> bool {
        self.freshness.as_ref().map_or_else(|r| r.shareable(), |_| true)
    }
}

/// A stored response.
#[derive(Debug, Clone)]
pub struct CachedObject {
    pub head: Arc<ObjectHead>,
    pub body: Bytes,
    pub freshness: Freshness,
}

impl CachedObject {
    /// Bytes charged against the memory budget: body plus an estimate of
    /// the head and bookkeeping.
    pub fn weight(&self) -> u64 {
        let headers: usize = self
            .head
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        (self.body.len() + headers + 256) as u64
    }
}
