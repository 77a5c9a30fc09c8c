//! Locating a client: IP address → ISP, site and place, for the ranker.
//!
//! Three sources, in order (design §3):
//! 1. the **operator prefix map** (`[[geo.prefixes]]` and `geo.prefix_file`):
//!    the longest matching CIDR gives the site the operator assigns, the
//!    ISP and, if set, the place. Fields the entry leaves out come from the
//!    databases for that address;
//! 2. the **MaxMind DB files**: a City database (country, city,
//!    coordinates, accuracy) and an ASN database (AS number, organization);
//! 3. the configured **fallback** (`[geo.fallback]`) when neither knows the
//!    address.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are located as IPv4.
//! [`Locator::locate`] reads no clock and never fails: a lookup error in a
//! database is logged at debug and treated as "not in that database".
//!
//! The files are checked at start-up ([`Locator::open`] refuses a missing,
//! corrupt or wrong-schema file, naming it and the reason) and reloaded when
//! they change ([`Locator::reload_if_changed`], driven by [`watch`]): a new
//! version is checked completely before one atomic swap, so lookups see the
//! old or the new version and never fail in between; a bad new version is
//! refused with a warning and the previous one stays in use.
//!
//! [`write`] builds MaxMind DB files in the same schemas, for tests and the
//! demo's own database.

mod config;
mod mmdb;
mod prefix;
mod watched;
pub mod write;

#[cfg(test)]
mod testdata;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use outpost_svc::{ConfigError, Shutdown};
use serde::Serialize;

pub use config::{Fallback, GeoConfig, PrefixEntry};
pub use ipnet::IpNet;

use config::PrefixFile;
use mmdb::{AsnAnswer, CityAnswer, Kind, Mmdb};
use prefix::{canonical_net, PrefixMap};
use watched::Watched;

/// Where a [`Location`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The operator prefix map.
    Prefix,
    /// The City and/or ASN database.
    Geo,
    /// Nothing matched: the configured fallback.
    Fallback,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Prefix => "prefix",
            Source::Geo => "geo",
            Source::Fallback => "fallback",
        }
    }
}

/// What is known about a client address. Any field may be unknown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Location {
    pub source: Source,
    /// ISO 3166-1 alpha-2 code, e.g. "GB".
    pub country: Option<String>,
    /// English city name.
    pub city: Option<String>,
    /// Latitude in degrees; set exactly when `lon` is.
    pub lat: Option<f64>,
    /// Longitude in degrees; set exactly when `lat` is.
    pub lon: Option<f64>,
    /// The City database's accuracy radius around the coordinates.
    pub accuracy_km: Option<u32>,
    pub asn: Option<u32>,
    /// The prefix entry's ISP, or the ASN database's organization.
    pub isp: Option<String>,
    /// The edge site the operator assigns (prefix map only).
    pub site: Option<String>,
}

impl Location {
    fn from_answers(source: Source, city: Option<CityAnswer>, asn: Option<AsnAnswer>) -> Self {
        let city = city.unwrap_or_default();
        let asn = asn.unwrap_or_default();
        Self {
            source,
            country: city.country,
            city: city.city,
            lat: city.coords.map(|c| c.0),
            lon: city.coords.map(|c| c.1),
            accuracy_km: city.accuracy_km,
            asn: asn.asn,
            isp: asn.org,
            site: None,
        }
    }
}

/// Why the geo data could not be loaded. Every case but `Write` is the
/// operator's (a config value or a file); `Write` is the caller's.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// A `[geo]` value is unacceptable.
    #[error("config key `{key}`: {reason}")]
    Config { key: String, reason: String },
    /// A configured file cannot be read.
    #[error("{key} {}: cannot read: {source}", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The file is not a valid MaxMind DB (corrupt, truncated, another format).
    #[error("{key} {}: not a valid MaxMind DB file: {reason}", path.display())]
    Corrupt {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// A valid MaxMind DB of the wrong kind, e.g. an ASN database as `city_db`.
    #[error("{key} {}: wrong schema: its database_type is {actual:?}, expected {expected}", path.display())]
    Schema {
        key: &'static str,
        path: PathBuf,
        actual: String,
        expected: &'static str,
    },
    /// The prefix file does not parse or is not acceptable.
    #[error("geo.prefix_file {}: {reason}", path.display())]
    PrefixFile { path: PathBuf, reason: String },
    /// [`write`] was given entries it cannot encode.
    #[error("cannot build a geo database from these entries: {reason}")]
    Write { reason: String },
}

/// One file that changed on disk, as [`Locator::reload_if_changed`] found it.
#[derive(Debug)]
pub struct ReloadOutcome {
    /// The file's config key: `geo.city_db`, `geo.asn_db` or `geo.prefix_file`.
    pub key: &'static str,
    pub path: PathBuf,
    /// `Ok`: the new version is in use. `Err`: refused (and logged); the
    /// previous version stays in use.
    pub result: Result<(), GeoError>,
}

/// The prefix map: fixed, or rebuilt from the inline entries plus the file.
enum Prefixes {
    Inline(PrefixMap),
    File {
        inline: Vec<PrefixEntry>,
        file: Watched<PrefixMap>,
    },
}

/// Locates clients; shared by every request (`Arc<Locator>`), reloaded in
/// place by [`watch`].
pub struct Locator {
    prefixes: Prefixes,
    city: Option<Watched<Mmdb>>,
    asn: Option<Watched<Mmdb>>,
    fallback: Fallback,
}

impl Locator {
    /// Load everything `cfg` names. A bad value, or a missing, unreadable,
    /// corrupt or wrong-schema file, is an error naming the key, the file
    /// and the reason.
    pub fn open(cfg: &GeoConfig) -> Result<Locator, GeoError> {
        cfg.validate().map_err(|i| GeoError::Config {
            key: i.key,
            reason: i.reason,
        })?;
        let prefixes = match &cfg.prefix_file {
            None => Prefixes::Inline(PrefixMap::new(cfg.prefixes.clone())),
            Some(path) => {
                let inline = cfg.prefixes.clone();
                let file = Watched::open("geo.prefix_file", path, |p, b| load_prefix_file(&inline, p, b))?;
                Prefixes::File { inline, file }
            }
        };
        let open_db = |kind: Kind, path: &Option<PathBuf>| {
            path.as_deref()
                .map(|p| Watched::open(kind.key(), p, |p, b| Mmdb::load(kind, p, b)))
                .transpose()
        };
        Ok(Locator {
            prefixes,
            city: open_db(Kind::City, &cfg.city_db)?,
            asn: open_db(Kind::Asn, &cfg.asn_db)?,
            fallback: cfg.fallback.clone(),
        })
    }

    /// Where `ip` is: prefix map (longest match) first, else the
    /// databases, else the fallback.
    pub fn locate(&self, ip: IpAddr) -> Location {
        let ip = ip.to_canonical();
        let entry = match &self.prefixes {
            Prefixes::Inline(map) => map.lookup(ip).cloned(),
            Prefixes::File { file, .. } => file.current().lookup(ip).cloned(),
        };
        if let Some(e) = entry {
            return self.prefix_location(ip, e);
        }
        let city = self.city_answer(ip);
        let asn = self.asn_answer(ip);
        if city.is_none() && asn.is_none() {
            return Location {
                source: Source::Fallback,
                country: self.fallback.country.clone(),
                city: None,
                lat: self.fallback.lat,
                lon: self.fallback.lon,
                accuracy_km: None,
                asn: None,
                isp: None,
                site: None,
            };
        }
        Location::from_answers(Source::Geo, city, asn)
    }

    /// A prefix entry, completed from the databases where it is silent:
    /// country and coordinates from the City database, AS number and
    /// organization from the ASN database (only when the entry sets no AS
    /// number: an organization belongs to its AS).
    fn prefix_location(&self, ip: IpAddr, e: PrefixEntry) -> Location {
        let coords = e.lat.zip(e.lon);
        let city = if e.country.is_none() || coords.is_none() {
            self.city_answer(ip)
        } else {
            None
        };
        let asn = if e.asn.is_none() { self.asn_answer(ip) } else { None };
        let mut loc = Location::from_answers(Source::Prefix, city, asn);
        loc.site = e.site;
        if e.country.is_some() {
            loc.country = e.country;
        }
        if let Some((lat, lon)) = coords {
            (loc.lat, loc.lon, loc.city, loc.accuracy_km) = (Some(lat), Some(lon), None, None);
        }
        if e.asn.is_some() {
            loc.asn = e.asn;
        }
        if e.isp.is_some() {
            loc.isp = e.isp;
        }
        loc
    }

    fn city_answer(&self, ip: IpAddr) -> Option<CityAnswer> {
        self.city.as_ref().and_then(|w| w.current().city(ip))
    }

    fn asn_answer(&self, ip: IpAddr) -> Option<AsnAnswer> {
        self.asn.as_ref().and_then(|w| w.current().asn(ip))
    }

    /// Check every configured file; load the ones that changed. A file that
    /// fails its checks is refused with a warning naming it and the reason,
    /// and its previous version stays in use. Reads files: call it from a
    /// blocking context ([`watch`] does).
    pub fn reload_if_changed(&self) -> Vec<ReloadOutcome> {
        let mut outcomes = Vec::new();
        if let Prefixes::File { inline, file } = &self.prefixes {
            outcomes.extend(file.reload_if_changed(|p, b| load_prefix_file(inline, p, b)));
        }
        for (kind, db) in [(Kind::City, &self.city), (Kind::Asn, &self.asn)] {
            if let Some(db) = db {
                outcomes.extend(db.reload_if_changed(|p, b| Mmdb::load(kind, p, b)));
            }
        }
        outcomes
    }

    /// `("city" | "asn", build_epoch)` of each database in use: seconds
    /// since 1970 from the file's metadata, for the database age metric.
    pub fn database_ages(&self) -> Vec<(&'static str, u64)> {
        [(Kind::City, &self.city), (Kind::Asn, &self.asn)]
            .into_iter()
            .filter_map(|(kind, db)| db.as_ref().map(|db| (kind.name(), db.current().build_epoch())))
            .collect()
    }
}

/// Parse a prefix file and merge it with the inline entries. A CIDR in
/// both is refused: which one the operator meant is not ours to guess.
fn load_prefix_file(inline: &[PrefixEntry], path: &Path, bytes: Vec<u8>) -> Result<PrefixMap, GeoError> {
    let refuse = |reason: String| GeoError::PrefixFile {
        path: path.to_owned(),
        reason,
    };
    let text = String::from_utf8(bytes).map_err(|e| refuse(format!("not UTF-8 text: {e}")))?;
    let parsed: PrefixFile = outpost_svc::config::parse_config(path, &text).map_err(|e| match e {
        ConfigError::Read { source, .. } => refuse(source.to_string()),
        ConfigError::Parse { message, .. } => refuse(message),
        ConfigError::Invalid { key, reason, .. } => refuse(format!("key `{key}`: {reason}")),
    })?;
    let inline_nets: HashMap<IpNet, usize> = inline
        .iter()
        .enumerate()
        .map(|(i, e)| (canonical_net(e.cidr), i))
        .collect();
    for (i, e) in parsed.prefixes.iter().enumerate() {
        if let Some(j) = inline_nets.get(&canonical_net(e.cidr)) {
            return Err(refuse(format!(
                "key `prefixes[{i}].cidr`: `{}` is also listed in geo.prefixes[{j}]",
                e.cidr
            )));
        }
    }
    Ok(PrefixMap::new(inline.iter().cloned().chain(parsed.prefixes).collect()))
}

/// Shortest pause between two checks, whatever `interval` says.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Check the files every `interval` (on a blocking thread) until
/// `shutdown`. Outcomes are logged by [`Locator::reload_if_changed`].
pub async fn watch(locator: Arc<Locator>, interval: Duration, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(interval.max(MIN_INTERVAL));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; the files were just opened
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        let locator = locator.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || locator.reload_if_changed()).await {
            tracing::warn!("geo reload check failed (internal): {e}");
        }
    }
}
