//! Byte ranges (RFC 9110 §14): parsing `Range`, resolving it against a
//! representation length, and `If-Range`.
//!
//! Only single ranges are answered with 206; a multi-range or malformed
//! `Range` is ignored (a 200 with the whole body), as RFC 9110 allows.

use std::time::SystemTime;

use http::HeaderValue;

/// One `bytes=` range as the client wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-` or `first-last`.
    From { first: u64, last: Option<u64> },
    /// `-suffix`: the last `suffix` bytes.
    Suffix(u64),
}

/// What a `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No header, a malformed one, another unit, or several ranges: serve 200.
    Whole,
    Single(RangeSpec),
}

/// A range resolved against a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// Inclusive byte positions `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416, with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Parse a `Range` header value.
pub fn parse(value: Option<&HeaderValue>) -> RangeRequest {
    let Some(v) = value.and_then(|v| v.to_str().ok()) else {
        return RangeRequest::Whole;
    };
    let Some((unit, set)) = v.split_once('=') else {
        return RangeRequest::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeRequest::Whole;
    }
    let set = set.trim();
    if set.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((a, b)) = set.split_once('-') else {
        return RangeRequest::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeRequest::Whole,
        (true, false) => match num(b) {
            Some(n) => RangeRequest::Single(RangeSpec::Suffix(n)),
            None => RangeRequest::Whole,
        },
        (false, true) => match num(a) {
            Some(first) => RangeRequest::Single(RangeSpec::From { first, last: None }),
            None => RangeRequest::Whole,
        },
        (false, false) => match (num(a), num(b)) {
            (Some(first), Some(last)) if last >= first => RangeRequest::Single(RangeSpec::From {
                first,
                last: Some(last),
            }),
            _ => RangeRequest::Whole, // last < first is invalid syntax: ignore
        },
    }
}

/// Resolve a range against a representation of `len` bytes.
pub fn resolve(spec: RangeSpec, len: u64) -> Resolved {
    match spec {
        RangeSpec::From { first, last } => {
            if first >= len {
                Resolved::Unsatisfiable
            } else {
                let end = last.map_or(len - 1, |l| l.min(len - 1));
                Resolved::Partial { start: first, end }
            }
        }
        RangeSpec::Suffix(0) => Resolved::Unsatisfiable,
        RangeSpec::Suffix(n) => {
            if len == 0 {
                Resolved::Unsatisfiable
            } else {
                Resolved::Partial {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }
            }
        }
    }
}

/// `Content-Range` value for a partial response.
pub fn content_range(start: u64, end: u64, len: u64) -> String {
    format!("bytes {start}-{end}/{len}")
}

/// Does `If-Range` allow the range? A strong ETag must match exactly; a
/// date must equal Last-Modified (which we treat as strong). Anything
/// else (weak tags, garbage) means "send the whole thing".
pub fn if_range_allows(if_range: Option<&HeaderValue>, etag: Option<&str>, last_modified: Option<SystemTime>) -> bool {
    let Some(v) = if_range.and_then(|v| v.to_str().ok()) else {
        return if_range.is_none();
    };
    let v = v.trim();
    if v.starts_with('"') {
        return matches!(etag, Some(e) if !e.starts_with("W/") && e == v);
    }
    if v.starts_with("W/") {
        return false;
    }
    match (httpdate::parse_http_date(v), last_modified) {
        (Ok(d), Some(lm)) => d == lm,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn p(s: &str) -> RangeRequest {
        parse(Some(&HeaderValue::from_str(s).unwrap()))
    }
    fn single(first: u64, last: Option<u64>) -> RangeRequest {
        RangeRequest::Single(RangeSpec::From { first, last })
    }

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(p("bytes=0-99"), single(0, Some(99)));
        assert_eq!(p("bytes=100-"), single(100, None));
        assert_eq!(p("bytes=-500"), RangeRequest::Single(RangeSpec::Suffix(500)));
        assert_eq!(p("BYTES = 5-6"), single(5, Some(6)));
        assert_eq!(parse(None), RangeRequest::Whole);
    }

    #[test]
    fn malformed_and_multi_are_ignored() {
        for s in [
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=5-1",
            "items=0-1",
            "bytes=0-1,3-4",
            "0-1",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(p(s), RangeRequest::Whole, "{s}");
        }
    }

    #[test]
    fn resolves_against_length() {
        let r = |s: &str, len| match p(s) {
            RangeRequest::Single(spec) => resolve(spec, len),
            RangeRequest::Whole => panic!("{s} did not parse"),
        };
        assert_eq!(r("bytes=0-99", 1000), Resolved::Partial { start: 0, end: 99 });
        assert_eq!(r("bytes=900-2000", 1000), Resolved::Partial { start: 900, end: 999 });
        assert_eq!(r("bytes=999-", 1000), Resolved::Partial { start: 999, end: 999 });
        assert_eq!(r("bytes=1000-", 1000), Resolved::Unsatisfiable);
        assert_eq!(r("bytes=-100", 1000), Resolved::Partial { start: 900, end: 999 });
        assert_eq!(r("bytes=-5000", 1000), Resolved::Partial { start: 0, end: 999 });
        assert_eq!(r("bytes=-0", 1000), Resolved::Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Resolved::Unsatisfiable);
        assert_eq!(r("bytes=-1", 0), Resolved::Unsatisfiable);
        assert_eq!(content_range(0, 99, 1000), "bytes 0-99/1000");
    }

    #[test]
    fn if_range() {
        let lm = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let hv = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(if_range_allows(None, Some("\"a\""), None));
        assert!(if_range_allows(Some(&hv("\"a\"")), Some("\"a\""), None));
        assert!(!if_range_allows(Some(&hv("\"b\"")), Some("\"a\""), None));
        assert!(
            !if_range_allows(Some(&hv("W/\"a\"")), Some("W/\"a\""), None),
            "weak never matches"
        );
        assert!(!if_range_allows(Some(&hv("\"a\"")), Some("W/\"a\""), None));
        assert!(if_range_allows(Some(&hv(&httpdate::fmt_http_date(lm))), None, Some(lm)));
        assert!(!if_range_allows(
            Some(&hv(&httpdate::fmt_http_date(lm + Duration::from_secs(1)))),
            None,
            Some(lm)
        ));
        assert!(!if_range_allows(Some(&hv("garbage")), Some("\"a\""), Some(lm)));
    }
}
