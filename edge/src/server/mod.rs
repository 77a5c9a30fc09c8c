//! The network shells around [`crate::edge::Edge`]: TCP (TLS, HTTP/1.1 and
//! HTTP/2 by ALPN, hyper) and UDP (HTTP/3, quinn + h3) on one port number.

pub mod h3;
pub mod h3_send;
pub mod tcp;

use http::{HeaderMap, HeaderValue, Method, StatusCode};

/// The response header that marks this edge's refusal of a playback token
/// (`outpost-refused: token` on its 401/403). A child edge that forwarded
/// a token (`upstream.forward_token`) takes only a 401/403 so marked as
/// "the parent refused the forwarded token" (502 for the wave); any other
/// 401/403 from upstream, such as an origin forbidding an object, is
/// answered as it is.
pub const REFUSED_HEADER: &str = "outpost-refused";
/// The value of [`REFUSED_HEADER`] for a refused playback token.
pub const REFUSED_TOKEN: &str = "token";

/// Mark a token refusal. With `token.required` the edge's only 401/403 to
/// a GET or HEAD without `Cache-Status` is the token check's, which runs
/// before the cache (every answer from the cache or upstream carries
/// `Cache-Status`; a refused CORS preflight is an OPTIONS). Pure.
pub fn mark_token_refusal(token_required: bool, method: &Method, status: StatusCode, headers: &mut HeaderMap) {
    if token_required
        && method != Method::OPTIONS
        && matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
        && !headers.contains_key("cache-status")
    {
        headers.insert(REFUSED_HEADER, HeaderValue::from_static(REFUSED_TOKEN));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_checks_refusals_are_marked() {
        let mark = |required: bool, method: Method, status: u16, cache_status: bool| {
            let mut h = HeaderMap::new();
            if cache_status {
                h.insert("cache-status", HeaderValue::from_static("outpost; fwd=miss"));
            }
            mark_token_refusal(required, &method, StatusCode::from_u16(status).unwrap(), &mut h);
            h.get(REFUSED_HEADER).map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(mark(true, Method::GET, 401, false).as_deref(), Some("token"));
        assert_eq!(mark(true, Method::HEAD, 403, false).as_deref(), Some("token"));
        // An upstream's 403 passed on (it went through the cache).
        assert_eq!(mark(true, Method::GET, 403, true), None);
        // A refused CORS preflight, other statuses, tokens not required.
        assert_eq!(mark(true, Method::OPTIONS, 403, false), None);
        assert_eq!(mark(true, Method::GET, 400, false), None);
        assert_eq!(mark(false, Method::GET, 403, false), None);
    }
}
