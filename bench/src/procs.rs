//! Processes under test: the real `outpost` binary (origin, edge) and the
//! peers, each started as its own process so its CPU time can be read from
//! `/proc/<pid>/stat` and so the load generator never shares a runtime with
//! a server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::client::{HttpsClient, Tcp};

/// A started server process. Dropping it sends SIGTERM, waits briefly,
/// then kills it; it also gets SIGTERM if the bench dies first.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Start `program args` in `dir`, stdout and stderr to `dir/<name>.log`.
    pub fn spawn(name: &str, dir: &Path, program: &Path, args: &[&str], envs: &[(&str, &Path)]) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(dir)
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        // SAFETY: prctl is async-signal-safe and touches no memory of the
        // parent; it makes the server go away if the bench is killed.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start {name}: {}", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// Start `outpost <role> --config <dir>/<name>.toml` with `config`.
    pub fn outpost(role: &str, name: &str, dir: &Path, config: &str) -> Result<Self> {
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(&cfg, config)?;
        let exe = outpost_exe()?;
        let cfg = cfg.to_string_lossy().into_owned();
        Self::spawn(name, dir, &exe, &[role, "--config", &cfg], &[])
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// CPU seconds (user + system) of the process and its descendants
    /// (nginx's workers).
    pub fn cpu_seconds(&self) -> f64 {
        tree_cpu_seconds(self.pid())
    }

    /// Fail if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited with {status}:\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// Poll `url` (plain HTTP) until it answers with a status below 500.
    pub async fn wait_http(&mut self, url: &str) -> Result<()> {
        let client = HttpsClient::new(None, Tcp::H1)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.check_alive()?;
            if let Ok(r) = client.get(url).await {
                if r.status.as_u16() < 500 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("{} not ready after 30s:\n{}", self.name, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Poll until something accepts TCP connections at `addr`.
    pub async fn wait_tcp(&mut self, addr: std::net::SocketAddr) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.check_alive()?;
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} not listening on {addr} after 30s:\n{}", self.name, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Proc {
    /// SIGKILL and reap: no goodbye, no draining report.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return; // already gone (and reaped): its pid may be someone else's now
        }
        signal(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in descendants(self.pid()) {
            signal(pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a pid this process started; no memory is shared.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// The `outpost` binary: this executable when it is `outpost` (run as
/// `outpost bench`), else `outpost` next to it (cargo's target dir).
pub fn outpost_exe() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    if me.file_name().is_some_and(|n| n == "outpost") {
        return Ok(me);
    }
    let mut dir = me.parent().map(Path::to_path_buf).unwrap_or_default();
    for _ in 0..2 {
        let candidate = dir.join("outpost");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir.pop();
    }
    bail!("cannot find the outpost binary near {}", me.display())
}

/// The fields of `/proc/<pid>/stat` after the command name.
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of one process (all its threads), in seconds.
pub fn cpu_seconds(pid: &str) -> f64 {
    stat_fields(pid)
        .and_then(|f| Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?))
        .map_or(0.0, |ticks| ticks / clock_ticks())
}

/// CPU seconds the whole machine has been busy (all CPUs, from the `cpu`
/// line of `/proc/stat`: everything but idle and iowait).
pub fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest is in user)
    let busy: f64 = v
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| x)
        .sum();
    busy / clock_ticks()
}

/// Wait until the machine has been nearly idle (under 0.2 CPU busy) for
/// a second, at most `max`. Returns whether it was, and how long it took.
/// Other people's builds on a shared machine would otherwise be measured
/// as part of whichever server happened to run beside them.
pub async fn wait_quiet(max: Duration) -> (bool, Duration) {
    let started = Instant::now();
    loop {
        let b0 = machine_busy_seconds();
        tokio::time::sleep(Duration::from_secs(1)).await;
        if machine_busy_seconds() - b0 < 0.2 {
            return (true, started.elapsed());
        }
        if started.elapsed() >= max {
            return (false, started.elapsed());
        }
    }
}

/// Other processes' CPU (in CPUs, averaged over a run) above which a
/// timed run is made again.
pub const MAX_NOISE: f64 = 0.15;

/// How timed runs cope with a shared machine.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SettleOpts {
    /// Before each timed run, wait up to this many seconds for the machine
    /// to be idle (other processes under 0.2 CPU). Default: 120 (quick: 0).
    #[arg(long)]
    pub quiet_wait: Option<f64>,
    /// Make a run again, up to this many times, when other processes used
    /// more than 0.15 CPU during it. Default: 3 (quick: 0).
    #[arg(long)]
    pub retries: Option<u32>,
}

/// How a timed run went on the shared machine (recorded in the JSON).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Quiet {
    /// Whether the machine was idle just before the run.
    pub quiet_before: bool,
    /// Seconds spent waiting for that.
    pub waited_s: f64,
    /// Runs made for this one.
    pub attempts: u32,
}

impl SettleOpts {
    /// Run `f` once the machine is quiet (see [`wait_quiet`]) and again,
    /// up to `--retries` times, while other processes used more than
    /// [`MAX_NOISE`] CPU during it. `f` returns its result and the other
    /// processes' CPU in CPUs (CPU seconds per second of the run).
    pub async fn measured<T, Fut>(&self, quick: bool, what: &str, mut f: impl FnMut() -> Fut) -> Result<(T, Quiet)>
    where
        Fut: std::future::Future<Output = Result<(T, f64)>>,
    {
        let max_wait = Duration::from_secs_f64(self.quiet_wait.unwrap_or(if quick { 0.0 } else { 120.0 }));
        let retries = self.retries.unwrap_or(if quick { 0 } else { 3 });
        let mut q = Quiet::default();
        loop {
            q.attempts += 1;
            if !max_wait.is_zero() {
                let (quiet, waited) = wait_quiet(max_wait).await;
                if !quiet {
                    println!("    (machine still busy after {waited:.0?}; measuring anyway)");
                }
                q.quiet_before = quiet;
                q.waited_s += waited.as_secs_f64();
            }
            let (out, noise) = f().await?;
            if noise <= MAX_NOISE || q.attempts > retries {
                return Ok((out, q));
            }
            println!("    ({what}: other processes used {noise:.2} CPU during the run; again)");
        }
    }
}

/// CPU seconds of this process.
pub fn self_cpu_seconds() -> f64 {
    cpu_seconds("self")
}

/// Every live descendant of `pid`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let (Ok(p), Some(f)) = (name.parse::<u32>(), stat_fields(&name)) {
                if let Some(pp) = f.get(1).and_then(|s| s.parse::<u32>().ok()) {
                    parents.push((p, pp));
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parents {
            if parent == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// CPU seconds of `pid` and its live descendants.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    std::iter::once(pid)
        .chain(descendants(pid))
        .map(|p| cpu_seconds(&p.to_string()))
        .sum()
}

/// The Prometheus text of an admin listener.
pub async fn metrics(admin: &str) -> Result<String> {
    let client = HttpsClient::new(None, Tcp::H1)?;
    let r = client.get(&format!("http://{admin}/metrics")).await?;
    Ok(String::from_utf8_lossy(&r.body).into_owned())
}

/// Sum of a metric's samples whose labels contain every `filter`.
pub fn metric_sum(text: &str, name: &str, filters: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' ')))
        .filter(|l| filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The machine the bench ran on, from `/proc` (for the JSON and RESULTS.md).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_total: String,
    pub kernel: String,
    pub udp_rmem_max: String,
    pub udp_wmem_max: String,
}

impl Machine {
    pub fn read() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        // The value of the first `key: value` line starting with `key`.
        let field = |text: &str, key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: field(&read("/proc/cpuinfo"), "model name"),
            mem_total: field(&read("/proc/meminfo"), "MemTotal"),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            udp_rmem_max: read("/proc/sys/net/core/rmem_max").trim().to_owned(),
            udp_wmem_max: read("/proc/sys/net/core/wmem_max").trim().to_owned(),
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{} CPUs ({}), {} memory, kernel {}, net.core.rmem_max/wmem_max {}/{}",
            self.cpus, self.cpu_model, self.mem_total, self.kernel, self.udp_rmem_max, self.udp_wmem_max
        )
    }
}
