//! The HTTPS shell: `POST /v1/play`, `GET /v1/steer` (ranked edges for a
//! playback service: no session, no token), per-session manifests
//! (`/v1/session/{id}/master.m3u8`, `/manifest.mpd`), steering manifests
//! (`/v1/steering/{id}`), `/v1/edges`, and at `/` the web page for
//! browsers (`Accept: text/html`) or a text view for everyone else (also at
//! `/status.txt`; for everyone at `/` too with `[page] enabled = false`);
//! the page's routes are described in [`crate::page`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use outpost_proto::token::{self, Grant, TokenKey};
use outpost_svc::https::{full, json, Body, Client};
use serde::{Deserialize, Serialize};

use crate::catalog::{Refusal, Title};
use crate::config::SteeringConfig;
use crate::edges::EdgeSet;
use crate::geo::{Location, Locator};
use crate::manifest::{self, Pathway, SteeringManifest};
use crate::metrics::Metrics;
use crate::rank::{self, Ranked};
use crate::{entitlement, page, sealed, sticky};

/// Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a session id carries (sealed, so any steering replica can serve it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Title id.
    pub t: String,
    /// Client IP the session was made for.
    pub ip: IpAddr,
    /// Edge ids of its pathways, in the order first ranked.
    pub e: Vec<String>,
    /// Unix seconds when it (and its tokens) expire.
    pub exp: u64,
}

/// The session sealing secrets for the playback token keys, in their
/// order: each is derived from one token key (domain-separated, so a
/// session id never verifies as a token or the other way round). Sessions
/// are sealed with the first and opened with any, so putting a new token
/// key first keeps every session made under the old one working for as
/// long as the old key stays listed.
pub fn session_secrets(keys: &[TokenKey]) -> Vec<Vec<u8>> {
    use sha2::Digest;
    keys.iter()
        .map(|k| {
            sha2::Sha256::new()
                .chain_update(b"outpost-session\n")
                .chain_update(&k.secret)
                .finalize()
                .to_vec()
        })
        .collect()
}

pub struct Shared {
    pub cfg: SteeringConfig,
    pub public: String,
    pub edges: EdgeSet,
    pub locator: Arc<Locator>,
    pub keys: Vec<TokenKey>,
    /// One sealing secret per token key, in the same order (see
    /// [`session_secrets`]): the first seals, every one opens.
    pub session_secrets: Vec<Vec<u8>>,
    pub metrics: Metrics,
    pub policy: rank::Policy,
    pub trusted: Vec<(IpAddr, u8)>,
    pub origin: Client<Empty<Bytes>>,
    pub fetched: Mutex<HashMap<String, (Instant, Bytes)>>,
}

fn error(status: StatusCode, reason: &str, message: impl std::fmt::Display) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": reason, "message": message.to_string() }),
    )
}

fn refusal(r: &Refusal) -> Response<Body> {
    error(StatusCode::from_u16(r.status()).expect("valid"), r.as_str(), r)
}

fn text(content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .body(full(body))
        .expect("static response")
}

/// Route one request.
pub async fn handle(s: Arc<Shared>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if method == Method::OPTIONS {
        // CORS preflight for players on other origins.
        return Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
            .header(header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS")
            .header(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "content-type, authorization, x-subscriber-token",
            )
            .body(full(Bytes::new()))
            .expect("static response");
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (Method::POST, ["v1", "play"]) => play(&s, req, peer).await,
        (Method::GET, ["v1", "steer"]) => steer(&s, &req, peer),
        (Method::GET, ["v1", "session", sid, file]) => session_manifest(&s, sid, file).await,
        (Method::GET, ["v1", "steering", sid]) => steering(&s, sid, req.uri().query()),
        (Method::GET, ["v1", "edges"]) => json(StatusCode::OK, &*s.edges.views()),
        (_, ["v1", "page-config"]) | (_, ["assets", _]) if !s.cfg.page.enabled => page::disabled(),
        (Method::GET, ["v1", "page-config"]) => page::config(&s.cfg),
        (Method::GET, [""]) if !s.cfg.page.enabled => text("text/plain; charset=utf-8", overview(&s)),
        (Method::GET, [""]) => {
            let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
            if page::wants_html(accept) {
                page::index()
            } else {
                let mut r = text("text/plain; charset=utf-8", overview(&s));
                r.headers_mut()
                    .insert(header::VARY, http::HeaderValue::from_static("accept"));
                r
            }
        }
        (Method::GET, ["status.txt"]) => text("text/plain; charset=utf-8", overview(&s)),
        (Method::GET, ["assets", name]) => page::asset(&s.cfg.page, name).await,
        (_, ["v1", "play"]) => error(StatusCode::METHOD_NOT_ALLOWED, "method", "use POST"),
        (_, ["v1", "steer"]) => error(StatusCode::METHOD_NOT_ALLOWED, "method", "use GET"),
        (_, ["v1", ..]) | (_, [""]) | (_, ["status.txt"]) | (_, ["assets", _]) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method", "use GET")
        }
        _ => error(StatusCode::NOT_FOUND, "not-found", format!("no such endpoint: {path}")),
    }
}

/// A play request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlayRequest {
    title: String,
    #[serde(default)]
    subscriber_token: Option<String>,
    /// Only from an authenticated backend (API key).
    #[serde(default)]
    client_ip: Option<IpAddr>,
}

#[derive(Serialize)]
struct EdgeAnswer {
    #[serde(flatten)]
    edge: RankedEdge,
    pathway: String,
    /// Base URL carrying the token: append the title's relative paths.
    base: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hls: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dash: Option<String>,
}

/// What `/v1/play` and `/v1/steer` say of each ranked edge.
#[derive(Serialize)]
struct RankedEdge {
    id: String,
    site: String,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    distance_km: Option<f64>,
}

impl RankedEdge {
    fn new(e: &rank::Edge, r: &Ranked) -> Self {
        RankedEdge {
            id: e.id.clone(),
            site: e.site.clone(),
            reason: r.reason.as_str(),
            distance_km: r.distance_km.map(|d| d.round()),
        }
    }
}

#[derive(Serialize)]
struct ClientAnswer {
    ip: IpAddr,
    source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    asn: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    site: Option<String>,
}

impl ClientAnswer {
    fn new(ip: IpAddr, loc: Location) -> Self {
        ClientAnswer {
            ip,
            source: loc.source.as_str(),
            country: loc.country,
            asn: loc.asn,
            site: loc.site,
        }
    }
}

fn no_edge() -> Response<Body> {
    error(StatusCode::SERVICE_UNAVAILABLE, "no-edge", "no healthy edge is known")
}

#[derive(Serialize)]
struct PlayAnswer {
    session: String,
    title: String,
    expires_at: u64,
    client: ClientAnswer,
    edges: Vec<EdgeAnswer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hls: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dash: Option<String>,
    steering: String,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Shared {
    /// The client IP: the socket peer, or the last `X-Forwarded-For` hop a
    /// trusted proxy added.
    fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let mut ip = peer.ip();
        let trusted = |ip: IpAddr| self.trusted.iter().any(|&(n, l)| rank::in_prefix(ip, n, l));
        if !trusted(ip) {
            return ip;
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|h| h.trim().parse().ok())
            .collect();
        // Walk from the nearest hop; stop at the first one not ours.
        for hop in hops.into_iter().rev() {
            ip = hop;
            if !trusted(hop) {
                break;
            }
        }
        ip
    }

    /// Locate and rank, with metrics.
    pub fn decide(&self, ip: IpAddr, title: &str) -> (Location, Arc<rank::Prepared>, Vec<Ranked>) {
        let started = Instant::now();
        let loc = self.locator.locate(ip);
        let client = rank::Client {
            ip: Some(ip),
            asn: loc.asn,
            site: loc.site.clone(),
            lat: loc.lat,
            lon: loc.lon,
        };
        let edges = self.edges.current();
        let ranked = edges.rank(&client, title, &self.policy);
        self.metrics.decision_seconds.observe(started.elapsed().as_secs_f64());
        let reason = ranked.first().map_or("none", |r| r.reason.as_str());
        self.metrics.decisions.with_label_values(&[reason]).inc();
        (loc, edges, ranked)
    }

    fn token(&self, title: &Title, ip: IpAddr, exp: u64, session: &str) -> String {
        let client_network = self.cfg.tokens.bind_client_network.then(|| match ip {
            IpAddr::V4(v4) => format!("{}/24", IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) & !0xff))),
            IpAddr::V6(v6) => format!("{}/48", std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 80) - 1))),
        });
        let grant = Grant {
            path_prefix: title.path.clone(),
            expires_at: exp,
            not_before: None,
            client_network,
            session: Some(session.chars().take(16).collect()),
        };
        token::issue(&self.keys[0], &grant, unix_now())
    }

    /// The calling backend's API key id (`Authorization: Bearer`), `None`
    /// without one, or `Err` for an unknown key (answered with [`unknown_key`]).
    fn backend(&self, headers: &HeaderMap) -> Result<Option<String>, UnknownKey> {
        let Some(key) = bearer(headers) else {
            return Ok(None);
        };
        self.cfg
            .entitlement
            .api_keys
            .iter()
            .find(|k| constant_time_eq(&k.secret, key.as_bytes()))
            .map(|k| Some(k.id.clone()))
            .ok_or(UnknownKey)
    }

    fn session_urls(&self, sid: &str) -> (String, String, String) {
        (
            format!("{}/v1/session/{sid}/master.m3u8", self.public),
            format!("{}/v1/session/{sid}/manifest.mpd", self.public),
            format!("{}/v1/steering/{sid}", self.public),
        )
    }
}

async fn play(s: &Shared, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let outcome = |o: &str| s.metrics.play.with_label_values(&[o]).inc();
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, 16 << 10).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            outcome("bad-request");
            return error(StatusCode::BAD_REQUEST, "bad-request", format!("body: {e}"));
        }
    };
    let play: PlayRequest = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            outcome("bad-request");
            return error(
                StatusCode::BAD_REQUEST,
                "bad-request",
                format!("malformed play request: {e}"),
            );
        }
    };
    // Who is asking: a backend with an API key, a subscriber, or (demo) anyone.
    let ent = &s.cfg.entitlement;
    let backend = match s.backend(&parts.headers) {
        Ok(b) => b,
        Err(UnknownKey) => {
            outcome("entitlement");
            return unknown_key();
        }
    };
    let subscriber_token = play
        .subscriber_token
        .as_deref()
        .or_else(|| parts.headers.get("x-subscriber-token").and_then(|v| v.to_str().ok()));
    let plans: Option<Vec<String>> = match (&backend, subscriber_token, &ent.subscriber_secret) {
        (Some(_), _, _) => None,
        (None, Some(tok), Some(secret)) => match entitlement::verify(secret, tok, unix_now()) {
            Ok(sub) => Some(sub.plans),
            Err(r) => {
                outcome(r.as_str());
                return refusal(&r);
            }
        },
        (None, None, _) if ent.open => None,
        (None, Some(_), None) if ent.open => None,
        (None, _, _) => {
            let r = Refusal::Entitlement("a subscriber token or an API key is required".into());
            outcome(r.as_str());
            return refusal(&r);
        }
    };
    if play.client_ip.is_some() && backend.is_none() {
        outcome("bad-request");
        return error(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "client_ip may only be given by an authenticated backend",
        );
    }
    let ip = play.client_ip.unwrap_or_else(|| s.client_ip(peer, &parts.headers));
    let loc = s.locator.locate(ip);
    let title = match s
        .cfg
        .catalog
        .check(&play.title, loc.country.as_deref(), plans.as_deref())
    {
        Ok(t) => t,
        Err(r) => {
            outcome(r.as_str());
            return refusal(&r);
        }
    };
    let (loc, edges, ranked) = s.decide(ip, &title.id);
    if ranked.is_empty() {
        outcome("no-edge");
        return no_edge();
    }
    let exp = unix_now() + s.cfg.tokens.ttl.as_secs();
    let session = Session {
        t: title.id.clone(),
        ip,
        e: ranked.iter().map(|r| edges[r.index].id.clone()).collect(),
        exp,
    };
    let sid = s.seal_session(&session);
    let tok = s.token(&title, ip, exp, &sid);
    let answers = ranked
        .iter()
        .map(|r| {
            let e = &edges[r.index];
            let base = format!("{}/t/{tok}{}", e.url, title.path);
            EdgeAnswer {
                edge: RankedEdge::new(e, r),
                pathway: manifest::pathway_id(&e.id),
                hls: title.hls.as_ref().map(|h| format!("{base}{h}")),
                dash: title.dash.as_ref().map(|d| format!("{base}{d}")),
                base,
            }
        })
        .collect();
    let (hls, dash, steering) = s.session_urls(&sid);
    outcome("ok");
    tracing::info!(target: "access", title = %title.id, client = %ip, source = loc.source.as_str(), first = %edges[ranked[0].index].id, reason = ranked[0].reason.as_str(), "play");
    json(
        StatusCode::OK,
        &PlayAnswer {
            session: sid,
            title: title.id.clone(),
            expires_at: exp,
            client: ClientAnswer::new(ip, loc),
            edges: answers,
            hls: title.hls.is_some().then_some(hls),
            dash: title.dash.is_some().then_some(dash),
            steering,
        },
    )
}

/// An `Authorization: Bearer` key that is not one of `[entitlement] api_keys`.
struct UnknownKey;

fn unknown_key() -> Response<Body> {
    error(StatusCode::UNAUTHORIZED, "entitlement", "unknown API key")
}

/// One edge of a `/v1/steer` answer.
#[derive(Serialize)]
struct SteerEdge {
    #[serde(flatten)]
    edge: RankedEdge,
    /// The edge's base URL players use (no token: `/v1/play` signs).
    url: String,
}

#[derive(Serialize)]
struct SteerAnswer {
    title: String,
    client: ClientAnswer,
    edges: Vec<SteerEdge>,
}

/// `GET /v1/steer?title=ID[&client=IP]`: the ranked edges for a title and
/// a client, as a playback service asks for them — no session, no token,
/// no entitlement check (`/v1/play` does those). The client is the socket
/// peer (or the trusted proxies' `X-Forwarded-For`); `client=` is taken
/// only from a backend with an API key.
fn steer(s: &Shared, req: &Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let outcome = |o: &str| s.metrics.steer.with_label_values(&[o]).inc();
    let mut title = None;
    let mut client = None;
    for (k, v) in url_query(req.uri().query()) {
        match k.as_str() {
            "title" => title = Some(v),
            "client" => client = Some(v),
            _ => {}
        }
    }
    let Some(title) = title.filter(|t| !t.is_empty()) else {
        outcome("bad-request");
        return error(StatusCode::BAD_REQUEST, "bad-request", "title= is required");
    };
    let backend = match s.backend(req.headers()) {
        Ok(b) => b,
        Err(UnknownKey) => {
            outcome("entitlement");
            return unknown_key();
        }
    };
    let ip = match client {
        None => s.client_ip(peer, req.headers()),
        Some(_) if backend.is_none() => {
            outcome("bad-request");
            return error(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "client= may only be given by an authenticated backend",
            );
        }
        Some(c) => match c.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                outcome("bad-request");
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    format!("client={c}: not an IP address"),
                );
            }
        },
    };
    let Some(title) = s.cfg.catalog.title(&title) else {
        let r = Refusal::UnknownTitle(title);
        outcome(r.as_str());
        return refusal(&r);
    };
    let (loc, edges, ranked) = s.decide(ip, &title.id);
    if ranked.is_empty() {
        outcome("no-edge");
        return no_edge();
    }
    outcome("ok");
    json(
        StatusCode::OK,
        &SteerAnswer {
            title: title.id.clone(),
            client: ClientAnswer::new(ip, loc),
            edges: ranked
                .iter()
                .map(|r| {
                    let e = &edges[r.index];
                    SteerEdge {
                        edge: RankedEdge::new(e, r),
                        url: e.url.clone(),
                    }
                })
                .collect(),
        },
    )
}

/// `k=v` pairs of a query, percent-decoded (`+` is a space).
fn url_query(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

impl Shared {
    /// A session id: sealed with the secret of the signing (first) token key.
    fn seal_session(&self, session: &Session) -> String {
        // `[tokens] keys` is never empty (validated), so neither is this.
        let secret = self.session_secrets.first().map_or(&[][..], Vec::as_slice);
        sealed::seal(secret, session)
    }

    /// The session and its title, or why not (answered 404). Opened with
    /// the secret of any configured token key, so sessions survive a
    /// rotation that puts a new key first.
    fn open_session(&self, sid: &str) -> Result<(Session, Title), String> {
        let session: Session =
            sealed::open_any(&self.session_secrets, sid).map_err(|e| format!("unknown session: {e}"))?;
        let title = self
            .cfg
            .catalog
            .title(&session.t)
            .ok_or("the session's title left the catalog")?;
        Ok((session, title))
    }

    /// The session's pathways in the order steering prefers now (see
    /// [`sticky::priority`]): edges the ranker still names, in its order,
    /// with the player's `current` pathway kept first while nothing says
    /// it should move; then the rest (down, draining or overloaded edges
    /// move last).
    fn priority(&self, session: &Session, current: &[String]) -> Vec<String> {
        let (_, edges, ranked) = self.decide(session.ip, &session.t);
        sticky::priority(&edges, &ranked, &session.e, current)
    }

    async fn fetch_origin(&self, path: &str) -> Result<Bytes, String> {
        if let Some((at, b)) = self.fetched.lock().expect("cache lock").get(path) {
            if at.elapsed() < self.cfg.origin.cache_for {
                return Ok(b.clone());
            }
        }
        let url = format!("{}{path}", self.cfg.origin.url.trim_end_matches('/'));
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let resp = tokio::time::timeout(Duration::from_secs(5), self.origin.get(uri))
            .await
            .map_err(|_| format!("{url}: timed out"))?
            .map_err(|e| format!("{url}: {}", outpost_svc::error_chain(&e)))?;
        if resp.status() != StatusCode::OK {
            return Err(format!("{url}: origin answered {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), 4 << 20)
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        let mut cache = self.fetched.lock().expect("cache lock");
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(path.to_string(), (Instant::now(), body.clone()));
        Ok(body)
    }
}

async fn session_manifest(s: &Shared, sid: &str, file: &str) -> Response<Body> {
    let count = |o: &str| s.metrics.manifests.with_label_values(&[file, o]).inc();
    let (session, title) = match s.open_session(sid) {
        Ok(x) => x,
        Err(why) => {
            count("unknown-session");
            return error(StatusCode::NOT_FOUND, "session", why);
        }
    };
    let (name, content_type) = match file {
        "master.m3u8" => (title.hls.clone(), "application/vnd.apple.mpegurl"),
        "manifest.mpd" => (title.dash.clone(), "application/dash+xml"),
        _ => return error(StatusCode::NOT_FOUND, "not-found", "master.m3u8 or manifest.mpd"),
    };
    let Some(name) = name else {
        count("no-such-format");
        return error(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("title {} has no {file}", title.id),
        );
    };
    if session.exp < unix_now() {
        count("expired");
        return error(StatusCode::GONE, "expired", "the session expired; ask /v1/play again");
    }
    let original = match s.fetch_origin(&format!("{}{name}", title.path)).await {
        Ok(b) => b,
        Err(e) => {
            count("origin-error");
            tracing::warn!(error = %e, "cannot read the title's manifest");
            return error(StatusCode::BAD_GATEWAY, "origin", e);
        }
    };
    let original = String::from_utf8_lossy(&original);
    let edges = s.edges.current();
    let tok = s.token(&title, session.ip, session.exp, sid);
    let by_id: HashMap<&str, &rank::Edge> = edges.iter().map(|e| (e.id.as_str(), e)).collect();
    let order = s.priority(&session, &[]);
    let pathways: Vec<Pathway> = order
        .iter()
        .filter_map(|pid| session.e.iter().find(|e| manifest::pathway_id(e) == *pid))
        .filter_map(|id| by_id.get(id.as_str()))
        .map(|e| Pathway {
            id: manifest::pathway_id(&e.id),
            base: format!("{}/t/{tok}{}", e.url, manifest::directory_of(&title.path, &name)),
        })
        .collect();
    let (_, _, steering_uri) = s.session_urls(sid);
    let out = if file == "master.m3u8" {
        manifest::hls_multivariant(&original, &pathways, &steering_uri)
    } else {
        manifest::dash_mpd(&original, &pathways, &steering_uri)
    };
    match out {
        Ok(text_out) => {
            count("ok");
            text(content_type, text_out)
        }
        Err(e) => {
            count("origin-error");
            error(StatusCode::BAD_GATEWAY, "origin", format!("{}{name}: {e}", title.path))
        }
    }
}

fn steering(s: &Shared, sid: &str, query: Option<&str>) -> Response<Body> {
    let (session, _) = match s.open_session(sid) {
        Ok(x) => x,
        Err(why) => {
            s.metrics
                .manifests
                .with_label_values(&["steering", "unknown-session"])
                .inc();
            return error(StatusCode::NOT_FOUND, "session", why);
        }
    };
    let player = manifest::player_state(query);
    let priority = s.priority(&session, &player.pathways);
    tracing::debug!(session = %session.t, current = ?player.pathways, throughput = ?player.throughput, ?priority, "steering");
    s.metrics.manifests.with_label_values(&["steering", "ok"]).inc();
    let (_, _, reload) = s.session_urls(sid);
    json(
        StatusCode::OK,
        &SteeringManifest::new(s.cfg.steering_ttl.as_secs().max(1), reload, priority),
    )
}

fn overview(s: &Shared) -> String {
    let mut out = if s.cfg.page.enabled {
        format!(
            "steering {}  (POST {}/v1/play; open {}/ in a browser for the page)\n\n",
            s.cfg.id, s.public, s.public
        )
    } else {
        format!("steering {}  (POST {}/v1/play)\n\n", s.cfg.id, s.public)
    };
    out.push_str(&format!(
        "{:<20} {:<11} {:<8} {:>6}  {}\n",
        "EDGE", "STATE", "SITE", "LOAD", "URL"
    ));
    for e in s.edges.current().iter() {
        out.push_str(&format!(
            "{:<20} {:<11} {:<8} {:>6.2}  {}\n",
            e.id,
            e.state.as_str(),
            e.site,
            e.load,
            e.url
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, secret: &str) -> TokenKey {
        TokenKey {
            id: id.into(),
            secret: secret.as_bytes().to_vec(),
        }
    }

    fn session() -> Session {
        Session {
            t: "bbb".into(),
            ip: "198.51.100.200".parse().unwrap(),
            e: vec!["edge-a".into(), "edge-b".into()],
            exp: 1_900_000_000,
        }
    }

    #[test]
    fn sessions_survive_putting_a_new_token_key_first() {
        let (k1, k2) = (
            key("k1", "first-token-secret-0123456789"),
            key("k2", "second-token-secret-0123456789"),
        );
        // Made while steering had [k1].
        let before = session_secrets(std::slice::from_ref(&k1));
        let sid = sealed::seal(&before[0], &session());
        // Steering now has [k2, k1]: the old session opens, new ones are
        // sealed with k2's secret.
        let after = session_secrets(&[k2.clone(), k1.clone()]);
        assert_eq!(after[1], before[0], "derivation is per key, not per list");
        assert_eq!(sealed::open_any::<Session, _>(&after, &sid), Ok(session()));
        let new_sid = sealed::seal(&after[0], &session());
        assert_ne!(new_sid, sid);
        assert_eq!(sealed::open_any::<Session, _>(&after, &new_sid), Ok(session()));
        // Once k1 is removed, its sessions are gone.
        let later = session_secrets(std::slice::from_ref(&k2));
        assert_eq!(
            sealed::open_any::<Session, _>(&later, &sid),
            Err(sealed::Unseal::BadSignature)
        );
        // A sealing secret is not the token key itself.
        assert_ne!(after[0], k2.secret);
    }
}
