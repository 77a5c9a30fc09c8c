//! The web page routes of a real steering (in process, on 127.0.0.1 with
//! a generated certificate): `/` for browsers and for curl, the page config,
//! and the player assets with and without `[page] assets`.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::{scratch, steering_toml, Steering};
use http::{header, Request};
use http_body_util::{BodyExt, Empty};
use outpost_steering::SteeringConfig;
use outpost_svc::config::parse_config;

struct Page {
    steering: Steering,
    client: outpost_svc::https::Client<Empty<Bytes>>,
}

impl Page {
    async fn start(dir: &Path, page: &str) -> Page {
        let extra = format!("[[catalog.titles]]\nid = \"bbb\"\npath = \"/vod/bbb/\"\ndash = \"manifest.mpd\"\n{page}");
        let k1 = r#"{ id = "k1", secret = "page-test-secret-0123456789" }"#;
        let steering = Steering::start(&steering_toml(dir, "https://127.0.0.1:1", k1, &extra)).await;
        let client = outpost_svc::https::client(Some(&dir.join("certs/ca.crt")), Duration::from_secs(2)).unwrap();
        Page { steering, client }
    }

    async fn get(&self, path: &str, accept: Option<&str>) -> (u16, http::HeaderMap, String) {
        self.send(http::Method::GET, path, accept).await
    }

    async fn send(&self, method: http::Method, path: &str, accept: Option<&str>) -> (u16, http::HeaderMap, String) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.steering.base));
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let resp = self.client.request(req.body(Empty::new()).unwrap()).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status.as_u16(),
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }
}

#[tokio::test]
async fn page_routes_without_players() {
    let dir = scratch("bare");
    let s = Page::start(&dir, "[page]\nassets = \"/nonexistent/outpost/node_modules\"").await;

    let (status, h, body) = s.get("/", Some("text/html,application/xhtml+xml,*/*;q=0.8")).await;
    assert_eq!(status, 200);
    assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
    for needle in [
        "<video",
        "id=\"edges\"",
        "id=\"segments\"",
        "id=\"player\"",
        "/assets/page.js",
    ] {
        assert!(body.contains(needle), "the page lacks {needle}");
    }

    let (status, h, body) = s.get("/", Some("*/*")).await;
    assert_eq!(status, 200, "curl gets the text view");
    assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
    assert!(body.contains("EDGE") && body.contains("STATE"), "{body}");
    let (status, _, text) = s.get("/status.txt", Some("text/html")).await;
    assert_eq!(status, 200);
    assert_eq!(text, body, "/status.txt is the text view for everyone");

    let (status, h, body) = s.get("/v1/page-config", None).await;
    assert_eq!(status, 200);
    assert_eq!(h[header::CONTENT_TYPE], "application/json");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["control_url"], serde_json::Value::Null);
    assert_eq!(v["players"], serde_json::json!({ "hls": false, "dash": false }));
    assert_eq!(
        v["titles"][0],
        serde_json::json!({ "id": "bbb", "hls": true, "dash": true, "synthetic": false })
    );
    assert_eq!(v["titles"][1]["id"], "t0000");
    assert_eq!(v["titles"][1]["synthetic"], true);

    let (status, _, body) = s.get("/assets/hls.js", None).await;
    assert_eq!(status, 404);
    assert!(
        body.contains("hls.js is not installed") && body.contains("npm ci"),
        "a clear reason: {body}"
    );
    let (status, h, _) = s.get("/assets/page.css", None).await;
    assert_eq!(status, 200);
    assert_eq!(h[header::CONTENT_TYPE], "text/css; charset=utf-8");
    for bad in ["/assets/..%2F..%2Fetc%2Fpasswd", "/assets/hls.min.js", "/assets/"] {
        assert_eq!(s.get(bad, None).await.0, 404, "{bad}");
    }
    assert_eq!(s.get("/assets/dash.js/x", None).await.0, 404);
}

#[tokio::test]
async fn players_come_from_the_assets_directory() {
    let dir = scratch("players");
    let modules = dir.join("node_modules");
    std::fs::create_dir_all(modules.join("hls.js/dist")).unwrap();
    std::fs::create_dir_all(modules.join("dashjs/dist")).unwrap();
    std::fs::write(modules.join("hls.js/dist/hls.min.js"), "window.Hls = {fake: true};").unwrap();
    std::fs::write(
        modules.join("dashjs/dist/dash.all.min.js"),
        "window.dashjs = {fake: true};",
    )
    .unwrap();
    let page = format!(
        "[page]\nassets = \"{}\"\ncontrol_url = \"http://127.0.0.1:7070/\"",
        modules.display()
    );
    let s = Page::start(&dir, &page).await;

    let (status, h, body) = s.get("/assets/hls.js", None).await;
    assert_eq!(status, 200);
    assert_eq!(h[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert_eq!(body, "window.Hls = {fake: true};");
    let (status, _, body) = s.get("/assets/dash.js", None).await;
    assert_eq!(status, 200);
    assert_eq!(body, "window.dashjs = {fake: true};");

    let (_, _, body) = s.get("/v1/page-config", None).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["players"], serde_json::json!({ "hls": true, "dash": true }));
    assert_eq!(v["control_url"], "http://127.0.0.1:7070", "without the trailing slash");
}

#[tokio::test]
async fn a_steering_without_the_page() {
    let dir = scratch("off");
    let s = Page::start(&dir, "[page]\nenabled = false").await;

    let (_, _, text) = s.get("/status.txt", None).await;
    assert!(text.contains("EDGE") && !text.contains("browser"), "{text}");
    for accept in [Some("text/html,application/xhtml+xml,*/*;q=0.8"), Some("*/*"), None] {
        let (status, h, body) = s.get("/", accept).await;
        assert_eq!(status, 200, "{accept:?}");
        assert!(
            h[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"),
            "{accept:?}: the text view, never HTML"
        );
        assert!(!h.contains_key(header::VARY), "{accept:?}: the same for every Accept");
        assert_eq!(body, text, "{accept:?}");
    }
    for path in [
        "/v1/page-config",
        "/assets/page.js",
        "/assets/page.css",
        "/assets/hls.js",
        "/assets/dash.js",
    ] {
        let (status, _, body) = s.get(path, None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("[page] enabled = false"), "{path}: {body}");
        let (status, _, _) = s.send(http::Method::POST, path, None).await;
        assert_eq!(status, 404, "POST {path}");
    }
    // The playback API is all there.
    assert_eq!(s.get("/v1/edges", None).await.0, 200);
    assert_eq!(s.get("/v1/play", None).await.0, 405);
}

#[test]
fn page_config_is_checked() {
    let base = r#"
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
[tls]
cert = "c"
key = "k"
[cache_control]
urls = ["https://127.0.0.1:1"]
ca = "ca"
[origin]
url = "http://127.0.0.1:1"
[tokens]
keys = [{ id = "k1", secret = "page-test-secret-0123456789" }]
"#;
    let parse = |extra: &str| parse_config::<SteeringConfig>(Path::new("t.toml"), &format!("{base}{extra}"));
    let cfg = parse("").unwrap();
    assert!(cfg.page.enabled, "the page is on by default");
    assert!(cfg.page.control_url.is_none() && cfg.page.assets.is_none());
    assert!(parse("[page]\n").unwrap().page.enabled);
    assert!(!parse("[page]\nenabled = false").unwrap().page.enabled);
    let e = parse("[page]\nenabled = \"no\"").unwrap_err().to_string();
    assert!(e.contains("t.toml") && e.contains("enabled"), "{e}");
    let e = parse("[page]\ncontrol_url = \"ftp://x\"").unwrap_err().to_string();
    assert!(e.contains("page.control_url"), "{e}");
    let e = parse("[page]\ncontrols = \"http://x\"").unwrap_err().to_string();
    assert!(e.contains("controls"), "unknown keys are refused: {e}");
}
