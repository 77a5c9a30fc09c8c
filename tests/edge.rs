//! The edge in front of the real origin, both as processes on loopback.
//! Each test uses its own 127.71.N.x addresses so tests run in parallel.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use common::*;
use http::Method;
use outpost_bench::client::{H3Client, HttpsClient, Tcp};

const ORIGIN_REQS: &str = "outpost_origin_requests_total";

async fn origin_requests(origin: &Service) -> f64 {
    metric_sum(&metrics(&origin.admin).await.unwrap(), ORIGIN_REQS, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_bytes_over_h1_h2_h3_and_repeats_are_hits() -> Result<()> {
    let dir = test_dir("protocols");
    let (o, e) = ("127.71.1.1", "127.71.1.2");
    let origin = start_origin(&dir, o, "").await?;
    let edge = start_edge(&dir, e, o, "").await?;
    let plain = HttpsClient::new(None, Tcp::H1)?;
    let h1 = HttpsClient::new(Some(&ca(&dir)), Tcp::H1)?;
    let h2 = HttpsClient::new(Some(&ca(&dir)), Tcp::H2)?;
    let mut h3 = H3Client::connect(format!("{e}:{EDGE_PORT}").parse()?, e, &ca(&dir)).await?;

    for (i, proto) in ["h1", "h2", "h3"].iter().enumerate() {
        let path = format!("/synth/t0000/r1/seg{i:05}.m4s");
        let direct = plain.get(&format!("http://{o}:{ORIGIN_PORT}{path}")).await?;
        assert_eq!(direct.status, 200);
        assert!(direct.body.len() > 300_000, "a 800 kbit/s 4 s segment");
        let url = format!("https://{e}:{EDGE_PORT}{path}");
        let (first, second) = match *proto {
            "h1" => (h1.get(&url).await?, h1.get(&url).await?),
            "h2" => (h2.get(&url).await?, h2.get(&url).await?),
            _ => (h3.get(&path).await?, h3.get(&path).await?),
        };
        let version = match *proto {
            "h1" => http::Version::HTTP_11,
            "h2" => http::Version::HTTP_2,
            _ => http::Version::HTTP_3,
        };
        for r in [&first, &second] {
            assert_eq!(r.status, 200, "{proto}");
            assert_eq!(r.version, version, "{proto}");
            assert!(
                r.body == direct.body,
                "{proto}: the edge's bytes differ from the origin's"
            );
            assert_eq!(r.header("content-type"), direct.header("content-type"), "{proto}");
            assert_eq!(r.header("etag"), direct.header("etag"), "{proto}");
        }
        let cs1 = first.header("cache-status").unwrap_or_default();
        assert!(
            cs1.starts_with("outpost; fwd=miss") && cs1.contains("stored"),
            "{proto}: {cs1}"
        );
        let cs2 = second.header("cache-status").unwrap_or_default();
        assert!(cs2.starts_with("outpost; hit"), "{proto}: {cs2}");
        if *proto != "h3" {
            assert_eq!(
                first.header("alt-svc"),
                Some(&*format!("h3=\":{EDGE_PORT}\"; ma=86400")),
                "{proto}"
            );
        }
    }
    // Three fills and three direct fetches reached the origin; the hits did not.
    assert_eq!(origin_requests(&origin).await, 6.0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let m = metrics(&edge.admin).await?;
    for proto in ["h1", "h2", "h3"] {
        let p = format!("protocol=\"{proto}\"");
        assert_eq!(
            metric_sum(&m, "outpost_edge_requests_total", &[&p, "cache=\"hit\""]),
            1.0,
            "{proto}\n{m}"
        );
        assert_eq!(
            metric_sum(&m, "outpost_edge_requests_total", &[&p, "cache=\"miss\""]),
            1.0,
            "{proto}"
        );
    }
    assert_eq!(metric_sum(&m, "outpost_edge_memory_objects", &[]), 3.0);
    assert!(metric_sum(&m, "outpost_edge_memory_bytes", &[]) > 900_000.0);
    assert_eq!(
        metric_sum(&m, "outpost_edge_upstream_fetches_total", &["outcome=\"ok\""]),
        3.0
    );
    // One access-log line per request, with protocol and cache status.
    let log = edge.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("access") && l.contains("proto=\"h3\"") && l.contains("cache=\"hit\"")),
        "{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_cold_requests_make_one_origin_fetch() -> Result<()> {
    let dir = test_dir("stampede");
    let (o, e) = ("127.71.2.1", "127.71.2.2");
    // 4 MB at 8 MB/s: the fill lasts about half a second, so the requests overlap it.
    let origin = start_origin(&dir, o, "[pace]\nbytes_per_second = 8000000\n").await?;
    let _edge = start_edge(&dir, e, o, "").await?;
    let path = "/synth/t0001/r0/seg00003.m4s";
    let url = format!("https://{e}:{EDGE_PORT}{path}");
    let h1 = HttpsClient::new(Some(&ca(&dir)), Tcp::H1)?;
    let h2 = HttpsClient::new(Some(&ca(&dir)), Tcp::H2)?;
    let before = origin_requests(&origin).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let client = if i % 2 == 0 { h1.clone() } else { h2.clone() };
        let url = url.clone();
        tasks.push(tokio::spawn(async move { client.get(&url).await }));
    }
    let mut bodies = Vec::new();
    for t in tasks {
        let r = t.await??;
        assert_eq!(r.status, 200);
        bodies.push(sha256_hex(&r.body));
    }
    assert_eq!(origin_requests(&origin).await - before, 1.0, "exactly one origin fetch");
    let direct = HttpsClient::new(None, Tcp::H1)?
        .get(&format!("http://{o}:{ORIGIN_PORT}{path}"))
        .await?;
    assert_eq!(direct.body.len(), 4_000_000);
    let want = sha256_hex(&direct.body);
    assert!(
        bodies.iter().all(|b| *b == want),
        "all 200 responses carry the origin's bytes"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_stream_before_the_fill_finishes() -> Result<()> {
    let dir = test_dir("follower");
    let (o, e) = ("127.71.3.1", "127.71.3.2");
    // 4 MB at 2 MB/s: the leader's fill takes about two seconds.
    let origin = start_origin(&dir, o, "[pace]\nbytes_per_second = 2000000\n").await?;
    // This edge speaks HTTP/2 (h2c) to the origin.
    let _edge = start_edge(&dir, e, o, "http2 = true\n").await?;
    let url = format!("https://{e}:{EDGE_PORT}/synth/t0002/r0/seg00000.m4s");
    let client = HttpsClient::new(Some(&ca(&dir)), Tcp::H1)?;
    let t0 = Instant::now();
    let leader = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { client.get(&url).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let follower_start = Instant::now();
    let mut h3 = H3Client::connect(format!("{e}:{EDGE_PORT}").parse()?, e, &ca(&dir)).await?;
    let follower = h3.get("/synth/t0002/r0/seg00000.m4s").await?;
    let leader = leader.await??;
    let leader_done = leader.total; // since t0
    let follower_first = follower_start.duration_since(t0) + follower.first_byte.expect("body");
    assert!(
        follower_first < leader_done,
        "the follower's first byte ({follower_first:?}) came before the leader's fill finished ({leader_done:?})"
    );
    assert!(
        follower
            .header("cache-status")
            .unwrap_or_default()
            .contains("collapsed"),
        "{:?}",
        follower.headers
    );
    assert!(leader.body == follower.body);
    assert_eq!(leader.body.len(), 4_000_000);
    let olog = origin.log_text();
    assert!(
        olog.lines()
            .any(|l| l.contains("access") && l.contains("protocol=\"h2\"")),
        "upstream over HTTP/2:\n{olog}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn path_traversal_is_refused_by_edge_and_origin() -> Result<()> {
    let dir = test_dir("traversal");
    let (o, e) = ("127.71.4.1", "127.71.4.2");
    std::fs::create_dir_all(dir.join("library/title"))?;
    std::fs::write(dir.join("library/title/ok.m3u8"), "#EXTM3U\n#EXT-X-ENDLIST\n")?;
    std::os::unix::fs::symlink("/etc", dir.join("library/title/escape"))?;
    let origin = start_origin(&dir, o, "").await?;
    let _edge = start_edge(&dir, e, o, "").await?;
    let attacks = [
        "/../../../../etc/passwd",
        "/title/../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%252e%252e/%252e%252e/etc/passwd",
        "/title/..%2f..%2f..%2fetc/passwd",
        "/title/..%5c..%5cetc/passwd",
        "/title/%00/../passwd",
        "/title/escape/passwd",
        "//etc/passwd",
        "/title\\..\\..\\etc\\passwd",
    ];
    let before = origin_requests(&origin).await;
    for a in attacks {
        let req = format!("GET {a} HTTP/1.1\r\nHost: {e}\r\nConnection: close\r\n\r\n");
        let (status, text) = raw_request(&format!("{e}:{EDGE_PORT}"), Some(&ca(&dir)), req.as_bytes()).await?;
        assert!(status == 400 || status == 404, "edge {a}: {status}");
        assert!(!text.contains("root:"), "edge leaked /etc/passwd for {a}");
    }
    // Only the harmless-looking ones ("//etc/passwd", the symlink) reach the origin, which refuses them.
    assert!(origin_requests(&origin).await - before <= 2.0);
    for a in attacks {
        let req = format!("GET {a} HTTP/1.1\r\nHost: {o}\r\nConnection: close\r\n\r\n");
        let (status, text) = raw_request(&format!("{o}:{ORIGIN_PORT}"), None, req.as_bytes()).await?;
        assert!(status == 400 || status == 404, "origin {a}: {status}");
        assert!(!text.contains("root:"), "origin leaked /etc/passwd for {a}");
    }
    let ok = HttpsClient::new(Some(&ca(&dir)), Tcp::H1)?
        .get(&format!("https://{e}:{EDGE_PORT}/title/ok.m3u8"))
        .await?;
    assert_eq!(ok.status, 200, "a legitimate file still works");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranges_conditionals_head_and_bad_input() -> Result<()> {
    let dir = test_dir("semantics");
    let (o, e) = ("127.71.5.1", "127.71.5.2");
    let origin = start_origin(&dir, o, "").await?;
    // The baseline policy serves the same semantics.
    let _edge = start_edge(&dir, e, o, "[cache.memory]\npolicy = \"lru\"\n").await?;
    let path = "/synth/t0000/r1/seg00007.m4s";
    let url = format!("https://{e}:{EDGE_PORT}{path}");
    let c = HttpsClient::new(Some(&ca(&dir)), Tcp::H1)?;
    let full = c.get(&url).await?;
    let len = full.body.len();
    let etag = full.header("etag").expect("etag").to_owned();
    let before = origin_requests(&origin).await;

    let r = c.request(Method::GET, &url, &[("range", "bytes=100-199")]).await?;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some(&*format!("bytes 100-199/{len}")));
    assert!(r.body == full.body.slice(100..200));
    let r = c.request(Method::GET, &url, &[("range", "bytes=-10")]).await?;
    assert_eq!(r.status, 206);
    assert!(r.body == full.body.slice(len - 10..));
    let r = c
        .request(Method::GET, &url, &[("range", &format!("bytes={len}-"))])
        .await?;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some(&*format!("bytes */{len}")));
    let r = c.request(Method::GET, &url, &[("range", "bytes=abc")]).await?;
    assert_eq!(r.status, 200, "a malformed Range is ignored");
    assert_eq!(r.body.len(), len);
    let r = c.request(Method::GET, &url, &[("range", "bytes=0-1,5-6")]).await?;
    assert_eq!(r.status, 200, "multiple ranges are answered whole");
    let r = c
        .request(Method::GET, &url, &[("range", "bytes=0-9"), ("if-range", &etag)])
        .await?;
    assert_eq!(r.status, 206);
    let r = c
        .request(Method::GET, &url, &[("range", "bytes=0-9"), ("if-range", "\"other\"")])
        .await?;
    assert_eq!(r.status, 200, "If-Range mismatch sends the whole object");
    let r = c.request(Method::GET, &url, &[("if-none-match", &etag)]).await?;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = c.request(Method::HEAD, &url, &[("range", "bytes=0-9")]).await?;
    assert_eq!(r.status, 200, "Range applies to GET only");
    let r = c.request(Method::HEAD, &url, &[]).await?;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some(&*len.to_string()));
    for m in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
        let r = c.request(m.clone(), &url, &[]).await?;
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    let edge_addr = format!("{e}:{EDGE_PORT}");
    let big = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let (status, _) = raw_request(&edge_addr, Some(&ca(&dir)), big.as_bytes()).await?;
    assert_eq!(status, 431);
    let (status, _) = raw_request(&edge_addr, Some(&ca(&dir)), b"GARBAGE\r\n\r\n").await?;
    assert_eq!(status, 400);
    assert_eq!(
        origin_requests(&origin).await - before,
        0.0,
        "ranges, conditionals and bad input never reached the origin"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uncacheable_is_remembered_and_stale_is_revalidated() -> Result<()> {
    let dir = test_dir("freshness");
    let (o, e) = ("127.71.6.1", "127.71.6.2");
    std::fs::create_dir_all(dir.join("library/t"))?;
    std::fs::write(dir.join("library/t/private.json"), "{\"user\": 1}")?;
    std::fs::write(
        dir.join("library/t/live.m3u8"),
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\na.m4s\n",
    )?;
    let origin = start_origin(
        &dir,
        o,
        "[cache_control]\nother = \"private, max-age=60\"\nlive_playlist = \"public, max-age=1\"\n",
    )
    .await?;
    let _edge = start_edge(&dir, e, o, "").await?;
    let c = HttpsClient::new(Some(&ca(&dir)), Tcp::H1)?;
    let url = format!("https://{e}:{EDGE_PORT}/t/private.json");
    let r1 = c.get(&url).await?;
    let r2 = c.get(&url).await?;
    assert_eq!((r1.status, r2.status), (http::StatusCode::OK, http::StatusCode::OK));
    let cs1 = r1.header("cache-status").unwrap_or_default();
    assert!(cs1.contains("fwd=miss") && !cs1.contains("stored"), "{cs1}");
    let cs2 = r2.header("cache-status").unwrap_or_default();
    assert!(
        cs2.contains("fwd=uri-miss") && cs2.contains("uncacheable"),
        "second request bypasses the queue: {cs2}"
    );
    assert_eq!(
        origin_requests(&origin).await,
        2.0,
        "private responses are fetched per request"
    );

    let url = format!("https://{e}:{EDGE_PORT}/t/live.m3u8");
    let first = c.get(&url).await?;
    assert!(first.header("cache-status").unwrap_or_default().contains("stored"));
    let hit = c.get(&url).await?;
    assert!(hit.header("cache-status").unwrap_or_default().contains("hit"));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let reval = c.get(&url).await?;
    let cs = reval.header("cache-status").unwrap_or_default();
    assert!(
        cs.contains("fwd=stale") && cs.contains("fwd-status=304"),
        "a stale copy is revalidated with a conditional GET: {cs}"
    );
    assert!(reval.body == first.body);
    let again = c.get(&url).await?;
    assert!(
        again.header("cache-status").unwrap_or_default().contains("hit"),
        "fresh again after the 304"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_upstream_is_a_clean_502_not_a_hang() -> Result<()> {
    let dir = test_dir("dead-upstream");
    let e = "127.71.7.2";
    // Nothing listens on 127.71.7.1.
    let edge = start_edge(&dir, e, "127.71.7.1", "").await?;
    let c = Arc::new(HttpsClient::new(Some(&ca(&dir)), Tcp::H1)?);
    let url = format!("https://{e}:{EDGE_PORT}/synth/t0000/r0/seg00000.m4s");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(15), c.get(&url)).await
        }));
    }
    for t in tasks {
        let r = t.await?.expect("no hang")?;
        assert_eq!(r.status, 502);
    }
    let m = metrics(&edge.admin).await?;
    assert!(metric_sum(&m, "outpost_edge_upstream_fetches_total", &["outcome=\"connect\""]) >= 1.0);
    assert!(
        metric_sum(&m, "outpost_edge_upstream_retries_total", &[]) >= 2.0,
        "retried with backoff"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_in_flight_responses() -> Result<()> {
    let dir = test_dir("graceful");
    let (o, e) = ("127.71.8.1", "127.71.8.2");
    let _origin = start_origin(&dir, o, "[pace]\nbytes_per_second = 4000000\n").await?;
    let mut edge = start_edge(&dir, e, o, "").await?;
    let c = HttpsClient::new(Some(&ca(&dir)), Tcp::H1)?;
    let url = format!("https://{e}:{EDGE_PORT}/synth/t0003/r0/seg00001.m4s");
    let inflight = tokio::spawn(async move { c.get(&url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    edge.terminate();
    let r = inflight.await??;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 4_000_000, "the in-flight response completed");
    let status = edge
        .wait_exit(Duration::from_secs(8))
        .expect("edge exits after draining");
    assert!(status.success(), "{status}");
    Ok(())
}

/// The h3 transport hands body `Bytes` to quinn without copying them
/// (edge/src/server/h3_send.rs); it depends on how h3 calls the transport,
/// so an h3 or quinn upgrade that breaks the hand-off must fail here rather
/// than silently cost a copy of every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn h3_bodies_are_not_copied_over_real_quinn_and_h3() -> Result<()> {
    let dir = test_dir("h3-zero-copy");
    let (o, e) = ("127.71.9.1", "127.71.9.2");
    let _origin = start_origin(&dir, o, "").await?;
    let edge = start_edge(&dir, e, o, "").await?;
    let mut h3 = H3Client::connect(format!("{e}:{EDGE_PORT}").parse()?, e, &ca(&dir)).await?;
    let path = "/synth/t0001/r0/seg00003.m4s";
    let fill = h3.get(path).await?;
    let hit = h3.get(path).await?;
    let range = h3
        .request(Method::GET, path, &[("range", "bytes=1000-1999999")])
        .await?;
    assert_eq!(
        (fill.status.as_u16(), hit.status.as_u16(), range.status.as_u16()),
        (200, 200, 206)
    );
    assert_eq!(fill.body.len(), 4_000_000);
    assert!(hit.body == fill.body);
    assert!(range.body == fill.body.slice(1000..2_000_000));
    assert!(hit
        .header("cache-status")
        .unwrap_or_default()
        .starts_with("outpost; hit"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = metrics(&edge.admin).await?;
    assert!(
        m.lines().any(|l| l == "outpost_edge_h3_body_copied_bytes_total 0"),
        "no h3 body byte was copied (the hand-off to quinn works with this h3):\n{m}"
    );
    assert!(metric_sum(&m, "outpost_edge_sent_bytes_total", &["protocol=\"h3\""]) >= 9_999_000.0);
    Ok(())
}
