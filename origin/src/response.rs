//! From an object and the request headers to status, headers and body:
//! conditional requests, ranges, HEAD. Error replies too.

use http::header::{
    ACCEPT_RANGES, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use outpost_proto::range::{self, Resolution};

use crate::body::{self, ChunkStream};
use crate::kind::CachePolicy;
use crate::object::{Object, Source};

/// What to answer, before it becomes a hyper response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body and its exact length; `None` for no body. Always `None`
    /// for HEAD (the headers are those of the GET).
    pub body: Option<(ChunkStream, u64)>,
}

/// A header value from text we generated (digits, hex, dates, ASCII).
fn value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn stream(source: Source, first: u64, len: u64) -> ChunkStream {
    match source {
        Source::Memory(bytes) => body::memory(bytes, first, len),
        Source::File(file) => body::file(file, first, len),
        Source::Synthetic { seed } => body::synthetic(seed, first, len),
    }
}

/// Answer a GET or HEAD for `object`.
pub fn object(method: &Method, request: &HeaderMap, object: Object, cache: &CachePolicy) -> Reply {
    let Object {
        len,
        content_type,
        cache_class,
        validators,
        source,
    } = object;
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(ETAG, value(validators.etag.clone()));
    headers.insert(CACHE_CONTROL, cache.value(cache_class).clone());

    if validators.not_modified(request) {
        return Reply {
            status: StatusCode::NOT_MODIFIED,
            headers,
            body: None,
        };
    }
    headers.insert(LAST_MODIFIED, value(validators.last_modified_header()));

    // Range applies to GET only (RFC 9110 §14.2), a single field line, and
    // only if `If-Range` holds.
    let resolution = if *method == Method::GET {
        range::evaluate(request, Some(&validators.etag), Some(validators.last_modified), len)
    } else {
        Resolution::Full
    };
    let (status, first, count) = match resolution {
        Resolution::Full => (StatusCode::OK, 0, len),
        Resolution::Partial(r) => {
            headers.insert(CONTENT_RANGE, value(r.content_range(len)));
            (StatusCode::PARTIAL_CONTENT, r.first, r.len())
        }
        Resolution::Unsatisfiable => {
            headers.insert(CONTENT_RANGE, value(range::unsatisfied_content_range(len)));
            headers.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
            return Reply {
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                headers,
                body: None,
            };
        }
    };
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(count));
    let body = (*method != Method::HEAD).then(|| (stream(source, first, count), count));
    Reply { status, headers, body }
}

/// A short plain-text error reply (`405` carries `Allow: GET, HEAD`).
pub fn error(method: &Method, status: StatusCode) -> Reply {
    let text = format!(
        "{}\n",
        status.canonical_reason().unwrap_or("error").to_ascii_lowercase()
    );
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(text.len() as u64));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    let len = text.len() as u64;
    let body = (*method != Method::HEAD).then(|| (body::memory(text.into(), 0, len), len));
    Reply { status, headers, body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CacheControlConfig;
    use crate::kind::CacheClass;
    use bytes::Bytes;
    use futures_util::TryStreamExt;
    use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, RANGE};
    use outpost_proto::conditional::Validators;
    use std::time::{Duration, UNIX_EPOCH};

    const LM: &str = "Tue, 14 Nov 2023 22:13:20 GMT";

    fn obj() -> Object {
        Object {
            len: 10,
            content_type: "video/iso.segment",
            cache_class: CacheClass::Segment,
            validators: Validators::new("\"e1\"".into(), UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            source: Source::Memory(Bytes::from_static(b"0123456789")),
        }
    }

    fn reply(method: Method, pairs: &[(http::HeaderName, &str)]) -> (Reply, Option<Vec<u8>>) {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        let cache = CachePolicy::new(&CacheControlConfig::default()).unwrap();
        let mut r = object(&method, &h, obj(), &cache);
        let body = r.body.take().map(|(s, len)| {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let chunks: Vec<Bytes> = rt.block_on(s.try_collect()).unwrap();
            let b = chunks.concat();
            assert_eq!(b.len() as u64, len);
            b
        });
        (r, body)
    }

    fn h<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
        r.headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn full_get() {
        let (r, body) = reply(Method::GET, &[]);
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(body.unwrap(), b"0123456789");
        assert_eq!(h(&r, "content-length"), Some("10"));
        assert_eq!(h(&r, "content-type"), Some("video/iso.segment"));
        assert_eq!(h(&r, "accept-ranges"), Some("bytes"));
        assert_eq!(h(&r, "etag"), Some("\"e1\""));
        assert_eq!(h(&r, "last-modified"), Some(LM));
        assert_eq!(h(&r, "cache-control"), Some("public, max-age=31536000, immutable"));
        assert_eq!(h(&r, "content-range"), None);
    }

    #[test]
    fn head_has_get_headers_without_body() {
        let (get, _) = reply(Method::GET, &[]);
        let (head, body) = reply(Method::HEAD, &[]);
        assert!(body.is_none());
        assert_eq!(head.status, get.status);
        assert_eq!(head.headers, get.headers);
        // Range does not apply to HEAD.
        let (head, _) = reply(Method::HEAD, &[(RANGE, "bytes=0-1")]);
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(h(&head, "content-length"), Some("10"));
    }

    #[test]
    fn ranges() {
        let (r, body) = reply(Method::GET, &[(RANGE, "bytes=2-4")]);
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(body.unwrap(), b"234");
        assert_eq!(h(&r, "content-range"), Some("bytes 2-4/10"));
        assert_eq!(h(&r, "content-length"), Some("3"));
        let (r, body) = reply(Method::GET, &[(RANGE, "bytes=-3")]);
        assert_eq!(
            (r.status, body.unwrap()),
            (StatusCode::PARTIAL_CONTENT, b"789".to_vec())
        );
        let (r, body) = reply(Method::GET, &[(RANGE, "bytes=8-")]);
        assert_eq!((r.status, body.unwrap()), (StatusCode::PARTIAL_CONTENT, b"89".to_vec()));
        let (r, body) = reply(Method::GET, &[(RANGE, "bytes=10-")]);
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert!(body.is_none());
        assert_eq!(h(&r, "content-range"), Some("bytes */10"));
        assert_eq!(h(&r, "content-length"), Some("0"));
        for ignored in ["bytes=0-1,3-4", "bytes=x", "lines=1-2"] {
            let (r, body) = reply(Method::GET, &[(RANGE, ignored)]);
            assert_eq!((r.status, body.unwrap().len()), (StatusCode::OK, 10), "{ignored}");
        }
        let (r, _) = reply(Method::GET, &[(RANGE, "bytes=0-1"), (RANGE, "bytes=3-4")]);
        assert_eq!(r.status, StatusCode::OK);
    }

    #[test]
    fn if_range() {
        let (r, _) = reply(Method::GET, &[(RANGE, "bytes=2-4"), (IF_RANGE, "\"e1\"")]);
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
        let (r, _) = reply(Method::GET, &[(RANGE, "bytes=2-4"), (IF_RANGE, LM)]);
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
        let (r, body) = reply(Method::GET, &[(RANGE, "bytes=2-4"), (IF_RANGE, "\"old\"")]);
        assert_eq!((r.status, body.unwrap().len()), (StatusCode::OK, 10));
        let (r, _) = reply(Method::GET, &[(RANGE, "bytes=2-4"), (IF_RANGE, "W/\"e1\"")]);
        assert_eq!(r.status, StatusCode::OK);
        // A failed If-Range also overrides an unsatisfiable range.
        let (r, _) = reply(Method::GET, &[(RANGE, "bytes=50-"), (IF_RANGE, "\"old\"")]);
        assert_eq!(r.status, StatusCode::OK);
    }

    #[test]
    fn not_modified() {
        for pairs in [
            vec![(IF_NONE_MATCH, "\"e1\"")],
            vec![(IF_NONE_MATCH, "*")],
            vec![(IF_MODIFIED_SINCE, LM)],
            vec![(IF_NONE_MATCH, "\"e1\""), (RANGE, "bytes=0-1")],
        ] {
            let (r, body) = reply(Method::GET, &pairs);
            assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{pairs:?}");
            assert!(body.is_none());
            assert_eq!(h(&r, "etag"), Some("\"e1\""));
            assert_eq!(h(&r, "cache-control"), Some("public, max-age=31536000, immutable"));
            assert_eq!(h(&r, "content-length"), None);
            assert_eq!(h(&r, "content-type"), None);
        }
        let (r, _) = reply(Method::HEAD, &[(IF_NONE_MATCH, "\"e1\"")]);
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);
        let (r, _) = reply(Method::GET, &[(IF_NONE_MATCH, "\"e2\""), (IF_MODIFIED_SINCE, LM)]);
        assert_eq!(r.status, StatusCode::OK);
    }

    #[test]
    fn errors() {
        let r = error(&Method::POST, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(h(&r, "allow"), Some("GET, HEAD"));
        assert_eq!(r.body.as_ref().map(|b| b.1), Some(19));
        assert_eq!(h(&r, "content-length"), Some("19"));
        let r = error(&Method::HEAD, StatusCode::NOT_FOUND);
        assert!(r.body.is_none());
        assert_eq!(h(&r, "content-length"), Some("10"));
        assert_eq!(h(&r, "allow"), None);
    }
}
