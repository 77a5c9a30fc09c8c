//! The demo's processes: every service runs as its own `outpost <role>`
//! child (so an edge can be killed like a real one), with its log in
//! `logs/`, its pid in `run/`, and a small control API the page uses to
//! stop and start edges:
//!
//! - `GET  /v1/edges` → `[{"id","running","pid"}]`
//! - `POST /v1/edges/{id}/stop` (SIGTERM: the edge drains, then exits;
//!   `?signal=kill` for SIGKILL) and `POST /v1/edges/{id}/start`
//! - `GET  /v1/demo` → the supervisor's pid and state directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use outpost_svc::Shutdown;
use serde_json::json;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use super::topology::{Layout, Service};

struct Proc {
    svc: Service,
    child: Option<Child>,
    /// Stopped through the control API (not a crash).
    stopped: bool,
}

pub struct Supervisor {
    exe: PathBuf,
    layout: Layout,
    procs: Mutex<BTreeMap<String, Proc>>,
    /// Start order, for stopping in reverse.
    order: std::sync::Mutex<Vec<String>>,
    /// Each log's length when its process last started: what it printed
    /// since is this run's.
    log_offsets: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl Supervisor {
    pub fn new(layout: Layout) -> Result<Arc<Self>> {
        Ok(Arc::new(Supervisor {
            exe: current_exe()?,
            layout,
            procs: Mutex::new(BTreeMap::new()),
            order: Default::default(),
            log_offsets: Default::default(),
        }))
    }

    fn spawn_child(&self, svc: &Service) -> Result<Child> {
        let log_path = self.log_path(&svc.name);
        let offset = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        self.log_offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(svc.name.clone(), offset);
        let cfg = self.layout.config(&svc.name);
        std::fs::write(&cfg, &svc.config).with_context(|| format!("writing {}", cfg.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg(svc.role)
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        // The children go when the demo goes, even on SIGKILL. The signal
        // comes when the *thread* that forked exits: children are spawned
        // from the runtime's worker threads (never `spawn_blocking`, whose
        // threads come and go). If the demo died between fork and prctl,
        // the child's parent is already someone else: exit then.
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl, getppid and _exit are async-signal-safe; nothing
        // else runs in the hook.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {}", svc.name))?;
        if let Some(pid) = child.id() {
            std::fs::write(self.layout.run().join(format!("{}.pid", svc.name)), pid.to_string())?;
        }
        Ok(child)
    }

    /// Start a service and wait until its `/readyz` says 200.
    pub async fn start(&self, svc: Service) -> Result<()> {
        let child = self.spawn_child(&svc)?;
        let name = svc.name.clone();
        let admin = svc.admin.clone();
        {
            let mut procs = self.procs.lock().await;
            procs.insert(
                name.clone(),
                Proc {
                    svc,
                    child: Some(child),
                    stopped: false,
                },
            );
        }
        {
            let mut order = self.order.lock().unwrap_or_else(|e| e.into_inner());
            if !order.contains(&name) {
                order.push(name.clone());
            }
        }
        self.wait_ready(&name, &admin).await
    }

    async fn wait_ready(&self, name: &str, admin: &str) -> Result<()> {
        let client = outpost_svc::https::client::<Empty<Bytes>>(None, Duration::from_secs(1))?;
        let url: http::Uri = format!("http://{admin}/readyz").parse()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            {
                let mut procs = self.procs.lock().await;
                if let Some(Proc { child: Some(c), .. }) = procs.get_mut(name) {
                    if let Ok(Some(status)) = c.try_wait() {
                        bail!(
                            "{name} exited ({status}) before it was ready; its log {} ends with:\n{}",
                            self.log_path(name).display(),
                            self.log_tail(name)
                        );
                    }
                }
            }
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(1), client.get(url.clone())).await {
                if r.status() == StatusCode::OK {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} was not ready after 30 s (log: {})",
                    self.log_path(name).display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.layout.logs().join(format!("{name}.log"))
    }

    /// The last lines this run of `name` logged.
    fn log_tail(&self, name: &str) -> String {
        let from = self
            .log_offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
            .unwrap_or(0);
        let mut bytes = Vec::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path(name)) {
            use std::io::{Read, Seek, SeekFrom};
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            // This run's lines, at most the last 64 KiB of them.
            let start = from.max(len.saturating_sub(64 << 10));
            if f.seek(SeekFrom::Start(start)).is_ok() {
                let _ = f.read_to_end(&mut bytes);
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Stop one service: SIGTERM (or SIGKILL), then wait for it to exit
    /// (SIGKILL after `grace`).
    pub async fn stop(&self, name: &str, kill: bool, grace: Duration) -> Result<bool> {
        let mut child = {
            let mut procs = self.procs.lock().await;
            let Some(p) = procs.get_mut(name) else {
                bail!("no service named {name}");
            };
            p.stopped = true;
            match p.child.take() {
                Some(c) => c,
                None => return Ok(false),
            }
        };
        if let Some(pid) = child.id() {
            // SAFETY: signalling our own child by pid.
            unsafe {
                libc::kill(pid as i32, if kill { libc::SIGKILL } else { libc::SIGTERM });
            }
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
        let _ = std::fs::remove_file(self.layout.run().join(format!("{name}.pid")));
        Ok(true)
    }

    /// Start a stopped service again with its config: its pid, and
    /// whether it was running already (then nothing is started). The check
    /// and the spawn happen under one lock, so two calls start one child.
    pub async fn restart(&self, name: &str) -> Result<(u32, bool)> {
        let (pid, admin) = {
            let mut procs = self.procs.lock().await;
            let Some(p) = procs.get_mut(name) else {
                bail!("no service named {name}");
            };
            if let Some(c) = p.child.as_mut() {
                if matches!(c.try_wait(), Ok(None)) {
                    return Ok((c.id().unwrap_or(0), true));
                }
            }
            let child = self.spawn_child(&p.svc)?;
            let pid = child.id().unwrap_or(0);
            p.child = Some(child);
            p.stopped = false;
            (pid, p.svc.admin.clone())
        };
        self.wait_ready(name, &admin).await?;
        Ok((pid, false))
    }

    /// Services of one role: (name, running, pid).
    pub async fn list(&self, role: &str) -> Vec<(String, bool, Option<u32>)> {
        let mut procs = self.procs.lock().await;
        procs
            .values_mut()
            .filter(|p| p.svc.role == role)
            .map(|p| {
                let running = p.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)));
                let pid = if running {
                    p.child.as_ref().and_then(|c| c.id())
                } else {
                    None
                };
                (p.svc.name.clone(), running, pid)
            })
            .collect()
    }

    /// Say so when a service exits that nobody stopped.
    pub async fn watch(self: Arc<Self>, shutdown: Shutdown) {
        let mut told: std::collections::HashSet<String> = Default::default();
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            let mut procs = self.procs.lock().await;
            for p in procs.values_mut() {
                let exited = match p.child.as_mut() {
                    Some(c) => c.try_wait().ok().flatten(),
                    None => None,
                };
                if let Some(status) = exited {
                    if !p.stopped && told.insert(p.svc.name.clone()) {
                        eprintln!(
                            "demo: {} exited ({status}); log: {}{}",
                            p.svc.name,
                            self.log_path(&p.svc.name).display(),
                            if p.svc.role == "edge" {
                                format!(
                                    "; start it again: curl -X POST http://{}/v1/edges/{}/start",
                                    super::topology::CONTROL,
                                    p.svc.name
                                )
                            } else {
                                String::new()
                            }
                        );
                    }
                } else if p.child.is_some() {
                    told.remove(&p.svc.name);
                }
            }
        }
    }

    /// Stop everything, last started first.
    pub async fn stop_all(&self) {
        let order = self.order.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // Edges first and together (they drain), then the rest in reverse.
        let edges: Vec<String> = self.list("edge").await.into_iter().map(|(n, _, _)| n).collect();
        let stops = edges.iter().map(|n| self.stop(n, false, Duration::from_secs(5)));
        futures_util::future::join_all(stops).await;
        for name in order.iter().rev().filter(|n| !edges.contains(n)) {
            let _ = self.stop(name, false, Duration::from_secs(5)).await;
        }
    }
}

/// This binary. When it was rebuilt while the demo runs, Linux names the
/// old file "… (deleted)": the children then run the new one at the path.
fn current_exe() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the outpost binary")?;
    let s = exe.to_string_lossy();
    Ok(match s.strip_suffix(" (deleted)") {
        Some(p) => PathBuf::from(p),
        None => exe,
    })
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn reply(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, page_origin())
        .header(header::VARY, "origin")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(format!("{value}\n"))).boxed())
        .expect("static response")
}

/// The one web origin allowed to call this API: steering's page.
fn page_origin() -> String {
    format!("https://{}", super::topology::STEERING)
}

/// Who may call: any local program (no `Origin`), or the page. A browser
/// sends `Origin` with every cross-origin POST, so another site cannot
/// stop edges (CSRF), and the `Host` check stops DNS rebinding.
fn caller_allowed(req: &Request<Incoming>) -> Result<(), &'static str> {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    if host != Some(super::topology::CONTROL) {
        return Err("Host must be the control address");
    }
    match req.headers().get(header::ORIGIN).map(|o| o.to_str().unwrap_or("")) {
        None => Ok(()),
        Some(o) if o == page_origin() => Ok(()),
        Some(_) => Err("only steering's page may call this API from a browser"),
    }
}

async fn handle(sup: Arc<Supervisor>, req: Request<Incoming>) -> Response<Body> {
    if let Err(why) = caller_allowed(&req) {
        return reply(StatusCode::FORBIDDEN, json!({ "error": "forbidden", "message": why }));
    }
    let path = req.uri().path().to_string();
    let kill = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "signal=kill"));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), parts.as_slice()) {
        (&Method::OPTIONS, _) => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, page_origin())
            .header(header::VARY, "origin")
            .header(header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST")
            .header(header::ACCESS_CONTROL_ALLOW_HEADERS, "content-type")
            .header(header::ACCESS_CONTROL_MAX_AGE, "3600")
            .body(Empty::new().boxed())
            .expect("static response"),
        (&Method::GET, ["v1", "demo"]) => reply(
            StatusCode::OK,
            json!({ "pid": std::process::id(), "state_dir": sup.layout.root }),
        ),
        (&Method::GET, ["v1", "edges"]) => {
            let list: Vec<_> = sup
                .list("edge")
                .await
                .into_iter()
                .map(|(id, running, pid)| json!({ "id": id, "running": running, "pid": pid }))
                .collect();
            reply(StatusCode::OK, json!(list))
        }
        (&Method::POST, ["v1", "edges", id, action]) => {
            let known = sup.list("edge").await.iter().any(|(n, _, _)| n == id);
            if !known {
                return reply(
                    StatusCode::NOT_FOUND,
                    json!({ "error": "unknown-edge", "message": format!("no edge {id}") }),
                );
            }
            match *action {
                "stop" => match sup.stop(id, kill, Duration::from_secs(5)).await {
                    Ok(was_running) => {
                        eprintln!(
                            "demo: {id} stopped from the control API ({})",
                            if kill { "SIGKILL" } else { "SIGTERM" }
                        );
                        reply(
                            StatusCode::OK,
                            json!({ "id": id, "running": false, "was_running": was_running }),
                        )
                    }
                    Err(e) => reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({ "error": "stop", "message": format!("{e:#}") }),
                    ),
                },
                "start" => match sup.restart(id).await {
                    Ok((pid, was_running)) => {
                        if !was_running {
                            eprintln!("demo: {id} started again (pid {pid})");
                        }
                        reply(
                            StatusCode::OK,
                            json!({ "id": id, "running": true, "pid": pid, "was_running": was_running }),
                        )
                    }
                    Err(e) => reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({ "error": "start", "message": format!("{e:#}") }),
                    ),
                },
                _ => reply(
                    StatusCode::NOT_FOUND,
                    json!({ "error": "unknown-action", "message": "use stop or start" }),
                ),
            }
        }
        (_, ["v1", ..]) => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({ "error": "method", "message": "GET /v1/edges, POST /v1/edges/{id}/stop|start" }),
        ),
        _ => reply(StatusCode::NOT_FOUND, json!({ "error": "not-found", "message": path })),
    }
}

/// Serve the control API until `shutdown`.
pub async fn serve_control(listener: tokio::net::TcpListener, sup: Arc<Supervisor>, shutdown: Shutdown) {
    while let Some((tcp, _)) = outpost_svc::https::accept(&listener, &shutdown).await {
        let sup = sup.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let sup = sup.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(sup, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
