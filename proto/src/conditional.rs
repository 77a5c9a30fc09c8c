//! HTTP conditional requests (RFC 9110 §13) over `http::HeaderMap` /
//! `HeaderValue`: `If-None-Match`, `If-Modified-Since` and `If-Range`
//! evaluated against a representation's validators (entity tag,
//! `Last-Modified`). Pure, no IO; the origin and the edge both answer
//! 304s and decide `If-Range` with it (ranges themselves are in
//! [`crate::range`]).
//!
//! Comparison rules: `If-None-Match` uses weak comparison (`W/"x"` matches
//! `"x"`, `*` matches any existing representation); `If-Range` uses strong
//! comparison (a weak tag on either side never matches) or an exact date.
//! HTTP dates carry whole seconds, so `Last-Modified` is truncated to
//! seconds before any comparison.
//!
//! `If-Match` and `If-Unmodified-Since` are not evaluated: both services
//! only serve GET and HEAD, with no lost updates to prevent; they are
//! ignored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE};
use http::{HeaderMap, HeaderValue};

/// A representation's validators, both known (the origin's objects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// An entity tag including its quotes, e.g. `"9f86d081884c7d65"`.
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

    /// [`not_modified`] against these validators.
    pub fn not_modified(&self, headers: &HeaderMap) -> bool {
        not_modified(headers, Some(&self.etag), Some(self.last_modified))
    }

    /// [`range_allowed`] against these validators.
    pub fn range_allowed(&self, headers: &HeaderMap) -> bool {
        range_allowed(headers, Some(&self.etag), Some(self.last_modified))
    }
}

/// Drop sub-second precision (HTTP dates have none); times before the
/// epoch become the epoch.
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

/// One `entity-tag` at the start of `s` (`"x"` or `W/"x"`), and the rest.
fn entity_tag(s: &str) -> Option<(Tag<'_>, &str)> {
    let (weak, quoted) = match s.strip_prefix("W/") {
        Some(q) => (true, q),
        None => (false, s),
    };
    let body = quoted.strip_prefix('"')?;
    let end = body.find('"')?;
    Some((
        Tag::Entity {
            weak,
            opaque: &body[..end],
        },
        &body[end + 1..],
    ))
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
        let Some((tag, after)) = entity_tag(rest) else { break };
        tags.push(tag);
        rest = after;
    }
    tags
}

/// A representation's own tag as (weak, opaque part). Lenient: what an
/// upstream sent is taken as it is, quotes or not.
fn own(etag: &str) -> (bool, &str) {
    let etag = etag.trim();
    match etag.strip_prefix("W/") {
        Some(rest) => (true, rest.trim_matches('"')),
        None => (false, etag.trim_matches('"')),
    }
}

/// Weak comparison (`If-None-Match`) of one field line: `*`, or a tag whose
/// opaque part equals ours, weakness ignored.
fn matches_weak(list: &str, etag: Option<&str>) -> bool {
    entity_tags(list).iter().any(|t| match t {
        Tag::Any => true,
        Tag::Entity { opaque, .. } => etag.is_some_and(|e| *opaque == own(e).1),
    })
}

/// Exactly one field line of `name`, as text; `None` when absent, repeated
/// or not visible ASCII.
fn single<'a>(headers: &'a HeaderMap, name: &http::HeaderName) -> Option<&'a str> {
    let mut lines = headers.get_all(name).iter();
    match (lines.next(), lines.next()) {
        (Some(v), None) => v.to_str().ok(),
        _ => None,
    }
}

/// True when a GET or HEAD must be answered with 304 Not Modified.
///
/// `If-None-Match` (all its field lines form one list, weak comparison, `*`
/// matches any existing representation, even one without a tag) takes
/// precedence: when it is present, `If-Modified-Since` is not looked at
/// (RFC 9110 §13.1.3), even if it does not parse. `If-Modified-Since` must
/// be one valid date (obsolete formats included) and is true when
/// `Last-Modified` is not later; without `Last-Modified` it never is.
pub fn not_modified(headers: &HeaderMap, etag: Option<&str>, last_modified: Option<SystemTime>) -> bool {
    let mut inm = headers.get_all(IF_NONE_MATCH).iter().peekable();
    if inm.peek().is_some() {
        return inm.filter_map(|h| h.to_str().ok()).any(|list| matches_weak(list, etag));
    }
    let since = single(headers, &IF_MODIFIED_SINCE).and_then(|s| httpdate::parse_http_date(s.trim()).ok());
    match (since, last_modified) {
        (Some(since), Some(lm)) => truncate_to_seconds(lm) <= since,
        _ => false,
    }
}

/// Whether a `Range` may be honoured given one `If-Range` field line
/// (RFC 9110 §13.1.5): true without `If-Range`; with an entity tag, only
/// on a strong match (both tags strong, same opaque part, nothing else in
/// the field); with a date, only if it equals `Last-Modified` exactly.
/// Anything else (weak tag, list, garbage, a validator we do not have)
/// means "send the whole representation".
pub fn if_range_allows(if_range: Option<&HeaderValue>, etag: Option<&str>, last_modified: Option<SystemTime>) -> bool {
    let Some(value) = if_range else { return true };
    let Ok(value) = value.to_str() else { return false };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return match (entity_tag(value), etag.map(own)) {
            (Some((Tag::Entity { weak: false, opaque }, rest)), Some((false, ours))) => {
                rest.trim().is_empty() && opaque == ours
            }
            _ => false,
        };
    }
    match (httpdate::parse_http_date(value), last_modified) {
        (Ok(date), Some(lm)) => date == truncate_to_seconds(lm),
        _ => false,
    }
}

/// [`if_range_allows`] over the request's headers: several `If-Range`
/// field lines are malformed and mean "send the whole representation".
pub fn range_allowed(headers: &HeaderMap, etag: Option<&str>, last_modified: Option<SystemTime>) -> bool {
    let mut lines = headers.get_all(IF_RANGE).iter();
    match (lines.next(), lines.next()) {
        (None, _) => true,
        (Some(v), None) => if_range_allows(Some(v), etag, last_modified),
        (Some(_), Some(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    const LM: &str = "Tue, 14 Nov 2023 22:13:20 GMT"; // 1_700_000_000
    const BEFORE: &str = "Tue, 14 Nov 2023 22:13:19 GMT";
    const AFTER: &str = "Tue, 14 Nov 2023 22:13:21 GMT";

    #[test]
    fn last_modified_is_whole_seconds() {
        let v = validators();
        assert_eq!(v.last_modified, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(v.last_modified_header(), LM);
        assert_eq!(truncate_to_seconds(UNIX_EPOCH - Duration::from_secs(5)), UNIX_EPOCH);
    }

    /// Sub-second `Last-Modified` passed straight to the free functions
    /// compares as its whole second.
    #[test]
    fn raw_last_modified_is_truncated_before_comparing() {
        let lm = Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_750));
        assert!(not_modified(&headers(&[(&IF_MODIFIED_SINCE, LM)]), None, lm));
        assert!(if_range_allows(Some(&hv(LM)), None, lm));
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
            assert!(v.not_modified(&headers(&[(&IF_NONE_MATCH, value)])), "{value}");
        }
        let no = [r#""abc""#, r#""abc1234""#, "abc123", r#""x", "y""#, ""];
        for value in no {
            assert!(!v.not_modified(&headers(&[(&IF_NONE_MATCH, value)])), "{value}");
        }
        // Several field lines form one list.
        let h = headers(&[(&IF_NONE_MATCH, r#""x""#), (&IF_NONE_MATCH, r#""abc123""#)]);
        assert!(v.not_modified(&h));
        // A weak stored tag compares weakly too.
        assert!(not_modified(
            &headers(&[(&IF_NONE_MATCH, r#""abc123""#)]),
            Some(r#"W/"abc123""#),
            None
        ));
    }

    /// From the edge's tests: optional validators.
    #[test]
    fn if_none_match_with_optional_validators() {
        let e = Some("\"abc\"");
        let inm = |v: &str| headers(&[(&IF_NONE_MATCH, v)]);
        assert!(not_modified(&inm("\"abc\""), e, None));
        assert!(not_modified(&inm("\"x\", W/\"abc\""), e, None));
        assert!(not_modified(&inm("*"), e, None));
        assert!(!not_modified(&inm("\"x\""), e, None));
        assert!(!not_modified(&inm("\"x\""), None, None));
        // `*` matches a representation that has no tag.
        assert!(not_modified(&inm("*"), None, None));
        assert!(!not_modified(&HeaderMap::new(), e, None));
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        let v = validators();
        let h = headers(&[(&IF_NONE_MATCH, r#""other""#), (&IF_MODIFIED_SINCE, AFTER)]);
        assert!(!v.not_modified(&h));
        let h = headers(&[(&IF_NONE_MATCH, r#""abc123""#), (&IF_MODIFIED_SINCE, BEFORE)]);
        assert!(v.not_modified(&h));
        // Present but empty or malformed still takes precedence.
        let h = headers(&[(&IF_NONE_MATCH, ""), (&IF_MODIFIED_SINCE, AFTER)]);
        assert!(!v.not_modified(&h));
    }

    #[test]
    fn if_modified_since() {
        let v = validators();
        assert!(v.not_modified(&headers(&[(&IF_MODIFIED_SINCE, LM)])));
        assert!(v.not_modified(&headers(&[(&IF_MODIFIED_SINCE, AFTER)])));
        assert!(!v.not_modified(&headers(&[(&IF_MODIFIED_SINCE, BEFORE)])));
        assert!(!v.not_modified(&headers(&[(&IF_MODIFIED_SINCE, "yesterday")])));
        // The obsolete date formats are accepted too.
        assert!(v.not_modified(&headers(&[(&IF_MODIFIED_SINCE, "Tuesday, 14-Nov-23 22:13:20 GMT")])));
        assert!(!v.not_modified(&HeaderMap::new()));
        // More than one member is ignored (RFC 9110 §13.1.3).
        assert!(!v.not_modified(&headers(&[(&IF_MODIFIED_SINCE, LM), (&IF_MODIFIED_SINCE, AFTER)])));
    }

    /// From the edge's tests: optional validators, and precedence.
    #[test]
    fn if_modified_since_and_precedence() {
        let lm = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let same = httpdate::fmt_http_date(lm);
        let before = httpdate::fmt_http_date(lm - Duration::from_secs(1));
        let ims = |v: &str| headers(&[(&IF_MODIFIED_SINCE, v)]);
        assert!(not_modified(&ims(&same), None, Some(lm)));
        assert!(!not_modified(&ims(&before), None, Some(lm)));
        assert!(!not_modified(&ims("garbage"), None, Some(lm)));
        // No Last-Modified: a date never matches.
        assert!(!not_modified(&ims(&same), None, None));
        // If-None-Match wins even when the date would match.
        assert!(!not_modified(
            &headers(&[(&IF_NONE_MATCH, "\"x\""), (&IF_MODIFIED_SINCE, &same)]),
            Some("\"abc\""),
            Some(lm)
        ));
    }

    #[test]
    fn if_range() {
        let v = validators();
        assert!(v.range_allowed(&HeaderMap::new()));
        assert!(v.range_allowed(&headers(&[(&IF_RANGE, r#""abc123""#)])));
        assert!(v.range_allowed(&headers(&[(&IF_RANGE, LM)])));
        for value in [
            r#"W/"abc123""#,
            r#""other""#,
            r#""abc123", "x""#,
            r#""abc123" junk"#,
            AFTER,
            BEFORE,
            "garbage",
            "",
        ] {
            assert!(!v.range_allowed(&headers(&[(&IF_RANGE, value)])), "{value}");
        }
        let weak = Validators::new("W/\"abc123\"".into(), v.last_modified);
        assert!(!weak.range_allowed(&headers(&[(&IF_RANGE, r#""abc123""#)])));
        // Two field lines are malformed.
        assert!(!v.range_allowed(&headers(&[(&IF_RANGE, r#""abc123""#), (&IF_RANGE, r#""abc123""#)])));
    }

    /// From the edge's tests: one field value, optional validators.
    #[test]
    fn if_range_allows_with_optional_validators() {
        let lm = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert!(if_range_allows(None, Some("\"a\""), None));
        assert!(if_range_allows(None, None, None));
        assert!(if_range_allows(Some(&hv("\"a\"")), Some("\"a\""), None));
        assert!(!if_range_allows(Some(&hv("\"b\"")), Some("\"a\""), None));
        assert!(
            !if_range_allows(Some(&hv("W/\"a\"")), Some("W/\"a\""), None),
            "weak never matches"
        );
        assert!(!if_range_allows(Some(&hv("\"a\"")), Some("W/\"a\""), None));
        assert!(!if_range_allows(Some(&hv("\"a\"")), None, Some(lm)), "no tag to match");
        assert!(if_range_allows(Some(&hv(&httpdate::fmt_http_date(lm))), None, Some(lm)));
        assert!(!if_range_allows(
            Some(&hv(&httpdate::fmt_http_date(lm + Duration::from_secs(1)))),
            None,
            Some(lm)
        ));
        assert!(!if_range_allows(
            Some(&hv(&httpdate::fmt_http_date(lm))),
            Some("\"a\""),
            None
        ));
        assert!(!if_range_allows(Some(&hv("garbage")), Some("\"a\""), Some(lm)));
    }

    #[test]
    fn non_ascii_headers_are_ignored_safely() {
        let v = validators();
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, HeaderValue::from_bytes(b"\"\xff\"").unwrap());
        assert!(!v.not_modified(&h));
        let mut h = HeaderMap::new();
        h.insert(IF_RANGE, HeaderValue::from_bytes(b"\"\xff\"").unwrap());
        assert!(!v.range_allowed(&h));
    }
}
