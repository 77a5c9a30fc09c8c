//! Miss collapsing, as pure state: what a request does given what is
//! stored and what is in flight ([`plan`]), and the state of one shared
//! upstream fill that every waiting request reads while it is written
//! ([`FillState`]).
//!
//! No IO, no clock, no tasks: the async shell (`crate::fill`) wraps a
//! `FillState` in a mutex and wakes readers after every transition.

use std::sync::Arc;

use bytes::Bytes;

use super::freshness::Age;
use super::object::ObjectHead;

/// Why an upstream fetch failed, and so which status the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Could not connect, or the connection broke: 502.
    #[error("upstream unreachable: {0}")]
    Connect(String),
    /// No first byte or no progress within the configured timeout: 504.
    #[error("upstream timed out: {0}")]
    Timeout(String),
    /// Upstream answered something unusable (bad framing, 5xx after retries): 502.
    #[error("upstream error: {0}")]
    Upstream(String),
    /// The body ended before Content-Length bytes arrived: 502, or a cut
    /// connection if bytes were already sent.
    #[error("upstream body truncated at {received} of {expected} bytes")]
    Truncated { received: u64, expected: u64 },
    /// The upstream (a parent edge) refused the playback token with its
    /// marked 401/403: the one forwarded to it, or none (an http://
    /// upstream). This edge had accepted the token, so the tiers' keys,
    /// clocks or configuration disagree, which is not the player's fault. 502.
    #[error("upstream refused the playback token: {0}")]
    TokenRefused(String),
}

impl FetchError {
    /// The status a client gets when this happens before any byte was sent.
    pub fn status(&self) -> http::StatusCode {
        match self {
            FetchError::Timeout(_) => http::StatusCode::GATEWAY_TIMEOUT,
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }

    /// Metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            FetchError::Connect(_) => "connect",
            FetchError::Timeout(_) => "timeout",
            FetchError::Upstream(_) => "upstream",
            FetchError::Truncated { .. } => "truncated",
            FetchError::TokenRefused(_) => "token-refused",
        }
    }
}

/// What one request does about its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Answer from the stored copy.
    Serve,
    /// Answer from the stored (stale) copy and start a background
    /// revalidation unless one is in flight.
    ServeStaleAndRevalidate { start_fill: bool },
    /// Read the fill already in flight.
    Join,
    /// Start a fill (a conditional one when a stale copy exists) and read it.
    Fetch { revalidate: bool },
    /// The key is known to be uncacheable: fetch for this request alone.
    Pass,
}

/// Decide what a request does. `stored` is the age of the stored copy, if
/// any; `in_flight` whether a fill for the key runs; `uncacheable` whether
/// the key was recently found uncacheable.
pub fn plan(stored: Option<Age>, in_flight: bool, uncacheable: bool) -> Plan {
    match (stored, in_flight) {
        (Some(Age::Fresh), _) => Plan::Serve,
        (Some(Age::StaleWhileRevalidate), f) => Plan::ServeStaleAndRevalidate { start_fill: !f },
        (_, true) => Plan::Join,
        (_, false) if uncacheable => Plan::Pass,
        (Some(Age::Stale), false) => Plan::Fetch { revalidate: true },
        (None, false) => Plan::Fetch { revalidate: false },
    }
}

/// May a request that joined a fill use its response? The request that
/// started the fill always may; others only when the response is
/// shareable (see [`NotStorable::shareable`](super::NotStorable::shareable)).
/// A follower that may not goes upstream alone, so a `private` answer is
/// never handed to a second client.
pub fn follower_may_use(is_owner: bool, head: &ObjectHead) -> bool {
    is_owner || head.is_shareable()
}

/// A transition the fill's writer was not allowed to make: a bug in the
/// shell, reported rather than panicking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FillViolation {
    #[error("head published twice")]
    HeadTwice,
    #[error("body before head")]
    BodyBeforeHead,
    #[error("write after the fill ended")]
    AfterEnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Open,
    Complete,
    Failed(FetchError),
}

/// One upstream fill: a head, body chunks in arrival order, and how it ended.
#[derive(Debug)]
pub struct FillState {
    head: Option<Arc<ObjectHead>>,
    chunks: Vec<Bytes>,
    received: u64,
    end: End,
}

/// What a reader waiting for the head gets.
#[derive(Debug, Clone)]
pub enum HeadStep {
    Ready(Arc<ObjectHead>),
    Pending,
    Failed(FetchError),
}

/// What a reader at chunk index `next` gets.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadStep {
    Chunk(Bytes),
    Pending,
    End,
    Failed(FetchError),
}

impl Default for FillState {
    fn default() -> Self {
        Self::new()
    }
}

impl FillState {
    pub fn new() -> Self {
        Self {
            head: None,
            chunks: Vec::new(),
            received: 0,
            end: End::Open,
        }
    }

    pub fn publish_head(&mut self, head: Arc<ObjectHead>) -> Result<(), FillViolation> {
        if self.end != End::Open {
            return Err(FillViolation::AfterEnd);
        }
        if self.head.is_some() {
            return Err(FillViolation::HeadTwice);
        }
        self.head = Some(head);
        Ok(())
    }

    pub fn push(&mut self, chunk: Bytes) -> Result<(), FillViolation> {
        if self.end != End::Open {
            return Err(FillViolation::AfterEnd);
        }
        if self.head.is_none() {
            return Err(FillViolation::BodyBeforeHead);
        }
        if !chunk.is_empty() {
            self.received += chunk.len() as u64;
            self.chunks.push(chunk);
        }
        Ok(())
    }

    /// The body ended. A body shorter than the announced Content-Length
    /// turns into a failure, so nobody stores or serves a truncated object
    /// as complete. Returns the final outcome.
    pub fn complete(&mut self) -> Result<Result<(), FetchError>, FillViolation> {
        if self.end != End::Open {
            return Err(FillViolation::AfterEnd);
        }
        let Some(head) = &self.head else {
            return Err(FillViolation::BodyBeforeHead);
        };
        match head.content_length {
            Some(expected) if expected != self.received => {
                let e = FetchError::Truncated {
                    received: self.received,
                    expected,
                };
                self.end = End::Failed(e.clone());
                Ok(Err(e))
            }
            _ => {
                self.end = End::Complete;
                Ok(Ok(()))
            }
        }
    }

    /// The fetch failed. A no-op when the fill already ended.
    pub fn fail(&mut self, e: FetchError) {
        if self.end == End::Open {
            self.end = End::Failed(e);
        }
    }

    pub fn head(&self) -> HeadStep {
        match (&self.head, &self.end) {
            (Some(h), _) => HeadStep::Ready(h.clone()),
            (None, End::Failed(e)) => HeadStep::Failed(e.clone()),
            (None, _) => HeadStep::Pending,
        }
    }

    pub fn read(&self, next: usize) -> ReadStep {
        if let End::Failed(e) = &self.end {
            return ReadStep::Failed(e.clone());
        }
        match self.chunks.get(next) {
            Some(c) => ReadStep::Chunk(c.clone()),
            None if self.end == End::Complete => ReadStep::End,
            None => ReadStep::Pending,
        }
    }

    /// The failure, if the fill failed (even after its head was published).
    pub fn failure(&self) -> Option<FetchError> {
        match &self.end {
            End::Failed(e) => Some(e.clone()),
            _ => None,
        }
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// The body's chunks, once complete (cheap: reference-counted).
    pub fn chunks(&self) -> Option<Vec<Bytes>> {
        (self.end == End::Complete).then(|| self.chunks.clone())
    }
}

/// Join chunks into one buffer: the one copy a stored fill costs (done by
/// the caller outside any lock).
pub fn concat(chunks: &[Bytes]) -> Bytes {
    match chunks {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut buf = bytes::BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
            for c in many {
                buf.extend_from_slice(c);
            }
            buf.freeze()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::freshness::NotStorable;
    use http::{HeaderMap, StatusCode};

    fn head(len: Option<u64>, storable: bool) -> Arc<ObjectHead> {
        let mut h = HeaderMap::new();
        if let Some(l) = len {
            h.insert(http::header::CONTENT_LENGTH, l.into());
        }
        let fr = if storable {
            crate::cache::freshness::freshness(
                StatusCode::OK,
                &[(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static("max-age=60"),
                )]
                .into_iter()
                .collect(),
                std::time::SystemTime::UNIX_EPOCH,
                Default::default(),
            )
        } else {
            Err(NotStorable::Private)
        };
        Arc::new(ObjectHead::from_upstream(StatusCode::OK, &h, fr))
    }

    #[test]
    fn plan_table() {
        use Age::*;
        for in_flight in [false, true] {
            for unc in [false, true] {
                assert_eq!(plan(Some(Fresh), in_flight, unc), Plan::Serve);
                assert_eq!(
                    plan(Some(StaleWhileRevalidate), in_flight, unc),
                    Plan::ServeStaleAndRevalidate { start_fill: !in_flight }
                );
            }
        }
        assert_eq!(plan(None, true, false), Plan::Join);
        assert_eq!(
            plan(None, true, true),
            Plan::Join,
            "a fill in flight is joined even if marked"
        );
        assert_eq!(plan(Some(Stale), true, false), Plan::Join);
        assert_eq!(plan(None, false, true), Plan::Pass);
        assert_eq!(plan(Some(Stale), false, true), Plan::Pass);
        assert_eq!(plan(Some(Stale), false, false), Plan::Fetch { revalidate: true });
        assert_eq!(plan(None, false, false), Plan::Fetch { revalidate: false });
    }

    #[test]
    fn readers_see_bytes_as_they_arrive() {
        let mut f = FillState::new();
        assert!(matches!(f.head(), HeadStep::Pending));
        assert_eq!(f.read(0), ReadStep::Pending);
        f.publish_head(head(Some(6), true)).unwrap();
        assert!(matches!(f.head(), HeadStep::Ready(_)));
        f.push(Bytes::from_static(b"abc")).unwrap();
        assert_eq!(f.read(0), ReadStep::Chunk(Bytes::from_static(b"abc")));
        assert_eq!(f.read(1), ReadStep::Pending, "a follower waits, it is not told the end");
        f.push(Bytes::new()).unwrap();
        assert_eq!(f.read(1), ReadStep::Pending, "empty chunks are not stored");
        f.push(Bytes::from_static(b"def")).unwrap();
        assert_eq!(f.complete().unwrap(), Ok(()));
        assert_eq!(f.read(1), ReadStep::Chunk(Bytes::from_static(b"def")));
        assert_eq!(f.read(2), ReadStep::End);
        assert_eq!(concat(&f.chunks().unwrap()), Bytes::from_static(b"abcdef"));
        assert_eq!(f.received(), 6);
    }

    #[test]
    fn short_body_is_a_failure_not_an_object() {
        let mut f = FillState::new();
        f.publish_head(head(Some(10), true)).unwrap();
        f.push(Bytes::from_static(b"abc")).unwrap();
        let r = f.complete().unwrap();
        assert_eq!(
            r,
            Err(FetchError::Truncated {
                received: 3,
                expected: 10
            })
        );
        assert!(
            matches!(f.read(0), ReadStep::Failed(_)),
            "readers learn of the failure, even mid-body"
        );
        assert_eq!(f.chunks(), None);
    }

    #[test]
    fn failure_before_head_reaches_waiters() {
        let mut f = FillState::new();
        f.fail(FetchError::Timeout("first byte".into()));
        assert!(matches!(f.head(), HeadStep::Failed(FetchError::Timeout(_))));
        assert!(f.failure().is_some());
        f.fail(FetchError::Connect("x".into()));
        assert!(
            matches!(f.head(), HeadStep::Failed(FetchError::Timeout(_))),
            "first failure wins"
        );
        assert_eq!(FetchError::Timeout(String::new()).status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(FetchError::Connect(String::new()).status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn writer_violations_are_errors() {
        let mut f = FillState::new();
        assert_eq!(f.push(Bytes::from_static(b"x")), Err(FillViolation::BodyBeforeHead));
        assert_eq!(f.complete(), Err(FillViolation::BodyBeforeHead));
        f.publish_head(head(None, true)).unwrap();
        assert_eq!(f.publish_head(head(None, true)), Err(FillViolation::HeadTwice));
        assert_eq!(f.complete().unwrap(), Ok(()), "unknown length completes on end of body");
        assert_eq!(f.push(Bytes::from_static(b"x")), Err(FillViolation::AfterEnd));
        assert_eq!(f.complete(), Err(FillViolation::AfterEnd));
        f.fail(FetchError::Connect("late".into()));
        assert_eq!(f.read(0), ReadStep::End, "a late failure does not undo completion");
    }

    #[test]
    fn private_answers_go_to_the_owner_only() {
        assert!(follower_may_use(true, &head(None, false)));
        assert!(!follower_may_use(false, &head(None, false)));
        assert!(follower_may_use(false, &head(None, true)));
    }
}
