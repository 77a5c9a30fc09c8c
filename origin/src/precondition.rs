//! Conditional requests (RFC 9110 §13): `If-None-Match`, `If-Modified-Since`
//! and `If-Range`, evaluated against an object's validators.
//!
//! `If-Match` and `If-Unmodified-Since` are not evaluated (a read-only
//! origin has no lost updates to prevent); they are ignored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE};
use http::HeaderMap;

/// An object's validators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// A strong entity tag including its quotes, e.g. `"9f86d081884c7d65"`.
    pub etag: String,
    /// Last modification, whole seconds (what `Last-Modified` can carry).
    pub last_modified: SystemTime,
}

impl Validators {
    /// Build validators, truncating `last_modified` to whole seconds.
    pub fn new(etag: String, last_modified: SystemTime) -> Self {
        Self {
            etag,
            last_modified: truncate_to_seconds(last_modified),
        }
    }

    /// The `Last-Modified` header value.
    pub fn last_modified_header(&self) -> String {
        httpdate::fmt_http_date(self.last_modified)
    }
}

/// Drop sub-second precision (HTTP dates have none).
pub fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => UNIX_EPOCH,
    }
}

/// One member of an entity-tag list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag<'a> {
    Any,
    Entity { weak: bool, opaque: &'a str },
}

/// Parse `*` or a comma-separated list of entity tags. Parsing stops at the
/// first malformed member (members before it still count).
fn entity_tags(value: &str) -> Vec<Tag<'_>> {
    let mut tags = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        if let Some(after) = rest.strip_prefix('*') {
            tags.push(Tag::Any);
            rest = after;
            continue;
        }
        let (weak, quoted) = match rest.strip_prefix("W/") {
            Some(q) => (true, q),
            None => (false, rest),
        };
        let Some(body) = quoted.strip_prefix('"') else { break };
        let Some(end) = body.find('"') else { break };
        tags.push(Tag::Entity {
            weak,
            opaque: &body[..end],
        });
        rest = &body[end + 1..];
    }
    tags
}

/// The opaque part of our own (strong) tag.
fn opaque(etag: &str) -> &str {
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.trim_matches('"')
}

/// Weak comparison (`If-None-Match`): opaque parts equal, weakness ignored.
fn matches_weak(list: &str, etag: &str) -> bool {
    entity_tags(list).iter().any(|t| match t {
        Tag::Any => true,
        Tag::Entity { opaque: o, .. } => *o == opaque(etag),
    })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &http::HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// True when a GET or HEAD must be answered with 304 Not Modified.
///
/// `If-None-Match` (all its field lines, weak comparison, `*` matches any
/// existing object) takes precedence; `If-Modified-Since` is only looked at
/// when there is no `If-None-Match`, and an unparsable date is ignored.
pub fn not_modified(headers: &HeaderMap, v: &Validators) -> bool {
    let mut inm = headers.get_all(IF_NONE_MATCH).iter().peekable();
    if inm.peek().is_some() {
        return inm
            .filter_map(|h| h.to_str().ok())
            .any(|list| matches_weak(list, &v.etag));
    }
    match header_str(headers, &IF_MODIFIED_SINCE).and_then(|s| httpdate::parse_http_date(s.trim()).ok()) {
        Some(since) => v.last_modified <= since,
        None => false,
    }
}

/// Whether a `Range` may be honoured given `If-Range` (RFC 9110 §13.1.5):
/// true without `If-Range`; with an entity tag, only on a strong match;
/// with a date, only if it equals `Last-Modified` exactly. Anything else
/// (weak tag, garbage) means "send the whole representation".
pub fn range_allowed(headers: &HeaderMap, v: &Validators) -> bool {
    let Some(value) = headers.get(IF_RANGE) else {
        return true;
    };
    let Ok(value) = value.to_str() else { return false };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return match entity_tags(value).as_slice() {
            [Tag::Entity { weak: false, opaque: o }] => *o == opaque(&v.etag) && !v.etag.starts_with("W/"),
            _ => false,
        };
    }
    match httpdate::parse_http_date(value) {
        Ok(date) => date == v.last_modified,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn validators() -> Validators {
        Validators::new(
            "\"abc123\"".into(),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_750),
        )
    }

    fn headers(pairs: &[(&http::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const LM: &str = "Tue, 14 Nov 2023 22:13:20 GMT"; // 1_700_000_000
    const BEFORE: &str = "Tue, 14 Nov 2023 22:13:19 GMT";
    const AFTER: &str = "Tue, 14 Nov 2023 22:13:21 GMT";

    #[test]
    fn last_modified_is_whole_seconds() {
        let v = validators();
        assert_eq!(v.last_modified, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(v.last_modified_header(), LM);
    }

    #[test]
    fn entity_tag_lists() {
        assert_eq!(entity_tags("*"), vec![Tag::Any]);
        assert_eq!(
            entity_tags(r#""a", W/"b",,"c,d" "#),
            vec![
                Tag::Entity {
                    weak: false,
                    opaque: "a"
                },
                Tag::Entity {
                    weak: true,
                    opaque: "b"
                },
                Tag::Entity {
                    weak: false,
                    opaque: "c,d"
                },
            ]
        );
        assert_eq!(
            entity_tags(r#""a", bogus, "b""#),
            vec![Tag::Entity {
                weak: false,
                opaque: "a"
            }]
        );
        assert_eq!(entity_tags(r#""unterminated"#), vec![]);
        assert_eq!(entity_tags(""), vec![]);
    }

    #[test]
    fn if_none_match() {
        let v = validators();
        let yes = [
            r#""abc123""#,
            r#"W/"abc123""#,
            "*",
            r#""x", "abc123""#,
            r#" "zz" ,W/"abc123" "#,
        ];
        for value in yes {
            assert!(not_modified(&headers(&[(&IF_NONE_MATCH, value)]), &v), "{value}");
        }
        let no = [r#""abc""#, r#""abc1234""#, "abc123", r#""x", "y""#, ""];
        for value in no {
            assert!(!not_modified(&headers(&[(&IF_NONE_MATCH, value)]), &v), "{value}");
        }
        // Several field lines form one list.
        let h = headers(&[(&IF_NONE_MATCH, r#""x""#), (&IF_NONE_MATCH, r#""abc123""#)]);
        assert!(not_modified(&h, &v));
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        let v = validators();
        let h = headers(&[(&IF_NONE_MATCH, r#""other""#), (&IF_MODIFIED_SINCE, AFTER)]);
        assert!(!not_modified(&h, &v));
        let h = headers(&[(&IF_NONE_MATCH, r#""abc123""#), (&IF_MODIFIED_SINCE, BEFORE)]);
        assert!(not_modified(&h, &v));
    }

    #[test]
    fn if_modified_since() {
        let v = validators();
        assert!(not_modified(&headers(&[(&IF_MODIFIED_SINCE, LM)]), &v));
        assert!(not_modified(&headers(&[(&IF_MODIFIED_SINCE, AFTER)]), &v));
        assert!(!not_modified(&headers(&[(&IF_MODIFIED_SINCE, BEFORE)]), &v));
        assert!(!not_modified(&headers(&[(&IF_MODIFIED_SINCE, "yesterday")]), &v));
        // The obsolete date formats are accepted too.
        assert!(not_modified(
            &headers(&[(&IF_MODIFIED_SINCE, "Tuesday, 14-Nov-23 22:13:20 GMT")]),
            &v
        ));
        assert!(!not_modified(&HeaderMap::new(), &v));
    }

    #[test]
    fn if_range() {
        let v = validators();
        assert!(range_allowed(&HeaderMap::new(), &v));
        assert!(range_allowed(&headers(&[(&IF_RANGE, r#""abc123""#)]), &v));
        assert!(range_allowed(&headers(&[(&IF_RANGE, LM)]), &v));
        for value in [
            r#"W/"abc123""#,
            r#""other""#,
            r#""abc123", "x""#,
            AFTER,
            BEFORE,
            "garbage",
            "",
        ] {
            assert!(!range_allowed(&headers(&[(&IF_RANGE, value)]), &v), "{value}");
        }
        let weak = Validators::new("W/\"abc123\"".into(), v.last_modified);
        assert!(!range_allowed(&headers(&[(&IF_RANGE, r#""abc123""#)]), &weak));
    }

    #[test]
    fn non_ascii_headers_are_ignored_safely() {
        let v = validators();
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, HeaderValue::from_bytes(b"\"\xff\"").unwrap());
        assert!(!not_modified(&h, &v));
        let mut h = HeaderMap::new();
        h.insert(IF_RANGE, HeaderValue::from_bytes(b"\"\xff\"").unwrap());
        assert!(!range_allowed(&h, &v));
    }
}
