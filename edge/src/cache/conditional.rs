//! Conditional requests (RFC 9110 §13): `If-None-Match` and
//! `If-Modified-Since` against a stored representation's validators.

use std::time::SystemTime;

use http::{header, HeaderMap};

/// Weak comparison of two entity tags (`W/"x"` equals `"x"`).
fn weak_eq(a: &str, b: &str) -> bool {
    a.trim().trim_start_matches("W/") == b.trim().trim_start_matches("W/")
}

/// Should a GET/HEAD be answered 304 Not Modified?
/// `If-None-Match` takes precedence over `If-Modified-Since`.
pub fn not_modified(req: &HeaderMap, etag: Option<&str>, last_modified: Option<SystemTime>) -> bool {
    let inm: Vec<&str> = req
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if !inm.is_empty() {
        return match etag {
            Some(e) => inm.iter().any(|t| *t == "*" || weak_eq(t, e)),
            None => inm.contains(&"*"),
        };
    }
    let ims = req
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok());
    match (ims, last_modified) {
        (Some(since), Some(lm)) => lm <= since,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    fn req(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn if_none_match() {
        let e = Some("\"abc\"");
        assert!(not_modified(&req(&[("if-none-match", "\"abc\"")]), e, None));
        assert!(not_modified(&req(&[("if-none-match", "\"x\", W/\"abc\"")]), e, None));
        assert!(not_modified(&req(&[("if-none-match", "*")]), e, None));
        assert!(!not_modified(&req(&[("if-none-match", "\"x\"")]), e, None));
        assert!(!not_modified(&req(&[("if-none-match", "\"x\"")]), None, None));
        assert!(!not_modified(&req(&[]), e, None));
    }

    #[test]
    fn if_modified_since_and_precedence() {
        let lm = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let same = httpdate::fmt_http_date(lm);
        let before = httpdate::fmt_http_date(lm - Duration::from_secs(1));
        assert!(not_modified(&req(&[("if-modified-since", &same)]), None, Some(lm)));
        assert!(!not_modified(&req(&[("if-modified-since", &before)]), None, Some(lm)));
        assert!(!not_modified(&req(&[("if-modified-since", "garbage")]), None, Some(lm)));
        // If-None-Match wins even when the date would match.
        assert!(!not_modified(
            &req(&[("if-none-match", "\"x\""), ("if-modified-since", &same)]),
            Some("\"abc\""),
            Some(lm)
        ));
    }
}
