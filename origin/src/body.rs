//! Response bodies: chunk streams from memory, files and the generator, the
//! pacing that holds a stream to a byte rate, and the body type handed to
//! hyper, which counts what was sent and records the request when dropped.

use std::io::{self, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, Stream, StreamExt, TryStreamExt};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::time::Instant;
use tokio_util::io::ReaderStream;

use crate::catalog;
use crate::metrics::RequestRecord;

/// Largest chunk any body stream yields.
pub const CHUNK: usize = 64 * 1024;

/// A stream of body chunks.
pub type ChunkStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// `bytes[first..first + len]` in chunks of at most [`CHUNK`].
pub fn memory(bytes: Bytes, first: u64, len: u64) -> ChunkStream {
    let start = usize::try_from(first).unwrap_or(usize::MAX).min(bytes.len());
    let end = start
        .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
        .min(bytes.len());
    let mut part = bytes.slice(start..end);
    let mut chunks = Vec::with_capacity(part.len() / CHUNK + 1);
    while !part.is_empty() {
        chunks.push(Ok(part.split_to(CHUNK.min(part.len()))));
    }
    Box::pin(stream::iter(chunks))
}

/// `len` bytes of `file` from `first`, read as they are sent.
pub fn file(mut file: tokio::fs::File, first: u64, len: u64) -> ChunkStream {
    let open = async move {
        file.seek(SeekFrom::Start(first)).await?;
        Ok::<_, io::Error>(ReaderStream::with_capacity(file.take(len), CHUNK))
    };
    Box::pin(stream::once(open).try_flatten())
}

/// `len` synthetic bytes of the object with `seed` from `first`, generated
/// one chunk at a time.
pub fn synthetic(seed: u64, first: u64, len: u64) -> ChunkStream {
    let end = first.saturating_add(len);
    Box::pin(stream::unfold(first, move |pos| async move {
        if pos >= end {
            return None;
        }
        let n = (end - pos).min(CHUNK as u64) as usize;
        let mut buf = BytesMut::zeroed(n);
        catalog::fill(seed, pos, &mut buf);
        Some((Ok(buf.freeze()), pos + n as u64))
    }))
}

/// Hold `inner` to `bytes_per_second` (> 0): the stream is re-cut into
/// pieces of about a twentieth of a second, and each piece waits until the
/// bytes before it would have taken their time at that rate. The first
/// piece goes out at once.
pub fn paced(inner: ChunkStream, bytes_per_second: u64) -> ChunkStream {
    let rate = bytes_per_second.max(1);
    let piece = (rate / 20).clamp(1, CHUNK as u64) as usize;
    struct State {
        inner: ChunkStream,
        pending: Bytes,
        sent: u64,
        start: Option<Instant>,
    }
    let state = State {
        inner,
        pending: Bytes::new(),
        sent: 0,
        start: None,
    };
    Box::pin(stream::unfold(state, move |mut st| async move {
        while st.pending.is_empty() {
            match st.inner.next().await? {
                Ok(b) => st.pending = b,
                Err(e) => return Some((Err(e), st)),
            }
        }
        let out = st.pending.split_to(piece.min(st.pending.len()));
        match st.start {
            None => st.start = Some(Instant::now()),
            Some(start) => {
                let due = start + Duration::from_secs_f64(st.sent as f64 / rate as f64);
                tokio::time::sleep_until(due).await;
            }
        }
        st.sent += out.len() as u64;
        Some((Ok(out), st))
    }))
}

/// The body of every origin response. It counts the bytes handed to hyper
/// and, when hyper drops it (response done or connection gone), records
/// the request: metrics and one access-log line.
pub struct ResponseBody {
    inner: Option<ChunkStream>,
    remaining: u64,
    record: RequestRecord,
}

impl ResponseBody {
    /// A body of exactly `len` bytes from `inner`.
    pub fn new(inner: ChunkStream, len: u64, record: RequestRecord) -> Self {
        Self {
            inner: Some(inner),
            remaining: len,
            record,
        }
    }

    /// No body (HEAD, 304, 416).
    pub fn empty(record: RequestRecord) -> Self {
        let mut record = record;
        record.complete = true;
        Self {
            inner: None,
            remaining: 0,
            record,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let n = chunk.len() as u64;
                this.record.bytes += n;
                this.remaining = this.remaining.saturating_sub(n);
                if this.remaining == 0 {
                    // All declared bytes are out: end here, as hyper may not
                    // poll again once Content-Length is satisfied.
                    this.inner = None;
                    this.record.complete = true;
                }
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(path = %this.record.path, error = %e, "response body failed");
                this.inner = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.inner = None;
                this.record.complete = this.remaining == 0;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.inner {
            Some(_) => SizeHint::with_exact(self.remaining),
            None => SizeHint::with_exact(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(s: ChunkStream) -> (Vec<u8>, usize) {
        let chunks: Vec<Bytes> = s.try_collect().await.unwrap();
        assert!(chunks.iter().all(|c| c.len() <= CHUNK && !c.is_empty()));
        (chunks.concat(), chunks.len())
    }

    #[tokio::test]
    async fn memory_slices() {
        let b = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<_>>());
        let (all, n) = collect(memory(b.clone(), 0, 200_000)).await;
        assert_eq!((all.as_slice(), n), (&b[..], 4));
        assert_eq!(collect(memory(b.clone(), 10, 5)).await.0, &b[10..15]);
        assert_eq!(collect(memory(b.clone(), 199_999, 100)).await.0, &b[199_999..]);
        assert!(collect(memory(b, 300_000, 1)).await.0.is_empty());
    }

    #[tokio::test]
    async fn file_ranges() {
        let tmp = crate::tests::TempDir::new("body");
        let p = tmp.0.join("media.bin");
        let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let open = || async { tokio::fs::File::open(&p).await.unwrap() };
        assert_eq!(collect(file(open().await, 0, 150_000)).await.0, data);
        assert_eq!(
            collect(file(open().await, 70_000, 70_001)).await.0,
            &data[70_000..140_001]
        );
        // Asking past the end yields what there is.
        assert_eq!(collect(file(open().await, 149_990, 100)).await.0, &data[149_990..]);
    }

    #[tokio::test]
    async fn synthetic_matches_the_public_function() {
        let path = "/synth/t0000/r0/seg00000.m4s";
        let (got, _) = collect(synthetic(catalog::seed(path), 12_345, 200_000)).await;
        assert_eq!(got, catalog::synthetic_bytes(path, 12_345, 200_000));
        assert!(collect(synthetic(1, 5, 0)).await.0.is_empty());
    }

    #[tokio::test]
    async fn response_body_ends_with_its_length_and_is_recorded() {
        use crate::metrics::Metrics;
        use http_body_util::BodyExt;
        use prometheus::{Encoder, Registry, TextEncoder};
        use std::sync::Arc;

        let registry = Registry::new();
        let metrics = Arc::new(Metrics::new(&registry).unwrap());
        let record = || {
            let peer = "127.0.0.1:9".parse().unwrap();
            RequestRecord::new(
                metrics.clone(),
                http::Method::GET,
                "/x".into(),
                "h2",
                peer,
                Instant::now(),
            )
        };
        let mut body = ResponseBody::new(memory(Bytes::from(vec![0u8; 100_000]), 0, 100_000), 100_000, record());
        assert_eq!(body.size_hint().exact(), Some(100_000));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first.len(), CHUNK);
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some((100_000 - CHUNK) as u64));
        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(second.len(), 100_000 - CHUNK);
        // Ended as soon as the declared length is out, without another poll.
        assert!(body.is_end_stream());
        assert!(body.record.complete);
        drop(body);
        // A body dropped early is recorded with what it sent.
        let mut partial = ResponseBody::new(synthetic(1, 0, 200_000), 200_000, record());
        partial.frame().await.unwrap().unwrap();
        assert!(!partial.record.complete);
        drop(partial);
        let empty = ResponseBody::empty(record());
        assert!(empty.is_end_stream() && empty.record.complete);
        drop(empty);

        let mut out = Vec::new();
        TextEncoder::new().encode(&registry.gather(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(&format!("outpost_origin_bytes_total {}", 100_000 + CHUNK)),
            "{text}"
        );
        assert!(
            text.contains(r#"outpost_origin_requests_total{method="GET",status="200"} 3"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn pacing_holds_the_rate() {
        let data = Bytes::from(vec![1u8; 25_000]);
        let start = Instant::now();
        let (got, pieces) = collect(paced(memory(data.clone(), 0, 25_000), 50_000)).await;
        let took = start.elapsed();
        assert_eq!(got, data);
        // Pieces of at most 2,500 bytes at 50 kB/s: the last leaves after
        // 22.5 kB, i.e. at 0.45 s.
        assert_eq!(pieces, 10);
        assert!(
            took >= Duration::from_millis(440) && took <= Duration::from_millis(1500),
            "{took:?}"
        );
        // Small rates still make progress (1-byte pieces at 20 B/s).
        let (got, pieces) = collect(paced(memory(Bytes::from_static(b"abc"), 0, 3), 20)).await;
        assert_eq!((got.as_slice(), pieces), (&b"abc"[..], 3));
    }
}
