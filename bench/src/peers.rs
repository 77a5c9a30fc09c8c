//! The peers Outpost is measured against: Debian's nginx (TLS `proxy_cache`
//! in front of the same origin) and Caddy (TLS + HTTP/3 `file_server` on
//! the same bytes written to files). Their configs and the script that
//! installs and starts them are in `bench/peers/`, embedded here so the
//! `outpost` binary runs them from anywhere.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

use crate::procs::Proc;

const PEERS_SH: &str = include_str!("../peers/peers.sh");
const NGINX_CONF: &str = include_str!("../peers/nginx.conf");
const CADDYFILE: &str = include_str!("../peers/Caddyfile");

/// Options of the scenarios that run peers.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PeerOpts {
    /// Do not install missing peers (they are then skipped).
    #[arg(long)]
    pub no_install: bool,
    /// Read the peer configs (nginx.conf, Caddyfile) from this directory
    /// instead of the copies built into the binary (e.g. bench/peers after
    /// editing them).
    #[arg(long)]
    pub peers_dir: Option<PathBuf>,
}

impl PeerOpts {
    fn template(&self, file: &str, embedded: &str) -> Result<String> {
        match &self.peers_dir {
            Some(d) => {
                std::fs::read_to_string(d.join(file)).with_context(|| format!("read {}", d.join(file).display()))
            }
            None => Ok(embedded.to_owned()),
        }
    }
}

/// A peer server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Nginx,
    Caddy,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Nginx => "nginx",
            Peer::Caddy => "caddy",
        }
    }
}

/// Where `program` is on PATH (or in /usr/sbin, where Debian puts nginx).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// `peers.sh` written to `dir` (so the binary needs no checkout).
fn script(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("peers.sh");
    std::fs::write(&path, PEERS_SH)?;
    Ok(path)
}

static INSTALL: OnceLock<Result<(), String>> = OnceLock::new();

/// Make sure `peer` is installed, running `peers.sh install` (apt-get) once
/// per bench run when it is missing and `install` is allowed. The error is
/// the reason to print when the peer is skipped.
pub fn ensure_installed(peer: Peer, dir: &Path, opts: &PeerOpts) -> Result<(), String> {
    if find_program(peer.name()).is_some() {
        return Ok(());
    }
    if opts.no_install {
        return Err(format!("{} is not installed (--no-install)", peer.name()));
    }
    INSTALL
        .get_or_init(|| {
            println!("{} is missing; running bench/peers/peers.sh install", peer.name());
            let script = script(dir).map_err(|e| e.to_string())?;
            let out = std::process::Command::new("bash")
                .arg(&script)
                .arg("install")
                .output()
                .map_err(|e| format!("cannot run peers.sh install: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                let err = String::from_utf8_lossy(&out.stderr);
                let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
                Err(format!("peers.sh install failed ({}): {last}", out.status))
            }
        })
        .clone()?;
    match find_program(peer.name()) {
        Some(_) => Ok(()),
        None => Err(format!(
            "{} is not installed and the install did not provide it",
            peer.name()
        )),
    }
}

/// Replace every `@NAME@` in `template`; refuses to leave one unreplaced.
pub fn render(template: &str, vars: &[(&str, String)]) -> Result<String> {
    let mut out = template.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("@{k}@"), v);
    }
    if let Some(at) = out
        .lines()
        .find(|l| !l.trim_start().starts_with('#') && l.matches('@').count() >= 2)
    {
        bail!("unreplaced placeholder in peer config: {at}");
    }
    Ok(out)
}

/// Start nginx as a TLS proxy_cache on `listen` in front of `origin`,
/// with its cache and logs under `dir`. Ready when it accepts TCP.
pub async fn start_nginx(
    opts: &PeerOpts,
    dir: &Path,
    listen: SocketAddr,
    origin: SocketAddr,
    cert: &Path,
    key: &Path,
) -> Result<Proc> {
    std::fs::create_dir_all(dir)?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let conf = render(
        &opts.template("nginx.conf", NGINX_CONF)?,
        &[
            ("WORKERS", workers.to_string()),
            ("DIR", dir.display().to_string()),
            ("LISTEN", listen.to_string()),
            ("ORIGIN", origin.to_string()),
            ("CERT", cert.display().to_string()),
            ("KEY", key.display().to_string()),
        ],
    )?;
    launch(Peer::Nginx, dir, "nginx.conf", &conf, listen).await
}

/// Start Caddy serving the files under `root` over HTTPS and HTTP/3 on
/// `listen` for `server_name`. Ready when it accepts TCP.
pub async fn start_caddy(
    opts: &PeerOpts,
    dir: &Path,
    listen: SocketAddr,
    server_name: &str,
    root: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Proc> {
    std::fs::create_dir_all(dir)?;
    let conf = render(
        &opts.template("Caddyfile", CADDYFILE)?,
        &[
            ("DIR", dir.display().to_string()),
            ("SERVER_NAME", server_name.to_owned()),
            ("PORT", listen.port().to_string()),
            ("IP", listen.ip().to_string()),
            ("ROOT", root.display().to_string()),
            ("CERT", cert.display().to_string()),
            ("KEY", key.display().to_string()),
        ],
    )?;
    launch(Peer::Caddy, dir, "Caddyfile", &conf, listen).await
}

/// Write the rendered config as `dir/<file>` and run the peer through
/// `peers.sh <peer> <config> <dir>`; ready when it accepts TCP on `listen`.
async fn launch(peer: Peer, dir: &Path, file: &str, conf: &str, listen: SocketAddr) -> Result<Proc> {
    let conf_path = dir.join(file);
    std::fs::write(&conf_path, conf)?;
    let script = script(dir)?;
    let args = [
        script.to_string_lossy(),
        peer.name().into(),
        conf_path.to_string_lossy(),
        dir.to_string_lossy(),
    ];
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    let mut p = Proc::spawn(peer.name(), dir, Path::new("bash"), &args, &[])?;
    p.wait_tcp(listen).await?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_completely() {
        let v = |s: &str| s.to_owned();
        let nginx = render(
            NGINX_CONF,
            &[
                ("WORKERS", v("2")),
                ("DIR", v("/d")),
                ("LISTEN", v("127.0.0.1:1")),
                ("ORIGIN", v("127.0.0.1:2")),
                ("CERT", v("/c")),
                ("KEY", v("/k")),
            ],
        )
        .unwrap();
        assert!(nginx.contains("proxy_cache_lock on;"));
        let caddy = render(
            CADDYFILE,
            &[
                ("DIR", v("/d")),
                ("SERVER_NAME", v("x.test")),
                ("PORT", v("1")),
                ("IP", v("127.0.0.1")),
                ("ROOT", v("/r")),
                ("CERT", v("/c")),
                ("KEY", v("/k")),
            ],
        )
        .unwrap();
        assert!(caddy.contains("https://x.test:1"));
        assert!(render(NGINX_CONF, &[]).is_err());
    }
}
