//! The load generator: N connections (HTTPS/1.1, HTTP/2 or HTTP/3), each
//! looping GETs one at a time for a duration, bodies counted and dropped.
//!
//! The same client is used against every target so only the server
//! differs. TLS is pinned to TLS 1.3 with one cipher suite
//! (TLS13_AES_128_GCM_SHA256) so every server pays for the same cipher.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;

/// The only cipher suite the bench client offers.
pub const CIPHER: &str = "TLS13_AES_128_GCM_SHA256";

/// Which protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, clap::ValueEnum)]
pub enum Proto {
    /// HTTPS/1.1
    #[serde(rename = "h1")]
    #[value(name = "h1")]
    H1,
    /// HTTP/2 over TLS
    #[serde(rename = "h2")]
    #[value(name = "h2")]
    H2,
    /// HTTP/3
    #[serde(rename = "h3")]
    #[value(name = "h3")]
    H3,
}

impl Proto {
    pub const ALL: [Proto; 3] = [Proto::H1, Proto::H2, Proto::H3];

    pub fn as_str(self) -> &'static str {
        match self {
            Proto::H1 => "h1",
            Proto::H2 => "h2",
            Proto::H3 => "h3",
        }
    }

    fn alpn(self) -> &'static [u8] {
        match self {
            Proto::H1 => b"http/1.1",
            Proto::H2 => b"h2",
            Proto::H3 => b"h3",
        }
    }
}

/// A TLS server to load: its address and the name its certificate is
/// checked against (sent as SNI when it is a DNS name).
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub server_name: String,
    roots: Arc<rustls::RootCertStore>,
}

impl Target {
    /// A target whose certificate chains to the PEM CA at `ca`.
    pub fn new(addr: SocketAddr, server_name: &str, ca: &Path) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in outpost_svc::tls::load_certs(ca)? {
            roots.add(cert)?;
        }
        Ok(Self {
            addr,
            server_name: server_name.to_owned(),
            roots: Arc::new(roots),
        })
    }

    fn tls(&self, proto: Proto) -> Result<rustls::ClientConfig> {
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256];
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        cfg.alpn_protocols = vec![proto.alpn().to_vec()];
        Ok(cfg)
    }

    fn authority(&self) -> String {
        format!("{}:{}", self.server_name, self.addr.port())
    }
}

/// One response, with its body counted (and kept when asked).
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Request sent to response head.
    pub ttfb: Duration,
    /// Request sent to last body byte.
    pub total: Duration,
    pub len: u64,
    pub body: Option<Bytes>,
}

impl Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

struct H3Conn {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl Drop for H3Conn {
    fn drop(&mut self) {
        self.conn.close(quinn::VarInt::from_u32(0), b"done");
    }
}

enum Inner {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    H3(H3Conn),
}

/// One client connection.
pub struct Conn {
    inner: Inner,
    authority: String,
}

impl Conn {
    pub async fn connect(target: &Target, proto: Proto) -> Result<Self> {
        Self::connect_from(target, proto, None).await
    }

    /// Connect from the local address `source` (a 127.x address standing
    /// for a client network), or from any address when None.
    pub async fn connect_from(target: &Target, proto: Proto, source: Option<std::net::IpAddr>) -> Result<Self> {
        let tls = target.tls(proto)?;
        let authority = target.authority();
        let inner = match proto {
            Proto::H1 | Proto::H2 => {
                let tcp = match source {
                    Some(ip) => {
                        let sock = if ip.is_ipv4() {
                            tokio::net::TcpSocket::new_v4()?
                        } else {
                            tokio::net::TcpSocket::new_v6()?
                        };
                        sock.bind(SocketAddr::new(ip, 0))
                            .with_context(|| format!("bind {ip}"))?;
                        sock.connect(target.addr).await
                    }
                    None => tokio::net::TcpStream::connect(target.addr).await,
                }
                .with_context(|| format!("connect {}", target.addr))?;
                tcp.set_nodelay(true)?;
                let name = ServerName::try_from(target.server_name.clone())?;
                let tls = tokio_rustls::TlsConnector::from(Arc::new(tls))
                    .connect(name, tcp)
                    .await
                    .with_context(|| format!("TLS handshake with {}", target.addr))?;
                let io = TokioIo::new(tls);
                if proto == Proto::H1 {
                    let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
                    tokio::spawn(conn);
                    Inner::H1(send)
                } else {
                    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                        .initial_stream_window_size(16 << 20)
                        .initial_connection_window_size(32 << 20)
                        .handshake(io)
                        .await?;
                    tokio::spawn(conn);
                    Inner::H2(send)
                }
            }
            Proto::H3 => {
                let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| anyhow!("{e}"))?;
                let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
                let mut transport = quinn::TransportConfig::default();
                transport.stream_receive_window(quinn::VarInt::from_u32(16 << 20));
                transport.receive_window(quinn::VarInt::from_u32(32 << 20));
                cfg.transport_config(Arc::new(transport));
                let bind = SocketAddr::new(
                    source.unwrap_or(if target.addr.is_ipv6() {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    } else {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    }),
                    0,
                );
                let mut endpoint = quinn::Endpoint::client(bind)?;
                endpoint.set_default_client_config(cfg);
                let conn = endpoint
                    .connect(target.addr, &target.server_name)?
                    .await
                    .with_context(|| format!("QUIC handshake with {}", target.addr))?;
                let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone())).await?;
                tokio::spawn(async move {
                    let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
                });
                Inner::H3(H3Conn {
                    send,
                    conn,
                    _endpoint: endpoint,
                })
            }
        };
        Ok(Self { inner, authority })
    }

    /// GET `path`; the body is counted, and kept when `keep_body`.
    pub async fn get(&mut self, path: &str, keep_body: bool) -> Result<Got> {
        self.request(Method::GET, path, &[], Bytes::new(), keep_body).await
    }

    /// `method path` with `headers` and `body`; the answer's body is
    /// counted, and kept when `keep_body`.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        keep_body: bool,
    ) -> Result<Got> {
        let started = Instant::now();
        let mut buf = keep_body.then(BytesMut::new);
        let mut len = 0u64;
        let build = |uri: String| {
            let mut req = Request::builder().method(method.clone()).uri(uri);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req
        };
        let (status, headers, ttfb) = match &mut self.inner {
            Inner::H1(send) => {
                let req = build(path.to_owned()).header(http::header::HOST, &self.authority);
                send.ready().await?;
                let resp = send.send_request(req.body(Full::new(body))?).await?;
                read_hyper(resp, started, &mut len, &mut buf).await?
            }
            Inner::H2(send) => {
                let req = build(format!("https://{}{path}", self.authority));
                send.ready().await?;
                let resp = send.send_request(req.body(Full::new(body))?).await?;
                read_hyper(resp, started, &mut len, &mut buf).await?
            }
            Inner::H3(c) => {
                let req = build(format!("https://{}{path}", self.authority)).body(())?;
                let mut stream = c.send.send_request(req).await?;
                if !body.is_empty() {
                    stream.send_data(body).await?;
                }
                stream.finish().await?;
                let resp = stream.recv_response().await?;
                let ttfb = started.elapsed();
                while let Some(mut chunk) = stream.recv_data().await? {
                    len += chunk.remaining() as u64;
                    match &mut buf {
                        Some(b) => {
                            while chunk.has_remaining() {
                                let c = chunk.chunk();
                                let n = c.len();
                                b.extend_from_slice(c);
                                chunk.advance(n);
                            }
                        }
                        None => chunk.advance(chunk.remaining()),
                    }
                }
                let (parts, ()) = resp.into_parts();
                (parts.status, parts.headers, ttfb)
            }
        };
        Ok(Got {
            status,
            headers,
            ttfb,
            total: started.elapsed(),
            len,
            body: buf.map(BytesMut::freeze),
        })
    }
}

async fn read_hyper(
    resp: http::Response<hyper::body::Incoming>,
    started: Instant,
    len: &mut u64,
    buf: &mut Option<BytesMut>,
) -> Result<(StatusCode, HeaderMap, Duration)> {
    let ttfb = started.elapsed();
    let (parts, mut body) = resp.into_parts();
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame?.into_data() {
            *len += d.len() as u64;
            if let Some(b) = buf {
                b.extend_from_slice(&d);
            }
        }
    }
    Ok((parts.status, parts.headers, ttfb))
}

/// An object of the workload: URL path and expected body length.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Object {
    pub path: String,
    pub size: u64,
}

/// What one timed load run measured.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub requests: u64,
    pub bytes: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Wall time from the start signal until every connection finished its
    /// last request.
    pub elapsed: Duration,
    pub ttfb: Vec<Duration>,
    /// CPU seconds the measured server spent during the timed phase.
    pub server_cpu: f64,
    /// CPU seconds this (client) process spent during the timed phase.
    pub client_cpu: f64,
    /// CPU seconds the rest of the machine spent during the timed phase
    /// (other processes: noise when it is not near zero).
    pub other_cpu: f64,
}

impl LoadResult {
    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

/// Connect `connections` connections, then let each loop GETs over
/// `objects` (each connection starting at a different object) until
/// `duration` has passed. `server_cpu` is sampled when the timed phase
/// starts and ends. A failed request counts as an error and its
/// connection is replaced.
pub async fn run(
    target: &Target,
    proto: Proto,
    connections: usize,
    duration: Duration,
    objects: Arc<Vec<Object>>,
    server_cpu: impl Fn() -> f64,
) -> Result<LoadResult> {
    let next = move |conn: usize, seq: u64| {
        let obj = &objects[(conn + seq as usize) % objects.len()];
        Call {
            method: Method::GET,
            path: obj.path.clone(),
            body: Bytes::new(),
            expect_len: Some(obj.size),
        }
    };
    run_calls(
        target,
        proto,
        &vec![None; connections],
        duration,
        Arc::new(next),
        server_cpu,
    )
    .await
}

/// One request of a load run.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    /// Sent with `content-type: application/json` when not empty.
    pub body: Bytes,
    /// The body length a good answer has (any when None); a good answer
    /// is also a 200.
    pub expect_len: Option<u64>,
}

/// Connect one connection per entry of `sources` (from that local address
/// when Some), then let each loop the calls `next(connection, n)` gives
/// until `duration` has passed. `server_cpu` is sampled when the timed
/// phase starts and ends. A failed request counts as an error and its
/// connection is replaced.
pub async fn run_calls(
    target: &Target,
    proto: Proto,
    sources: &[Option<std::net::IpAddr>],
    duration: Duration,
    next: Arc<dyn Fn(usize, u64) -> Call + Send + Sync>,
    server_cpu: impl Fn() -> f64,
) -> Result<LoadResult> {
    let mut connecting = tokio::task::JoinSet::new();
    for &source in sources {
        let target = target.clone();
        connecting.spawn(async move { Conn::connect_from(&target, proto, source).await.map(|c| (c, source)) });
    }
    let mut conns = Vec::with_capacity(sources.len());
    while let Some(c) = connecting.join_next().await {
        conns.push(c??);
    }
    let (cpu0, client0, busy0) = (
        server_cpu(),
        crate::procs::self_cpu_seconds(),
        crate::procs::machine_busy_seconds(),
    );
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (mut conn, source)) in conns.into_iter().enumerate() {
        let next = next.clone();
        let target = target.clone();
        tasks.spawn(async move {
            let mut r = LoadResult::default();
            let mut seq = 0u64;
            while Instant::now() < deadline {
                let call = next(i, seq);
                seq += 1;
                let json = [("content-type", "application/json")];
                let headers: &[(&str, &str)] = if call.body.is_empty() { &[] } else { &json };
                match conn
                    .request(call.method.clone(), &call.path, headers, call.body.clone(), false)
                    .await
                {
                    Ok(got) if got.status == StatusCode::OK && call.expect_len.is_none_or(|n| n == got.len) => {
                        r.requests += 1;
                        r.bytes += got.len;
                        r.ttfb.push(got.ttfb);
                    }
                    Ok(got) => r.error(format!(
                        "{}: status {}, {} bytes (expected {:?})",
                        call.path, got.status, got.len, call.expect_len
                    )),
                    Err(e) => {
                        r.error(format!("{}: {e:#}", call.path));
                        match Conn::connect_from(&target, proto, source).await {
                            Ok(c) => conn = c,
                            Err(_) => break,
                        }
                    }
                }
            }
            r
        });
    }
    let mut total = LoadResult::default();
    while let Some(r) = tasks.join_next().await {
        let r = r?;
        total.requests += r.requests;
        total.bytes += r.bytes;
        total.errors += r.errors;
        total.ttfb.extend(r.ttfb);
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
    }
    total.elapsed = started.elapsed();
    total.server_cpu = server_cpu() - cpu0;
    total.client_cpu = crate::procs::self_cpu_seconds() - client0;
    total.other_cpu = (crate::procs::machine_busy_seconds() - busy0 - total.server_cpu - total.client_cpu).max(0.0);
    if total.requests == 0 && total.errors == 0 {
        bail!("no request completed in {duration:?}");
    }
    Ok(total)
}
