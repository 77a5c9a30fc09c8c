//! `outpost demo`: the whole system on one machine, from nothing but the
//! binary: an origin with a real title (encoded with ffmpeg at first start)
//! and a synthetic catalog, three edges in three sites each embedded in its
//! own ISP (127.0.1.1, 127.0.2.1, 127.0.3.1), two cache-control replicas,
//! and steering with the playback API and the page — every service its own
//! `outpost <role>` process, so an edge can fail like a real one.
//!
//! Everything generated (CA and leaf certificates, report and token
//! secrets, the MaxMind geo databases, the title, configs, logs, pids,
//! `endpoints.json`) lives in the state directory and is reused on the
//! next start. What it is not: a deployment — see `configs/multi-host/`.

mod media;
mod supervisor;
mod topology;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use outpost_svc::Shutdown;

use supervisor::Supervisor;
use topology::{Layout, SteeringExtras, CONTROL, SITES, STEERING};

/// The page's player libraries (npm: hls.js, dash.js), installed into the
/// state directory from the repo's manifest and lockfile.
const WEB_PACKAGE_JSON: &str = include_str!("../../web/package.json");
const WEB_PACKAGE_LOCK: &str = include_str!("../../web/package-lock.json");

pub async fn run(state_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(state_dir).with_context(|| format!("creating state dir {}", state_dir.display()))?;
    let root = state_dir
        .canonicalize()
        .with_context(|| format!("state dir {}", state_dir.display()))?;
    let layout = Layout::new(root.clone());
    if let Some(running) = running_demo().await {
        bail!(
            "an outpost demo is already running ({running}); stop it (Ctrl-C in its terminal) before starting another"
        );
    }
    // The control port is the lock: one demo per machine (its addresses
    // are fixed), whatever its state directory.
    let control = tokio::net::TcpListener::bind(CONTROL)
        .await
        .with_context(|| format!("binding the demo's control API on {CONTROL} (is another program using it?)"))?;
    run_locked(layout, control).await
}

/// Another demo answering on the control port: its pid and state dir.
async fn running_demo() -> Option<String> {
    let client = outpost_svc::https::client::<Empty<Bytes>>(None, Duration::from_millis(500)).ok()?;
    let url: http::Uri = format!("http://{CONTROL}/v1/demo").parse().ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(1), client.get(url))
        .await
        .ok()?
        .ok()?;
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    Some(format!(
        "pid {}, state dir {}",
        v["pid"],
        v["state_dir"].as_str().unwrap_or("?")
    ))
}

async fn run_locked(layout: Layout, control: tokio::net::TcpListener) -> Result<()> {
    let started = std::time::Instant::now();
    // Signals first: a Ctrl-C during the first start's encode or install
    // stops the demo cleanly (ffmpeg and npm die with it).
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    for dir in [
        layout.certs(),
        layout.keys(),
        layout.configs(),
        layout.logs(),
        layout.run(),
        layout.library(),
        layout.geo(),
    ] {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    prepare_certs(&layout)?;
    prepare_secrets(&layout)?;
    prepare_geo(&layout)?;
    let library = layout.library();
    let title = tokio::select! {
        t = tokio::task::spawn_blocking(move || media::ensure(&library)) => t.context("encoding task")?,
        _ = shutdown.wait() => return Ok(()),
    };
    let real_title = match title {
        media::Title::Ready => true,
        media::Title::NoFfmpeg => false,
        media::Title::Failed(why) => {
            eprintln!("demo: the demo title could not be made ({why:#}); running the synthetic catalog only");
            false
        }
    };
    let (page, players) = tokio::select! {
        p = prepare_page(&layout) => p,
        _ = shutdown.wait() => return Ok(()),
    };

    let sup = Supervisor::new(layout.clone())?;
    // From here every way out stops what was started.
    let result = run_services(&sup, &layout, control, &shutdown, real_title, page, players, started).await;
    eprintln!("demo: stopping…");
    sup.stop_all().await;
    eprintln!("demo: stopped");
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_services(
    sup: &std::sync::Arc<Supervisor>,
    layout: &Layout,
    control: tokio::net::TcpListener,
    shutdown: &Shutdown,
    real_title: bool,
    page: String,
    players: bool,
    started: std::time::Instant,
) -> Result<()> {
    tokio::select! {
        r = start_all(sup, layout, real_title, Some(page)) => r?,
        _ = shutdown.wait() => return Ok(()),
    }
    // Every process is ready; the system is when steering has heard from
    // cache-control that every edge is up.
    tokio::select! {
        r = steering_sees_edges_up(layout) => r?,
        _ = shutdown.wait() => return Ok(()),
    }
    let endpoints = topology::endpoints(layout, real_title);
    let endpoints_path = layout.root.join("endpoints.json");
    std::fs::write(&endpoints_path, serde_json::to_string_pretty(&endpoints)? + "\n")
        .with_context(|| format!("writing {}", endpoints_path.display()))?;
    tokio::spawn(supervisor::serve_control(control, sup.clone(), shutdown.clone()));
    tokio::spawn(sup.clone().watch(shutdown.clone()));
    print_summary(layout, real_title, players, started.elapsed())?;
    shutdown.wait().await;
    Ok(())
}

/// Wait until steering's `/v1/edges` lists every demo edge `up`.
async fn steering_sees_edges_up(l: &Layout) -> Result<()> {
    let client = outpost_svc::https::client::<Empty<Bytes>>(Some(&l.ca_cert()), Duration::from_secs(1))?;
    let url: http::Uri = format!("https://{STEERING}/v1/edges").parse()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let up = match tokio::time::timeout(Duration::from_secs(2), client.get(url.clone())).await {
            Ok(Ok(resp)) => {
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                v.as_array()
                    .map_or(0, |edges| edges.iter().filter(|e| e["state"] == "up").count())
            }
            _ => 0,
        };
        if up == SITES.len() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "steering sees {up} of {} edges up after 20 s (logs in {})",
                SITES.len(),
                l.logs().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start_all(sup: &Supervisor, l: &Layout, real_title: bool, page: Option<String>) -> Result<()> {
    sup.start(topology::origin(l)).await?;
    let ccs = topology::CACHE_CONTROL.map(|cc| sup.start(topology::cache_control(l, cc)));
    for r in futures_util::future::join_all(ccs).await {
        r?;
    }
    let edges = SITES.iter().map(|s| sup.start(topology::edge(l, s)));
    for r in futures_util::future::join_all(edges).await {
        r?;
    }
    sup.start(topology::steering(l, &SteeringExtras { real_title, page }))
        .await
}

fn prepare_certs(l: &Layout) -> Result<()> {
    for (name, sans) in topology::certificates() {
        let paths = outpost_svc::tls::LocalCertPaths::in_dir(&l.certs(), &name);
        outpost_svc::tls::ensure_local_certs(&paths, &sans).with_context(|| format!("certificate for {name}"))?;
    }
    Ok(())
}

fn prepare_secrets(l: &Layout) -> Result<()> {
    for name in topology::secrets() {
        let path = l.secret(&name);
        if path.exists() {
            continue;
        }
        let mut raw = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut raw))
            .context("reading /dev/urandom")?;
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&path, &hex)?;
    }
    Ok(())
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// The MaxMind DB files steering reads (rebuilt each start: they are tiny).
fn prepare_geo(l: &Layout) -> Result<()> {
    let (city, asn) = topology::geo_entries();
    let now = SystemTime::now();
    for (name, bytes) in [
        ("city.mmdb", outpost_steering::geo::write::city_db(&city, now)?),
        ("asn.mmdb", outpost_steering::geo::write::asn_db(&asn, now)?),
    ] {
        let path = l.geo().join(name);
        let tmp = path.with_extension("mmdb.tmp");
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(())
}

/// The page's `[page]` table for steering: the control API for its
/// Stop/Start buttons and, when npm is present (or they were installed
/// before), the player libraries, installed with `npm ci` into `web/`.
async fn prepare_page(l: &Layout) -> (String, bool) {
    let web = l.web();
    let modules = web.join("node_modules");
    let lock = web.join("package-lock.json");
    // `installed` is written after a whole `npm ci` of this lockfile.
    let installed =
        std::fs::read_to_string(&lock).is_ok_and(|t| t == WEB_PACKAGE_LOCK) && web.join("installed").is_file();
    let players = installed || install_players(&web).await;
    let mut page = format!("[page]\ncontrol_url = \"http://{CONTROL}\"\n");
    if players {
        page += &format!("assets = {}\n", topology::quoted(&modules));
    }
    (page, players)
}

async fn install_players(web: &Path) -> bool {
    let npm_present = tokio::process::Command::new("npm")
        .arg("--version")
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if !npm_present {
        eprintln!("demo: npm not found: the page will show the system's state but not play (install npm and restart)");
        return false;
    }
    if std::fs::create_dir_all(web).is_err()
        || std::fs::write(web.join("package.json"), WEB_PACKAGE_JSON).is_err()
        || std::fs::write(web.join("package-lock.json"), WEB_PACKAGE_LOCK).is_err()
    {
        return false;
    }
    let _ = std::fs::remove_file(web.join("installed"));
    eprintln!("demo: installing the page's players (hls.js, dash.js) with npm ci, once…");
    // No install scripts: the players are plain files and need none.
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("npm")
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(web)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let out = match out {
        Ok(out) => out,
        Err(_) => {
            eprintln!("demo: npm ci took over 5 minutes (network?); the page will not play");
            return false;
        }
    };
    match out {
        Ok(o) if o.status.success() => std::fs::write(web.join("installed"), "").is_ok(),
        Ok(o) => {
            eprintln!(
                "demo: npm ci failed in {} ({}); the page will not play:\n{}",
                web.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("demo: running npm: {e}; the page will not play");
            false
        }
    }
}

fn demo_token(l: &Layout) -> Result<String> {
    let secret = std::fs::read_to_string(l.secret("token-demo-1"))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    Ok(outpost_proto::token::issue(
        &outpost_proto::token::TokenKey {
            id: topology::TOKEN_KEY_ID.into(),
            secret: secret.trim().as_bytes().to_vec(),
        },
        &outpost_proto::token::Grant {
            path_prefix: topology::TITLE_PATH.into(),
            expires_at: now + 6 * 3600,
            not_before: None,
            client_network: None,
            session: Some("demo-summary".into()),
        },
        now,
    ))
}

fn print_summary(l: &Layout, real_title: bool, page: bool, took: Duration) -> Result<()> {
    let ca = l.ca_cert();
    let ca = ca.display();
    let a = &SITES[0];
    let b = &SITES[1];
    let mut s = format!(
        "\nOutpost demo is running (started in {:.1} s; Ctrl-C stops everything)\n\n",
        took.as_secs_f64()
    );
    s += &format!("  page           https://{STEERING}/   (trust {ca}, or accept the warning)\n");
    s += &format!(
        "  steering       https://{STEERING}    playback API, Content Steering (admin http://{})\n",
        topology::STEERING_ADMIN
    );
    for (id, listen, admin) in topology::CACHE_CONTROL {
        s += &format!("  cache-control  https://{listen}  {id} (admin http://{admin})\n");
    }
    for e in &SITES {
        s += &format!(
            "  edge           {}  {} site {} ({} AS{}, {}; clients {})  TCP h1/h2 + UDP h3 (admin http://{})\n",
            e.url(),
            e.edge_id,
            e.site,
            e.isp,
            e.asn,
            e.city,
            e.clients,
            e.admin()
        );
    }
    s += &format!(
        "  origin         http://{}  (admin http://{})\n",
        topology::ORIGIN,
        topology::ORIGIN_ADMIN
    );
    s += &format!("  demo control   http://{CONTROL}/v1/edges  (POST /v1/edges/<id>/stop|start)\n");
    s += &format!(
        "  state dir      {}  (endpoints.json, configs/, logs/, certs/)\n",
        l.root.display()
    );
    let title = if real_title { topology::TITLE_ID } else { "t0001" };
    s += "\nTry:\n";
    s += &format!(
        "  (this machine, {}, is a {} subscriber by the prefix map: the page plays from {} first)\n",
        topology::BROWSER_NETWORK,
        a.isp,
        a.edge_id
    );
    s += &format!(
        "  # play as a client of {} ({}): ranked edges, tokens, steering URL\n  curl --cacert {ca} --interface 127.2.0.10 -s https://{STEERING}/v1/play -d '{{\"title\":\"{title}\"}}'\n",
        b.isp, b.clients
    );
    if real_title {
        let tok = demo_token(l)?;
        s += &format!(
            "  # a segment from {}: over HTTP/3 with any h3 client (e.g. curl --http3 where built with it), or h1/h2:\n  curl --cacert {ca} -sD - -o /dev/null https://{}:{}/t/{tok}/vod/demo/hls/540p/seg00001.m4s\n",
            a.edge_id,
            a.edge_ip,
            topology::EDGE_PORT
        );
        s += &format!(
            "  pip install aioquic; python3 tests/interop/h3get.py --ca {ca} {} {} /t/{tok}/vod/demo/hls/540p/seg00001.m4s seg.m4s\n",
            a.edge_ip,
            topology::EDGE_PORT
        );
    } else {
        s += "  (no ffmpeg: only the synthetic catalog, which players cannot decode; install ffmpeg and restart for the real title)\n";
    }
    s += &format!(
        "  curl --cacert {ca} -s https://{}/       # edge health as cache-control sees it\n",
        topology::CACHE_CONTROL[0].1
    );
    s += &format!(
        "  curl -X POST http://{CONTROL}/v1/edges/{}/stop     # watch failover (…/start brings it back)\n",
        a.edge_id
    );
    if !page {
        s += "  (the page shows state only: install npm and restart for in-page playback)\n";
    }
    println!("{s}");
    Ok(())
}
