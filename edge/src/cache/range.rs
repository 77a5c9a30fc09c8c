//! Byte ranges (RFC 9110 §14) and `If-Range` for the edge. The logic is
//! `outpost_proto::range` and `outpost_proto::conditional`, shared with the
//! origin; this module adapts it to the shapes the request path matches on.
//!
//! Only single ranges are answered with 206; a multi-range or malformed
//! `Range` is ignored (a 200 with the whole body), as RFC 9110 allows.

use http::HeaderValue;
use outpost_proto::range::{self as proto, Resolution};

pub use outpost_proto::conditional::if_range_allows;
pub use outpost_proto::range::{content_range, RangeSpec};

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

/// Parse one `Range` field value (`outpost_proto::range::parse`).
pub fn parse(value: Option<&HeaderValue>) -> RangeRequest {
    match value.and_then(proto::parse_value) {
        Some(spec) => RangeRequest::Single(spec),
        None => RangeRequest::Whole,
    }
}

/// Resolve a range against a representation of `len` bytes
/// (`outpost_proto::range::resolve`). The one case that resolves to the
/// whole representation, a suffix of an empty one, is answered 416 here:
/// there is no byte to send either way.
pub fn resolve(spec: RangeSpec, len: u64) -> Resolved {
    match proto::resolve(spec, len) {
        Resolution::Partial(r) => Resolved::Partial {
            start: r.first,
            end: r.last,
        },
        Resolution::Unsatisfiable | Resolution::Full => Resolved::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapts_the_shared_parser_and_resolver() {
        let p = |s: &str| parse(Some(&HeaderValue::from_str(s).unwrap()));
        assert_eq!(parse(None), RangeRequest::Whole);
        assert_eq!(p("bytes=0-1,3-4"), RangeRequest::Whole);
        assert_eq!(p("bytes=5-"), RangeRequest::Single(RangeSpec::From(5)));
        assert_eq!(
            resolve(RangeSpec::FromTo(2, 20), 10),
            Resolved::Partial { start: 2, end: 9 }
        );
        assert_eq!(resolve(RangeSpec::From(10), 10), Resolved::Unsatisfiable);
        assert_eq!(resolve(RangeSpec::Suffix(5), 0), Resolved::Unsatisfiable);
    }
}
