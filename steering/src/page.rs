//! The web page steering serves at `/` for browsers (a request whose
//! `Accept` names `text/html`); curl and other clients get the text view,
//! which is also at `/status.txt` for everyone.
//!
//! The page plays a title through the real playback API: it calls
//! `POST /v1/play`, then loads the session's HLS multivariant playlist in
//! hls.js or its DASH MPD in dash.js, both steering by Content Steering.
//! It shows which edge serves each segment, the steering priority, and the
//! edges' live states (`GET /v1/edges`, polled every second). With
//! `[page] control_url` it also shows Stop/Start buttons that call a demo
//! supervisor's control API straight from the browser.
//!
//! Routes:
//! - `GET /` HTML (browsers) or the text view;
//! - `GET /status.txt` the text view;
//! - `GET /v1/page-config` what the page needs to know: the control URL,
//!   which players are installed, the titles it can offer;
//! - `GET /assets/page.js`, `/assets/page.css` the page's own code,
//!   embedded in the binary (no build step);
//! - `GET /assets/hls.js`, `/assets/dash.js` the players, read from
//!   `<assets>/hls.js/dist/hls.min.js` and
//!   `<assets>/dashjs/dist/dash.all.min.js`, where `<assets>` is
//!   `[page] assets` or `web/node_modules` (run `cd web && npm ci`). Only
//!   these fixed files are served: no path from the request reaches the
//!   file system.
//!
//! With `[page] enabled = false` there is no page: `/` is the text view
//! for every client and `/v1/page-config` and `/assets/*` answer 404
//! ([`disabled`]).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{header, Response, StatusCode};
use outpost_svc::https::{full, json, Body};
use serde::Serialize;

use crate::config::{PageConfig, SteeringConfig};

const INDEX_HTML: &str = include_str!("page/index.html");
const PAGE_JS: &str = include_str!("page/page.js");
const PAGE_CSS: &str = include_str!("page/page.css");

/// The default player directory, relative to the working directory.
pub const DEFAULT_ASSETS: &str = "web/node_modules";

/// Player files larger than this are refused (the real ones are < 2 MiB).
const MAX_ASSET: u64 = 16 << 20;

/// A player library: its URL name, the npm package, and its file in there.
struct Player {
    name: &'static str,
    package: &'static str,
    file: &'static str,
}

const PLAYERS: [Player; 2] = [
    Player {
        name: "hls.js",
        package: "hls.js",
        file: "hls.js/dist/hls.min.js",
    },
    Player {
        name: "dash.js",
        package: "dashjs",
        file: "dashjs/dist/dash.all.min.js",
    },
];

/// The `node_modules` directory players are read from: the configured one
/// (even if missing, so errors name it), else `web/node_modules` if it
/// exists. Looked up per request, so `npm ci` after start is enough.
pub fn assets_dir(cfg: &PageConfig) -> Option<PathBuf> {
    match &cfg.assets {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from(DEFAULT_ASSETS)).filter(|p| p.is_dir()),
    }
}

/// One line for the start log: where the players come from, or how to
/// install them.
pub fn players_note(cfg: &PageConfig) -> String {
    let dir = assets_dir(cfg);
    let found: Vec<&str> = PLAYERS
        .iter()
        .filter(|p| player_path(dir.as_deref(), p).is_some())
        .map(|p| p.name)
        .collect();
    match (&dir, found.len()) {
        (Some(d), 2) => format!("hls.js and dash.js from {}", d.display()),
        (Some(d), 1) => format!(
            "only {} found in {}; run `cd web && npm ci` for playback",
            found[0],
            d.display()
        ),
        (Some(d), _) => format!("no players in {}; run `cd web && npm ci` for playback", d.display()),
        (None, _) => format!("not installed (no ./{DEFAULT_ASSETS}); run `cd web && npm ci` for playback"),
    }
}

fn player_path(dir: Option<&Path>, p: &Player) -> Option<PathBuf> {
    Some(dir?.join(p.file)).filter(|f| f.is_file())
}

fn respond(content_type: &'static str, cache: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, cache)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(full(body))
        .expect("static response")
}

/// Does this `Accept` header ask for HTML (a browser)?
pub fn wants_html(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("text/html")
        })
    })
}

/// `GET /` for browsers.
pub fn index() -> Response<Body> {
    let mut r = respond("text/html; charset=utf-8", "no-cache", INDEX_HTML);
    r.headers_mut()
        .insert(header::VARY, header::HeaderValue::from_static("accept"));
    r
}

#[derive(Serialize)]
struct Players {
    hls: bool,
    dash: bool,
}

#[derive(Serialize)]
struct TitleEntry {
    id: String,
    hls: bool,
    dash: bool,
    /// Generated bytes (the synthetic catalog): the API answers, but a
    /// browser cannot decode the segments.
    synthetic: bool,
}

#[derive(Serialize)]
struct PageInfo {
    id: String,
    control_url: Option<String>,
    players: Players,
    /// Where the players are looked for (None: no `web/node_modules`).
    assets: Option<String>,
    /// How to install the players when they are missing.
    install: &'static str,
    steering_ttl: u64,
    titles: Vec<TitleEntry>,
}

/// `GET /v1/page-config`.
pub fn config(cfg: &SteeringConfig) -> Response<Body> {
    let dir = assets_dir(&cfg.page);
    let has = |i: usize| player_path(dir.as_deref(), &PLAYERS[i]).is_some();
    let mut titles: Vec<TitleEntry> = cfg
        .catalog
        .titles
        .iter()
        .map(|t| TitleEntry {
            id: t.id.clone(),
            hls: t.hls.is_some(),
            dash: t.dash.is_some(),
            synthetic: false,
        })
        .collect();
    if let Some(t) = cfg.catalog.title("t0000").filter(|_| cfg.catalog.synthetic.is_some()) {
        if !titles.iter().any(|x| x.id == t.id) {
            titles.push(TitleEntry {
                id: t.id,
                hls: t.hls.is_some(),
                dash: t.dash.is_some(),
                synthetic: true,
            });
        }
    }
    json(
        StatusCode::OK,
        &PageInfo {
            id: cfg.id.clone(),
            control_url: cfg
                .page
                .control_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
            players: Players {
                hls: has(0),
                dash: has(1),
            },
            assets: dir.map(|d| d.display().to_string()),
            install: "cd web && npm ci",
            steering_ttl: cfg.steering_ttl.as_secs(),
            titles,
        },
    )
}

fn not_found(message: String) -> Response<Body> {
    json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({ "error": "not-found", "message": message }),
    )
}

/// Any page route (`/v1/page-config`, `/assets/*`) when `[page] enabled =
/// false`.
pub fn disabled() -> Response<Body> {
    not_found("the web page is turned off on this host ([page] enabled = false)".into())
}

/// `GET /assets/{name}`: the page's own files or one of the two players.
pub async fn asset(cfg: &PageConfig, name: &str) -> Response<Body> {
    match name {
        "page.js" => return respond("text/javascript; charset=utf-8", "no-cache", PAGE_JS),
        "page.css" => return respond("text/css; charset=utf-8", "no-cache", PAGE_CSS),
        _ => {}
    }
    let Some(player) = PLAYERS.iter().find(|p| p.name == name) else {
        return not_found(format!("no such asset: {name} (page.js, page.css, hls.js, dash.js)"));
    };
    let dir = assets_dir(cfg);
    let missing = |why: String| {
        not_found(format!(
            "{} is not installed: {why}; run `cd web && npm ci` in the repository \
             (or set [page] assets to a node_modules directory holding {})",
            player.name, player.package
        ))
    };
    let Some(dir) = dir else {
        return missing(format!("no [page] assets and no ./{DEFAULT_ASSETS}"));
    };
    let path = dir.join(player.file);
    let meta = match tokio::fs::metadata(&path).await {
        Ok(m) if m.is_file() => m,
        _ => return missing(format!("{} is missing", path.display())),
    };
    if meta.len() > MAX_ASSET {
        return missing(format!("{} is larger than {MAX_ASSET} bytes", path.display()));
    }
    match tokio::fs::read(&path).await {
        Ok(body) => respond("text/javascript; charset=utf-8", "public, max-age=300", body),
        Err(e) => missing(format!("cannot read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(r: Response<Body>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn browsers_get_html() {
        assert!(wants_html(Some(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(wants_html(Some("TEXT/HTML; q=1")));
        assert!(!wants_html(Some("*/*")), "curl");
        assert!(!wants_html(Some("text/htmlx")));
        assert!(!wants_html(None));
    }

    #[test]
    fn embedded_page_has_its_panels() {
        for id in [
            "id=\"player\"",
            "id=\"edges\"",
            "id=\"segments\"",
            "id=\"play\"",
            "/assets/page.js",
            "/assets/page.css",
        ] {
            assert!(INDEX_HTML.contains(id), "index.html lacks {id}");
        }
        for call in [
            "/v1/play",
            "/v1/edges",
            "/v1/page-config",
            "/assets/hls.js",
            "/assets/dash.js",
        ] {
            assert!(PAGE_JS.contains(call), "page.js never calls {call}");
        }
    }

    #[tokio::test]
    async fn unknown_assets_and_missing_players_are_404_with_a_reason() {
        let cfg = PageConfig {
            enabled: true,
            control_url: None,
            assets: Some(PathBuf::from("/nonexistent/outpost/node_modules")),
        };
        let r = asset(&cfg, "../../etc/passwd").await;
        assert_eq!(r.status(), 404);
        let r = asset(&cfg, "hls.js").await;
        assert_eq!(r.status(), 404);
        let b = body(r).await;
        assert!(
            b.contains("npm ci") && b.contains("/nonexistent/outpost/node_modules/hls.js/dist/hls.min.js"),
            "{b}"
        );
        let r = asset(&cfg, "page.js").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    }
}
