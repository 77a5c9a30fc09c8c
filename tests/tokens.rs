//! Playback tokens end to end: the real origin and an edge that requires
//! CTA-5007 tokens, as processes on loopback (127.74.N.x). Tokens are
//! issued here with `outpost_proto::token::issue`, as steering does.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use common::*;
use http::Method;
use outpost_bench::client::{Fetched, H3Client, HttpsClient, Tcp};
use outpost_proto::token::{issue, Grant, TokenKey};

const ORIGIN_REQS: &str = "outpost_origin_requests_total";
const REFUSED: &str = "outpost_edge_refused_total";
const SECRET_1: &str = "token-secret-one-0123456789";
const SECRET_2: &str = "token-secret-two-0123456789";

/// Two keys, as during a rotation.
fn token_section() -> String {
    format!(
        "[token]\nrequired = true\nclock_skew = \"5s\"\n\
         [[token.keys]]\nid = \"k1\"\nsecret = \"{SECRET_1}\"\n\
         [[token.keys]]\nid = \"k2\"\nsecret = \"file:k2.secret\"\n"
    )
}

fn key(id: &str) -> TokenKey {
    let secret = if id == "k1" { SECRET_1 } else { SECRET_2 };
    TokenKey {
        id: id.into(),
        secret: secret.as_bytes().to_vec(),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn grant(prefix: &str) -> Grant {
    Grant {
        path_prefix: prefix.into(),
        expires_at: now() + 600,
        not_before: None,
        client_network: None,
        session: Some("test-session".into()),
    }
}

/// Served by the cache: a hit, or (when the request came right after the
/// fill's last byte, before the fill left the in-flight map) a collapsed
/// follower of that same fill. Either way no new origin request.
fn from_cache(r: &Fetched) -> bool {
    let cs = r.header("cache-status").unwrap_or_default();
    cs.starts_with("outpost; hit") || cs.contains("collapsed")
}

async fn origin_requests(origin: &Service) -> f64 {
    metric_sum(&metrics(&origin.admin).await.unwrap(), ORIGIN_REQS, &[])
}

/// Resolve a playlist's relative URI against the playlist's path, as a
/// player does.
fn resolve(base: &str, uri: &str) -> String {
    format!("{}/{uri}", &base[..base.rfind('/').unwrap()])
}

/// URIs in a playlist, in order: `URI="…"` attributes of tags (the init
/// segment's `#EXT-X-MAP`) and the lines that are not tags.
fn uris(playlist: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(playlist)
        .lines()
        .filter_map(|l| match l.split_once("URI=\"") {
            Some((_, rest)) => rest.split('"').next().map(str::to_owned),
            None => (!l.is_empty() && !l.starts_with('#')).then(|| l.to_owned()),
        })
        .collect()
}

/// A client over h1 or h3 fetching edge paths.
enum Player {
    H1(HttpsClient, String),
    H3(H3Client),
}

impl Player {
    async fn get(&mut self, path: &str) -> Result<Fetched> {
        self.request(Method::GET, path, &[]).await
    }

    async fn request(&mut self, method: Method, path: &str, headers: &[(&str, &str)]) -> Result<Fetched> {
        match self {
            Player::H1(c, base) => c.request(method, &format!("{base}{path}"), headers).await,
            Player::H3(c) => c.request(method, path, headers).await,
        }
    }

    /// What a player does with the URL steering gave it: the multivariant
    /// playlist, the last variant's media playlist, then its init segment
    /// and first media segment, every URI relative to the one before.
    /// Returns the segment's path and response.
    async fn play(&mut self, master: &str) -> Result<(String, Fetched)> {
        let m = self.get(master).await?;
        ensure!(m.status == 200, "{master}: {} {:?}", m.status, m.body);
        let variant = resolve(master, uris(&m.body).last().context("no variant")?);
        let v = self.get(&variant).await?;
        ensure!(v.status == 200, "{variant}: {}", v.status);
        let list = uris(&v.body);
        ensure!(list[0] == "init.mp4", "{list:?}");
        let init = resolve(&variant, &list[0]);
        let i = self.get(&init).await?;
        ensure!(i.status == 200, "{init}: {}", i.status);
        let seg = resolve(&variant, &list[1]);
        let s = self.get(&seg).await?;
        ensure!(s.status == 200, "{seg}: {}", s.status);
        Ok((seg, s))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_valid_token_plays_over_h1_and_h3_and_never_reaches_the_cache_key() -> Result<()> {
    let dir = test_dir("tokens-play");
    let (o, e) = ("127.74.1.1", "127.74.1.2");
    std::fs::write(dir.join("k2.secret"), format!("{SECRET_2}\n"))?;
    let origin = start_origin(&dir, o, "").await?;
    let edge = start_edge(&dir, e, o, &token_section()).await?;
    let direct = HttpsClient::new(None, Tcp::H1)?;
    let base = format!("https://{e}:{EDGE_PORT}");
    let mut h1 = Player::H1(HttpsClient::new(Some(&ca(&dir)), Tcp::H1)?, base.clone());
    let mut h3 = Player::H3(H3Client::connect(format!("{e}:{EDGE_PORT}").parse()?, e, &ca(&dir)).await?);

    // A player on h1 with a k1 token: playlist, then segments by their
    // relative URIs, which keep the /t/<token>/ prefix.
    let tok1 = issue(&key("k1"), &grant("/synth/t0001/"), now());
    let before = origin_requests(&origin).await;
    let (seg, first) = h1.play(&format!("/t/{tok1}/synth/t0001/master.m3u8")).await?;
    assert!(seg.starts_with(&format!("/t/{tok1}/synth/t0001/r1/")), "{seg}");
    assert_eq!(origin_requests(&origin).await - before, 4.0, "four objects filled");
    let plain = seg.strip_prefix(&format!("/t/{tok1}")).unwrap();
    let want = direct.get(&format!("http://{o}:{ORIGIN_PORT}{plain}")).await?;
    assert!(first.body == want.body, "the edge's bytes are the origin's");
    assert!(first.header("cache-status").unwrap_or_default().contains("fwd=miss"));

    // Another player on h3 with a different token (the other key): the same
    // four cache entries, all hits, nothing new at the origin.
    let tok2 = issue(
        &key("k2"),
        &Grant {
            session: Some("other-session".into()),
            ..grant("/synth/t0001/")
        },
        now(),
    );
    assert_ne!(tok1, tok2);
    let before = origin_requests(&origin).await;
    let (seg2, second) = h3.play(&format!("/t/{tok2}/synth/t0001/master.m3u8")).await?;
    assert_eq!(seg2.strip_prefix(&format!("/t/{tok2}")), Some(plain));
    assert_eq!(second.version, http::Version::HTTP_3);
    assert!(second.body == want.body);
    assert!(from_cache(&second));
    assert_eq!(origin_requests(&origin).await - before, 0.0, "h3 play was all hits");

    // One object, two tokens, one carrier each: one origin request, then hits.
    let path = "/synth/t0001/r1/seg00005.m4s";
    let before = origin_requests(&origin).await;
    let a = h1.get(&format!("/t/{tok1}{path}")).await?;
    let b = h1.get(&format!("/t/{tok2}{path}")).await?;
    let c = h1.get(&format!("{path}?CAT={tok2}")).await?;
    let d = h1
        .request(Method::GET, path, &[("CTA-Common-Access-Token", tok1.as_str())])
        .await?;
    let f = h3.get(&format!("{path}?cat={tok1}")).await?;
    let g = h3
        .request(Method::GET, path, &[("cta-common-access-token", tok2.as_str())])
        .await?;
    let head = h1.request(Method::HEAD, &format!("/t/{tok2}{path}"), &[]).await?;
    for (what, r) in [
        ("path", &a),
        ("path 2", &b),
        ("query", &c),
        ("header", &d),
        ("h3 query", &f),
        ("h3 header", &g),
        ("HEAD", &head),
    ] {
        assert_eq!(r.status, 200, "{what}");
    }
    assert!(a.header("cache-status").unwrap_or_default().contains("fwd=miss"));
    for r in [&b, &c, &d, &f, &g, &head] {
        assert!(from_cache(r));
        assert!(r.body == a.body || r.body.is_empty());
    }
    assert_eq!(head.header("content-length"), Some(&*a.body.len().to_string()));
    assert_eq!(
        origin_requests(&origin).await - before,
        1.0,
        "one cache entry for every token and carrier"
    );

    // A token limited to the client's network plays; the same player from
    // outside it would not (see the refusal test).
    let local = issue(
        &key("k1"),
        &Grant {
            client_network: Some("127.0.0.0/8".into()),
            ..grant("/synth/t0001/")
        },
        now(),
    );
    assert_eq!(h1.get(&format!("/t/{local}{path}")).await?.status, 200);

    // The token never reached the origin, and no log line holds it.
    let origin_log = origin.log_text();
    assert!(
        !origin_log.contains("/t/") && !origin_log.contains("CAT="),
        "{origin_log}"
    );
    let edge_log = edge.log_text();
    for t in [&tok1, &tok2, &local] {
        assert!(!origin_log.contains(t.as_str()) && !edge_log.contains(t.as_str()));
    }
    assert!(
        edge_log.contains("test-session"),
        "the session id is logged:\n{edge_log}"
    );
    let m = metrics(&edge.admin).await?;
    assert_eq!(metric_sum(&m, REFUSED, &[]), 0.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_tokens_are_refused_before_the_cache_and_the_origin() -> Result<()> {
    let dir = test_dir("tokens-refused");
    let (o, e) = ("127.74.2.1", "127.74.2.2");
    std::fs::write(dir.join("k2.secret"), SECRET_2)?;
    let origin = start_origin(&dir, o, "").await?;
    let edge = start_edge(&dir, e, o, &token_section()).await?;
    let base = format!("https://{e}:{EDGE_PORT}");
    let mut h1 = Player::H1(HttpsClient::new(Some(&ca(&dir)), Tcp::H1)?, base);
    let mut h3 = Player::H3(H3Client::connect(format!("{e}:{EDGE_PORT}").parse()?, e, &ca(&dir)).await?);

    // Warm the object, so a refusal cannot be explained by a miss.
    let path = "/synth/t0001/r1/seg00002.m4s";
    let good = issue(&key("k1"), &grant("/synth/t0001/"), now());
    assert_eq!(h1.get(&format!("/t/{good}{path}")).await?.status, 200);
    let before = origin_requests(&origin).await;

    let expired = issue(
        &key("k1"),
        &Grant {
            expires_at: now() - 60,
            ..grant("/synth/t0001/")
        },
        now() - 3600,
    );
    let not_yet = issue(
        &key("k1"),
        &Grant {
            not_before: Some(now() + 600),
            ..grant("/synth/t0001/")
        },
        now(),
    );
    let other_title = issue(&key("k1"), &grant("/synth/t0002/"), now());
    let confusable = issue(&key("k1"), &grant("/synth/t000"), now());
    let mut tampered = good.clone().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered)?;
    let forged = issue(
        &TokenKey {
            id: "k1".into(),
            secret: b"an-attackers-guess-at-the-secret".to_vec(),
        },
        &grant("/synth/t0001/"),
        now(),
    );
    let unknown_kid = issue(
        &TokenKey {
            id: "k9".into(),
            secret: SECRET_1.into(),
        },
        &grant("/synth/t0001/"),
        now(),
    );
    let elsewhere = issue(
        &key("k2"),
        &Grant {
            client_network: Some("10.0.0.0/8".into()),
            ..grant("/synth/t0001/")
        },
        now(),
    );

    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("missing", path.to_string(), 401, "missing"),
        ("expired", format!("/t/{expired}{path}"), 401, "expired"),
        ("not yet valid", format!("/t/{not_yet}{path}"), 401, "not-yet-valid"),
        ("other title", format!("/t/{other_title}{path}"), 403, "wrong-scope"),
        ("prefix confusion", format!("/t/{confusable}{path}"), 403, "wrong-scope"),
        ("tampered", format!("/t/{tampered}{path}"), 401, "bad-signature"),
        ("forged", format!("/t/{forged}{path}"), 401, "bad-signature"),
        ("unknown key", format!("/t/{unknown_kid}{path}"), 401, "unknown-key"),
        ("garbage", format!("/t/{}{path}", "A".repeat(60)), 401, "malformed"),
        (
            "too short to be a token",
            format!("/t/not-a-token{path}"),
            401,
            "missing",
        ),
        ("garbage query", format!("{path}?CAT=%00%01"), 401, "malformed"),
        ("other network", format!("/t/{elsewhere}{path}"), 403, "wrong-network"),
        (
            "token for another title, the object not cached",
            format!("/t/{other_title}/synth/t0001/r1/seg00009.m4s"),
            403,
            "wrong-scope",
        ),
    ];
    for (what, target, status, reason) in &cases {
        for (proto, player) in [("h1", &mut h1), ("h3", &mut h3)] {
            for method in [Method::GET, Method::HEAD] {
                let r = player.request(method.clone(), target, &[]).await?;
                assert_eq!(r.status.as_u16(), *status, "{what} {proto} {method}");
                let cs = r.header("cache-status");
                assert!(cs.is_none(), "{what}: refused before the cache, yet {cs:?}");
                if method == Method::GET {
                    let body = String::from_utf8_lossy(&r.body);
                    assert!(body.contains("playback token"), "{what}: {body}");
                }
            }
        }
        // tampering may land in the MAC (bad signature) or the structure (malformed)
        if *what != "tampered" {
            let m = metrics(&edge.admin).await?;
            let label = format!("reason=\"token-{reason}\"");
            assert!(metric_sum(&m, REFUSED, &[&label]) >= 4.0, "{what}: {label}");
        }
    }
    // A header that is not a token is no better than none.
    let r = h1
        .request(Method::GET, path, &[("CTA-Common-Access-Token", "junk")])
        .await?;
    assert_eq!(r.status, 401);

    assert_eq!(
        origin_requests(&origin).await - before,
        0.0,
        "no refused request reached the origin"
    );
    let m = metrics(&edge.admin).await?;
    let refused = metric_sum(&m, REFUSED, &[]);
    assert_eq!(refused, (cases.len() * 4 + 1) as f64);
    assert_eq!(metric_sum(&m, "outpost_edge_requests_total", &["cache=\"hit\""]), 0.0);

    // The access log says why, without the token.
    let log = edge.log_text();
    for (_, _, status, reason) in cases.iter().filter(|c| c.0 != "tampered") {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("token=\"{reason}\"")))
            .unwrap_or_else(|| panic!("no access line for {reason}:\n{log}"));
        assert!(
            line.contains(&format!("status={status}")) && line.contains("cache=\"none\""),
            "{line}"
        );
    }
    assert!(!log.contains(good.as_str()) && !log.contains(expired.as_str()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_required_tokens_are_stripped_but_not_checked() -> Result<()> {
    let dir = test_dir("tokens-optional");
    let (o, e) = ("127.74.3.1", "127.74.3.2");
    let origin = start_origin(&dir, o, "").await?;
    let _edge = start_edge(&dir, e, o, "").await?;
    let mut h1 = Player::H1(
        HttpsClient::new(Some(&ca(&dir)), Tcp::H1)?,
        format!("https://{e}:{EDGE_PORT}"),
    );
    let path = "/synth/t0002/r1/seg00001.m4s";
    let before = origin_requests(&origin).await;
    let plain = h1.get(path).await?;
    let with_path = h1
        .get(&format!("/t/{}{path}", "any-token-shaped-segment-".repeat(2)))
        .await?;
    let with_query = h1.get(&format!("{path}?CAT=anything")).await?;
    for r in [&plain, &with_path, &with_query] {
        assert_eq!(r.status, 200);
    }
    assert!(from_cache(&with_path));
    assert!(from_cache(&with_query));
    assert_eq!(origin_requests(&origin).await - before, 1.0);
    Ok(())
}

/// A player page on another origin: the preflight is answered without a
/// token and without the origin; answers (refusals too) carry
/// Access-Control-Allow-Origin so the page can read them, over h1 and h3.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cross_origin_players_get_cors_headers_and_preflights_need_no_token() -> Result<()> {
    let dir = test_dir("tokens-cors");
    let (o, e) = ("127.74.9.1", "127.74.9.2");
    std::fs::write(dir.join("k2.secret"), format!("{SECRET_2}\n"))?;
    let origin = start_origin(&dir, o, "").await?;
    let edge = start_edge(&dir, e, o, &token_section()).await?;
    let h1 = HttpsClient::new(Some(&ca(&dir)), Tcp::H1)?;
    let mut h3 = H3Client::connect(format!("{e}:{EDGE_PORT}").parse()?, e, &ca(&dir)).await?;
    let base = format!("https://{e}:{EDGE_PORT}");
    let page = ("origin", "https://page.example");
    let path = "/synth/t0002/r1/seg00001.m4s";

    let before = origin_requests(&origin).await;
    let pre = h1
        .request(
            Method::OPTIONS,
            &format!("{base}{path}"),
            &[
                page,
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "range"),
            ],
        )
        .await?;
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    assert!(pre
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .contains("range"));
    assert_eq!(origin_requests(&origin).await - before, 0.0, "a preflight never fills");

    let tok = issue(&key("k1"), &grant("/synth/t0002/"), now());
    for r in [
        h1.request(Method::GET, &format!("{base}/t/{tok}{path}"), &[page])
            .await?,
        h3.request(Method::GET, &format!("/t/{tok}{path}"), &[page]).await?,
    ] {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert!(r
            .header("access-control-expose-headers")
            .unwrap_or_default()
            .contains("cache-status"));
    }
    // A refusal is readable by the page too (so it can say why).
    let refused = h1.request(Method::GET, &format!("{base}{path}"), &[page]).await?;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("access-control-allow-origin"), Some("*"));
    // Anything else than a preflight with OPTIONS is still refused.
    let plain = h1.request(Method::OPTIONS, &format!("{base}{path}"), &[page]).await?;
    assert_eq!(plain.status, 405);
    drop(edge);
    Ok(())
}

/// A TCP relay in front of the origin that keeps every byte its clients
/// sent, so a test sees exactly what reached the origin.
async fn recording_relay(listen: &str, to: String) -> Result<std::sync::Arc<std::sync::Mutex<Vec<u8>>>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (to, record) = (to.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&to).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let mut buf = vec![0u8; 16 << 10];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = sw.shutdown().await;
            });
        }
    });
    Ok(seen)
}

/// The access lines of a log with `key=` equal to `key`.
fn access_lines<'a>(log: &'a str, key: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains("access") && l.contains(&format!("key={key} ")))
        .collect()
}

/// A child edge on `ip` that requires tokens (k1 and k2) and forwards them
/// to `urls` (the inside of a TOML array) through the test CA; `extra`
/// goes in its `[upstream]` section.
async fn start_forwarding_child(dir: &std::path::Path, ip: &str, urls: &str, extra: &str) -> Result<Service> {
    std::fs::write(dir.join("k2.secret"), format!("{SECRET_2}\n"))?;
    let cfg = edge_config("child", ip, "unused", &token_section()).replace(
        &format!("urls = [\"http://unused:{ORIGIN_PORT}\"]"),
        &format!("urls = [{urls}]\nca = \"certs/ca.crt\"\nforward_token = true\n{extra}"),
    );
    let mut child = spawn(dir, "edge", "child", &cfg, &format!("{ip}:{EDGE_ADMIN}"))?;
    wait_ready(&mut child).await?;
    Ok(child)
}

/// A parent edge that requires tokens behind a child edge that requires
/// them too and forwards the one of the request that started each fill:
/// origin ← (recording relay) ← parent ← child, on 127.74.20.x.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_child_edge_forwards_the_token_to_a_parent_that_requires_it() -> Result<()> {
    let dir = test_dir("tokens-tiers");
    let (o, p, c, relay) = ("127.74.20.1", "127.74.20.2", "127.74.20.3", "127.74.20.5");
    let origin = start_origin(&dir, o, "").await?;
    let to_origin = recording_relay(&format!("{relay}:{ORIGIN_PORT}"), format!("{o}:{ORIGIN_PORT}")).await?;
    // The parent knows k1 only; the child reaches it from 127.0.0.1 (the
    // kernel's source for loopback), its one forwarder.
    let parent_token = format!(
        "[token]\nrequired = true\nclock_skew = \"5s\"\nforwarders = [\"127.0.0.1/32\"]\n\
         [[token.keys]]\nid = \"k1\"\nsecret = \"{SECRET_1}\"\n"
    );
    let parent = start_named_edge(&dir, "parent", p, relay, &parent_token).await?;
    let child = start_forwarding_child(&dir, c, &format!("\"https://{p}:{EDGE_PORT}\""), "").await?;
    let https = HttpsClient::new(Some(&ca(&dir)), Tcp::H1)?;
    let mut player = Player::H1(
        HttpsClient::new(Some(&ca(&dir)), Tcp::H1)?,
        format!("https://{c}:{EDGE_PORT}"),
    );
    let at_parent = |path: &str| format!("https://{p}:{EDGE_PORT}{path}");

    // A valid token plays through both tiers: one origin fetch per object.
    let tok1 = issue(&key("k1"), &grant("/synth/t0001/"), now());
    let before = origin_requests(&origin).await;
    let (seg, first) = player.play(&format!("/t/{tok1}/synth/t0001/master.m3u8")).await?;
    let seg = seg.strip_prefix(&format!("/t/{tok1}")).unwrap().to_owned();
    let cs = first.header("cache-status").unwrap_or_default();
    assert!(cs.contains("fwd=miss") && cs.contains("stored"), "{cs}");
    assert_eq!(origin_requests(&origin).await - before, 4.0, "four objects, once each");
    let want = HttpsClient::new(None, Tcp::H1)?
        .get(&format!("http://{o}:{ORIGIN_PORT}{seg}"))
        .await?;
    assert!(first.body == want.body);

    // The parent checked the forwarded token (logged `token="ok"`, the
    // session too) on a token-free key, as did the child.
    let (parent_log, child_log) = (parent.log_text(), child.log_text());
    for (tier, log) in [("parent", &parent_log), ("child", &child_log)] {
        let lines = access_lines(log, &seg);
        assert_eq!(lines.len(), 1, "{tier}: one access line for {seg}:\n{log}");
        assert!(
            lines[0].contains("token=\"ok\"") && lines[0].contains("test-session"),
            "{tier}: {}",
            lines[0]
        );
        assert!(!log.contains(tok1.as_str()), "{tier} logs no token");
    }

    // The parent refuses a request without a token; with one it is a hit:
    // its key has no token either.
    let bare = https.get(&at_parent(&seg)).await?;
    assert_eq!(bare.status, 401);
    assert!(String::from_utf8_lossy(&bare.body).contains("playback token"));
    assert_eq!(bare.header("outpost-refused"), Some("token"), "the refusal is marked");
    let direct = https
        .request(
            Method::GET,
            &at_parent(&seg),
            &[("CTA-Common-Access-Token", tok1.as_str())],
        )
        .await?;
    assert_eq!(direct.status, 200);
    assert!(from_cache(&direct), "{:?}", direct.header("cache-status"));
    // Another player's token: a hit at the child, nothing upstream.
    let tok2 = issue(
        &key("k1"),
        &Grant {
            session: Some("other-session".into()),
            ..grant("/synth/t0001/")
        },
        now(),
    );
    let other = player.get(&format!("/t/{tok2}{seg}")).await?;
    assert_eq!(other.status, 200);
    assert!(from_cache(&other));

    // A token the child accepts but the parent does not (k2, which only the
    // child knows): the parent's 401 is not the player's answer and is
    // not cached: 502 saying why, and the next valid request fills normally.
    let fresh = "/synth/t0001/r1/seg00007.m4s";
    let k2 = issue(&key("k2"), &grant("/synth/t0001/"), now());
    let refused = player.get(&format!("/t/{k2}{fresh}")).await?;
    assert_eq!(refused.status, 502);
    let why = String::from_utf8_lossy(&refused.body);
    assert!(
        why.contains("refused the playback token") && why.contains("401") && why.contains("unknown key"),
        "{why}"
    );
    let m = metrics(&child.admin).await?;
    assert_eq!(
        metric_sum(
            &m,
            "outpost_edge_upstream_fetches_total",
            &["outcome=\"token-refused\""]
        ),
        1.0
    );
    let pm = metrics(&parent.admin).await?;
    assert_eq!(metric_sum(&pm, REFUSED, &["reason=\"token-unknown-key\""]), 1.0);
    let after = player.get(&format!("/t/{tok1}{fresh}")).await?;
    assert_eq!(after.status, 200);
    let cs = after.header("cache-status").unwrap_or_default();
    assert!(
        cs.contains("fwd=miss") && cs.contains("stored"),
        "stored, not remembered as uncacheable: {cs}"
    );
    // Once cached, the child serves any token it accepts.
    assert!(from_cache(&player.get(&format!("/t/{k2}{fresh}")).await?));

    // A token bound to the player's network: the child checks the network,
    // the parent (seeing the child's address, a forwarder) everything else;
    // from anywhere else the parent checks the network too.
    let net = issue(
        &key("k1"),
        &Grant {
            client_network: Some("127.74.21.0/24".into()),
            ..grant("/synth/t0001/")
        },
        now(),
    );
    let bound = "/synth/t0001/r1/seg00008.m4s";
    let from_net = client_from("127.74.21.9".parse()?, &ca(&dir))?;
    let (status, _) = send(
        &from_net,
        Method::GET,
        &format!("https://{c}:{EDGE_PORT}/t/{net}{bound}"),
        &[],
        b"",
    )
    .await?;
    assert_eq!(status, 200, "played through both tiers");
    let elsewhere = client_from("127.74.22.9".parse()?, &ca(&dir))?;
    let (status, _) = send(
        &elsewhere,
        Method::GET,
        &at_parent(bound),
        &[("CTA-Common-Access-Token", net.as_str())],
        b"",
    )
    .await?;
    assert_eq!(status, 403, "not a forwarder: the network is checked");

    // The origin never saw a token, in the header or anywhere else.
    let seen = String::from_utf8_lossy(&to_origin.lock().unwrap()).to_lowercase();
    assert!(seen.contains(&format!("get {seg} ")), "{seen}");
    assert!(!seen.contains("cta-common-access-token"), "{seen}");
    for t in [&tok1, &tok2, &k2, &net] {
        assert!(!seen.contains(&t.to_lowercase()));
    }
    Ok(())
}

/// A fake https:// upstream on `listen`: answers 403 (`forbidden` in the
/// path, an origin forbidding an object, no token-refusal marker) or 503
/// (anything else), and keeps every request head it got.
async fn fake_https_upstream(
    dir: &std::path::Path,
    ip: &str,
    port: u16,
) -> Result<std::sync::Arc<std::sync::Mutex<Vec<String>>>> {
    use outpost_svc::tls;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let paths = tls::LocalCertPaths::in_dir(&dir.join("certs"), "fake-upstream");
    tls::ensure_local_certs(&paths, &[ip.to_string()])?;
    let key = tls::load_certified_key(&paths.cert, &paths.key)?;
    let cfg = tls::server_config(std::sync::Arc::new(tls::CertResolver::new(key)), &[b"http/1.1"]);
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind((ip, port)).await?;
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_lowercase();
                let (status, body) = if head.lines().next().unwrap_or_default().contains("forbidden") {
                    ("403 Forbidden", "forbidden by the origin\n")
                } else {
                    ("503 Service Unavailable", "try another\n")
                };
                seen.lock().unwrap().push(head);
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Ok(heads)
}

/// The forwarded token is a bearer credential: it goes to https://
/// upstreams only, and a 401/403 from an upstream that got it counts as a
/// refused token only when marked so (an edge's `outpost-refused: token`);
/// an origin forbidding an object is answered as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forwarded_token_goes_to_https_only_and_an_unmarked_403_is_passed_on() -> Result<()> {
    let dir = test_dir("tokens-https-only");
    let (o, c, relay, fake) = ("127.74.24.1", "127.74.24.3", "127.74.24.5", "127.74.24.6");
    let _origin = start_origin(&dir, o, "").await?;
    let to_origin = recording_relay(&format!("{relay}:{ORIGIN_PORT}"), format!("{o}:{ORIGIN_PORT}")).await?;
    let fake_seen = fake_https_upstream(&dir, fake, ORIGIN_PORT).await?;
    // The https:// fake first, the origin over http:// (through the
    // recording relay) on retry.
    let urls = format!("\"https://{fake}:{ORIGIN_PORT}\", \"http://{relay}:{ORIGIN_PORT}\"");
    let child = start_forwarding_child(&dir, c, &urls, "retry_backoff = \"10ms\"").await?;
    let player = HttpsClient::new(Some(&ca(&dir)), Tcp::H1)?;
    let tok = issue(&key("k1"), &grant("/synth/t0001/"), now());
    let at_child = |path: &str| format!("https://{c}:{EDGE_PORT}/t/{tok}{path}");

    // The origin forbids an object: its 403 is the player's answer, not a
    // 502 about a refused token, though the token went to it.
    let forbidden = player.get(&at_child("/synth/t0001/forbidden.m4s")).await?;
    assert_eq!(forbidden.status, 403, "{}", String::from_utf8_lossy(&forbidden.body));
    assert_eq!(String::from_utf8_lossy(&forbidden.body), "forbidden by the origin\n");
    assert!(forbidden
        .header("cache-status")
        .unwrap_or_default()
        .contains("fwd=miss"));
    let heads = fake_seen.lock().unwrap().clone();
    assert!(
        heads
            .iter()
            .any(|h| h.contains("forbidden.m4s")
                && h.contains(&format!("cta-common-access-token: {}", tok.to_lowercase()))),
        "the token went to the https:// upstream: {heads:?}"
    );
    let m = metrics(&child.admin).await?;
    assert_eq!(
        metric_sum(
            &m,
            "outpost_edge_upstream_fetches_total",
            &["outcome=\"token-refused\""]
        ),
        0.0
    );

    // The fake answers 503 for the rest: the retry goes to the origin over
    // http://, without the token.
    let seg = "/synth/t0001/r0/seg00002.m4s";
    let ok = player.get(&at_child(seg)).await?;
    assert_eq!(ok.status, 200);
    let seen = String::from_utf8_lossy(&to_origin.lock().unwrap()).to_lowercase();
    assert!(seen.contains(&format!("get {seg} ")), "{seen}");
    assert!(
        !seen.contains("cta-common-access-token"),
        "no token over http://: {seen}"
    );
    assert!(!seen.contains(&tok.to_lowercase()));
    Ok(())
}
