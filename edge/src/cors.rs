//! Cross-origin access for browser players (pure: headers in, headers out).
//!
//! A player page lives on another origin than the edges it fetches
//! segments from (the playback service's page, steering's demo page), so
//! every answer carries `Access-Control-Allow-Origin` and exposes the
//! headers a player or its page reads (`Cache-Status`, `Age`,
//! `Content-Range`), and a CORS preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered here, before the token
//! check: a preflight never carries the token, and it reveals nothing.
//! Credentials are never allowed: playback tokens travel in the URL.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use serde::Deserialize;

use outpost_svc::config::de;

/// The `[cors]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Page origins allowed to read responses (`https://player.example`),
    /// or `["*"]` for any. An empty list turns CORS off (no headers, and a
    /// preflight gets 403). Default: `["*"]`.
    #[serde(default = "any")]
    pub allow_origins: Vec<String>,
    /// How long browsers may cache a preflight answer. Default: 1h.
    #[serde(default = "hour", deserialize_with = "de::duration")]
    pub max_age: Duration,
}

fn any() -> Vec<String> {
    vec!["*".into()]
}
fn hour() -> Duration {
    Duration::from_secs(3600)
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allow_origins: any(),
            max_age: hour(),
        }
    }
}

/// Request headers a player may send cross-origin.
const ALLOW_HEADERS: &str = "range, if-range, if-none-match, if-modified-since, cta-common-access-token";
/// Response headers a page may read besides the CORS-safelisted ones.
const EXPOSE_HEADERS: &str = "cache-status, age, content-range, content-length, accept-ranges, etag, date";

/// The CORS policy of one edge.
#[derive(Debug, Clone)]
pub struct Cors {
    any: bool,
    origins: Vec<String>,
    max_age: HeaderValue,
}

impl Cors {
    pub fn new(cfg: &CorsConfig) -> Self {
        Cors {
            any: cfg.allow_origins.iter().any(|o| o == "*"),
            origins: cfg
                .allow_origins
                .iter()
                .filter(|o| *o != "*")
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            max_age: HeaderValue::from(cfg.max_age.as_secs()),
        }
    }

    fn enabled(&self) -> bool {
        self.any || !self.origins.is_empty()
    }

    /// The `Access-Control-Allow-Origin` value for a request, if allowed.
    fn allow_origin(&self, request: &HeaderMap) -> Option<HeaderValue> {
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        let origin = request.get(header::ORIGIN)?;
        let s = origin.to_str().ok()?.trim_end_matches('/').to_ascii_lowercase();
        self.origins.contains(&s).then(|| origin.clone())
    }

    /// A preflight request gets its whole answer here; anything else `None`.
    pub fn preflight(&self, method: &Method, request: &HeaderMap) -> Option<(StatusCode, HeaderMap)> {
        if method != Method::OPTIONS || !request.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            return None;
        }
        let mut h = HeaderMap::new();
        h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        let Some(origin) = self.allow_origin(request).filter(|_| self.enabled()) else {
            // Not allowed: an answer without the CORS headers, which the
            // browser reads as a refusal.
            return Some((StatusCode::FORBIDDEN, h));
        };
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        if !self.any {
            h.insert(header::VARY, HeaderValue::from_static("origin"));
        }
        Some((StatusCode::NO_CONTENT, h))
    }

    /// Add the CORS headers of an actual (non-preflight) answer.
    pub fn decorate(&self, request: &HeaderMap, response: &mut HeaderMap) {
        if !self.enabled() {
            return;
        }
        if !self.any {
            response.append(header::VARY, HeaderValue::from_static("origin"));
        }
        if let Some(origin) = self.allow_origin(request) {
            response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            response.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> Cors {
        Cors::new(&CorsConfig {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            max_age: Duration::from_secs(60),
        })
    }

    fn req(origin: Option<&str>, preflight: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        if preflight {
            h.insert(header::ACCESS_CONTROL_REQUEST_METHOD, HeaderValue::from_static("GET"));
        }
        h
    }

    #[test]
    fn any_origin_gets_star_and_exposed_headers() {
        let c = cors(&["*"]);
        let mut out = HeaderMap::new();
        c.decorate(&req(Some("https://a.example"), false), &mut out);
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(out[header::ACCESS_CONTROL_EXPOSE_HEADERS]
            .to_str()
            .unwrap()
            .contains("cache-status"));
        assert!(!out.contains_key(header::VARY));
    }

    #[test]
    fn listed_origin_is_echoed_and_others_get_nothing() {
        let c = cors(&["https://Player.example/"]);
        let mut out = HeaderMap::new();
        c.decorate(&req(Some("https://player.example"), false), &mut out);
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://player.example");
        assert_eq!(out[header::VARY], "origin");
        let mut out = HeaderMap::new();
        c.decorate(&req(Some("https://evil.example"), false), &mut out);
        assert!(!out.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        let (status, h) = c
            .preflight(&Method::OPTIONS, &req(Some("https://evil.example"), true))
            .unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    }

    #[test]
    fn preflight_answers_only_options_with_request_method() {
        let c = cors(&["*"]);
        assert!(c.preflight(&Method::GET, &req(Some("https://a"), true)).is_none());
        assert!(c.preflight(&Method::OPTIONS, &req(Some("https://a"), false)).is_none());
        let (status, h) = c.preflight(&Method::OPTIONS, &req(Some("https://a"), true)).unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(h[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .contains("range"));
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "60");
    }

    #[test]
    fn empty_list_turns_cors_off() {
        let c = cors(&[]);
        let mut out = HeaderMap::new();
        c.decorate(&req(Some("https://a"), false), &mut out);
        assert!(out.is_empty());
        let (status, _) = c.preflight(&Method::OPTIONS, &req(Some("https://a"), true)).unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}
