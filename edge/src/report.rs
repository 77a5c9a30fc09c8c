//! The health reporter: every `report.interval` it builds a
//! [`HealthReport`] from the interval's counters and the process's CPU
//! time, signs it, and posts it to every cache-control replica at once.
//!
//! Sequence numbers start at the wall clock in microseconds, so a restarted
//! edge continues above its previous run; if a replica still answers 409
//! (the clock went back), the edge jumps past the sequence it names.
//!
//! Reports to a replica go over one kept-alive connection (the pooled
//! client: HTTP/2 when the replica offers it, 60 s idle timeout, far above
//! any report interval), so when this process dies its kernel closes that
//! connection and the replica notices at once (cache-control's
//! `connection-lost`). Each interval's sends run in their own task: a
//! replica that answers slowly (up to `report.timeout`) delays neither the
//! other replicas nor the next interval, so every replica hears from a live
//! edge once per interval, which that rule counts on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use outpost_proto::signature::{self, KEY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use outpost_proto::{ContentDigest, HealthReport, TierUsage};
use outpost_svc::https::Client;
use outpost_svc::tls::TlsError;
use outpost_svc::Shutdown;

use crate::config::ReportConfig;
use crate::edge::Edge;

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// CPU seconds this process used (user + system).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

struct Sample {
    at: Instant,
    cpu: f64,
}

/// How one replica answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    Accepted,
    Refused(StatusCode, String),
    Failed(String),
}

pub struct Reporter {
    edge: Arc<Edge>,
    cfg: ReportConfig,
    urls: Vec<http::Uri>,
    public_urls: Vec<String>,
    client: Client<Full<Bytes>>,
    seq: AtomicU64,
    draining: AtomicBool,
    last: Mutex<Sample>,
    /// Per replica: was the last attempt a failure (log changes only).
    failing: Vec<AtomicBool>,
    cores: f64,
}

impl Reporter {
    pub fn new(edge: Arc<Edge>, cfg: ReportConfig, listen: std::net::SocketAddr) -> Result<Arc<Self>, TlsError> {
        let client = outpost_svc::https::client(Some(&cfg.ca), cfg.timeout)?;
        let urls = cfg
            .cache_control
            .iter()
            .map(|u| {
                format!("{}/v1/reports", u.trim_end_matches('/'))
                    .parse()
                    .expect("validated in config")
            })
            .collect();
        let public_urls = if cfg.public_urls.is_empty() {
            vec![format!("https://{listen}")]
        } else {
            cfg.public_urls.clone()
        };
        let seq = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        Ok(Arc::new(Self {
            failing: cfg.cache_control.iter().map(|_| AtomicBool::new(false)).collect(),
            edge,
            cfg,
            urls,
            public_urls,
            client,
            seq: AtomicU64::new(seq),
            draining: AtomicBool::new(false),
            last: Mutex::new(Sample {
                at: Instant::now(),
                cpu: cpu_seconds(),
            }),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        }))
    }

    /// Announce (or stop announcing) that this edge takes no new players.
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Build the report for the interval since the previous one.
    pub fn build(&self) -> HealthReport {
        let (elapsed, cpu_used) = {
            let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Sample {
                at: Instant::now(),
                cpu: cpu_seconds(),
            };
            let r = (now.at.duration_since(last.at).as_secs_f64(), now.cpu - last.cpu);
            *last = now;
            r
        };
        let elapsed = elapsed.max(1e-3);
        let i = self.edge.stats.take(
            self.cfg.digest_titles,
            Instant::now(),
            crate::stats::digest_half_life(self.cfg.interval),
        );
        let m = &self.edge.metrics;
        let connections =
            m.connections.with_label_values(&["tcp"]).get() + m.connections.with_label_values(&["quic"]).get();
        let site = &self.edge.cfg.site;
        HealthReport {
            edge_id: self.edge.cfg.id.clone(),
            site: site.name.clone(),
            asns: site.asns.clone(),
            prefixes: site.prefixes.clone(),
            lat: site.lat,
            lon: site.lon,
            urls: self.public_urls.clone(),
            capacity_gbps: self.cfg.capacity_gbps,
            max_connections: self.cfg.max_connections,
            egress_gbps: i.sent_bytes as f64 * 8.0 / elapsed / 1e9,
            connections: connections.max(0) as u64,
            cpu_load: (cpu_used / elapsed / self.cores).clamp(0.0, 1.0),
            memory: TierUsage {
                used_bytes: self.edge.memory.bytes(),
                capacity_bytes: self.edge.memory.capacity(),
                objects: self.edge.memory.objects() as u64,
            },
            disk: None,
            hit_ratio: if i.finished_bytes > 0 {
                (i.hit_bytes as f64 / i.finished_bytes as f64).min(1.0)
            } else {
                0.0
            },
            requests_per_sec: i.requests as f64 / elapsed,
            digest: ContentDigest {
                top_titles: i.top_titles.into_iter().map(|(t, _)| t).collect(),
            },
            version: env!("CARGO_PKG_VERSION").to_string(),
            draining: self.is_draining(),
            seq: self.seq.fetch_add(1, Ordering::SeqCst),
            timestamp_ms: wall_ms(),
        }
    }

    /// Build, sign and send one report to every replica concurrently.
    pub async fn send_once(&self) -> Vec<Sent> {
        let report = self.build();
        let body = Bytes::from(serde_json::to_vec(&report).expect("plain data serializes"));
        let sig = signature::sign(&self.cfg.secret, report.timestamp_ms, &body);
        let key_id = self.cfg.key_id(&self.edge.cfg.id).to_string();
        let sends = self.urls.iter().map(|url| {
            let req = Request::post(url.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .header(KEY_ID_HEADER, &key_id)
                .header(TIMESTAMP_HEADER, report.timestamp_ms.to_string())
                .header(SIGNATURE_HEADER, &sig)
                .body(Full::new(body.clone()))
                .expect("valid request");
            self.post(req)
        });
        let results = futures_util::future::join_all(sends).await;
        for (i, r) in results.iter().enumerate() {
            let outcome = match r {
                Sent::Accepted => "accepted",
                Sent::Refused(..) => "refused",
                Sent::Failed(_) => "failed",
            };
            self.edge.metrics.reports.with_label_values(&[outcome]).inc();
            let was_failing = self.failing[i].swap(*r != Sent::Accepted, Ordering::Relaxed);
            let replica = &self.cfg.cache_control[i];
            match r {
                Sent::Accepted if was_failing => tracing::info!(%replica, "health reports accepted again"),
                Sent::Accepted => {}
                _ if was_failing => tracing::debug!(%replica, result = ?r, "health report not accepted"),
                _ => tracing::warn!(%replica, result = ?r, "health report not accepted"),
            }
        }
        results
    }

    async fn post(&self, req: Request<Full<Bytes>>) -> Sent {
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>((status, body))
        };
        match tokio::time::timeout(self.cfg.timeout, exchange).await {
            Err(_) => Sent::Failed(format!("no answer within {:?}", self.cfg.timeout)),
            Ok(Err(e)) => Sent::Failed(e),
            Ok(Ok((status, _))) if status.is_success() => Sent::Accepted,
            Ok(Ok((status, body))) => {
                if status == StatusCode::CONFLICT {
                    self.skip_past(&body);
                }
                Sent::Refused(status, String::from_utf8_lossy(&body).trim().to_string())
            }
        }
    }

    /// A replica remembers a higher sequence number than ours (our clock
    /// went back across a restart): continue above it.
    fn skip_past(&self, body: &[u8]) {
        let last = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("last_seq").and_then(|s| s.as_u64()));
        if let Some(last) = last {
            self.seq.fetch_max(last + 1, Ordering::SeqCst);
        }
    }

    /// Report every interval until `stop`, without waiting for the
    /// previous interval's answers (each send ends within `report.timeout`).
    pub async fn run(self: Arc<Self>, stop: Shutdown) {
        let mut tick = tokio::time::interval(self.cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait() => return,
            }
            let me = self.clone();
            tokio::spawn(async move {
                me.send_once().await;
            });
        }
    }
}
