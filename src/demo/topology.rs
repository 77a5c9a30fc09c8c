//! The demo's topology as data: who runs where, with which config, and
//! what `endpoints.json` and the geo databases say. Pure: paths in, text
//! out; [`super`] writes the files and starts the processes.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Origin: cleartext HTTP, the edges' upstream.
pub const ORIGIN: &str = "127.0.0.1:8080";
pub const ORIGIN_ADMIN: &str = "127.0.0.1:9080";
/// Steering and its page.
pub const STEERING: &str = "127.0.0.1:6443";
pub const STEERING_ADMIN: &str = "127.0.0.1:6080";
/// The demo supervisor's control API (stop/start an edge from the page).
pub const CONTROL: &str = "127.0.0.1:6090";
/// Cache-control replicas: (id, listen, admin).
pub const CACHE_CONTROL: [(&str, &str, &str); 2] = [
    ("cc-1", "127.0.0.2:7443", "127.0.0.2:7080"),
    ("cc-2", "127.0.0.3:7443", "127.0.0.3:7080"),
];
/// Edges listen on this port (TCP h1/h2 and UDP h3) on their site's IP.
pub const EDGE_PORT: u16 = 8443;
pub const EDGE_ADMIN_PORT: u16 = 9443;
/// The token key steering signs with and edges verify.
pub const TOKEN_KEY_ID: &str = "demo-1";
/// The real title encoded at first start (when ffmpeg is present).
pub const TITLE_ID: &str = "demo";
pub const TITLE_PATH: &str = "/vod/demo/";
/// The machine's own address (the browser), mapped by the prefix map to
/// the first ISP.
pub const BROWSER_NETWORK: &str = "127.0.0.0/24";
/// Synthetic titles (`t0000`..) for load: playlists and bytes, not media.
pub const SYNTHETIC_TITLES: u32 = 100;

/// One site: an ISP with its clients and the edge embedded in it.
#[derive(Debug, Clone, Copy)]
pub struct Site {
    pub edge_id: &'static str,
    pub site: &'static str,
    pub city: &'static str,
    pub country: &'static str,
    pub lat: f64,
    pub lon: f64,
    pub isp: &'static str,
    pub asn: u32,
    /// The edge's address.
    pub edge_ip: &'static str,
    /// The ISP's client network.
    pub clients: &'static str,
}

pub const SITES: [Site; 3] = [
    Site {
        edge_id: "edge-a",
        site: "ams",
        city: "Amsterdam",
        country: "NL",
        lat: 52.37,
        lon: 4.90,
        isp: "Polder Net",
        asn: 64501,
        edge_ip: "127.0.1.1",
        clients: "127.1.0.0/16",
    },
    Site {
        edge_id: "edge-b",
        site: "fra",
        city: "Frankfurt",
        country: "DE",
        lat: 50.11,
        lon: 8.68,
        isp: "Rhein Kabel",
        asn: 64502,
        edge_ip: "127.0.2.1",
        clients: "127.2.0.0/16",
    },
    Site {
        edge_id: "edge-c",
        site: "lon",
        city: "London",
        country: "GB",
        lat: 51.51,
        lon: -0.13,
        isp: "Thames Fibre",
        asn: 64503,
        edge_ip: "127.0.3.1",
        clients: "127.3.0.0/16",
    },
];

impl Site {
    pub fn url(&self) -> String {
        format!("https://{}:{EDGE_PORT}", self.edge_ip)
    }
    pub fn admin(&self) -> String {
        format!("{}:{EDGE_ADMIN_PORT}", self.edge_ip)
    }
}

/// Where the demo keeps what it generates (absolute paths).
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: PathBuf) -> Self {
        Layout { root }
    }
    pub fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.certs().join("ca.crt")
    }
    pub fn cert(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.certs().join(format!("{name}.crt")),
            self.certs().join(format!("{name}.key")),
        )
    }
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// A secret file: `keys/<name>.secret`.
    pub fn secret(&self, name: &str) -> PathBuf {
        self.keys().join(format!("{name}.secret"))
    }
    pub fn configs(&self) -> PathBuf {
        self.root.join("configs")
    }
    pub fn config(&self, name: &str) -> PathBuf {
        self.configs().join(format!("{name}.toml"))
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn library(&self) -> PathBuf {
        self.root.join("library")
    }
    pub fn geo(&self) -> PathBuf {
        self.root.join("geo")
    }
    /// The page's npm packages (`web/node_modules`).
    pub fn web(&self) -> PathBuf {
        self.root.join("web")
    }
}

/// One process of the demo: its name (log, pid and config file stem),
/// role (the `outpost` subcommand), config text and admin address.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub role: &'static str,
    pub config: String,
    pub admin: String,
}

/// A path as a TOML string.
pub fn quoted(p: &Path) -> String {
    toml_str(&p.display().to_string())
}

fn toml_str(s: &str) -> String {
    // TOML basic strings: escape backslash and quote.
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn secret_ref(p: &Path) -> String {
    toml_str(&format!("file:{}", p.display()))
}

fn tls(l: &Layout, name: &str) -> String {
    let (cert, key) = l.cert(name);
    format!("[tls]\ncert = {}\nkey = {}\n", quoted(&cert), quoted(&key))
}

fn cc_urls() -> String {
    CACHE_CONTROL
        .iter()
        .map(|(_, listen, _)| format!("\"https://{listen}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn origin(l: &Layout) -> Service {
    let config = format!(
        r#"# outpost demo: the origin (generated; edit configs/origin.toml in the repo for your own)
listen = "{ORIGIN}"
admin = "{ORIGIN_ADMIN}"
shutdown_grace = "2s"

[library]
root = {library}

[synthetic]
enabled = true
prefix = "/synth"
titles = {SYNTHETIC_TITLES}
"#,
        library = quoted(&l.library()),
    );
    Service {
        name: "origin".into(),
        role: "origin",
        config,
        admin: ORIGIN_ADMIN.into(),
    }
}

pub fn cache_control(l: &Layout, (id, listen, admin): (&str, &str, &str)) -> Service {
    let mut config = format!(
        r#"# outpost demo: cache-control replica {id} (generated)
id = "{id}"
listen = "{listen}"
admin = "{admin}"
shutdown_grace = "2s"

{tls}
[liveness]
report_interval = "1s"
missed_intervals = 2
readmit_reports = 2
"#,
        tls = tls(l, id),
    );
    for s in SITES {
        config.push_str(&format!(
            "\n[[edges]]\nid = \"{}\"\nsecret = {}\n",
            s.edge_id,
            secret_ref(&l.secret(&format!("report-{}", s.edge_id)))
        ));
    }
    Service {
        name: id.into(),
        role: "cache-control",
        config,
        admin: admin.into(),
    }
}

pub fn edge(l: &Layout, s: &Site) -> Service {
    let config = format!(
        r#"# outpost demo: {id}, embedded in {isp} (AS{asn}) at {city} (generated)
id = "{id}"
listen = "{ip}:{EDGE_PORT}"
admin = "{admin}"
shutdown_grace = "3s"

{tls}
[upstream]
urls = ["http://{ORIGIN}"]

[cache]
status_name = "{id}"   # Cache-Status names the edge, so the page can show who served what

[cache.memory]
capacity = "256MiB"

[site]
name = "{site}"
lat = {lat}
lon = {lon}
asns = [{asn}]
prefixes = ["{clients}"]

[report]
cache_control = [{cc}]
ca = {ca}
secret = {report_secret}
interval = "1s"
timeout = "1s"
public_urls = ["{url}"]

[token]
required = true
keys = [{{ id = "{TOKEN_KEY_ID}", secret = {token_secret} }}]
"#,
        id = s.edge_id,
        isp = s.isp,
        asn = s.asn,
        city = s.city,
        ip = s.edge_ip,
        admin = s.admin(),
        tls = tls(l, s.edge_id),
        site = s.site,
        lat = s.lat,
        lon = s.lon,
        clients = s.clients,
        cc = cc_urls(),
        ca = quoted(&l.ca_cert()),
        report_secret = secret_ref(&l.secret(&format!("report-{}", s.edge_id))),
        url = s.url(),
        token_secret = secret_ref(&l.secret("token-demo-1")),
    );
    Service {
        name: s.edge_id.into(),
        role: "edge",
        config,
        admin: s.admin(),
    }
}

/// What steering needs to know beyond the layout.
#[derive(Debug, Clone, Default)]
pub struct SteeringExtras {
    /// The real title was encoded (else only the synthetic catalog).
    pub real_title: bool,
    /// The page's `[page]` table, when this build's steering has one.
    pub page: Option<String>,
}

pub fn steering(l: &Layout, extras: &SteeringExtras) -> Service {
    let first = SITES[0];
    let mut config = format!(
        r#"# outpost demo: steering and the playback API (generated)
id = "steering"
listen = "{STEERING}"
admin = "{STEERING_ADMIN}"
public_url = "https://{STEERING}"
steering_ttl = "5s"
shutdown_grace = "2s"

{tls}
[cache_control]
urls = [{cc}]
ca = {ca}
quiet = "3s"

[geo]
city_db = {city}
asn_db = {asn}
reload_interval = "5s"
# Clients nothing else knows are placed in {fcity}.
fallback = {{ country = "{fcountry}", lat = {flat}, lon = {flon} }}

# The operator prefix map, checked before the databases: this machine's own
# address (the browser on 127.0.0.1 that opens the page) is a {fisp}
# subscriber, so the page shows ISP steering (edge {fedge} first).
[[geo.prefixes]]
cidr = "{BROWSER_NETWORK}"
site = "{fsite}"
asn = {fasn}
isp = "{fisp}"
country = "{fcountry}"
lat = {flat}
lon = {flon}

[rank]
k = 3

[tokens]
keys = [{{ id = "{TOKEN_KEY_ID}", secret = {token_secret} }}]
ttl = "6h"

[entitlement]
open = true

[origin]
url = "http://{ORIGIN}"

[catalog.synthetic]
prefix = "/synth"
titles = {SYNTHETIC_TITLES}
"#,
        tls = tls(l, "steering"),
        cc = cc_urls(),
        ca = quoted(&l.ca_cert()),
        city = quoted(&l.geo().join("city.mmdb")),
        asn = quoted(&l.geo().join("asn.mmdb")),
        fcity = first.city,
        fisp = first.isp,
        fedge = first.edge_id,
        fsite = first.site,
        fasn = first.asn,
        fcountry = first.country,
        flat = first.lat,
        flon = first.lon,
        token_secret = secret_ref(&l.secret("token-demo-1")),
    );
    if extras.real_title {
        config.push_str(&format!(
            "\n[[catalog.titles]]\nid = \"{TITLE_ID}\"\npath = \"{TITLE_PATH}\"\nhls = \"hls/master.m3u8\"\ndash = \"dash/manifest.mpd\"\n"
        ));
    }
    if let Some(page) = &extras.page {
        config.push('\n');
        config.push_str(page);
    }
    Service {
        name: "steering".into(),
        role: "steering",
        config,
        admin: STEERING_ADMIN.into(),
    }
}

/// The secrets the demo generates, by file stem (`keys/<stem>.secret`).
pub fn secrets() -> Vec<String> {
    let mut v = vec!["token-demo-1".to_string()];
    v.extend(SITES.iter().map(|s| format!("report-{}", s.edge_id)));
    v
}

/// Certificates: (name, the addresses in its leaf).
pub fn certificates() -> Vec<(String, Vec<String>)> {
    let mut v: Vec<(String, Vec<String>)> = SITES
        .iter()
        .map(|s| (s.edge_id.to_string(), vec![s.edge_ip.to_string()]))
        .collect();
    for (id, listen, _) in CACHE_CONTROL {
        v.push((id.to_string(), vec![host(listen)]));
    }
    v.push(("steering".into(), vec![host(STEERING)]));
    v
}

fn host(addr: &str) -> String {
    addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr).to_string()
}

/// `endpoints.json`: exactly these keys (scripts and tests read it).
#[derive(Debug, Serialize)]
pub struct Endpoints {
    pub ca_cert: PathBuf,
    pub origin: String,
    pub steering: String,
    pub cache_control: Vec<String>,
    pub edges: Vec<EdgeEndpoint>,
    pub titles: Vec<String>,
    pub clients: Vec<ClientNetwork>,
}

#[derive(Debug, Serialize)]
pub struct EdgeEndpoint {
    pub id: String,
    pub site: String,
    pub url: String,
    pub admin: String,
}

#[derive(Debug, Serialize)]
pub struct ClientNetwork {
    pub network: String,
    pub expected_site: String,
}

pub fn endpoints(l: &Layout, real_title: bool) -> Endpoints {
    let mut titles = Vec::new();
    if real_title {
        titles.push(TITLE_ID.to_string());
    }
    titles.extend((0..SYNTHETIC_TITLES).map(|i| format!("t{i:04}")));
    Endpoints {
        ca_cert: l.ca_cert(),
        origin: format!("http://{ORIGIN}"),
        steering: format!("https://{STEERING}"),
        cache_control: CACHE_CONTROL
            .iter()
            .map(|(_, listen, _)| format!("https://{listen}"))
            .collect(),
        edges: SITES
            .iter()
            .map(|s| EdgeEndpoint {
                id: s.edge_id.into(),
                site: s.site.into(),
                url: s.url(),
                admin: format!("http://{}", s.admin()),
            })
            .collect(),
        titles,
        clients: SITES
            .iter()
            .map(|s| ClientNetwork {
                network: s.clients.into(),
                expected_site: s.site.into(),
            })
            .collect(),
    }
}

/// The geo databases' entries: each ISP's client network in its city.
pub fn geo_entries() -> (
    Vec<outpost_steering::geo::write::CityEntry>,
    Vec<outpost_steering::geo::write::AsnEntry>,
) {
    use outpost_steering::geo::write::{AsnEntry, CityEntry};
    let net = |s: &Site| s.clients.parse().expect("static CIDR");
    let city = SITES
        .iter()
        .map(|s| CityEntry {
            network: net(s),
            country: Some(s.country.into()),
            city: Some(s.city.into()),
            lat: Some(s.lat),
            lon: Some(s.lon),
            accuracy_km: Some(20),
        })
        .collect();
    let asn = SITES
        .iter()
        .map(|s| AsnEntry {
            network: net(s),
            asn: s.asn,
            org: Some(s.isp.into()),
        })
        .collect();
    (city, asn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_svc::config::parse_config;

    fn layout() -> Layout {
        Layout::new(PathBuf::from("/var/lib/outpost-demo"))
    }

    /// A layout in a scratch directory holding the secret files, which
    /// the configs read at parse time.
    fn layout_with_secrets(name: &str) -> Layout {
        let root = std::env::temp_dir().join(format!("outpost-demo-{name}-{}", std::process::id()));
        let l = Layout::new(root);
        std::fs::create_dir_all(l.keys()).unwrap();
        for s in secrets() {
            std::fs::write(l.secret(&s), "0123456789abcdef0123456789abcdef").unwrap();
        }
        l
    }

    /// The generated configs are valid for the real config structs.
    #[test]
    fn every_generated_config_parses() {
        let l = layout_with_secrets("configs");
        let o = origin(&l);
        let _: outpost_origin::OriginConfig = parse_config(Path::new("origin"), &o.config).unwrap();
        for cc in CACHE_CONTROL {
            let s = cache_control(&l, cc);
            let c: outpost_cache_control::CacheControlConfig = parse_config(Path::new(&s.name), &s.config).unwrap();
            assert_eq!(c.edges.len(), SITES.len());
        }
        for site in &SITES {
            let s = edge(&l, site);
            let c: outpost_edge::EdgeConfig = parse_config(Path::new(&s.name), &s.config).unwrap();
            assert!(c.token.required);
            assert_eq!(c.report.as_ref().unwrap().cache_control.len(), 2);
        }
        for real_title in [false, true] {
            let s = steering(&l, &SteeringExtras { real_title, page: None });
            let c: outpost_steering::SteeringConfig = parse_config(Path::new("steering"), &s.config).unwrap();
            assert_eq!(c.catalog.titles.len(), usize::from(real_title));
        }
        let _ = std::fs::remove_dir_all(&l.root);
    }

    #[test]
    fn endpoints_have_exactly_the_documented_keys() {
        let v = serde_json::to_value(endpoints(&layout(), true)).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "ca_cert",
                "cache_control",
                "clients",
                "edges",
                "origin",
                "steering",
                "titles"
            ]
        );
        let edge = v["edges"][0].as_object().unwrap();
        let mut ek: Vec<&str> = edge.keys().map(|k| k.as_str()).collect();
        ek.sort();
        assert_eq!(ek, ["admin", "id", "site", "url"]);
        assert_eq!(v["titles"][0], "demo");
        assert_eq!(v["clients"][1]["expected_site"], "fra");
    }

    #[test]
    fn geo_databases_build_and_place_each_network_in_its_isp() {
        let (city, asn) = geo_entries();
        let now = std::time::SystemTime::now();
        let c = outpost_steering::geo::write::city_db(&city, now).unwrap();
        let a = outpost_steering::geo::write::asn_db(&asn, now).unwrap();
        assert!(!c.is_empty() && !a.is_empty());
        assert_eq!(asn[2].asn, 64503);
    }
}
