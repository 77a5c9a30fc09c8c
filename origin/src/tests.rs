//! End-to-end tests: a real origin on 127.0.0.1:0 with a temporary library
//! and a small synthetic catalog, fetched over the network.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use outpost_svc::config::parse_config;
use outpost_svc::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{start, synthetic_bytes, OriginConfig, OriginError, RunningOrigin};

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("outpost-origin-{tag}-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config(extra: &str) -> OriginConfig {
    let text = format!("listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n{extra}");
    parse_config(Path::new("test.toml"), &text).unwrap()
}

/// A library with a VOD playlist, a media file, and a symlink escaping it.
fn library(tmp: &TempDir) -> PathBuf {
    use std::os::unix::fs::symlink;
    let root = tmp.0.join("library");
    fs::create_dir_all(root.join("title")).unwrap();
    fs::write(
        root.join("title/a.m3u8"),
        "#EXTM3U\n#EXTINF:4.0,\nv.mp4\n#EXT-X-ENDLIST\n",
    )
    .unwrap();
    let media: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    fs::write(root.join("title/v.mp4"), media).unwrap();
    fs::write(tmp.0.join("secret.txt"), "secret").unwrap();
    symlink("../../secret.txt", root.join("title/escape.txt")).unwrap();
    root
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

struct Fetched {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    version: Version,
}

impl Fetched {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn fetch(client: &HttpClient, method: Method, url: &str, headers: &[(&str, &str)]) -> Fetched {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client.request(req.body(Empty::new()).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Fetched {
        status: parts.status,
        headers: parts.headers,
        body,
        version: parts.version,
    }
}

/// Send a raw HTTP/1.1 request and read the response until the server
/// closes (for request targets a client library would not send).
async fn raw(origin: &RunningOrigin, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(origin.listen_addr()).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

async fn metrics_text(client: &HttpClient, origin: &RunningOrigin) -> String {
    let f = fetch(
        client,
        Method::GET,
        &format!("http://{}/metrics", origin.admin_addr()),
        &[],
    )
    .await;
    String::from_utf8(f.body.to_vec()).unwrap()
}

#[tokio::test]
async fn serves_synthetic_and_library_over_http1_and_h2() {
    let tmp = TempDir::new("main");
    let root = library(&tmp);
    let cfg = config(&format!(
        "[library]\nroot = \"{}\"\n[synthetic]\ntitles = 3\nsegments = 4\n",
        root.display()
    ));
    let shutdown = Shutdown::new();
    let origin = start(cfg, shutdown.clone()).await.unwrap();
    assert!(!origin.is_tls());
    let base = origin.base_url();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let url = |p: &str| format!("{base}{p}");

    // Admin is ready.
    let ready = fetch(
        &client,
        Method::GET,
        &format!("http://{}/readyz", origin.admin_addr()),
        &[],
    )
    .await;
    assert_eq!(ready.status, StatusCode::OK);

    // Playlists.
    let master = fetch(&client, Method::GET, &url("/synth/t0000/master.m3u8"), &[]).await;
    assert_eq!(master.status, StatusCode::OK);
    assert_eq!(master.version, Version::HTTP_11);
    assert_eq!(master.header("content-type"), Some("application/vnd.apple.mpegurl"));
    assert_eq!(master.header("cache-control"), Some("public, max-age=3600"));
    assert!(master.body.starts_with(b"#EXTM3U\n"));
    let media = fetch(&client, Method::GET, &url("/synth/t0002/r1/index.m3u8"), &[]).await;
    assert_eq!(media.header("cache-control"), Some("public, max-age=3600"));
    assert!(media.body.ends_with(b"seg00003.m4s\n#EXT-X-ENDLIST\n"));

    // A whole segment, then ranges of it.
    let seg = "/synth/t0001/r0/seg00003.m4s";
    let full = fetch(&client, Method::GET, &url(seg), &[]).await;
    assert_eq!(full.status, StatusCode::OK);
    assert_eq!(full.header("content-length"), Some("400000"));
    assert_eq!(full.header("content-type"), Some("video/iso.segment"));
    assert_eq!(
        full.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    assert_eq!(full.body, synthetic_bytes(seg, 0, 400_000));
    let etag = full.header("etag").unwrap().to_owned();
    let last_modified = full.header("last-modified").unwrap().to_owned();

    let part = fetch(&client, Method::GET, &url(seg), &[("range", "bytes=100-199")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.header("content-range"), Some("bytes 100-199/400000"));
    assert_eq!(part.header("content-length"), Some("100"));
    assert_eq!(part.body, synthetic_bytes(seg, 100, 100));
    let tail = fetch(&client, Method::GET, &url(seg), &[("range", "bytes=-10")]).await;
    assert_eq!(tail.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.body, synthetic_bytes(seg, 399_990, 10));
    let big = fetch(&client, Method::GET, &url(seg), &[("range", "bytes=65000-200000")]).await;
    assert_eq!(big.body, synthetic_bytes(seg, 65_000, 135_001));
    let past = fetch(&client, Method::GET, &url(seg), &[("range", "bytes=400000-")]).await;
    assert_eq!(past.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(past.header("content-range"), Some("bytes */400000"));
    assert!(past.body.is_empty());
    let multi = fetch(&client, Method::GET, &url(seg), &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!((multi.status, multi.body.len()), (StatusCode::OK, 400_000));
    let if_range = fetch(
        &client,
        Method::GET,
        &url(seg),
        &[("range", "bytes=0-9"), ("if-range", &etag)],
    )
    .await;
    assert_eq!(if_range.status, StatusCode::PARTIAL_CONTENT);
    let stale = fetch(
        &client,
        Method::GET,
        &url(seg),
        &[("range", "bytes=0-9"), ("if-range", "\"old\"")],
    )
    .await;
    assert_eq!((stale.status, stale.body.len()), (StatusCode::OK, 400_000));

    // Conditional GETs.
    let not_modified = fetch(&client, Method::GET, &url(seg), &[("if-none-match", &etag)]).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    assert_eq!(
        not_modified.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(not_modified.body.is_empty());
    let ims = fetch(
        &client,
        Method::GET,
        &url(seg),
        &[("if-modified-since", &last_modified)],
    )
    .await;
    assert_eq!(ims.status, StatusCode::NOT_MODIFIED);
    let changed = fetch(
        &client,
        Method::GET,
        &url(seg),
        &[("if-none-match", "\"other\", W/\"x\"")],
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK);

    // HEAD: the GET's headers, no body.
    let head = fetch(&client, Method::HEAD, &url(seg), &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some("400000"));
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    assert!(head.body.is_empty());

    // Methods.
    let post = fetch(&client, Method::POST, &url(seg), &[]).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let delete = fetch(&client, Method::DELETE, &url("/title/a.m3u8"), &[]).await;
    assert_eq!(delete.status, StatusCode::METHOD_NOT_ALLOWED);

    // The library.
    let playlist = fetch(&client, Method::GET, &url("/title/a.m3u8"), &[]).await;
    assert_eq!(playlist.status, StatusCode::OK);
    assert_eq!(playlist.header("cache-control"), Some("public, max-age=3600"));
    assert!(playlist.body.ends_with(b"#EXT-X-ENDLIST\n"));
    let file_part = fetch(
        &client,
        Method::GET,
        &url("/title/v.mp4"),
        &[("range", "bytes=70000-200000")],
    )
    .await;
    assert_eq!(file_part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(file_part.header("content-type"), Some("video/mp4"));
    assert_eq!(file_part.header("content-range"), Some("bytes 70000-200000/300000"));
    let expected: Vec<u8> = (70_000..=200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    assert_eq!(file_part.body, expected);
    let file_etag = fetch(&client, Method::HEAD, &url("/title/v.mp4"), &[])
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let file_304 = fetch(
        &client,
        Method::GET,
        &url("/title/v.mp4"),
        &[("if-none-match", &file_etag)],
    )
    .await;
    assert_eq!(file_304.status, StatusCode::NOT_MODIFIED);

    // Traversal and other refusals.
    for (path, want) in [
        ("/../etc/passwd", StatusCode::BAD_REQUEST),
        ("/title/../../secret.txt", StatusCode::BAD_REQUEST),
        ("/%2e%2e/secret.txt", StatusCode::BAD_REQUEST),
        ("/title/..%2f..%2fsecret.txt", StatusCode::BAD_REQUEST),
        ("/%252e%252e%252fsecret.txt", StatusCode::BAD_REQUEST),
        ("/title/a.m3u8%00", StatusCode::BAD_REQUEST),
        ("/title/escape.txt", StatusCode::NOT_FOUND),
        ("/title/", StatusCode::NOT_FOUND),
        ("/title", StatusCode::NOT_FOUND),
        ("/", StatusCode::NOT_FOUND),
        ("/nope.m4s", StatusCode::NOT_FOUND),
        ("/synth/t0003/master.m3u8", StatusCode::NOT_FOUND),
        ("/synth/t0000/r3/index.m3u8", StatusCode::NOT_FOUND),
        ("/synth/t0000/r0/seg00004.m4s", StatusCode::NOT_FOUND),
    ] {
        let f = fetch(&client, Method::GET, &url(path), &[]).await;
        assert_eq!(f.status, want, "{path}");
        assert!(!f.body.windows(6).any(|w| w == b"secret"), "{path}");
    }
    let absolute = raw(
        &origin,
        "GET http://127.0.0.1/synth/t0000/master.m3u8 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(absolute.starts_with("HTTP/1.1 400"), "{absolute}");
    let backslash = raw(
        &origin,
        "GET /title/..\\..\\secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(backslash.starts_with("HTTP/1.1 400"), "{backslash}");
    let garbage = raw(&origin, "GARBAGE\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");

    // HTTP/2 with prior knowledge (h2c) on the same port.
    let h2: HttpClient = Client::builder(TokioExecutor::new()).http2_only(true).build_http();
    let over_h2 = fetch(&h2, Method::GET, &url(seg), &[("range", "bytes=1000-1999")]).await;
    assert_eq!(over_h2.version, Version::HTTP_2);
    assert_eq!(over_h2.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(over_h2.body, synthetic_bytes(seg, 1000, 1000));
    let head_h2 = fetch(&h2, Method::HEAD, &url(seg), &[]).await;
    assert_eq!(head_h2.header("content-length"), Some("400000"));
    let bad_h2 = fetch(&h2, Method::GET, &url("/%2e%2e/secret.txt"), &[]).await;
    assert_eq!(bad_h2.status, StatusCode::BAD_REQUEST);

    // Metrics (recorded when bodies are dropped: allow a moment).
    let mut text = String::new();
    for _ in 0..50 {
        text = metrics_text(&client, &origin).await;
        if text.contains(r#"outpost_origin_requests_total{method="GET",status="206"} 6"#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        text.contains(r#"outpost_origin_requests_total{method="GET",status="206"} 6"#),
        "{text}"
    );
    assert!(
        text.contains(r#"outpost_origin_requests_total{method="OTHER",status="405"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"outpost_origin_requests_total{method="HEAD",status="200"}"#),
        "{text}"
    );
    assert!(text.contains("outpost_origin_bytes_total"), "{text}");
    assert!(
        text.contains("outpost_origin_request_duration_seconds_bucket"),
        "{text}"
    );

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), origin.wait())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn tls_with_generated_certificate_negotiates_h2() {
    let tmp = TempDir::new("tls");
    let certs = tmp.0.join("certs");
    let cfg = config(&format!(
        "[synthetic]\ntitles = 1\nsegments = 1\n[tls]\ncert = \"{0}/origin.crt\"\nkey = \"{0}/origin.key\"\ngenerate = true\n",
        certs.display()
    ));
    let shutdown = Shutdown::new();
    let origin = start(cfg, shutdown.clone()).await.unwrap();
    assert!(origin.is_tls() && origin.base_url().starts_with("https://"));
    assert!(certs.join("ca.crt").exists() && certs.join("ca.key").exists());

    let client_cfg = outpost_svc::tls::client_config(Some(&certs.join("ca.crt")), &[b"h2", b"http/1.1"]).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let tcp = tokio::net::TcpStream::connect(origin.listen_addr()).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let path = "/synth/t0000/r2/seg00000.m4s";
    let req = Request::get(format!("https://localhost{path}"))
        .header("range", "bytes=5-9")
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.version(), Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, synthetic_bytes(path, 5, 5));

    // Cleartext to a TLS port gets nowhere (and does not hurt the server).
    let garbage = raw(&origin, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(!garbage.contains("200"), "{garbage}");

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), origin.wait())
        .await
        .unwrap()
        .unwrap();
}

/// Start a paced origin and begin a 150 kB response at 100 kB/s.
async fn slow_download(grace: &str) -> (RunningOrigin, Shutdown, tokio::task::JoinHandle<Result<usize, String>>) {
    let cfg = config(&format!(
        "shutdown_grace = \"{grace}\"\n[synthetic]\ntitles = 1\nsegments = 1\n[pace]\nbytes_per_second = 100_000\n"
    ));
    let shutdown = Shutdown::new();
    let origin = start(cfg, shutdown.clone()).await.unwrap();
    let url = format!("{}/synth/t0000/r0/seg00000.m4s", origin.base_url());
    let (first_bytes_tx, first_bytes_rx) = tokio::sync::oneshot::channel();
    let download = tokio::spawn(async move {
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        let req = Request::get(url)
            .header("range", "bytes=0-149999")
            .body(Empty::new())
            .unwrap();
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let mut body = resp.into_body();
        let mut n = 0;
        let mut tx = Some(first_bytes_tx);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Some(data) = frame.data_ref() {
                n += data.len();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        }
        Ok(n)
    });
    first_bytes_rx.await.unwrap();
    (origin, shutdown, download)
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_responses() {
    let (origin, shutdown, download) = slow_download("10s").await;
    let started = std::time::Instant::now();
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(8), origin.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(download.await.unwrap(), Ok(150_000));
    // Paced at 100 kB/s, the response took over a second to finish.
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn shutdown_grace_bounds_the_wait() {
    let (origin, shutdown, download) = slow_download("200ms").await;
    let started = std::time::Instant::now();
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(3), origin.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    // The client saw the connection cut short.
    assert!(download.await.unwrap().is_err());
}

#[tokio::test]
async fn start_errors_name_the_key() {
    let tmp = TempDir::new("errors");
    let cfg = config(&format!("[library]\nroot = \"{}\"\n", tmp.0.join("missing").display()));
    let err = start(cfg, Shutdown::new()).await.unwrap_err();
    assert!(matches!(err, OriginError::LibraryRoot { .. }));
    assert!(err.to_string().contains("`library.root`"), "{err}");

    let cfg = config("[synthetic]\n[tls]\ncert = \"/nonexistent/o.crt\"\nkey = \"/nonexistent/o.key\"\n");
    let err = start(cfg, Shutdown::new()).await.unwrap_err().to_string();
    assert!(err.contains("`tls`") && err.contains("/nonexistent/o.crt"), "{err}");

    // Unvalidated configs are checked by `start` too.
    let mut cfg = config("[synthetic]\n");
    if let Some(s) = cfg.synthetic.as_mut() {
        s.renditions.clear();
    }
    let err = start(cfg, Shutdown::new()).await.unwrap_err().to_string();
    assert!(err.contains("`synthetic.renditions`"), "{err}");

    // A taken port names the listener.
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = config("[synthetic]\n");
    cfg.listen = taken.local_addr().unwrap();
    let err = start(cfg, Shutdown::new()).await.unwrap_err().to_string();
    assert!(err.contains("`listen`"), "{err}");
}
