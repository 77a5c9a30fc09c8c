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
//! `connection-lost`).
//!
//! Each replica has one sender task that sends one report at a time and
//! keeps only the newest report waiting: a replica that answers slowly (up
//! to `report.timeout`) delays neither the other replicas nor the next
//! interval, and reports to one replica never overlap, so a later report is
//! never admitted before an earlier one (which would then be refused 409,
//! jump the sequence and flap the WARN). A report that waited while a newer
//! one was built is dropped for that replica (reports carry rates over
//! their interval, so the replica just sees a longer gap). A report that
//! changes `draining`, and the draining report sent on stop, cancel a send
//! still in flight instead of queuing behind it; [`Reporter::send_once`]
//! waits for every replica's answer to its report.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use outpost_proto::signature::{self, KEY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use outpost_proto::{ContentDigest, HealthReport, TierUsage};
use outpost_svc::https::Client;
use outpost_svc::tls::TlsError;
use outpost_svc::Shutdown;
use tokio::sync::watch;

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

/// One signed report, ready to post to any replica.
#[derive(Debug)]
struct Job {
    seq: u64,
    draining: bool,
    /// The draining report on stop: it cancels a send in flight.
    urgent: bool,
    timestamp_ms: u64,
    body: Bytes,
    sig: String,
}

/// Whether `newer` should cancel the send of `in_flight` rather than wait
/// for it: only a newer report that changes `draining` (steering must learn
/// it now) or is urgent (the draining report on stop). Pure.
fn supersedes(in_flight: &Job, newer: &Job) -> bool {
    newer.seq > in_flight.seq && (newer.urgent || newer.draining != in_flight.draining)
}

/// One replica's sender: sends the newest report in `rx` with `post`, one
/// at a time, never one older than a report already sent; reports that
/// were replaced while a send was in flight are never sent. Publishes
/// `(seq, outcome)` of every finished send in `done`. Ends when the sending
/// side of `rx` is gone.
async fn replica_sender<F, Fut>(
    mut rx: watch::Receiver<Option<Arc<Job>>>,
    done: watch::Sender<Option<(u64, Sent)>>,
    mut post: F,
) where
    F: FnMut(Arc<Job>) -> Fut,
    Fut: Future<Output = Sent>,
{
    let mut last = 0u64;
    loop {
        let newest = rx.borrow_and_update().clone();
        let job = match newest {
            Some(job) if job.seq > last => job,
            _ => {
                if rx.changed().await.is_err() {
                    return;
                }
                continue;
            }
        };
        last = job.seq;
        let send = post(job.clone());
        tokio::pin!(send);
        let mut open = true;
        let outcome = loop {
            tokio::select! {
                r = &mut send => break Some(r),
                changed = rx.changed(), if open => {
                    open = changed.is_ok();
                    if rx.borrow().as_ref().is_some_and(|newer| supersedes(&job, newer)) {
                        break None;
                    }
                }
            }
        };
        match outcome {
            Some(sent) => {
                done.send_replace(Some((job.seq, sent)));
            }
            None => tracing::debug!(seq = job.seq, "health report superseded while in flight"),
        }
    }
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
    /// Per replica: the newest report for its sender task.
    outbox: Vec<watch::Sender<Option<Arc<Job>>>>,
    /// Per replica: the sequence number and outcome of its last finished send.
    done: Vec<watch::Sender<Option<(u64, Sent)>>>,
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
        let replicas = cfg.cache_control.len();
        let outbox: Vec<_> = (0..replicas).map(|_| watch::channel(None).0).collect();
        let done: Vec<_> = (0..replicas).map(|_| watch::channel(None).0).collect();
        Ok(Arc::new_cyclic(|me: &Weak<Self>| {
            for (i, (tx, done)) in outbox.iter().zip(&done).enumerate() {
                let me = me.clone();
                let post = move |job: Arc<Job>| {
                    let me = me.clone();
                    async move {
                        match me.upgrade() {
                            Some(me) => me.deliver(i, &job).await,
                            None => Sent::Failed("reporter stopped".into()),
                        }
                    }
                };
                tokio::spawn(replica_sender(tx.subscribe(), done.clone(), post));
            }
            Self {
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
                outbox,
                done,
            }
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

    /// Build and sign one report and hand it to every replica's sender.
    fn publish(&self, urgent: bool) -> u64 {
        let report = self.build();
        let body = Bytes::from(serde_json::to_vec(&report).expect("plain data serializes"));
        let job = Arc::new(Job {
            seq: report.seq,
            draining: report.draining,
            urgent,
            timestamp_ms: report.timestamp_ms,
            sig: signature::sign(&self.cfg.secret, report.timestamp_ms, &body),
            body,
        });
        // Reports are numbered when built and queued after signing, so two
        // publishers (the ticker and the stop) can queue out of order: a
        // replica's slot only ever moves to a newer report.
        for tx in &self.outbox {
            tx.send_if_modified(|cur| {
                if cur.as_ref().is_some_and(|c| c.seq > job.seq) {
                    return false;
                }
                *cur = Some(job.clone());
                true
            });
        }
        job.seq
    }

    /// Send one report to every replica now and wait for their answers (the
    /// draining report on stop). A send still in flight to a replica is
    /// cancelled, so the answers come within `report.timeout`; nothing older
    /// is sent after it.
    pub async fn send_once(&self) -> Vec<Sent> {
        let seq = self.publish(true);
        let bound = self.cfg.timeout * 2 + std::time::Duration::from_secs(1);
        let waits = self.done.iter().map(|done| {
            let mut rx = done.subscribe();
            async move {
                let answer = rx.wait_for(|d| d.as_ref().is_some_and(|(s, _)| *s >= seq));
                match tokio::time::timeout(bound, answer).await {
                    Ok(Ok(d)) => d.as_ref().map_or(Sent::Failed("no answer".into()), |(_, r)| r.clone()),
                    Ok(Err(_)) => Sent::Failed("report sender stopped".into()),
                    Err(_) => Sent::Failed(format!("no answer within {bound:?}")),
                }
            }
        });
        futures_util::future::join_all(waits).await
    }

    /// Post one report to replica `i`; count and log the outcome.
    async fn deliver(&self, i: usize, job: &Job) -> Sent {
        let req = Request::post(self.urls[i].clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(KEY_ID_HEADER, self.cfg.key_id(&self.edge.cfg.id))
            .header(TIMESTAMP_HEADER, job.timestamp_ms.to_string())
            .header(SIGNATURE_HEADER, &job.sig)
            .body(Full::new(job.body.clone()))
            .expect("valid request");
        let r = self.post(req).await;
        let outcome = match r {
            Sent::Accepted => "accepted",
            Sent::Refused(..) => "refused",
            Sent::Failed(_) => "failed",
        };
        self.edge.metrics.reports.with_label_values(&[outcome]).inc();
        let was_failing = self.failing[i].swap(r != Sent::Accepted, Ordering::Relaxed);
        let replica = &self.cfg.cache_control[i];
        match &r {
            Sent::Accepted if was_failing => tracing::info!(%replica, "health reports accepted again"),
            Sent::Accepted => {}
            _ if was_failing => tracing::debug!(%replica, result = ?r, "health report not accepted"),
            _ => tracing::warn!(%replica, result = ?r, "health report not accepted"),
        }
        r
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

    /// Report every interval until `stop`, without waiting for answers:
    /// each replica's sender takes the newest report when it is free.
    pub async fn run(self: Arc<Self>, stop: Shutdown) {
        let mut tick = tokio::time::interval(self.cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait() => return,
            }
            self.publish(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn job(seq: u64, draining: bool, urgent: bool) -> Arc<Job> {
        Arc::new(Job {
            seq,
            draining,
            urgent,
            timestamp_ms: seq,
            body: Bytes::new(),
            sig: String::new(),
        })
    }

    #[test]
    fn only_a_draining_change_or_the_stop_report_cancels_a_send() {
        let (a, b) = (job(1, false, false), job(2, false, false));
        assert!(!supersedes(&a, &b), "a plain newer report waits");
        assert!(supersedes(&a, &job(2, true, false)), "draining now");
        assert!(supersedes(&job(1, true, false), &job(2, false, false)), "undrained");
        assert!(
            supersedes(&job(1, true, false), &job(2, true, true)),
            "the report on stop"
        );
        assert!(!supersedes(&b, &job(1, true, true)), "never an older one");
        assert!(!supersedes(&b, &b));
    }

    /// A fake replica: every post takes `delay`; records what was posted,
    /// which posts finished, and the most posts in flight at once.
    #[derive(Clone, Default)]
    struct Replica {
        posted: Arc<Mutex<Vec<u64>>>,
        finished: Arc<Mutex<Vec<u64>>>,
        in_flight: Arc<AtomicU64>,
        max_in_flight: Arc<AtomicU64>,
    }

    type Outbox = watch::Sender<Option<Arc<Job>>>;
    type Answers = watch::Receiver<Option<(u64, Sent)>>;

    impl Replica {
        fn start(&self, delay: Duration) -> (Outbox, Answers) {
            let (tx, rx) = watch::channel(None);
            let (done, done_rx) = watch::channel(None);
            let me = self.clone();
            tokio::spawn(replica_sender(rx, done, move |job: Arc<Job>| {
                let me = me.clone();
                async move {
                    me.posted.lock().unwrap().push(job.seq);
                    let n = me.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    me.max_in_flight.fetch_max(n, Ordering::SeqCst);
                    // Counted down even when the send is cancelled.
                    struct Dec(Arc<AtomicU64>);
                    impl Drop for Dec {
                        fn drop(&mut self) {
                            self.0.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    let _dec = Dec(me.in_flight.clone());
                    tokio::time::sleep(delay).await;
                    me.finished.lock().unwrap().push(job.seq);
                    Sent::Accepted
                }
            }));
            (tx, done_rx)
        }
        fn posted(&self) -> Vec<u64> {
            self.posted.lock().unwrap().clone()
        }
        fn finished(&self) -> Vec<u64> {
            self.finished.lock().unwrap().clone()
        }
    }

    async fn done_with(rx: &mut watch::Receiver<Option<(u64, Sent)>>, seq: u64) -> Instant {
        tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|d| d.as_ref().is_some_and(|(s, _)| *s >= seq)),
        )
        .await
        .expect("answered")
        .expect("sender alive");
        Instant::now()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_replica_gets_one_report_at_a_time_the_newest_and_delays_no_one() {
        // Reports every 100 ms; the slow replica takes 450 ms per report
        // (timeout ≥ interval), the fast one answers at once.
        let (slow, fast) = (Replica::default(), Replica::default());
        let (slow_tx, mut slow_done) = slow.start(Duration::from_millis(450));
        let (fast_tx, mut fast_done) = fast.start(Duration::ZERO);
        for seq in 1..=10 {
            slow_tx.send_replace(Some(job(seq, false, false)));
            fast_tx.send_replace(Some(job(seq, false, false)));
            done_with(&mut fast_done, seq).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            fast.posted(),
            (1..=10).collect::<Vec<_>>(),
            "the fast replica hears every report"
        );
        done_with(&mut slow_done, 10).await;
        let posted = slow.posted();
        assert_eq!(
            slow.max_in_flight.load(Ordering::SeqCst),
            1,
            "never two reports in flight: {posted:?}"
        );
        assert!(posted.windows(2).all(|w| w[0] < w[1]), "in order: {posted:?}");
        assert!(
            posted.len() < 10,
            "reports that waited were replaced by newer ones: {posted:?}"
        );
        assert_eq!(posted.first(), Some(&1));
        assert_eq!(posted.last(), Some(&10), "the newest report is sent");
        assert_eq!(slow.finished(), posted, "no send was cancelled");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_report_on_stop_cancels_a_send_in_flight() {
        let slow = Replica::default();
        let (tx, mut done) = slow.start(Duration::from_millis(800));
        tx.send_replace(Some(job(1, false, false)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t0 = Instant::now();
        tx.send_replace(Some(job(2, true, true)));
        let answered = done_with(&mut done, 2).await;
        let took = answered - t0;
        assert!(
            took < Duration::from_millis(1300),
            "did not wait for report 1: {took:?}"
        );
        assert_eq!(slow.posted(), vec![1, 2]);
        assert_eq!(
            slow.finished(),
            vec![2],
            "report 1 was cancelled, never answered after 2"
        );
        assert_eq!(slow.max_in_flight.load(Ordering::SeqCst), 1);
        assert!(matches!(&*done.borrow(), Some((2, Sent::Accepted))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_plain_report_waits_for_the_one_in_flight() {
        let slow = Replica::default();
        let (tx, mut done) = slow.start(Duration::from_millis(300));
        tx.send_replace(Some(job(1, true, false)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send_replace(Some(job(2, true, false)));
        tx.send_replace(Some(job(3, true, false)));
        done_with(&mut done, 3).await;
        assert_eq!(slow.posted(), vec![1, 3], "2 was replaced by 3 while 1 was in flight");
        assert_eq!(slow.finished(), vec![1, 3]);
    }

    #[tokio::test]
    async fn the_sender_ends_with_its_reporter() {
        let r = Replica::default();
        let (tx, mut done) = r.start(Duration::ZERO);
        drop(tx);
        tokio::time::timeout(Duration::from_secs(2), done.changed())
            .await
            .expect("the sender task ended")
            .expect_err("and dropped its done channel");
    }
}
