//! HTTP/3: a quinn endpoint on the edge's UDP port, tuned for multi-MB
//! segments (large send window, small receive windows for GET-only
//! traffic, large UDP socket buffers), serving requests through h3.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use h3::error::Code;
use outpost_svc::Shutdown;
use quinn::{EndpointConfig, IdleTimeout, TransportConfig, VarInt};
use tokio_util::task::TaskTracker;

use super::h3_send;
use crate::config::Http3Config;
use crate::edge::{Edge, Proto, RequestHead};

/// Why the HTTP/3 listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum H3Error {
    #[error("UDP {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("QUIC TLS config (internal): {0}")]
    Tls(String),
    #[error("http3.idle_timeout out of range")]
    IdleTimeout,
}

/// Bind the UDP socket with large buffers and create the endpoint.
pub fn endpoint(addr: SocketAddr, tls: rustls::ServerConfig, cfg: &Http3Config) -> Result<quinn::Endpoint, H3Error> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind = |e| H3Error::Bind { addr, source: e };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(bind)?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    // The kernel caps these at net.core.{r,w}mem_max; the README says how to raise them.
    let _ = socket.set_recv_buffer_size(cfg.udp_buffer as usize);
    let _ = socket.set_send_buffer_size(cfg.udp_buffer as usize);
    socket.bind(&addr.into()).map_err(bind)?;
    socket.set_nonblocking(true).map_err(bind)?;
    let recv = socket.recv_buffer_size().map(|n| n as u64);
    let send = socket.send_buffer_size().map(|n| n as u64);
    log_udp_buffers(cfg.udp_buffer, recv, send);
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| H3Error::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = TransportConfig::default();
    transport
        .send_window(cfg.send_window)
        .stream_receive_window(VarInt::from_u64(cfg.stream_receive_window).map_err(|_| H3Error::IdleTimeout)?)
        .receive_window(VarInt::from_u64(cfg.receive_window).map_err(|_| H3Error::IdleTimeout)?)
        .max_concurrent_bidi_streams(VarInt::from_u32(cfg.max_concurrent_streams))
        .max_idle_timeout(Some(
            IdleTimeout::try_from(cfg.idle_timeout).map_err(|_| H3Error::IdleTimeout)?,
        ));
    server.transport_config(Arc::new(transport));
    let runtime = Arc::new(quinn::TokioRuntime);
    let socket = quinn::Runtime::wrap_udp_socket(&*runtime, socket.into()).map_err(bind)?;
    // quinn-udp probes UDP GSO/GRO (Linux ≥ 4.18, UDP_SEGMENT): with GSO one
    // sendmsg carries up to this many packets; 1 means one syscall per packet.
    tracing::info!(
        gso_segments = socket.max_transmit_segments(),
        gro_segments = socket.max_receive_segments(),
        "UDP segmentation offload (packets per send / receive call)"
    );
    quinn::Endpoint::new_with_abstract_socket(EndpointConfig::default(), Some(server), socket, runtime).map_err(bind)
}

/// Whether the kernel reports a socket buffer doubled: Linux keeps twice
/// the size asked for (the extra half is its bookkeeping allowance, see
/// socket(7)) and getsockopt returns that doubled value.
const KERNEL_DOUBLES_BUFFERS: bool = cfg!(target_os = "linux");

/// What the kernel granted for one UDP socket buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferGrant {
    /// The usable size in bytes (what was granted of the request: the
    /// reported value, halved where the kernel doubles it).
    pub effective: u64,
    /// The kernel gave less than requested (capped at its maximum).
    pub capped: bool,
}

/// Judge one buffer from the size asked for (`requested`, bytes) and what
/// getsockopt then `reported`; `doubled` is the kernel's convention (on
/// Linux SO_RCVBUF/SO_SNDBUF read back as 2x the size granted, so a request
/// capped at rmem_max = 4 MiB reads 8 MiB and only 2x requested means the
/// whole request was granted). Pure.
pub fn buffer_grant(requested: u64, reported: u64, doubled: bool) -> BufferGrant {
    let effective = if doubled { reported / 2 } else { reported };
    BufferGrant {
        effective,
        capped: effective < requested,
    }
}

/// Log what the UDP socket got: the effective sizes, and a warning naming
/// the sysctl and the value to set for each buffer the kernel capped.
fn log_udp_buffers(requested: u64, recv: std::io::Result<u64>, send: std::io::Result<u64>) {
    let mut effective = [0u64; 2];
    for (i, (what, sysctl, reported)) in [
        ("receive", "net.core.rmem_max", recv),
        ("send", "net.core.wmem_max", send),
    ]
    .into_iter()
    .enumerate()
    {
        let reported = match reported {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "could not read back the UDP {what} buffer size");
                continue;
            }
        };
        let grant = buffer_grant(requested, reported, KERNEL_DOUBLES_BUFFERS);
        effective[i] = grant.effective;
        if grant.capped {
            tracing::warn!(
                requested,
                granted = grant.effective,
                "the kernel capped the UDP {what} buffer at {} of the {requested} bytes asked for \
                 (http3.udp_buffer); HTTP/3 will drop packets under load: set `sysctl -w {sysctl}={requested}` \
                 (configs/sysctl/90-outpost-udp.conf) and restart the edge",
                grant.effective,
            );
        }
    }
    tracing::info!(
        recv_buffer = effective[0],
        send_buffer = effective[1],
        requested,
        "UDP socket buffers (effective bytes; Linux reports twice these)"
    );
}

/// Accept QUIC connections until shutdown, then let in-flight requests
/// finish within the grace period and close the endpoint.
pub async fn serve(endpoint: quinn::Endpoint, edge: Arc<Edge>, shutdown: Shutdown) {
    let requests = TaskTracker::new();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = shutdown.wait() => break,
        };
        let edge = edge.clone();
        let requests = requests.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "QUIC handshake failed");
                    return;
                }
            };
            let gauge = edge.metrics.connections.with_label_values(&["quic"]);
            gauge.inc();
            connection(conn, edge, requests, shutdown).await;
            gauge.dec();
        });
    }
    // Stop taking new connections; let requests in flight finish.
    endpoint.set_server_config(None);
    requests.close();
    let grace = edge.cfg.shutdown_grace;
    if tokio::time::timeout(grace, requests.wait()).await.is_err() {
        tracing::warn!("HTTP/3 requests still running after {grace:?}; closing");
    }
    endpoint.close(VarInt::from_u32(0), b"shutdown");
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), endpoint.wait_idle()).await;
}

async fn connection(conn: quinn::Connection, edge: Arc<Edge>, requests: TaskTracker, shutdown: Shutdown) {
    let peer = conn.remote_address();
    let mut builder = h3::server::builder();
    builder.max_field_section_size(edge.cfg.limits.max_header_bytes);
    let mut h3conn: h3::server::Connection<h3_send::Connection, Bytes> =
        match builder.build(h3_send::Connection::new(conn)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "HTTP/3 setup failed");
                return;
            }
        };
    let mut draining = false;
    loop {
        let next = tokio::select! {
            r = h3conn.accept() => r,
            _ = shutdown.wait(), if !draining => {
                draining = true;
                // GOAWAY names the stream after the last accepted one, so every
                // accepted request counts as processed (RFC 9114 §5.2).
                let _ = h3conn.shutdown(1).await;
                continue;
            }
        };
        match next {
            Ok(Some(resolver)) => {
                let edge = edge.clone();
                requests.spawn(async move {
                    let (req, stream) = match resolver.resolve_request().await {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::debug!(error = %e, "bad HTTP/3 request");
                            return;
                        }
                    };
                    request(edge, req, stream, peer).await;
                });
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "HTTP/3 connection ended");
                break;
            }
        }
    }
}

async fn request(
    edge: Arc<Edge>,
    req: http::Request<()>,
    mut stream: h3::server::RequestStream<h3_send::BidiStream, Bytes>,
    peer: SocketAddr,
) {
    let (parts, ()) = req.into_parts();
    let resp = edge
        .handle(RequestHead {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            proto: Proto::H3,
            peer,
        })
        .await;
    let (mut body, mut access) = (resp.body, resp.access);
    let mut out = http::Response::new(());
    *out.status_mut() = resp.status;
    *out.headers_mut() = resp.headers;
    if let Ok(v) = http::HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())) {
        out.headers_mut().insert(http::header::DATE, v);
    }
    if stream.send_response(out).await.is_err() {
        return;
    }
    loop {
        match body.next().await {
            Ok(Some(chunk)) => {
                let n = chunk.len() as u64;
                if h3_send::send_body(&mut stream, chunk, &edge.metrics.h3_body_copied)
                    .await
                    .is_err()
                {
                    return;
                }
                access.sent(n);
            }
            Ok(None) => break,
            Err(_) => {
                // Upstream failed mid-body: reset, never a clean short body.
                stream.stop_stream(Code::H3_INTERNAL_ERROR);
                return;
            }
        }
    }
    if stream.finish().await.is_ok() {
        access.complete = true;
    }
    drop(access); // logged and counted now, not after the drain below
                  // Read the request stream to its end before dropping it (a GET's FIN is
                  // normally already here): quinn answers a drop with unread data with
                  // STOP_SENDING, which can race the client's own FIN and make it fail a
                  // request that was answered in full (seen with a cache hit answered
                  // before the client finished its request). Bounded for clients that
                  // never finish.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while let Ok(Some(_)) = stream.recv_data().await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn linux_reports_twice_the_granted_size() {
        // Granted in full: 8 MiB asked, 16 MiB read back.
        assert_eq!(
            buffer_grant(8 * MIB, 16 * MIB, true),
            BufferGrant {
                effective: 8 * MIB,
                capped: false
            }
        );
        // rmem_max = 4 MiB: 8 MiB read back looks like success but is not.
        assert_eq!(
            buffer_grant(8 * MIB, 8 * MIB, true),
            BufferGrant {
                effective: 4 * MIB,
                capped: true
            }
        );
        // The common default (rmem_max = 212992).
        assert_eq!(buffer_grant(8 * MIB, 2 * 212_992, true).effective, 212_992);
        assert!(buffer_grant(8 * MIB, 2 * 212_992, true).capped);
        // A small request the kernel raised to its minimum is not capped.
        assert!(!buffer_grant(1024, 4608, true).capped);
    }

    #[test]
    fn kernels_that_report_what_they_granted() {
        assert_eq!(
            buffer_grant(8 * MIB, 8 * MIB, false),
            BufferGrant {
                effective: 8 * MIB,
                capped: false
            }
        );
        assert!(buffer_grant(8 * MIB, 4 * MIB, false).capped);
        assert_eq!(buffer_grant(8 * MIB, 0, false).effective, 0);
        assert!(buffer_grant(8 * MIB, 0, true).capped, "nothing read back is capped");
    }
}
