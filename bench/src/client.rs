//! Clients that fetch a whole response and time it: HTTPS over TCP
//! (HTTP/1.1 or HTTP/2, chosen by ALPN) and HTTP/3 (quinn + h3).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A whole response.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: StatusCode,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Time to the response head.
    pub ttfb: Duration,
    /// Time to the first body byte (None for an empty body).
    pub first_byte: Option<Duration>,
    pub total: Duration,
}

impl Fetched {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Which TCP protocol to offer by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tcp {
    H1,
    H2,
}

/// HTTP/1.1 or HTTP/2 client (https:// verified against a CA file; http://
/// cleartext, with h2 prior knowledge for `Tcp::H2`).
#[derive(Clone)]
pub struct HttpsClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl HttpsClient {
    pub fn new(ca: Option<&Path>, proto: Tcp) -> Result<Self> {
        let tls = outpost_svc::tls::client_config(ca, &[])?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let b = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let conn = match proto {
            Tcp::H1 => b.enable_http1().build(),
            Tcp::H2 => b.enable_http2().build(),
        };
        let client = Client::builder(TokioExecutor::new())
            .http2_only(proto == Tcp::H2)
            .pool_max_idle_per_host(1024)
            .build(conn);
        Ok(Self { client })
    }

    pub async fn get(&self, url: &str) -> Result<Fetched> {
        self.request(Method::GET, url, &[]).await
    }

    pub async fn request(&self, method: Method, url: &str, headers: &[(&str, &str)]) -> Result<Fetched> {
        let started = Instant::now();
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .client
            .request(req.body(Empty::new())?)
            .await
            .with_context(|| format!("GET {url}"))?;
        let ttfb = started.elapsed();
        let (parts, mut body) = resp.into_parts();
        let mut buf = BytesMut::new();
        let mut first_byte = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.with_context(|| format!("body of {url}"))?;
            if let Ok(d) = frame.into_data() {
                if first_byte.is_none() && !d.is_empty() {
                    first_byte = Some(started.elapsed());
                }
                buf.extend_from_slice(&d);
            }
        }
        Ok(Fetched {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body: buf.freeze(),
            ttfb,
            first_byte,
            total: started.elapsed(),
        })
    }
}

/// One HTTP/3 connection to a server.
pub struct H3Client {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    authority: String,
    _endpoint: quinn::Endpoint,
}

impl H3Client {
    /// Connect to `addr`, verifying the certificate for `server_name`
    /// against the CA file.
    pub async fn connect(addr: SocketAddr, server_name: &str, ca: &Path) -> Result<Self> {
        let tls = outpost_svc::tls::client_config(Some(ca), &[b"h3"])?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| anyhow!("{e}"))?;
        let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        transport.stream_receive_window(quinn::VarInt::from_u32(16 << 20));
        transport.receive_window(quinn::VarInt::from_u32(64 << 20));
        cfg.transport_config(Arc::new(transport));
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::1]:0".parse()?
        } else {
            "127.0.0.1:0".parse()?
        };
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(cfg);
        let conn = endpoint.connect(addr, server_name)?.await.context("QUIC handshake")?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn)).await?;
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(Self {
            send,
            authority: format!("{server_name}:{}", addr.port()),
            _endpoint: endpoint,
        })
    }

    pub async fn get(&mut self, path: &str) -> Result<Fetched> {
        self.request(Method::GET, path, &[]).await
    }

    pub async fn request(&mut self, method: Method, path: &str, headers: &[(&str, &str)]) -> Result<Fetched> {
        let started = Instant::now();
        let uri: Uri = format!("https://{}{}", self.authority, path).parse()?;
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut stream = self.send.send_request(req.body(())?).await?;
        stream.finish().await?;
        let resp = stream.recv_response().await?;
        let ttfb = started.elapsed();
        let mut buf = BytesMut::new();
        let mut first_byte = None;
        while let Some(mut chunk) = stream.recv_data().await? {
            if first_byte.is_none() && chunk.has_remaining() {
                first_byte = Some(started.elapsed());
            }
            while chunk.has_remaining() {
                let c = chunk.chunk();
                let n = c.len();
                buf.extend_from_slice(c);
                chunk.advance(n);
            }
        }
        let (parts, ()) = resp.into_parts();
        if parts.version != http::Version::HTTP_3 {
            bail!("not an HTTP/3 response");
        }
        Ok(Fetched {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body: buf.freeze(),
            ttfb,
            first_byte,
            total: started.elapsed(),
        })
    }
}
