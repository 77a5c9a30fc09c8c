//! Sessions across a playback token key rotation, on a real steering and
//! cache-control (in process, on 127.0.0.1 with generated certificates):
//! a session made while steering signs with `[k1]` still gets its steering
//! manifest after steering restarts with `[k2, k1]`, and is refused once
//! `k1` is gone.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{scratch, steering_toml, Steering};
use http::Request;
use http_body_util::{BodyExt, Full};
use outpost_cache_control::CacheControlConfig;
use outpost_proto::{ContentDigest, HealthReport, TierUsage};
use outpost_svc::config::parse_config;
use outpost_svc::Shutdown;

const K1: &str = r#"{ id = "k1", secret = "session-test-key-one-0123456789" }"#;
const K2: &str = r#"{ id = "k2", secret = "session-test-key-two-0123456789" }"#;
const REPORT_SECRET: &str = "session-test-report-secret-0123";

type Client = outpost_svc::https::Client<Full<Bytes>>;

async fn send(client: &Client, req: http::request::Builder, body: &[u8]) -> (u16, String) {
    let resp = client
        .request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A replica that knows one edge, `edge-a`, and admits it after one report.
async fn cache_control(dir: &Path, shutdown: &Shutdown) -> String {
    let d = dir.display();
    let text = format!(
        r#"
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
[tls]
cert = "{d}/certs/cc.crt"
key = "{d}/certs/cc.key"
generate = true
[liveness]
report_interval = "10s"
readmit_reports = 1
[[edges]]
id = "edge-a"
secret = "{REPORT_SECRET}"
"#
    );
    let cfg: CacheControlConfig = parse_config(Path::new("cc-test.toml"), &text).unwrap();
    let running = outpost_cache_control::start(cfg, shutdown.clone()).await.unwrap();
    format!("https://{}", running.addr)
}

async fn report(client: &Client, cc: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let body = serde_json::to_vec(&HealthReport {
        edge_id: "edge-a".into(),
        site: "loop".into(),
        asns: vec![],
        prefixes: vec!["127.0.0.0/8".into()],
        lat: 52.0,
        lon: 4.9,
        urls: vec!["https://edge-a.example.net".into()],
        capacity_gbps: 10.0,
        max_connections: 1000,
        egress_gbps: 0.0,
        connections: 0,
        cpu_load: 0.0,
        memory: TierUsage::default(),
        disk: None,
        hit_ratio: 0.0,
        requests_per_sec: 0.0,
        digest: ContentDigest::default(),
        version: "test".into(),
        draining: false,
        seq: now,
        timestamp_ms: now,
    })
    .unwrap();
    let req = Request::post(format!("{cc}/v1/reports"))
        .header("content-type", "application/json")
        .header("x-outpost-key-id", "edge-a")
        .header("x-outpost-timestamp", now.to_string())
        .header(
            "x-outpost-signature",
            outpost_proto::sign(REPORT_SECRET.as_bytes(), now, &body),
        );
    let (status, answer) = send(client, req, &body).await;
    assert_eq!(status, 200, "report refused: {answer}");
}

async fn steering(dir: &Path, cc: &str, keys: &str) -> Steering {
    Steering::start(&steering_toml(dir, cc, keys, "")).await
}

/// `POST /v1/play` until steering has seen the edge up; the session id.
async fn play(client: &Client, s: &Steering) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let req = Request::post(format!("{}/v1/play", s.base)).header("content-type", "application/json");
        let (status, body) = send(client, req, br#"{"title":"t0001"}"#).await;
        if status == 200 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["edges"][0]["id"], "edge-a", "{body}");
            return v["session"].as_str().unwrap().to_owned();
        }
        assert_eq!(status, 503, "only `no edge yet` is expected: {body}");
        assert!(Instant::now() < deadline, "steering never saw edge-a up: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn steering_manifest(client: &Client, s: &Steering, sid: &str) -> (u16, String) {
    send(client, Request::get(format!("{}/v1/steering/{sid}", s.base)), b"").await
}

#[tokio::test]
async fn sessions_survive_a_token_key_rotation() {
    let dir = scratch("sessions");
    let stop_cc = Shutdown::new();
    let cc = cache_control(&dir, &stop_cc).await;
    let client: Client = outpost_svc::https::client(Some(&dir.join("certs/ca.crt")), Duration::from_secs(2)).unwrap();
    report(&client, &cc).await;

    // A session made while steering signs with k1.
    let before = steering(&dir, &cc, K1).await;
    let sid = play(&client, &before).await;
    let (status, body) = steering_manifest(&client, &before, &sid).await;
    assert_eq!(status, 200, "{body}");
    drop(before);

    // Step 2 of the rotation: k2 first, k1 still listed.
    let after = steering(&dir, &cc, &format!("{K2}, {K1}")).await;
    let (status, body) = steering_manifest(&client, &after, &sid).await;
    assert_eq!(status, 200, "the old session keeps its steering manifest: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["VERSION"], 1, "{body}");
    let new_sid = play(&client, &after).await;
    assert_ne!(new_sid, sid);
    assert_eq!(steering_manifest(&client, &after, &new_sid).await.0, 200);
    drop(after);

    // Step 3: k1 removed; its sessions end, k2's keep working.
    let later = steering(&dir, &cc, K2).await;
    let (status, body) = steering_manifest(&client, &later, &sid).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown session"), "{body}");
    assert_eq!(steering_manifest(&client, &later, &new_sid).await.0, 200);
    drop(later);

    stop_cc.trigger();
    let _ = std::fs::remove_dir_all(&dir);
}
