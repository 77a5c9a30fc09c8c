//! The client side of `/v1/stream`: connect to one replica, read its
//! events, keep a [`ReplicaView`] current, and reconnect from the last
//! cursor when the connection drops or goes quiet. Steering follows every
//! replica with this; tests and tools use it to watch state changes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use outpost_proto::stream::{Cursor, EdgeView, Parsed, SseParser, StreamError, StreamEvent};
use outpost_svc::https::Client;
use outpost_svc::tls::TlsError;
use outpost_svc::Shutdown;
use tokio::sync::watch;

/// Why a subscription failed. `Connect`/`Status`/`Body` are the replica's
/// (or the network's) fault, `Stream` a replica sending bad events.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("bad replica URL `{0}`")]
    Url(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("replica answered {0}")]
    Status(StatusCode),
    #[error("stream broke: {0}")]
    Body(String),
    #[error("no event for {0:?}")]
    Quiet(Duration),
    #[error("event buffer over {0} bytes")]
    Oversized(usize),
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// Largest partial event buffered (a snapshot of many edges is big).
const MAX_PENDING: usize = 64 << 20;

/// An HTTPS client for replicas.
#[derive(Clone)]
pub struct StreamClient {
    client: Client<Empty<Bytes>>,
}

impl StreamClient {
    pub fn new(ca: Option<&Path>) -> Result<Self, TlsError> {
        Ok(Self {
            client: outpost_svc::https::client(ca, Duration::from_secs(2))?,
        })
    }

    /// Open `base/v1/stream`, resuming after `since` when given.
    pub async fn connect(&self, base: &str, since: Option<&Cursor>) -> Result<Subscription, SubscribeError> {
        let mut url = format!("{}/v1/stream", base.trim_end_matches('/'));
        if let Some(c) = since {
            url.push_str(&format!("?since={c}"));
        }
        let uri: http::Uri = url.parse().map_err(|_| SubscribeError::Url(base.to_string()))?;
        let req = Request::get(uri)
            .header(http::header::ACCEPT, "text/event-stream")
            .body(Empty::new())
            .map_err(|_| SubscribeError::Url(base.to_string()))?;
        let resp = tokio::time::timeout(Duration::from_secs(5), self.client.request(req))
            .await
            .map_err(|_| SubscribeError::Connect("timed out".into()))?
            .map_err(|e| SubscribeError::Connect(outpost_svc::error_chain(&e)))?;
        if resp.status() != StatusCode::OK {
            return Err(SubscribeError::Status(resp.status()));
        }
        Ok(Subscription {
            body: resp.into_body(),
            parser: SseParser::new(),
            ready: Default::default(),
        })
    }
}

/// One open stream.
pub struct Subscription {
    body: Incoming,
    parser: SseParser,
    ready: std::collections::VecDeque<Parsed>,
}

impl Subscription {
    /// The next event; `Ok(None)` when the replica ended the stream.
    pub async fn next(&mut self) -> Result<Option<Parsed>, SubscribeError> {
        loop {
            if let Some(p) = self.ready.pop_front() {
                return Ok(Some(p));
            }
            let frame = match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(SubscribeError::Body(e.to_string())),
                Some(Ok(f)) => f,
            };
            if let Ok(data) = frame.into_data() {
                for r in self.parser.feed(&data) {
                    self.ready.push_back(r?);
                }
                if self.parser.pending() > MAX_PENDING {
                    return Err(SubscribeError::Oversized(MAX_PENDING));
                }
            }
        }
    }

    /// The next event within `quiet`, else [`SubscribeError::Quiet`].
    pub async fn next_within(&mut self, quiet: Duration) -> Result<Option<Parsed>, SubscribeError> {
        tokio::time::timeout(quiet, self.next())
            .await
            .map_err(|_| SubscribeError::Quiet(quiet))?
    }
}

/// What one replica says, rebuilt from its stream. Pure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaView {
    pub replica: String,
    pub epoch: String,
    pub version: u64,
    pub edges: BTreeMap<String, EdgeView>,
    /// The stream is connected and has delivered a snapshot or resumed.
    pub connected: bool,
}

impl ReplicaView {
    /// Where to resume from.
    pub fn cursor(&self) -> Option<Cursor> {
        (!self.epoch.is_empty()).then(|| Cursor {
            epoch: self.epoch.clone(),
            version: self.version,
        })
    }

    /// Apply one event. Returns whether the edge set changed.
    pub fn apply(&mut self, event: StreamEvent) -> bool {
        match event {
            StreamEvent::Snapshot(s) => {
                self.replica = s.replica;
                self.epoch = s.epoch;
                self.version = s.version;
                self.edges = s.edges.into_iter().map(|e| (e.edge_id.clone(), e)).collect();
                true
            }
            StreamEvent::Change(c) => {
                if c.version <= self.version {
                    return false; // already applied (resume overlap)
                }
                self.version = c.version;
                let c = *c;
                self.edges.insert(c.edge.edge_id.clone(), c.edge);
                true
            }
            // A heartbeat only says the replica is alive; it never moves
            // the cursor (a change it announces is still on its way).
            StreamEvent::Heartbeat(_) => false,
        }
    }
}

/// Follow one replica until `shutdown`: reconnect with backoff, resume
/// from the cursor, and publish every new view on `tx`. A replica that
/// sends nothing (not even a heartbeat) for `quiet` is treated as gone and
/// marked disconnected; its last view is kept for the caller to use.
pub async fn follow(
    client: StreamClient,
    base: String,
    quiet: Duration,
    tx: watch::Sender<Arc<ReplicaView>>,
    shutdown: Shutdown,
) {
    let mut view = ReplicaView::default();
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_triggered() {
        let result = async {
            let mut sub = client.connect(&base, view.cursor().as_ref()).await?;
            loop {
                match sub.next_within(quiet).await? {
                    None => return Ok::<(), SubscribeError>(()),
                    Some(p) => {
                        let was_connected = view.connected;
                        view.connected = true;
                        if view.apply(p.event) || !was_connected {
                            tx.send_replace(Arc::new(view.clone()));
                        }
                        backoff = Duration::from_millis(100);
                    }
                }
            }
        };
        let outcome = tokio::select! {
            r = result => r,
            _ = shutdown.wait() => return,
        };
        if let Err(e) = outcome {
            tracing::warn!(replica = %base, error = %e, "state stream lost; reconnecting");
        }
        if view.connected {
            view.connected = false;
            tx.send_replace(Arc::new(view.clone()));
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_proto::stream::{Change, Heartbeat, Snapshot};
    use outpost_proto::EdgeState;

    #[test]
    fn a_view_follows_snapshot_changes_and_ignores_replays() {
        let mut v = ReplicaView::default();
        assert_eq!(v.cursor(), None);
        assert!(v.apply(StreamEvent::Snapshot(Snapshot {
            replica: "cc".into(),
            epoch: "e".into(),
            version: 3,
            edges: vec![EdgeView::bare("a", EdgeState::Up)],
        })));
        assert!(v.apply(StreamEvent::Change(Box::new(Change {
            version: 4,
            previous: Some(EdgeState::Up),
            edge: EdgeView::bare("a", EdgeState::Down),
        }))));
        assert!(!v.apply(StreamEvent::Change(Box::new(Change {
            version: 4,
            previous: Some(EdgeState::Up),
            edge: EdgeView::bare("a", EdgeState::Up),
        }))));
        assert!(!v.apply(StreamEvent::Heartbeat(Heartbeat { version: 9 })));
        assert_eq!(v.edges["a"].state, EdgeState::Down);
        assert_eq!(v.cursor().unwrap().to_string(), "e:4");
    }
}
