//! HTTP/3 request streams that hand body `Bytes` to quinn without copying.
//!
//! h3-quinn 0.0.10 writes every frame with `quinn::SendStream::poll_write(&[u8])`,
//! which copies the slice into a fresh buffer in quinn's send queue
//! (`ByteSlice::pop_chunk` → `to_vec`): a second copy of every body byte, on
//! top of the unavoidable one into each packet (10% of the edge's CPU under
//! HTTP/3 load, see bench/RESULTS.md). quinn also takes owned `Bytes`
//! (`write_chunks`), but h3 hides the payload inside its `WriteBuf` (only
//! `Buf` is public), so a transport cannot get the `Bytes` back from it.
//!
//! This module is a drop-in for `h3_quinn::Connection` whose request streams
//! do: [`send_body`] puts the body chunk in a thread-local slot for the one
//! synchronous poll in which h3 calls [`SendStream`]'s `send_data`; there the
//! stream copies only the DATA frame header (a few bytes) and queues the
//! staged `Bytes` itself, after checking that it is exactly the payload h3
//! framed (same memory, same length: `Bytes` are immutable, so the same
//! bytes). Anything else (HEADERS, GREASE, a plain `send_data`) is copied
//! once, as h3-quinn does, so a missed hand-off costs speed, never bytes; a
//! body chunk that was copied is counted in
//! `outpost_edge_h3_body_copied_bytes_total`, which stays 0 while the
//! hand-off works (tests/edge.rs checks it over real quinn and h3, so an h3
//! upgrade that breaks it fails CI). The slot is cleared by a drop guard
//! however the poll ends, a panic included.
//! Unidirectional streams (control, QPACK) stay h3-quinn's.
//!
//! Unlike h3-quinn, `poll_finish` first flushes data still queued, and a
//! `send_data` while data is queued appends to it (h3 #360: a cancelled
//! `send_data` there left a truncated frame or killed the connection). A send
//! stream dropped before it was finished (a cancelled or failed request
//! task) is reset, so a client never sees a clean but short body.

use std::cell::Cell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::stream::{self, BoxStream, StreamExt};
use h3::error::Code;
use h3::quic::{self, ConnectionErrorIncoming, StreamErrorIncoming, StreamId, WriteBuf};
use h3::server::RequestStream;
use quinn::VarInt;

thread_local! {
    /// The body chunk [`send_body`] is sending, for the duration of one poll.
    static STAGED: Cell<Option<Bytes>> = const { Cell::new(None) };
    /// Set by `send_data` when it queued the staged chunk itself.
    static HANDED: Cell<bool> = const { Cell::new(false) };
}

/// Send one body chunk as a DATA frame, handing the `Bytes` to quinn without
/// copying it (see the module docs). Same result and errors as
/// `RequestStream::send_data`. A chunk that was sent but not handed over
/// (copied, the slow path) is counted in `copied` (bytes), so a change in
/// h3's internals that silently disables the hand-off shows in the metrics
/// and fails the h3 integration test instead of only costing CPU.
pub async fn send_body(
    stream: &mut RequestStream<BidiStream, Bytes>,
    chunk: Bytes,
    copied: &prometheus::IntCounter,
) -> Result<(), h3::error::StreamError> {
    let len = chunk.len() as u64;
    let mut staged = Some(chunk.clone());
    let mut handed = false;
    let mut send = pin!(stream.send_data(chunk));
    let result = std::future::poll_fn(|cx| match staged.take() {
        // h3 calls `SendStream::send_data` synchronously in the first poll.
        Some(chunk) => {
            let (r, h) = with_staged(chunk, || send.as_mut().poll(cx));
            handed = h;
            r
        }
        None => send.as_mut().poll(cx),
    })
    .await;
    if result.is_ok() && !handed {
        copied.inc_by(len);
    }
    result
}

/// Run `poll` with `chunk` staged for `send_data`; returns its result and
/// whether `send_data` queued the chunk itself. The slot is cleared however
/// `poll` ends, a panic included (a drop guard), so a later, unrelated
/// `send_data` on this thread can never take a stale chunk.
fn with_staged<R>(chunk: Bytes, poll: impl FnOnce() -> R) -> (R, bool) {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            STAGED.with(|s| s.take());
            HANDED.with(|h| h.set(false));
        }
    }
    let _clear = Clear;
    HANDED.with(|h| h.set(false));
    STAGED.with(|s| s.set(Some(chunk)));
    let r = poll();
    (r, HANDED.with(|h| h.get()))
}

/// What `send_data` does with one frame: take the staged chunk (if any),
/// queue the frame's chunks, record whether the staged chunk went as it is.
fn queue_frame(frame: &mut impl Buf, out: &mut Vec<Bytes>) {
    let staged = STAGED.with(|s| s.take());
    if frame_chunks(frame, staged, out) {
        HANDED.with(|h| h.set(true));
    }
}

/// Split one frame h3 built into the chunks to queue: `staged` as it is when
/// it is exactly the frame's payload (the bytes after the header, same
/// memory), the rest copied. Returns whether `staged` was queued itself. Pure.
fn frame_chunks(frame: &mut impl Buf, staged: Option<Bytes>, out: &mut Vec<Bytes>) -> bool {
    let total = frame.remaining();
    if let Some(body) = staged.filter(|b| !b.is_empty() && b.len() <= total) {
        let header = total - body.len();
        if header > 0 {
            out.push(frame.copy_to_bytes(header));
        }
        let rest = frame.chunk();
        if rest.len() == body.len() && rest.as_ptr() == body.as_ptr() {
            frame.advance(body.len());
            out.push(body);
            return true;
        }
    }
    if frame.has_remaining() {
        out.push(frame.copy_to_bytes(frame.remaining()));
    }
    false
}

/// An HTTP/3 transport over a quinn connection: h3-quinn's, except for
/// request (bidirectional) streams.
pub struct Connection {
    inner: h3_quinn::Connection,
    conn: quinn::Connection,
    incoming_bi: BoxStream<'static, Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError>>,
    opening_bi: Option<OpenBi>,
}

type OpenBi =
    Pin<Box<dyn Future<Output = Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError>> + Send>>;

impl Connection {
    pub fn new(conn: quinn::Connection) -> Self {
        Connection {
            inner: h3_quinn::Connection::new(conn.clone()),
            incoming_bi: stream::unfold(conn.clone(), |c| async { Some((c.accept_bi().await, c)) }).boxed(),
            conn,
            opening_bi: None,
        }
    }
}

impl quic::Connection<Bytes> for Connection {
    type RecvStream = h3_quinn::RecvStream;
    type OpenStreams = OpenStreams;

    fn poll_accept_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Self::RecvStream, ConnectionErrorIncoming>> {
        quic::Connection::<Bytes>::poll_accept_recv(&mut self.inner, cx)
    }

    fn poll_accept_bidi(&mut self, cx: &mut Context<'_>) -> Poll<Result<BidiStream, ConnectionErrorIncoming>> {
        let (send, recv) = ready!(self.incoming_bi.poll_next_unpin(cx))
            .expect("an unfold that always yields Some")
            .map_err(connection_error)?;
        Poll::Ready(Ok(BidiStream::new(send, recv)))
    }

    fn opener(&self) -> OpenStreams {
        OpenStreams {
            inner: quic::Connection::<Bytes>::opener(&self.inner),
            conn: self.conn.clone(),
            opening_bi: None,
        }
    }
}

/// Opens streams on a [`Connection`] (h3 uses it for its own unidirectional streams).
pub struct OpenStreams {
    inner: h3_quinn::OpenStreams,
    conn: quinn::Connection,
    opening_bi: Option<OpenBi>,
}

/// Both openers: request streams are this module's, unidirectional ones
/// h3-quinn's (through `inner`).
macro_rules! open_streams {
    ($t:ty) => {
        impl quic::OpenStreams<Bytes> for $t {
            type BidiStream = BidiStream;
            type SendStream = h3_quinn::SendStream<Bytes>;

            fn poll_open_bidi(&mut self, cx: &mut Context<'_>) -> Poll<Result<BidiStream, StreamErrorIncoming>> {
                poll_open_bidi(&self.conn, &mut self.opening_bi, cx)
            }

            fn poll_open_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<Self::SendStream, StreamErrorIncoming>> {
                quic::OpenStreams::<Bytes>::poll_open_send(&mut self.inner, cx)
            }

            fn close(&mut self, code: Code, reason: &[u8]) {
                quic::OpenStreams::<Bytes>::close(&mut self.inner, code, reason)
            }
        }
    };
}
open_streams!(Connection);
open_streams!(OpenStreams);

fn poll_open_bidi(
    conn: &quinn::Connection,
    opening: &mut Option<OpenBi>,
    cx: &mut Context<'_>,
) -> Poll<Result<BidiStream, StreamErrorIncoming>> {
    let open = opening.get_or_insert_with(|| {
        let conn = conn.clone();
        Box::pin(async move { conn.open_bi().await })
    });
    let result = ready!(open.as_mut().poll(cx));
    *opening = None;
    let (send, recv) = result.map_err(|e| StreamErrorIncoming::ConnectionErrorIncoming {
        connection_error: connection_error(e),
    })?;
    Poll::Ready(Ok(BidiStream::new(send, recv)))
}

/// A request stream: [`SendStream`] and [`RecvStream`].
pub struct BidiStream {
    send: SendStream,
    recv: RecvStream,
}

impl BidiStream {
    fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        BidiStream {
            send: SendStream {
                stream: send,
                queued: Vec::new(),
                ended: false,
            },
            recv: RecvStream { stream: recv },
        }
    }
}

impl quic::BidiStream<Bytes> for BidiStream {
    type SendStream = SendStream;
    type RecvStream = RecvStream;

    fn split(self) -> (SendStream, RecvStream) {
        (self.send, self.recv)
    }
}

impl quic::SendStream<Bytes> for BidiStream {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_ready(cx)
    }
    fn send_data<T: Into<WriteBuf<Bytes>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        self.send.send_data(data)
    }
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_finish(cx)
    }
    fn reset(&mut self, reset_code: u64) {
        self.send.reset(reset_code)
    }
    fn send_id(&self) -> StreamId {
        self.send.send_id()
    }
}

impl quic::RecvStream for BidiStream {
    type Buf = Bytes;
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        self.recv.poll_data(cx)
    }
    fn stop_sending(&mut self, error_code: u64) {
        self.recv.stop_sending(error_code)
    }
    fn recv_id(&self) -> StreamId {
        self.recv.recv_id()
    }
}

/// The sending half: frames are queued as `Bytes` and written with
/// `quinn::SendStream::write_chunks` (no copy).
pub struct SendStream {
    stream: quinn::SendStream,
    /// Chunks `send_data` queued that quinn has not taken yet (written
    /// chunks are emptied, a partly written one is cut to its rest).
    queued: Vec<Bytes>,
    /// Finished or reset: a stream dropped before either is reset.
    ended: bool,
}

impl quic::SendStream<Bytes> for SendStream {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        while let Some(first) = self.queued.iter().position(|c| !c.is_empty()) {
            // write_chunks is cancel-safe: a pending poll wrote nothing.
            let written = ready!(pin!(self.stream.write_chunks(&mut self.queued[first..])).poll(cx));
            written.map_err(write_error)?;
        }
        self.queued.clear();
        Poll::Ready(Ok(()))
    }

    fn send_data<T: Into<WriteBuf<Bytes>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        queue_frame(&mut data.into(), &mut self.queued);
        Ok(())
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        ready!(self.poll_ready(cx))?;
        self.ended = true;
        Poll::Ready(
            self.stream
                .finish()
                .map_err(|e| StreamErrorIncoming::Unknown(Box::new(e))),
        )
    }

    fn reset(&mut self, reset_code: u64) {
        self.ended = true;
        self.queued.clear();
        let _ = self.stream.reset(VarInt::from_u64(reset_code).unwrap_or(VarInt::MAX));
    }

    fn send_id(&self) -> StreamId {
        stream_id(self.stream.id())
    }
}

/// A send stream dropped before it was finished or reset (its request
/// task ended early: cancelled, an error or a panic between chunks or with
/// data still queued) is reset: quinn would otherwise finish it on drop,
/// and the client would see a clean end after a short body.
impl Drop for SendStream {
    fn drop(&mut self) {
        if !self.ended {
            quic::SendStream::<Bytes>::reset(self, Code::H3_INTERNAL_ERROR.value());
        }
    }
}

/// The receiving half (the request's body, normally empty).
pub struct RecvStream {
    stream: quinn::RecvStream,
}

impl quic::RecvStream for RecvStream {
    type Buf = Bytes;

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        // read_chunk is cancel-safe.
        let chunk = ready!(pin!(self.stream.read_chunk(usize::MAX, true)).poll(cx)).map_err(read_error)?;
        Poll::Ready(Ok(chunk.map(|c| c.bytes)))
    }

    fn stop_sending(&mut self, error_code: u64) {
        let _ = self.stream.stop(VarInt::from_u64(error_code).unwrap_or(VarInt::MAX));
    }

    fn recv_id(&self) -> StreamId {
        stream_id(self.stream.id())
    }
}

fn stream_id(id: quinn::StreamId) -> StreamId {
    StreamId::try_from(u64::from(id)).expect("a QUIC stream id is a varint")
}

// The error mappings are h3-quinn's.

fn connection_error(e: quinn::ConnectionError) -> ConnectionErrorIncoming {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => ConnectionErrorIncoming::ApplicationClose {
            error_code: close.error_code.into(),
        },
        quinn::ConnectionError::TimedOut => ConnectionErrorIncoming::Timeout,
        e => ConnectionErrorIncoming::Undefined(Arc::new(e)),
    }
}

fn write_error(e: quinn::WriteError) -> StreamErrorIncoming {
    match e {
        quinn::WriteError::Stopped(code) => StreamErrorIncoming::StreamTerminated {
            error_code: code.into_inner(),
        },
        quinn::WriteError::ConnectionLost(e) => StreamErrorIncoming::ConnectionErrorIncoming {
            connection_error: connection_error(e),
        },
        e => StreamErrorIncoming::Unknown(Box::new(e)),
    }
}

fn read_error(e: quinn::ReadError) -> StreamErrorIncoming {
    match e {
        quinn::ReadError::Reset(code) => StreamErrorIncoming::StreamTerminated {
            error_code: code.into_inner(),
        },
        quinn::ReadError::ConnectionLost(e) => StreamErrorIncoming::ConnectionErrorIncoming {
            connection_error: connection_error(e),
        },
        e => StreamErrorIncoming::Unknown(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(header: &'static [u8], body: &Bytes) -> impl Buf {
        Bytes::from_static(header).chain(body.clone())
    }

    #[test]
    fn the_staged_body_is_queued_itself() {
        let body = Bytes::from(vec![7u8; 5000]);
        let mut out = Vec::new();
        let mut f = frame(&[0x00, 0x53, 0x88], &body);
        frame_chunks(&mut f, Some(body.clone()), &mut out);
        assert!(!f.has_remaining());
        assert_eq!(out.len(), 2);
        assert_eq!(&out[0][..], &[0x00, 0x53, 0x88]);
        assert_eq!(out[1].as_ptr(), body.as_ptr(), "the same memory, not a copy");
        assert_eq!(out[1].len(), 5000);
    }

    #[test]
    fn a_slice_of_a_stored_object_is_not_copied() {
        let object = Bytes::from((0..=255u8).cycle().take(10_000).collect::<Vec<u8>>());
        let range = object.slice(100..4100);
        let mut out = Vec::new();
        frame_chunks(&mut frame(&[0x00, 0x4f, 0xa0], &range), Some(range.clone()), &mut out);
        assert_eq!(out[1].as_ptr(), range.as_ptr());
        assert_eq!(out.concat(), [&[0x00, 0x4f, 0xa0][..], &object[100..4100]].concat());
    }

    #[test]
    fn anything_else_is_copied_once_and_whole() {
        let body = Bytes::from_static(b"hello world");
        // Nothing staged (HEADERS, GREASE, a plain send_data).
        let mut out = Vec::new();
        frame_chunks(&mut frame(&[0x00, 0x0b], &body), None, &mut out);
        assert_eq!(out, vec![Bytes::from_static(b"\x00\x0bhello world")]);
        // Equal bytes elsewhere in memory: not the payload, copied.
        let elsewhere = Bytes::from(b"hello world".to_vec());
        let mut out = Vec::new();
        frame_chunks(&mut frame(&[0x00, 0x0b], &body), Some(elsewhere.clone()), &mut out);
        assert_eq!(out.concat(), b"\x00\x0bhello world");
        assert!(out.iter().all(|c| c.as_ptr() != elsewhere.as_ptr()));
        // A staged chunk longer than the frame, or empty.
        let mut out = Vec::new();
        frame_chunks(&mut frame(&[0x21, 0x00], &Bytes::new()), Some(body.clone()), &mut out);
        assert_eq!(out.concat(), b"\x21\x00");
        let mut out = Vec::new();
        frame_chunks(&mut frame(&[0x00, 0x00], &Bytes::new()), Some(Bytes::new()), &mut out);
        assert_eq!(out.concat(), b"\x00\x00");
    }

    #[test]
    fn a_prefix_of_the_payload_is_not_taken_for_it() {
        let body = Bytes::from_static(b"0123456789");
        let prefix = body.slice(..4);
        let mut out = Vec::new();
        frame_chunks(&mut frame(&[0x00, 0x0a], &body), Some(prefix), &mut out);
        assert_eq!(out.concat(), b"\x00\x0a0123456789");
    }

    #[test]
    fn queued_data_survives_a_second_send_data() {
        let mut out = Vec::new();
        frame_chunks(&mut frame(&[0x00, 0x01], &Bytes::from_static(b"a")), None, &mut out);
        frame_chunks(&mut frame(&[0x00, 0x01], &Bytes::from_static(b"b")), None, &mut out);
        assert_eq!(out.concat(), b"\x00\x01a\x00\x01b");
    }

    #[test]
    fn the_slot_is_cleared_when_the_poll_panics() {
        let body = Bytes::from_static(b"staged");
        let r = std::panic::catch_unwind(|| with_staged(body.clone(), || panic!("inner poll")));
        assert!(r.is_err());
        assert_eq!(
            STAGED.with(|s| s.take()),
            None,
            "no stale chunk left for a later send_data"
        );
        assert!(!HANDED.with(|h| h.get()));
        // A later frame on this thread is copied whole, not matched against a stale chunk.
        let mut out = Vec::new();
        queue_frame(&mut frame(&[0x00, 0x06], &body), &mut out);
        assert_eq!(out, vec![Bytes::from_static(b"\x00\x06staged")]);
    }

    #[test]
    fn a_hand_off_is_reported_and_a_miss_is_not() {
        let body = Bytes::from(vec![1u8; 3000]);
        let mut out = Vec::new();
        let ((), handed) = with_staged(body.clone(), || {
            queue_frame(&mut frame(&[0x00, 0x4b, 0xb8], &body), &mut out)
        });
        assert!(handed);
        assert_eq!(out[1].as_ptr(), body.as_ptr());
        // send_data not called during the poll (h3 deferring it): not handed, slot cleared.
        let ((), handed) = with_staged(body.clone(), || ());
        assert!(!handed);
        assert_eq!(STAGED.with(|s| s.take()), None);
        // Called with another payload: copied, not handed.
        let other = Bytes::from(vec![1u8; 3000]);
        let mut out = Vec::new();
        let ((), handed) = with_staged(body.clone(), || {
            queue_frame(&mut frame(&[0x00, 0x4b, 0xb8], &other), &mut out)
        });
        assert!(!handed);
    }

    /// A quinn server and client on loopback: the server's end of one
    /// client-opened bidirectional stream, and the client's receiving half.
    async fn stream_pair(name: &str) -> (Vec<quinn::Connection>, SendStream, quinn::RecvStream) {
        use outpost_svc::tls;
        let dir = std::env::temp_dir().join(format!("outpost-h3-send-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let paths = tls::LocalCertPaths::in_dir(&dir, "edge");
        tls::ensure_local_certs(&paths, &[]).unwrap();
        let key = tls::load_certified_key(&paths.cert, &paths.key).unwrap();
        let server_tls = tls::server_config(Arc::new(tls::CertResolver::new(key)), &[b"h3"]);
        let server_cfg = quinn::ServerConfig::with_crypto(Arc::new(
            quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).unwrap(),
        ));
        let server = quinn::Endpoint::server(server_cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
        let client_tls = tls::client_config(Some(&paths.ca_cert), &[b"h3"]).unwrap();
        let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        client.set_default_client_config(quinn::ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).unwrap(),
        )));
        let addr = server.local_addr().unwrap();
        let (server_conn, client_conn) = tokio::join!(async { server.accept().await.unwrap().await.unwrap() }, async {
            client.connect(addr, "localhost").unwrap().await.unwrap()
        });
        let (mut csend, crecv) = client_conn.open_bi().await.unwrap();
        csend.write_all(b"GET").await.unwrap(); // the server learns of the stream
        csend.finish().unwrap();
        let (ssend, _srecv) = server_conn.accept_bi().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let _ = (server, client); // the connections keep their endpoints' drivers
        (
            vec![server_conn, client_conn],
            SendStream {
                stream: ssend,
                queued: Vec::new(),
                ended: false,
            },
            crecv,
        )
    }

    #[tokio::test]
    async fn a_stream_dropped_with_queued_data_is_reset_not_finished() {
        let (_conns, mut send, mut recv) = stream_pair("drop").await;
        // Written and flushed: the client has these bytes.
        queue_frame(
            &mut frame(&[0x00, 0x05], &Bytes::from_static(b"first")),
            &mut send.queued,
        );
        std::future::poll_fn(|cx| quic::SendStream::<Bytes>::poll_ready(&mut send, cx))
            .await
            .unwrap();
        // Queued, then the task is cancelled before it is written.
        queue_frame(
            &mut frame(&[0x00, 0x04], &Bytes::from_static(b"rest")),
            &mut send.queued,
        );
        drop(send);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), recv.read_to_end(1 << 20))
            .await
            .expect("the client learns how the stream ended");
        match got {
            Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
                assert_eq!(code.into_inner(), Code::H3_INTERNAL_ERROR.value())
            }
            other => panic!("a clean end after a short body: {other:?}"),
        }
    }

    /// Between chunks nothing is queued (h3 writes each `send_data` at
    /// once); a task ending there must still not look like a whole body.
    #[tokio::test]
    async fn a_stream_dropped_between_chunks_is_reset_not_finished() {
        let (_conns, mut send, mut recv) = stream_pair("between").await;
        queue_frame(
            &mut frame(&[0x00, 0x05], &Bytes::from_static(b"first")),
            &mut send.queued,
        );
        std::future::poll_fn(|cx| quic::SendStream::<Bytes>::poll_ready(&mut send, cx))
            .await
            .unwrap();
        assert!(send.queued.is_empty());
        drop(send);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), recv.read_to_end(1 << 20))
            .await
            .expect("the client learns how the stream ended");
        assert!(
            matches!(got, Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(_)))),
            "a clean end after a short body: {got:?}"
        );
    }

    #[tokio::test]
    async fn a_finished_stream_ends_cleanly() {
        let (_conns, mut send, mut recv) = stream_pair("finish").await;
        queue_frame(
            &mut frame(&[0x00, 0x04], &Bytes::from_static(b"body")),
            &mut send.queued,
        );
        std::future::poll_fn(|cx| quic::SendStream::<Bytes>::poll_finish(&mut send, cx))
            .await
            .unwrap();
        drop(send);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), recv.read_to_end(1 << 20))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"\x00\x04body");
    }
}
