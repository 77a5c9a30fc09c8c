//! Prometheus metrics and the access log. Every request is recorded once,
//! when its response body is dropped (fully sent or abandoned):
//!
//! - `outpost_origin_requests_total{method,status}` (counter; `method` is
//!   `GET`, `HEAD` or `OTHER`)
//! - `outpost_origin_bytes_total` (counter of response body bytes sent)
//! - `outpost_origin_request_duration_seconds` (histogram, request received
//!   to body finished)
//!
//! and one `tracing` event with target `access`.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, StatusCode};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};
use tokio::time::Instant;

/// The origin's metrics, registered in the admin registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    requests: IntCounterVec,
    bytes: IntCounter,
    duration: Histogram,
}

impl Metrics {
    /// Create and register the metrics.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "outpost_origin_requests_total",
                "Requests answered, by method and status.",
            ),
            &["method", "status"],
        )?;
        let bytes = IntCounter::new("outpost_origin_bytes_total", "Response body bytes sent.")?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "outpost_origin_request_duration_seconds",
                "Time from request received to response body finished.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self {
            requests,
            bytes,
            duration,
        })
    }
}

/// The `method` label: known methods by name, the rest as `OTHER` (keeps
/// the label set bounded whatever clients send).
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

/// The protocol as logged: `http/1.0`, `http/1.1`, `h2`.
pub fn protocol_label(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "http/0.9",
        http::Version::HTTP_10 => "http/1.0",
        http::Version::HTTP_11 => "http/1.1",
        http::Version::HTTP_2 => "h2",
        http::Version::HTTP_3 => "h3",
        _ => "other",
    }
}

/// One request, recorded when dropped.
pub struct RequestRecord {
    metrics: Arc<Metrics>,
    pub method: Method,
    /// The raw request path (as received, without the query).
    pub path: String,
    pub status: StatusCode,
    pub protocol: &'static str,
    pub peer: SocketAddr,
    pub started: Instant,
    /// Body bytes handed to the connection so far.
    pub bytes: u64,
    /// Whether the whole body was sent.
    pub complete: bool,
}

impl RequestRecord {
    pub fn new(
        metrics: Arc<Metrics>,
        method: Method,
        path: String,
        protocol: &'static str,
        peer: SocketAddr,
        started: Instant,
    ) -> Self {
        Self {
            metrics,
            method,
            path,
            status: StatusCode::OK,
            protocol,
            peer,
            started,
            bytes: 0,
            complete: false,
        }
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let m = &self.metrics;
        m.requests
            .with_label_values(&[method_label(&self.method), self.status.as_str()])
            .inc();
        m.bytes.inc_by(self.bytes);
        m.duration.observe(elapsed.as_secs_f64());
        tracing::info!(
            target: "access",
            method = %self.method,
            path = %self.path,
            status = self.status.as_u16(),
            bytes = self.bytes,
            complete = self.complete,
            protocol = self.protocol,
            client = %self.peer,
            ms = %format_args!("{:.3}", elapsed.as_secs_f64() * 1000.0),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    #[test]
    fn records_count_requests_and_bytes() {
        let registry = Registry::new();
        let metrics = Arc::new(Metrics::new(&registry).unwrap());
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for (method, status, bytes) in [(Method::GET, 200, 10), (Method::GET, 200, 5), (Method::PUT, 405, 0)] {
            let mut r = RequestRecord::new(metrics.clone(), method, "/x".into(), "h2", peer, Instant::now());
            r.status = StatusCode::from_u16(status).unwrap();
            r.bytes = bytes;
        }
        let mut out = Vec::new();
        TextEncoder::new().encode(&registry.gather(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(r#"outpost_origin_requests_total{method="GET",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"outpost_origin_requests_total{method="OTHER",status="405"} 1"#),
            "{text}"
        );
        assert!(text.contains("outpost_origin_bytes_total 15"), "{text}");
        assert!(
            text.contains("outpost_origin_request_duration_seconds_count 3"),
            "{text}"
        );
        // A second registry gets its own metrics (several origins per process).
        assert!(Metrics::new(&Registry::new()).is_ok());
    }

    #[test]
    fn labels() {
        assert_eq!(method_label(&Method::HEAD), "HEAD");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
        assert_eq!(protocol_label(http::Version::HTTP_11), "http/1.1");
        assert_eq!(protocol_label(http::Version::HTTP_2), "h2");
    }
}
