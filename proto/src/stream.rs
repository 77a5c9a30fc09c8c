//! The edge-state stream cache-control serves to steering: what each
//! replica believes about every edge, as a snapshot followed by changes.
//!
//! Framing is Server-Sent Events (`text/event-stream`), so a browser's
//! `EventSource` can follow it too:
//!
//! ```text
//! event: snapshot            event: change             event: heartbeat
//! id: <epoch>:<version>      id: <epoch>:<version>    id: <epoch>:<version>
//! data: {Snapshot json}      data: {Change json}      data: {"version":N}
//! ```
//!
//! A subscriber resumes with `?since=<epoch>:<version>` (or the
//! `Last-Event-ID` header). The epoch names one run of one replica; after
//! a replica restart the epoch differs and the subscriber gets a fresh
//! snapshot. This module only encodes and parses; it does no IO.

use serde::{Deserialize, Serialize};

use crate::HealthReport;

/// What cache-control believes about an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeState {
    /// Reporting, below its load thresholds: steering may send players.
    Up,
    /// Reporting but above a CPU / bandwidth / connection threshold:
    /// steering uses it only when nothing else is left.
    Overloaded,
    /// Shutting down or taken out by its operator: no new players.
    Draining,
    /// Silent for too long, never reported, or not yet re-admitted.
    Down,
}

impl EdgeState {
    pub const ALL: [EdgeState; 4] = [
        EdgeState::Up,
        EdgeState::Overloaded,
        EdgeState::Draining,
        EdgeState::Down,
    ];

    /// Metric label and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeState::Up => "up",
            EdgeState::Overloaded => "overloaded",
            EdgeState::Draining => "draining",
            EdgeState::Down => "down",
        }
    }
}

/// One edge as a cache-control replica sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeView {
    pub edge_id: String,
    pub state: EdgeState,
    /// Why it is in that state (`missed-reports`, `cpu`, `bandwidth`,
    /// `connections`, `draining`, `never-reported`, `readmitting`).
    pub reasons: Vec<String>,
    /// Declared in the replica's config (known before its first report).
    pub declared: bool,
    /// Milliseconds since the replica accepted its last report, when the
    /// view was made. None if it never reported to this replica.
    pub last_report_age_ms: Option<u64>,
    /// Consecutive good reports while being re-admitted.
    pub good_streak: u32,
    /// The last accepted report (location, URLs, load, digest).
    pub report: Option<HealthReport>,
}

impl EdgeView {
    /// An edge with no report yet and no reasons (tests, tools).
    pub fn bare(edge_id: impl Into<String>, state: EdgeState) -> Self {
        Self {
            edge_id: edge_id.into(),
            state,
            reasons: vec![],
            declared: true,
            last_report_age_ms: None,
            good_streak: 0,
            report: None,
        }
    }
}

/// The full state at one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The replica's name.
    pub replica: String,
    /// One run of one replica; versions restart with a new epoch.
    pub epoch: String,
    pub version: u64,
    pub edges: Vec<EdgeView>,
}

/// One edge's new view, at `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub version: u64,
    /// The state before this change (None for a load-only update or a
    /// first sighting).
    pub previous: Option<EdgeState>,
    pub edge: EdgeView,
}

/// A heartbeat: nothing changed, the replica is alive at `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub version: u64,
}

/// One event of the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Snapshot(Snapshot),
    Change(Box<Change>),
    Heartbeat(Heartbeat),
}

/// A resume point: `<epoch>:<version>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub epoch: String,
    pub version: u64,
}

impl Cursor {
    pub fn parse(s: &str) -> Option<Cursor> {
        let (epoch, version) = s.trim().rsplit_once(':')?;
        if epoch.is_empty() {
            return None;
        }
        Some(Cursor {
            epoch: epoch.to_string(),
            version: version.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.epoch, self.version)
    }
}

/// Why a stream event could not be read. The replica's fault.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("unknown event type `{0}`")]
    UnknownEvent(String),
    #[error("bad `{event}` event: {source}")]
    Json { event: String, source: serde_json::Error },
}

impl StreamEvent {
    fn name(&self) -> &'static str {
        match self {
            StreamEvent::Snapshot(_) => "snapshot",
            StreamEvent::Change(_) => "change",
            StreamEvent::Heartbeat(_) => "heartbeat",
        }
    }

    pub fn version(&self) -> u64 {
        match self {
            StreamEvent::Snapshot(s) => s.version,
            StreamEvent::Change(c) => c.version,
            StreamEvent::Heartbeat(h) => h.version,
        }
    }

    /// Encode as one SSE event (ends with a blank line). JSON has no raw
    /// newlines, so each event is a single `data:` line.
    pub fn to_sse(&self, epoch: &str) -> String {
        let data = match self {
            StreamEvent::Snapshot(s) => serde_json::to_string(s),
            StreamEvent::Change(c) => serde_json::to_string(c),
            StreamEvent::Heartbeat(h) => serde_json::to_string(h),
        }
        .expect("plain data serializes");
        format!(
            "event: {}\nid: {}:{}\ndata: {}\n\n",
            self.name(),
            epoch,
            self.version(),
            data
        )
    }
}

/// Incremental SSE parser: feed bytes as they arrive, take whole events.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    id: Option<String>,
    data: String,
}

/// One parsed event with the id it carried.
#[derive(Debug)]
pub struct Parsed {
    pub id: Option<Cursor>,
    pub event: StreamEvent,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes buffered but not yet a whole line (a subscriber bounds this).
    pub fn pending(&self) -> usize {
        self.buf.len() + self.data.len()
    }

    /// Append bytes; return the events they complete, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Parsed, StreamError>> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.buf[start..start + nl]).into_owned();
            start += nl + 1;
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                if let Some(ev) = self.dispatch() {
                    out.push(ev);
                }
                continue;
            }
            if line.starts_with(':') {
                continue; // comment / keep-alive
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event = Some(value.to_string()),
                "id" => self.id = Some(value.to_string()),
                "data" => {
                    if !self.data.is_empty() {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                }
                _ => {}
            }
        }
        self.buf.drain(..start);
        out
    }

    fn dispatch(&mut self) -> Option<Result<Parsed, StreamError>> {
        let event = self.event.take();
        let id = self.id.take().and_then(|i| Cursor::parse(&i));
        let data = std::mem::take(&mut self.data);
        let name = event?;
        let json = |e: serde_json::Error| StreamError::Json {
            event: name.clone(),
            source: e,
        };
        let parsed = match name.as_str() {
            "snapshot" => serde_json::from_str(&data).map(StreamEvent::Snapshot).map_err(json),
            "change" => serde_json::from_str(&data)
                .map(|c| StreamEvent::Change(Box::new(c)))
                .map_err(json),
            "heartbeat" => serde_json::from_str(&data).map(StreamEvent::Heartbeat).map_err(json),
            other => Err(StreamError::UnknownEvent(other.to_string())),
        };
        Some(parsed.map(|event| Parsed { id, event }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, state: EdgeState) -> EdgeView {
        EdgeView {
            last_report_age_ms: Some(12),
            ..EdgeView::bare(id, state)
        }
    }

    #[test]
    fn events_round_trip_through_sse_in_any_chunking() {
        let events = vec![
            StreamEvent::Snapshot(Snapshot {
                replica: "cc-a".into(),
                epoch: "e1".into(),
                version: 4,
                edges: vec![view("a", EdgeState::Up), view("b", EdgeState::Down)],
            }),
            StreamEvent::Change(Box::new(Change {
                version: 5,
                previous: Some(EdgeState::Up),
                edge: view("a", EdgeState::Down),
            })),
            StreamEvent::Heartbeat(Heartbeat { version: 5 }),
        ];
        let text: String = events.iter().map(|e| e.to_sse("e1")).collect::<String>() + ": keep-alive\n\n";
        for chunk in [1, 3, 7, 64, text.len()] {
            let mut p = SseParser::new();
            let mut got = Vec::new();
            for part in text.as_bytes().chunks(chunk) {
                got.extend(p.feed(part).into_iter().map(|r| r.unwrap()));
            }
            assert_eq!(got.len(), 3, "chunk {chunk}");
            for (g, e) in got.iter().zip(&events) {
                assert_eq!(&g.event, e);
                assert_eq!(
                    g.id,
                    Some(Cursor {
                        epoch: "e1".into(),
                        version: e.version()
                    })
                );
            }
            assert_eq!(p.pending(), 0);
        }
    }

    #[test]
    fn bad_events_are_errors_not_panics() {
        let mut p = SseParser::new();
        let r = p.feed(b"event: change\ndata: {nope\n\nevent: weird\ndata: {}\n\n\n\ndata: orphan\n\n");
        assert_eq!(r.len(), 2);
        assert!(matches!(r[0], Err(StreamError::Json { .. })));
        assert!(matches!(r[1], Err(StreamError::UnknownEvent(_))));
    }

    #[test]
    fn cursors_parse() {
        assert_eq!(
            Cursor::parse("abc:12"),
            Some(Cursor {
                epoch: "abc".into(),
                version: 12
            })
        );
        assert_eq!(Cursor::parse(":12"), None);
        assert_eq!(Cursor::parse("abc"), None);
        assert_eq!(Cursor::parse("abc:x"), None);
    }
}
