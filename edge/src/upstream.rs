//! The upstream client: HTTP/1.1 or HTTP/2 (cleartext or TLS) to a parent
//! edge or the origin, with a keep-alive pool and connect / first-byte /
//! idle timeouts. Retries live in `crate::fill`, which knows whether any
//! byte was already handed to a client.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::uri::Scheme;
use http::{header, HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::cache::FetchError;
use crate::config::UpstreamConfig;

/// Validators for a conditional (revalidation) request.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<SystemTime>,
}

pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    bases: Vec<(http::uri::Scheme, http::uri::Authority)>,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    user_agent: HeaderValue,
}

/// Why the upstream client could not be built (the operator's config).
#[derive(Debug, thiserror::Error)]
#[error("upstream: {0}")]
pub struct UpstreamSetupError(String);

impl Upstream {
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, UpstreamSetupError> {
        let tls =
            outpost_svc::tls::client_config(cfg.ca.as_deref(), &[]).map_err(|e| UpstreamSetupError(e.to_string()))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let connector = if cfg.http2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .http2_only(cfg.http2)
            .build(connector);
        let mut bases = Vec::new();
        for u in &cfg.urls {
            let uri: Uri = u.parse().map_err(|e| UpstreamSetupError(format!("{u}: {e}")))?;
            let parts = uri.into_parts();
            match (parts.scheme, parts.authority) {
                (Some(s), Some(a)) => {
                    if cfg.forward_token && s != Scheme::HTTPS {
                        tracing::info!(upstream = %u, "upstream.forward_token: no token goes to this http:// upstream");
                    }
                    bases.push((s, a))
                }
                _ => return Err(UpstreamSetupError(format!("{u}: needs a scheme and host"))),
            }
        }
        Ok(Self {
            client,
            bases,
            first_byte_timeout: cfg.first_byte_timeout,
            idle_timeout: cfg.idle_timeout,
            user_agent: HeaderValue::from_static(concat!("outpost-edge/", env!("CARGO_PKG_VERSION"))),
        })
    }

    /// Whether the upstream chosen by `attempt` is sent a forwarded token
    /// (a bearer credential: https:// upstreams only).
    pub fn sends_token(&self, attempt: u32) -> bool {
        self.bases[attempt as usize % self.bases.len()].0 == Scheme::HTTPS
    }

    /// Send one GET for `target` (a normalized path and query) to the
    /// upstream chosen by `attempt` and wait for the response head. `token`
    /// is a forwarded playback token (`upstream.forward_token`), sent in
    /// the `CTA-Common-Access-Token` header, never in the target, and only
    /// to an https:// upstream ([`Upstream::sends_token`]).
    pub async fn get(
        &self,
        target: &str,
        validators: Option<&Validators>,
        token: Option<&HeaderValue>,
        attempt: u32,
    ) -> Result<Response<Incoming>, FetchError> {
        let (scheme, authority) = &self.bases[attempt as usize % self.bases.len()];
        let uri = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query(target)
            .build()
            .map_err(|e| FetchError::Upstream(format!("bad upstream target {target}: {e}")))?;
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(header::USER_AGENT, self.user_agent.clone());
        if let Some(t) = token.filter(|_| self.sends_token(attempt)) {
            req = req.header(outpost_proto::token::HEADER, t.clone());
        }
        if let Some(v) = validators {
            if let Some(e) = v.etag.as_deref().and_then(|e| HeaderValue::from_str(e).ok()) {
                req = req.header(header::IF_NONE_MATCH, e);
            }
            if let Some(lm) = v.last_modified {
                req = req.header(header::IF_MODIFIED_SINCE, httpdate::fmt_http_date(lm));
            }
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| FetchError::Upstream(e.to_string()))?;
        match tokio::time::timeout(self.first_byte_timeout, self.client.request(req)).await {
            Err(_) => Err(FetchError::Timeout(format!(
                "no response head from {authority} within {:?}",
                self.first_byte_timeout
            ))),
            Ok(Err(e)) if e.is_connect() => Err(FetchError::Connect(format!(
                "{authority}: {}",
                outpost_svc::error_chain(&e)
            ))),
            Ok(Err(e)) => Err(FetchError::Connect(format!(
                "{authority}: {}",
                outpost_svc::error_chain(&e)
            ))),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// Next body chunk, with the idle timeout. `Ok(None)` at the end.
    pub async fn next_chunk(&self, body: &mut Incoming) -> Result<Option<Bytes>, FetchError> {
        loop {
            match tokio::time::timeout(self.idle_timeout, body.frame()).await {
                Err(_) => {
                    return Err(FetchError::Timeout(format!(
                        "upstream body stalled for {:?}",
                        self.idle_timeout
                    )))
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => {
                    return Err(FetchError::Connect(format!(
                        "upstream body: {}",
                        outpost_svc::error_chain(&e)
                    )))
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                    // Trailers: ignored.
                }
            }
        }
    }
}
