//! Steering and the playback API with real processes: origin, edges
//! reporting to two cache-control replicas, steering following both, and
//! clients on their own 127.x source addresses.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::*;
use http::Method;
use serde_json::Value;

const INTERVAL: &str = "300ms";

struct World {
    dir: std::path::PathBuf,
    net: &'static str,
    steering: String,
    edges: Vec<Service>,
    cc: Vec<Service>,
    _steering: Service,
    _origin: Service,
}

/// Edges `(id, site, asn, prefix, lat, lon)` on `net`.1.., replicas on .10/.11,
/// steering on .30, origin on .20.
async fn world(
    name: &str,
    net: &'static str,
    edges: &[(&str, &str, u32, &str, f64, f64)],
    report_extra: &str,
    steering_extra: &str,
) -> Result<World> {
    let dir = test_dir(name);
    let origin_ip = format!("{net}.20");
    let origin = start_origin(&dir, &origin_ip, "").await?;
    let ids: Vec<&str> = edges.iter().map(|e| e.0).collect();
    let replicas = [format!("{net}.10"), format!("{net}.11")];
    let liveness = format!("[liveness]\nreport_interval = \"{INTERVAL}\"");
    let mut cc = Vec::new();
    for (i, ip) in replicas.iter().enumerate() {
        cc.push(start_cache_control(&dir, &format!("cc-{i}"), ip, &ids, &liveness).await?);
    }
    let replica_ips: Vec<&str> = replicas.iter().map(|s| s.as_str()).collect();
    let mut procs = Vec::new();
    for (i, (id, site, asn, prefix, lat, lon)) in edges.iter().enumerate() {
        let ip = format!("{net}.{}", i + 1);
        let sections = format!(
            "[site]\nname = \"{site}\"\nlat = {lat}\nlon = {lon}\nasns = [{asn}]\nprefixes = [{prefix}]\n{}\n{}\n",
            report_only(id, &replica_ips, report_extra),
            token_section()
        );
        procs.push(start_named_edge(&dir, id, &ip, &origin_ip, &sections).await?);
    }
    let steering_ip = format!("{net}.30");
    let steering = start_steering(&dir, &steering_ip, &replica_ips, &origin_ip, steering_extra).await?;
    let w = World {
        dir,
        net,
        steering: format!("https://{steering_ip}:{STEERING_PORT}"),
        edges: procs,
        cc,
        _steering: steering,
        _origin: origin,
    };
    // Wait until steering names every edge (all up, streamed through).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = send(
            &w.client("127.0.0.1")?,
            Method::GET,
            &format!("{}/v1/edges", w.steering),
            &[],
            b"",
        )
        .await?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let up = v
            .as_array()
            .map_or(0, |a| a.iter().filter(|e| e["state"] == "up").count());
        if status == 200 && up == edges.len() {
            return Ok(w);
        }
        if Instant::now() > deadline {
            bail!("steering never saw every edge up: {status} {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Only the `[report]` table (the site comes from the world's tuple).
fn report_only(id: &str, replicas: &[&str], extra: &str) -> String {
    let full = report_section(id, "x", replicas, INTERVAL, extra);
    full[full.find("[report]").unwrap()..].to_string()
}

impl World {
    fn client(&self, source: &str) -> Result<ClientT> {
        client_from(source.parse::<IpAddr>()?, &ca(&self.dir))
    }

    async fn play(&self, source: &str, title: &str, headers: &[(&str, &str)]) -> Result<(u16, Value)> {
        let body = serde_json::json!({ "title": title }).to_string();
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        let (status, b) = send(
            &self.client(source)?,
            Method::POST,
            &format!("{}/v1/play", self.steering),
            &h,
            body.as_bytes(),
        )
        .await?;
        Ok((status, serde_json::from_slice(&b).unwrap_or(Value::Null)))
    }

    async fn first_edge(&self, source: &str, title: &str) -> Result<String> {
        let (status, v) = self.play(source, title, &[]).await?;
        if status != 200 {
            bail!("play answered {status}: {v}");
        }
        Ok(v["edges"][0]["id"].as_str().context("edge id")?.to_string())
    }
}

type ClientT = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

const BACKEND_KEY: &str = "backend-key-0123456789";

fn ids(v: &Value) -> Vec<String> {
    v["edges"].as_array().map_or(vec![], |a| {
        a.iter().map(|e| e["id"].as_str().unwrap_or("").to_string()).collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_their_isp_edge_first_and_a_killed_edge_leaves_the_answers() -> Result<()> {
    let geo = std::env::temp_dir().join(format!("outpost-steering-geo-{}", std::process::id()));
    std::fs::create_dir_all(&geo)?;
    write_geo_dbs(&geo)?;
    let steering_extra = format!(
        "[geo]\ncity_db = \"{}\"\nasn_db = \"{}\"\n[entitlement]\nopen = true\n\
         api_keys = [{{ id = \"backend\", secret = \"{BACKEND_KEY}\" }}]\n[catalog.synthetic]\ntitles = 4\n",
        geo.join("city.mmdb").display(),
        geo.join("asn.mmdb").display()
    );
    let mut w = world(
        "steer-isp",
        "127.75.1",
        &[
            ("edge-a", "ams", 64501, "\"127.76.1.0/24\"", 52.37, 4.90),
            ("edge-b", "fra", 64502, "\"127.76.2.0/24\"", 50.11, 8.68),
            ("edge-c", "nyc", 64503, "", 40.71, -74.01),
        ],
        "",
        &steering_extra,
    )
    .await?;

    // Each client network gets its own ISP's edge first: by announced
    // prefix (a, b) and by the ASN the geo database gives (c).
    let (status, v) = w.play("127.76.1.5", "t0001", &[]).await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["edges"][0]["id"], "edge-a", "{v}");
    assert_eq!(v["edges"][0]["reason"], "isp");
    assert_eq!(ids(&v).len(), 3);
    assert_eq!(w.first_edge("127.76.2.5", "t0001").await?, "edge-b");
    let (_, v) = w.play("127.76.3.5", "t0001", &[]).await?;
    assert_eq!(
        (v["edges"][0]["id"].as_str(), v["client"]["asn"].as_u64()),
        (Some("edge-c"), Some(64503)),
        "{v}"
    );
    assert_eq!(v["client"]["country"], "US");
    // A client elsewhere is ranked by distance from the database's coordinates
    // (127.76.4.0/24 sits in Frankfurt): fra, then ams, then nyc.
    let (_, v) = w.play("127.76.4.5", "t0001", &[]).await?;
    assert_eq!(ids(&v), ["edge-b", "edge-a", "edge-c"], "{v}");
    assert_eq!(v["edges"][0]["reason"], "geo");

    // GET /v1/steer: the same ranking as JSON, no session or token; the
    // client is the peer, or `client=` from a backend with an API key.
    let steer = |q: &str| format!("{}/v1/steer?{q}", w.steering);
    let (status, v) = get_json(&w, "127.76.2.5", &steer("title=t0001")).await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(ids(&v), ["edge-b", "edge-a", "edge-c"], "{v}");
    assert_eq!(
        (v["edges"][0]["reason"].as_str(), v["client"]["ip"].as_str()),
        (Some("isp"), Some("127.76.2.5"))
    );
    assert!(
        v["edges"][0]["url"]
            .as_str()
            .unwrap_or("")
            .starts_with("https://127.75.1.2:"),
        "{v}"
    );
    assert!(!v.to_string().contains("/t/"), "no token in a steer answer: {v}");
    let backend = [("authorization", format!("Bearer {BACKEND_KEY}"))];
    let backend: Vec<(&str, &str)> = backend.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = send(
        &w.client("127.76.2.5")?,
        Method::GET,
        &steer("title=t0001&client=127.76.1.9"),
        &backend,
        b"",
    )
    .await?;
    let v: Value = serde_json::from_slice(&body)?;
    assert_eq!((status, v["edges"][0]["id"].as_str()), (200, Some("edge-a")), "{v}");
    for (q, auth, want, reason) in [
        ("title=t0001&client=127.76.1.9", None, 400, "bad-request"),
        (
            "title=t0001&client=not-an-ip",
            Some(backend.clone()),
            400,
            "bad-request",
        ),
        ("title=nope", None, 404, "unknown-title"),
        ("client=127.76.1.9", None, 400, "bad-request"),
        (
            "title=t0001",
            Some(vec![("authorization", "Bearer wrong-key-0123456789")]),
            401,
            "entitlement",
        ),
    ] {
        let (status, body) = send(
            &w.client("127.76.2.5")?,
            Method::GET,
            &steer(q),
            auth.as_deref().unwrap_or(&[]),
            b"",
        )
        .await?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!((status, v["error"].as_str()), (want, Some(reason)), "{q}: {v}");
    }

    // A session made before the kill; its steering manifest will move edge-a last.
    let (_, session) = w.play("127.76.1.5", "t0001", &[]).await?;
    let steering_url = session["steering"].as_str().context("steering url")?.to_string();

    // kill -9 edge-a: answers stop naming it within 3 s of the kill.
    w.edges[0].kill9();
    let killed = Instant::now();
    loop {
        let (_, v) = w.play("127.76.1.5", "t0001", &[]).await?;
        if !ids(&v).contains(&"edge-a".to_string()) {
            assert_eq!(ids(&v)[0], "edge-b", "the nearest remaining edge: {v}");
            break;
        }
        if killed.elapsed() > Duration::from_secs(10) {
            bail!("edge-a still named 10 s after the kill: {v}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = killed.elapsed();
    eprintln!("edge-a left the answers {took:?} after kill -9");
    assert!(took <= Duration::from_secs(3), "{took:?}");

    let (status, body) = send(
        &w.client("127.76.1.5")?,
        Method::GET,
        &format!("{steering_url}?_HLS_pathway=edge-a&_HLS_throughput=4000000"),
        &[],
        b"",
    )
    .await?;
    assert_eq!(status, 200);
    let m: Value = serde_json::from_slice(&body)?;
    assert_eq!(m["VERSION"], 1);
    assert_eq!(
        m["PATHWAY-PRIORITY"],
        serde_json::json!(["edge-b", "edge-c", "edge-a"]),
        "{m}"
    );
    assert_eq!(m["SERVICE-LOCATION-PRIORITY"], m["PATHWAY-PRIORITY"]);
    assert!(m["RELOAD-URI"]
        .as_str()
        .unwrap()
        .ends_with(steering_url.rsplit('/').next().unwrap()));
    // dash.js quoting is understood too.
    let (status, _) = send(
        &w.client("127.76.1.5")?,
        Method::GET,
        &format!("{steering_url}?_DASH_pathway=%22edge-a,edge-b%22"),
        &[],
        b"",
    )
    .await?;
    assert_eq!(status, 200);
    Ok(())
}

/// City and ASN databases in MaxMind DB format for the test's client networks.
fn write_geo_dbs(dir: &std::path::Path) -> Result<()> {
    use outpost_steering::geo::write::{asn_db, city_db, AsnEntry, CityEntry};
    let city = |net: &str, country: &str, name: &str, lat: f64, lon: f64| -> Result<CityEntry> {
        Ok(CityEntry {
            network: net.parse()?,
            country: Some(country.into()),
            city: Some(name.into()),
            lat: Some(lat),
            lon: Some(lon),
            accuracy_km: Some(20),
        })
    };
    let asn = |net: &str, asn: u32, org: &str| -> Result<AsnEntry> {
        Ok(AsnEntry {
            network: net.parse()?,
            asn,
            org: Some(org.into()),
        })
    };
    let now = std::time::SystemTime::now();
    let city_bytes = city_db(
        &[
            city("127.76.3.0/24", "US", "New York", 40.71, -74.01)?,
            city("127.76.4.0/24", "DE", "Frankfurt", 50.11, 8.68)?,
            city("127.76.5.0/24", "NL", "Amsterdam", 52.37, 4.90)?,
        ],
        now,
    )?;
    let asn_bytes = asn_db(
        &[
            asn("127.76.3.0/24", 64503, "Example NYC ISP")?,
            asn("127.76.5.0/24", 64599, "Example NL ISP")?,
        ],
        now,
    )?;
    std::fs::write(dir.join("city.mmdb"), city_bytes)?;
    std::fs::write(dir.join("asn.mmdb"), asn_bytes)?;
    Ok(())
}

/// Two edges in one site (ams), the ISP of the 127.76.1.0/24 clients.
const TWO_IN_ONE_SITE: &[(&str, &str, u32, &str, f64, f64)] = &[
    ("ams-1", "ams", 64501, "\"127.76.1.0/24\"", 52.37, 4.90),
    ("ams-2", "ams", 64501, "\"127.76.1.0/24\"", 52.37, 4.90),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn titles_concentrate_per_site_until_the_bounded_load_limit() -> Result<()> {
    // Two edges in one site, each sized for 20 connections.
    let w = world(
        "steer-affinity",
        "127.75.2",
        TWO_IN_ONE_SITE,
        "max_connections = 20",
        "[entitlement]\nopen = true\n[catalog.synthetic]\ntitles = 40\n",
    )
    .await?;
    // Each title's requests go to one edge of the site; titles spread over both.
    let mut by_edge: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for t in 0..40 {
        let title = format!("t{t:04}");
        let a = w.first_edge("127.76.1.5", &title).await?;
        assert_eq!(
            a,
            w.first_edge("127.76.1.6", &title).await?,
            "{title}: same edge for every client"
        );
        assert_eq!(
            a,
            w.first_edge("127.76.1.5", &title).await?,
            "{title}: same edge every time"
        );
        by_edge.entry(a).or_default().push(title);
    }
    assert_eq!(by_edge.len(), 2, "{by_edge:?}");
    assert!(
        by_edge.values().all(|t| t.len() >= 8),
        "rendezvous spreads titles: {by_edge:?}"
    );

    // Load the edge that serves `title`: 8 open connections of its 20
    // (0.4) against ~0 on the other is above 1.25x the site's mean.
    let (hot, titles) = by_edge.iter().next().unwrap();
    let title = titles[0].clone();
    let hot_index: usize = if hot == "ams-1" { 1 } else { 2 };
    let hot_addr = format!("{}.{hot_index}:{EDGE_PORT}", w.net);
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(open_tls(&hot_addr, &ca(&w.dir)).await?);
    }
    let moved = poll(Duration::from_secs(5), || async {
        Ok(w.first_edge("127.76.1.5", &title).await? != *hot)
    })
    .await?;
    assert!(moved, "{title} still on the loaded edge {hot}");
    // Not overloaded (0.4 < 0.9): still in the answer, just not first.
    let (_, v) = w.play("127.76.1.5", &title, &[]).await?;
    assert_eq!(ids(&v).len(), 2, "{v}");
    drop(held);
    let back = poll(Duration::from_secs(5), || async {
        Ok(w.first_edge("127.76.1.5", &title).await? == *hot)
    })
    .await?;
    assert!(back, "{title} back on {hot} once its load fell");
    Ok(())
}

/// Poll `check` every 100 ms until it holds or `limit` passes.
async fn poll<F, Fut>(limit: Duration, check: F) -> Result<bool>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await? {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

/// An open, idle TLS connection (counts in the edge's connection gauge).
async fn open_tls(addr: &str, ca: &std::path::Path) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let cfg = outpost_svc::tls::client_config(Some(ca), &[b"http/1.1"])?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let ip: IpAddr = addr.rsplit_once(':').unwrap().0.parse()?;
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(rustls::pki_types::ServerName::IpAddress(ip.into()), tcp)
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_refusals_and_a_session_that_plays_through_the_edge() -> Result<()> {
    use outpost_steering::entitlement::{issue, Subscriber};
    let geo = std::env::temp_dir().join(format!("outpost-steering-geo2-{}", std::process::id()));
    std::fs::create_dir_all(&geo)?;
    write_geo_dbs(&geo)?;
    let subscriber_secret = "subscriber-secret-0123456789";
    let api_key = "backend-api-key-0123456789";
    let steering_extra = format!(
        r#"[geo]
city_db = "{}"
asn_db = "{}"
[entitlement]
subscriber_secret = "{subscriber_secret}"
api_keys = [{{ id = "backend", secret = "{api_key}" }}]
[catalog.synthetic]
titles = 2
[[catalog.titles]]
id = "nl-only"
path = "/synth/t0001/"
territories = ["NL"]
[[catalog.titles]]
id = "premium"
path = "/synth/t0000/"
plans = ["premium"]
"#,
        geo.join("city.mmdb").display(),
        geo.join("asn.mmdb").display()
    );
    let w = world(
        "steer-play",
        "127.75.3",
        &[("edge-a", "ams", 64599, "\"127.76.5.0/24\"", 52.37, 4.90)],
        "",
        &steering_extra,
    )
    .await?;
    let exp = outpost_steering::server::unix_now() + 600;
    let basic = issue(
        subscriber_secret.as_bytes(),
        &Subscriber {
            sub: "u1".into(),
            plans: vec!["basic".into()],
            exp,
        },
    );
    let expired = issue(
        subscriber_secret.as_bytes(),
        &Subscriber {
            sub: "u1".into(),
            plans: vec!["basic".into()],
            exp: 1,
        },
    );
    let nl = "127.76.5.5";
    // (what, client source, title, headers, status, error reason)
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, String)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("no credentials", nl, "t0001", vec![], 403, "entitlement"),
        (
            "forged subscriber token",
            nl,
            "t0001",
            vec![("x-subscriber-token", format!("{basic}00"))],
            403,
            "entitlement",
        ),
        (
            "expired subscriber token",
            nl,
            "t0001",
            vec![("x-subscriber-token", expired)],
            403,
            "entitlement",
        ),
        (
            "unknown API key",
            nl,
            "t0001",
            vec![("authorization", "Bearer nope".into())],
            401,
            "entitlement",
        ),
        (
            "plan",
            nl,
            "premium",
            vec![("x-subscriber-token", basic.clone())],
            403,
            "entitlement",
        ),
        (
            "territory",
            "127.76.3.5",
            "nl-only",
            vec![("x-subscriber-token", basic.clone())],
            403,
            "territory",
        ),
        (
            "unknown title",
            nl,
            "t9999",
            vec![("x-subscriber-token", basic.clone())],
            404,
            "unknown-title",
        ),
        (
            "licensed",
            nl,
            "nl-only",
            vec![("x-subscriber-token", basic.clone())],
            200,
            "",
        ),
    ];
    for (what, source, title, headers, want, reason) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, v) = w.play(source, title, &h).await?;
        assert_eq!(status, want, "{what}: {v}");
        if !reason.is_empty() {
            assert_eq!(v["error"], reason, "{what}: {v}");
        }
    }
    // Malformed requests, and client_ip only from a backend.
    let c = w.client(nl)?;
    let url = format!("{}/v1/play", w.steering);
    let (status, _) = send(&c, Method::POST, &url, &[], b"{\"title\": ").await?;
    assert_eq!(status, 400);
    let body = br#"{"title": "t0001", "client_ip": "127.76.3.9"}"#;
    let (status, _) = send(&c, Method::POST, &url, &[("x-subscriber-token", &basic)], body).await?;
    assert_eq!(status, 400);
    let (status, b) = send(
        &c,
        Method::POST,
        &url,
        &[("authorization", &format!("Bearer {api_key}"))],
        body,
    )
    .await?;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&b)?;
    assert_eq!(
        (v["client"]["ip"].as_str(), v["client"]["country"].as_str()),
        (Some("127.76.3.9"), Some("US"))
    );
    let m = metrics(&format!("{}.30:{STEERING_ADMIN}", w.net)).await?;
    assert!(
        metric_sum(&m, "outpost_steering_play_requests_total", &["outcome=\"entitlement\""]) >= 5.0,
        "{m}"
    );

    // A session plays through the edge: steering's multivariant playlist
    // names the edge with a token path; the media playlist and a segment
    // load from the edge with it.
    let (status, v) = w.play(nl, "t0001", &[("x-subscriber-token", &basic)]).await?;
    assert_eq!(status, 200, "{v}");
    let hls = v["hls"].as_str().context("hls url")?;
    let (status, master) = send(&c, Method::GET, hls, &[], b"").await?;
    assert_eq!(status, 200);
    let master = String::from_utf8(master.to_vec())?;
    assert!(master.contains("#EXT-X-CONTENT-STEERING:SERVER-URI="), "{master}");
    assert!(master.contains("PATHWAY-ID=\"edge-a\""), "{master}");
    let media_url = master
        .lines()
        .find(|l| l.starts_with("https://"))
        .context("a variant URI")?
        .to_string();
    assert!(
        media_url.starts_with(&format!("https://{}.1:{EDGE_PORT}/t/", w.net)),
        "{media_url}"
    );
    let (status, media) = send(&c, Method::GET, &media_url, &[], b"").await?;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&media));
    let media = String::from_utf8(media.to_vec())?;
    let seg = media
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .context("a segment")?;
    let seg_url = format!("{}/{seg}", media_url.rsplit_once('/').unwrap().0);
    let (status, body) = send(&c, Method::GET, &seg_url, &[], b"").await?;
    assert_eq!(status, 200, "{seg_url}");
    assert!(body.len() > 1000);
    // Without the token the edge refuses the same segment.
    let bare = seg_url.replacen(
        &format!("/t/{}", seg_url.split("/t/").nth(1).unwrap().split('/').next().unwrap()),
        "",
        1,
    );
    let (status, _) = send(&c, Method::GET, &bare, &[], b"").await?;
    assert_eq!(status, 401, "{bare}");

    // Cache-control unreachable (both replicas gone): steering keeps
    // answering from the last state it received.
    let mut w = w;
    for r in &mut w.cc {
        r.kill9();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, v) = w.play(nl, "t0001", &[("x-subscriber-token", &basic)]).await?;
    assert_eq!((status, ids(&v)), (200, vec!["edge-a".to_string()]), "{v}");
    let m = metrics(&format!("{}.30:{STEERING_ADMIN}", w.net)).await?;
    assert!(
        metric_sum(&m, "outpost_steering_decisions_total", &["reason=\"isp\""]) >= 2.0,
        "{m}"
    );
    assert!(metric_sum(&m, "outpost_steering_decision_seconds_count", &[]) >= 2.0);
    Ok(())
}

/// GET `url` from `source`; the status and the body as JSON (Null if not).
async fn get_json(w: &World, source: &str, url: &str) -> Result<(u16, Value)> {
    let (status, body) = send(&w.client(source)?, Method::GET, url, &[], b"").await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// A player as steering sees it: its session's steering URL, the pathway
/// it plays from, and per pathway a URL on that edge (the title's playlist,
/// with the session's token) it fetches every round, as a player would.
struct Player {
    source: &'static str,
    steering: String,
    current: String,
    urls: std::collections::HashMap<String, String>,
    /// `_DASH_pathway="a,b"` (dash.js) instead of `_HLS_pathway=a` (hls.js).
    dash: bool,
}

impl Player {
    async fn start(w: &World, source: &'static str, on: usize, dash: bool) -> Result<Player> {
        let (status, v) = w.play(source, "t0001", &[]).await?;
        if status != 200 {
            bail!("play answered {status}: {v}");
        }
        let edges = v["edges"].as_array().context("edges")?;
        let urls = edges
            .iter()
            .map(|e| {
                Ok((
                    e["pathway"].as_str().context("pathway")?.to_string(),
                    e["hls"].as_str().context("hls")?.to_string(),
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Player {
            source,
            steering: v["steering"].as_str().context("steering")?.to_string(),
            current: edges[on]["pathway"].as_str().context("pathway")?.to_string(),
            urls,
            dash,
        })
    }

    /// One round: fetch from the current edge (when `fetch`), then ask for
    /// the steering manifest with the current pathway and follow it.
    /// Returns the manifest's PATHWAY-PRIORITY and TTL.
    async fn round(&mut self, w: &World, fetch: bool) -> Result<(Vec<String>, u64)> {
        if fetch {
            let url = self.urls.get(&self.current).context("a pathway of the session")?;
            let (status, _) = send(&w.client(self.source)?, Method::GET, url, &[], b"").await?;
            assert_eq!(status, 200, "{} from {}", self.source, self.current);
        }
        let others: Vec<&str> = self
            .urls
            .keys()
            .map(String::as_str)
            .filter(|p| *p != self.current)
            .collect();
        let query = if self.dash {
            format!(
                "_DASH_pathway=%22{},{}%22&_DASH_throughput=4000000",
                self.current,
                others.join(",")
            )
        } else {
            format!("_HLS_pathway={}&_HLS_throughput=4000000", self.current)
        };
        let (status, m) = get_json(w, self.source, &format!("{}?{query}", self.steering)).await?;
        assert_eq!(status, 200, "{m}");
        let priority: Vec<String> = serde_json::from_value(m["PATHWAY-PRIORITY"].clone())?;
        self.current = priority.first().context("an empty PATHWAY-PRIORITY")?.clone();
        Ok((priority, m["TTL"].as_u64().unwrap_or(1)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_playing_client_stays_on_its_edge_until_the_edge_goes() -> Result<()> {
    // Two edges in one site; the clients' ISP is that site.
    let mut w = world(
        "steer-sticky",
        "127.75.4",
        TWO_IN_ONE_SITE,
        "",
        "[entitlement]\nopen = true\n[catalog.synthetic]\ntitles = 4\n",
    )
    .await?;
    // Two players of one title: one on the edge steering names first, one
    // on the other (as after an earlier move). Both edges serve the title,
    // so both digests hold it and change with every report.
    let mut a = Player::start(&w, "127.76.1.7", 0, false).await?;
    let mut b = Player::start(&w, "127.76.1.8", 1, true).await?;
    assert_ne!(a.current, b.current);
    let (a_edge, b_edge) = (a.current.clone(), b.current.clone());
    // Several TTLs (and many report intervals): neither is moved.
    for round in 0..6 {
        let (pa, ttl) = a.round(&w, true).await?;
        let (pb, _) = b.round(&w, true).await?;
        assert_eq!(pa, [a_edge.as_str(), &b_edge], "round {round}: player a moved");
        assert_eq!(pb, [b_edge.as_str(), &a_edge], "round {round}: player b moved");
        tokio::time::sleep(Duration::from_secs(ttl)).await;
    }

    // b's edge is killed: b moves to a's edge (the dead one goes last), a stays.
    let b_index = if b_edge == "ams-1" { 0 } else { 1 };
    w.edges[b_index].kill9();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (pb, _) = b.round(&w, false).await?;
        if pb[0] != b_edge {
            assert_eq!(pb, [a_edge.as_str(), &b_edge], "b moves to the other edge");
            break;
        }
        if Instant::now() > deadline {
            bail!("{b_edge} still first for b 15 s after it was killed: {pb:?}");
        }
        let (pa, _) = a.round(&w, true).await?;
        assert_eq!(pa[0], a_edge, "a stays while its edge is up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // From now on b plays from a's edge and stays there, as does a.
    for round in 0..3 {
        let (pb, ttl) = b.round(&w, true).await?;
        let (pa, _) = a.round(&w, true).await?;
        assert_eq!(pb, [a_edge.as_str(), &b_edge], "round {round}");
        assert_eq!(pa, pb, "round {round}");
        tokio::time::sleep(Duration::from_secs(ttl)).await;
    }
    Ok(())
}
