//! HTTP byte ranges (RFC 9110 §14) over `http::HeaderMap` / `HeaderValue`:
//! parsing a `Range` field and resolving it against a representation length,
//! with `If-Range` (from [`crate::conditional`]) in [`evaluate`]. Pure
//! arithmetic, no IO; the origin and the edge both answer ranges with it.
//!
//! Only a single range is served. A multi-range request (one field line
//! with several ranges, or several field lines), another unit, or a header
//! that does not parse is ignored: the full representation is sent with
//! 200, which RFC 9110 §14.2 permits. Numbers too large for a `u64`
//! saturate instead of failing (§14.1.1 asks recipients to expect them):
//! a huge first position is unsatisfiable, a huge last position or suffix
//! means "to the end".

use std::time::SystemTime;

use http::header::RANGE;
use http::{HeaderMap, HeaderValue};

use crate::conditional;

/// One `byte-range-spec` as written by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=first-last` (inclusive).
    FromTo(u64, u64),
    /// `bytes=first-`.
    From(u64),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// A satisfiable range, inclusive on both ends (`first <= last < len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    /// Number of bytes in the range (never zero).
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Always false: a satisfiable range names at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `Content-Range` value for a 206: `bytes first-last/complete`.
    pub fn content_range(&self, complete: u64) -> String {
        content_range(self.first, self.last, complete)
    }
}

/// How to answer a range request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// 206 with this part.
    Partial(ByteRange),
    /// 416 with `Content-Range: bytes */len` ([`unsatisfied_content_range`]).
    Unsatisfiable,
    /// 200 with the whole representation.
    Full,
}

/// The `Content-Range` value for a 206: `bytes first-last/complete`
/// (callers use [`ByteRange::content_range`]).
fn content_range(first: u64, last: u64, complete: u64) -> String {
    format!("bytes {first}-{last}/{complete}")
}

/// The `Content-Range` value for a 416: `bytes */complete`.
pub fn unsatisfied_content_range(complete: u64) -> String {
    format!("bytes */{complete}")
}

/// Parse a `Range` field value. `None` means "ignore the header": not the
/// `bytes` unit, malformed, `first > last`, or more than one range.
pub fn parse(value: &str) -> Option<RangeSpec> {
    let (unit, set) = value.trim().split_once('=')?;
    if !unit.trim_end().eq_ignore_ascii_case("bytes") {
        return None;
    }
    // A list may contain empty elements (RFC 9110 §5.6.1); exactly one
    // non-empty element is served.
    let mut specs = set
        .split(',')
        .map(|s| s.trim_matches([' ', '\t']))
        .filter(|s| !s.is_empty());
    let spec = specs.next()?;
    if specs.next().is_some() {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim_matches([' ', '\t']), last.trim_matches([' ', '\t']));
    match (first.is_empty(), last.is_empty()) {
        (true, true) => None,
        (true, false) => Some(RangeSpec::Suffix(number(last)?)),
        (false, true) => Some(RangeSpec::From(number(first)?)),
        (false, false) => {
            let (a, b) = (number(first)?, number(last)?);
            (a <= b).then_some(RangeSpec::FromTo(a, b))
        }
    }
}

/// [`parse`] one field line; a value that is not visible ASCII is ignored.
pub fn parse_value(value: &HeaderValue) -> Option<RangeSpec> {
    value.to_str().ok().and_then(parse)
}

/// The range a request asks for: exactly one `Range` field line that
/// parses. Several field lines are one multi-range list (RFC 9110 §5.3),
/// so they are ignored like one.
pub fn requested(headers: &HeaderMap) -> Option<RangeSpec> {
    let mut lines = headers.get_all(RANGE).iter();
    match (lines.next(), lines.next()) {
        (Some(v), None) => parse_value(v),
        _ => None,
    }
}

/// Decimal digits only; values beyond u64 saturate (so a huge `first` is
/// unsatisfiable and a huge `last` or suffix means "to the end").
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        s.bytes()
            .fold(0u64, |n, b| n.saturating_mul(10).saturating_add(u64::from(b - b'0'))),
    )
}

/// Resolve a spec against a representation of `len` bytes.
pub fn resolve(spec: RangeSpec, len: u64) -> Resolution {
    match spec {
        RangeSpec::FromTo(first, last) if first < len => Resolution::Partial(ByteRange {
            first,
            last: last.min(len - 1),
        }),
        RangeSpec::From(first) if first < len => Resolution::Partial(ByteRange { first, last: len - 1 }),
        RangeSpec::FromTo(..) | RangeSpec::From(_) => Resolution::Unsatisfiable,
        RangeSpec::Suffix(0) => Resolution::Unsatisfiable,
        // A non-zero suffix of an empty representation is satisfiable
        // (RFC 9110 §14.1.1) but names no byte: send the (empty) whole.
        RangeSpec::Suffix(_) if len == 0 => Resolution::Full,
        RangeSpec::Suffix(n) => Resolution::Partial(ByteRange {
            first: len.saturating_sub(n),
            last: len - 1,
        }),
    }
}

/// The whole decision for a GET of a `len`-byte representation with these
/// validators: [`requested`], then `If-Range`
/// ([`conditional::range_allowed`]: a failed one overrides even an
/// unsatisfiable range), then [`resolve`]. Range is defined for GET only
/// (RFC 9110 §14.2): callers answer HEAD without calling this.
pub fn evaluate(headers: &HeaderMap, etag: Option<&str>, last_modified: Option<SystemTime>, len: u64) -> Resolution {
    match requested(headers) {
        Some(spec) if conditional::range_allowed(headers, etag, last_modified) => resolve(spec, len),
        _ => Resolution::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::IF_RANGE;
    use std::time::{Duration, UNIX_EPOCH};
    use RangeSpec::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn headers(pairs: &[(&http::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, hv(v));
        }
        h
    }

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(parse("bytes=0-99"), Some(FromTo(0, 99)));
        assert_eq!(parse("bytes=100-"), Some(From(100)));
        assert_eq!(parse("bytes=-500"), Some(Suffix(500)));
        assert_eq!(parse("bytes=5-5"), Some(FromTo(5, 5)));
        assert_eq!(parse("Bytes=0-1"), Some(FromTo(0, 1)));
        assert_eq!(parse("BYTES = 0-1"), Some(FromTo(0, 1)));
        assert_eq!(parse(" bytes= 7 - 9 "), Some(FromTo(7, 9)));
        assert_eq!(parse("bytes=0-1,"), Some(FromTo(0, 1)));
        assert_eq!(parse("bytes=, 0-1"), Some(FromTo(0, 1)));
    }

    /// From the edge's tests: header values, and no header at all.
    #[test]
    fn parses_header_values() {
        assert_eq!(parse_value(&hv("bytes=0-99")), Some(FromTo(0, 99)));
        assert_eq!(parse_value(&hv("bytes=100-")), Some(From(100)));
        assert_eq!(parse_value(&hv("bytes=-500")), Some(Suffix(500)));
        assert_eq!(parse_value(&hv("BYTES = 5-6")), Some(FromTo(5, 6)));
        assert_eq!(requested(&HeaderMap::new()), None);
        assert_eq!(requested(&headers(&[(&RANGE, "bytes=2-3")])), Some(FromTo(2, 3)));
        // Several field lines are one list of several ranges.
        assert_eq!(
            requested(&headers(&[(&RANGE, "bytes=0-1"), (&RANGE, "bytes=3-4")])),
            None
        );
        // Not visible ASCII: ignored, never a panic.
        assert_eq!(parse_value(&HeaderValue::from_bytes(b"bytes=0-1\xff").unwrap()), None);
    }

    #[test]
    fn ignores_what_it_does_not_serve() {
        for bad in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=,",
            "bytes=a-b",
            "bytes=1-a",
            "bytes=-a",
            "bytes=+1-2",
            "bytes=-1-2",
            "bytes=1--2",
            "bytes=0x10-20",
            "bytes=5-4",
            "bytes=0-1,3-4",
            "bytes=0-1, -5",
            "items=0-1",
            "bytesx=0-1",
            "bytes 0-1",
            "bytes=1 2-3",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    /// From the edge's tests (its overflowing `first-` case now saturates:
    /// see `huge_numbers_saturate`).
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
        ] {
            assert_eq!(parse_value(&hv(s)), None, "{s}");
        }
    }

    #[test]
    fn huge_numbers_saturate() {
        assert_eq!(parse("bytes=0-99999999999999999999999"), Some(FromTo(0, u64::MAX)));
        assert_eq!(
            resolve(FromTo(0, u64::MAX), 10),
            Resolution::Partial(ByteRange { first: 0, last: 9 })
        );
        assert_eq!(parse("bytes=99999999999999999999999-"), Some(From(u64::MAX)));
        assert_eq!(resolve(From(u64::MAX), 10), Resolution::Unsatisfiable);
        assert_eq!(parse("bytes=-99999999999999999999999"), Some(Suffix(u64::MAX)));
        assert_eq!(
            resolve(Suffix(u64::MAX), 10),
            Resolution::Partial(ByteRange { first: 0, last: 9 })
        );
        assert_eq!(
            resolve(FromTo(u64::MAX - 1, u64::MAX), u64::MAX),
            Resolution::Partial(ByteRange {
                first: u64::MAX - 1,
                last: u64::MAX - 1
            })
        );
    }

    #[test]
    fn resolves_against_the_length() {
        let p = |first, last| Resolution::Partial(ByteRange { first, last });
        assert_eq!(resolve(FromTo(0, 99), 1000), p(0, 99));
        assert_eq!(resolve(FromTo(990, 2000), 1000), p(990, 999));
        assert_eq!(resolve(FromTo(999, 999), 1000), p(999, 999));
        assert_eq!(resolve(FromTo(1000, 1001), 1000), Resolution::Unsatisfiable);
        assert_eq!(resolve(From(0), 1000), p(0, 999));
        assert_eq!(resolve(From(999), 1000), p(999, 999));
        assert_eq!(resolve(From(1000), 1000), Resolution::Unsatisfiable);
        assert_eq!(resolve(Suffix(1), 1000), p(999, 999));
        assert_eq!(resolve(Suffix(500), 1000), p(500, 999));
        assert_eq!(resolve(Suffix(5000), 1000), p(0, 999));
        assert_eq!(resolve(Suffix(0), 1000), Resolution::Unsatisfiable);
        // Empty representations.
        assert_eq!(resolve(From(0), 0), Resolution::Unsatisfiable);
        assert_eq!(resolve(FromTo(0, 5), 0), Resolution::Unsatisfiable);
        assert_eq!(resolve(Suffix(5), 0), Resolution::Full);
        assert_eq!(resolve(Suffix(0), 0), Resolution::Unsatisfiable);
    }

    /// From the edge's tests: header text in, resolution out.
    #[test]
    fn resolves_header_values_against_length() {
        let r = |s: &str, len| resolve(parse_value(&hv(s)).expect(s), len);
        let p = |first, last| Resolution::Partial(ByteRange { first, last });
        assert_eq!(r("bytes=0-99", 1000), p(0, 99));
        assert_eq!(r("bytes=900-2000", 1000), p(900, 999));
        assert_eq!(r("bytes=999-", 1000), p(999, 999));
        assert_eq!(r("bytes=1000-", 1000), Resolution::Unsatisfiable);
        assert_eq!(r("bytes=-100", 1000), p(900, 999));
        assert_eq!(r("bytes=-5000", 1000), p(0, 999));
        assert_eq!(r("bytes=-0", 1000), Resolution::Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Resolution::Unsatisfiable);
        assert_eq!(r("bytes=-1", 0), Resolution::Full);
        assert_eq!(content_range(0, 99, 1000), "bytes 0-99/1000");
    }

    #[test]
    fn evaluate_and_headers() {
        let lm = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let e = |pairs: &[(&http::HeaderName, &str)]| evaluate(&headers(pairs), Some("\"e1\""), Some(lm), 10);
        assert_eq!(e(&[]), Resolution::Full);
        assert_eq!(e(&[(&RANGE, "bytes=0-1,4-5")]), Resolution::Full);
        assert_eq!(e(&[(&RANGE, "bytes=20-")]), Resolution::Unsatisfiable);
        let r = ByteRange { first: 2, last: 5 };
        assert_eq!(e(&[(&RANGE, "bytes=2-5")]), Resolution::Partial(r));
        assert_eq!(r.len(), 4);
        assert!(!r.is_empty());
        assert_eq!(r.content_range(10), "bytes 2-5/10");
        assert_eq!(unsatisfied_content_range(10), "bytes */10");
        // If-Range: a match keeps the range, a mismatch (even for an
        // unsatisfiable range) sends the whole.
        assert_eq!(
            e(&[(&RANGE, "bytes=2-5"), (&IF_RANGE, "\"e1\"")]),
            Resolution::Partial(r)
        );
        assert_eq!(e(&[(&RANGE, "bytes=2-5"), (&IF_RANGE, "\"old\"")]), Resolution::Full);
        assert_eq!(e(&[(&RANGE, "bytes=50-"), (&IF_RANGE, "\"old\"")]), Resolution::Full);
        assert_eq!(e(&[(&RANGE, "bytes=0-1"), (&RANGE, "bytes=3-4")]), Resolution::Full);
    }

    #[test]
    fn every_partial_is_within_bounds() {
        for len in 0..20u64 {
            for a in 0..25u64 {
                for b in a..25u64 {
                    for spec in [FromTo(a, b), From(a), Suffix(a)] {
                        if let Resolution::Partial(r) = resolve(spec, len) {
                            assert!(r.first <= r.last && r.last < len, "{spec:?} {len} -> {r:?}");
                        }
                    }
                }
            }
        }
    }
}
