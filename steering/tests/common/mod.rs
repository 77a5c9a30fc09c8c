//! What the in-process steering tests share: a scratch directory, a
//! steering config on 127.0.0.1 with generated certificates, and a started
//! steering that stops when dropped.

#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};

use outpost_steering::SteeringConfig;
use outpost_svc::config::parse_config;
use outpost_svc::Shutdown;

/// An empty directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("outpost-steering-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A steering config: open play, three synthetic titles, the cache-control
/// replica at `cc`, the token keys `keys` (TOML inline tables), the origin
/// nowhere, and `extra` appended (more tables). Certificates are generated
/// into `<dir>/certs`, whose `ca.crt` also signs other services generated
/// there.
pub fn steering_toml(dir: &Path, cc: &str, keys: &str, extra: &str) -> String {
    let d = dir.display();
    format!(
        r#"
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
[tls]
cert = "{d}/certs/steering.crt"
key = "{d}/certs/steering.key"
generate = true
[cache_control]
urls = ["{cc}"]
ca = "{d}/certs/ca.crt"
[origin]
url = "http://127.0.0.1:1"
[tokens]
keys = [{keys}]
[entitlement]
open = true
[catalog.synthetic]
titles = 3
{extra}
"#
    )
}

/// A running steering; stopped when dropped.
pub struct Steering {
    pub base: String,
    shutdown: Shutdown,
}

impl Drop for Steering {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

impl Steering {
    /// Parse `text` as the real config file would be, and start it.
    pub async fn start(text: &str) -> Steering {
        let cfg: SteeringConfig = parse_config(Path::new("steering-test.toml"), text).unwrap();
        let shutdown = Shutdown::new();
        let running = outpost_steering::start(cfg, shutdown.clone()).await.unwrap();
        Steering {
            base: format!("https://{}", running.addr),
            shutdown,
        }
    }
}
