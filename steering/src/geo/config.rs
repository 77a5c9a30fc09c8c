//! The `[geo]` section of `steering.toml`: where the MaxMind DB files are,
//! the operator prefix map (inline or in its own file), and the fallback
//! location. Every field documents its default; unknown keys are refused.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use outpost_svc::config::de;
use outpost_svc::{Invalid, Validate};
use serde::Deserialize;

/// The `[geo]` section. Every key is optional: with nothing configured,
/// every client gets the (empty) fallback location.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoConfig {
    /// A City database (GeoIP2-City / GeoLite2-City schema): country, city,
    /// coordinates and accuracy. Default: none.
    #[serde(default)]
    pub city_db: Option<PathBuf>,
    /// An ASN database (GeoLite2-ASN schema): AS number and organization.
    /// Default: none.
    #[serde(default)]
    pub asn_db: Option<PathBuf>,
    /// How often the files (`city_db`, `asn_db`, `prefix_file`) are checked
    /// for changes (size, modification time, inode). Default: 10s.
    #[serde(default = "default_reload_interval", deserialize_with = "de::duration")]
    pub reload_interval: Duration,
    /// The operator prefix map, checked before the databases
    /// (`[[geo.prefixes]]`). Default: empty.
    #[serde(default)]
    pub prefixes: Vec<PrefixEntry>,
    /// More prefix map entries in their own TOML file (`[[prefixes]]`
    /// tables, same keys as `[[geo.prefixes]]`), reloaded when it changes.
    /// A CIDR may not appear both here and in `prefixes`. Default: none.
    #[serde(default)]
    pub prefix_file: Option<PathBuf>,
    /// The location of clients nothing else matches. Default: empty (no
    /// country, no coordinates).
    #[serde(default)]
    pub fallback: Fallback,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(10)
}

impl Default for GeoConfig {
    fn default() -> Self {
        Self {
            city_db: None,
            asn_db: None,
            reload_interval: default_reload_interval(),
            prefixes: Vec::new(),
            prefix_file: None,
            fallback: Fallback::default(),
        }
    }
}

/// One operator prefix map entry: clients in `cidr` belong to this site /
/// ISP / place. Like a Traffic Control coverage zone or the prefixes an
/// ISP announces to its embedded appliances.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixEntry {
    /// The client network, e.g. `"127.1.0.0/16"` or `"2001:db8:1::/48"`;
    /// host bits must be zero. Required.
    pub cidr: IpNet,
    /// The edge site the operator assigns these clients to. Default: none.
    #[serde(default)]
    pub site: Option<String>,
    /// The clients' AS number. Default: from the ASN database, if any.
    #[serde(default)]
    pub asn: Option<u32>,
    /// The clients' ISP name. Default: the ASN database's organization,
    /// when `asn` is not set here either.
    #[serde(default)]
    pub isp: Option<String>,
    /// ISO 3166-1 alpha-2 country code, e.g. `"GB"`. Default: from the City
    /// database, if any.
    #[serde(default)]
    pub country: Option<String>,
    /// Latitude in degrees (-90..90); set with `lon`. Default: from the City
    /// database, if any.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude in degrees (-180..180); set with `lat`. Default: from the
    /// City database, if any.
    #[serde(default)]
    pub lon: Option<f64>,
}

/// `[geo.fallback]`: the location used when neither the prefix map nor the
/// databases know the client.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    /// ISO 3166-1 alpha-2 country code. Default: none.
    #[serde(default)]
    pub country: Option<String>,
    /// Latitude in degrees; set with `lon`. Default: none.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude in degrees; set with `lat`. Default: none.
    #[serde(default)]
    pub lon: Option<f64>,
}

/// The contents of `prefix_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrefixFile {
    /// `[[prefixes]]` tables. Default: empty.
    #[serde(default)]
    pub prefixes: Vec<PrefixEntry>,
}

impl Validate for PrefixFile {
    fn validate(&self) -> Result<(), Invalid> {
        validate_entries("prefixes", &self.prefixes)
    }
}

impl GeoConfig {
    /// Checks serde cannot express; keys are named from `geo.` down.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.reload_interval.is_zero() {
            return Err(Invalid::new("geo.reload_interval", "must be more than 0"));
        }
        validate_entries("geo.prefixes", &self.prefixes)?;
        validate_place(
            "geo.fallback",
            self.fallback.country.as_deref(),
            self.fallback.lat,
            self.fallback.lon,
        )
    }
}

/// Every entry alone, then no CIDR twice.
pub(crate) fn validate_entries(key: &str, entries: &[PrefixEntry]) -> Result<(), Invalid> {
    let mut seen: HashMap<IpNet, usize> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let key = format!("{key}[{i}]");
        if e.cidr != e.cidr.trunc() {
            return Err(Invalid::new(
                format!("{key}.cidr"),
                format!("`{}` has host bits set (the network is {})", e.cidr, e.cidr.trunc()),
            ));
        }
        if e.site.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(Invalid::new(format!("{key}.site"), "must not be empty"));
        }
        validate_place(&key, e.country.as_deref(), e.lat, e.lon)?;
        if let Some(first) = seen.insert(crate::geo::prefix::canonical_net(e.cidr), i) {
            return Err(Invalid::new(
                format!("{key}.cidr"),
                format!("`{}` is already listed at index {first}", e.cidr),
            ));
        }
    }
    Ok(())
}

/// A country code and coordinates, as in a prefix entry or the fallback.
fn validate_place(key: &str, country: Option<&str>, lat: Option<f64>, lon: Option<f64>) -> Result<(), Invalid> {
    if let Some(c) = country {
        if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Invalid::new(
                format!("{key}.country"),
                format!("`{c}` is not an ISO 3166-1 alpha-2 code like \"GB\""),
            ));
        }
    }
    match (lat, lon) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(Invalid::new(format!("{key}.lon"), "`lat` is set, so `lon` must be too")),
        (None, Some(_)) => Err(Invalid::new(format!("{key}.lat"), "`lon` is set, so `lat` must be too")),
        (Some(lat), Some(lon)) => {
            if !(-90.0..=90.0).contains(&lat) {
                return Err(Invalid::new(
                    format!("{key}.lat"),
                    format!("{lat} is not within -90..90"),
                ));
            }
            if !(-180.0..=180.0).contains(&lon) {
                return Err(Invalid::new(
                    format!("{key}.lon"),
                    format!("{lon} is not within -180..180"),
                ));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(default)]
        geo: GeoConfig,
    }

    fn parse(text: &str) -> Result<GeoConfig, String> {
        let outer: Outer = toml::from_str(text).map_err(|e| e.to_string())?;
        outer.geo.validate().map_err(|i| format!("{}: {}", i.key, i.reason))?;
        Ok(outer.geo)
    }

    #[test]
    fn everything_is_optional() {
        let g = parse("").unwrap();
        assert_eq!(g.reload_interval, Duration::from_secs(10));
        assert!(g.city_db.is_none() && g.asn_db.is_none() && g.prefix_file.is_none());
        assert!(g.prefixes.is_empty());
        assert_eq!(g.fallback, Fallback::default());
        let g = parse("[geo]\n").unwrap();
        assert_eq!(g.reload_interval, Duration::from_secs(10));
    }

    #[test]
    fn full_section_parses() {
        let g = parse(
            r#"
            [geo]
            city_db = "/var/lib/GeoIP/GeoLite2-City.mmdb"
            asn_db = "/var/lib/GeoIP/GeoLite2-ASN.mmdb"
            reload_interval = "500ms"
            prefix_file = "prefixes.toml"
            [[geo.prefixes]]
            cidr = "127.1.0.0/16"
            site = "ams"
            asn = 64501
            isp = "Example Net"
            country = "NL"
            lat = 52.37
            lon = 4.9
            [[geo.prefixes]]
            cidr = "2001:db8:1::/48"
            [geo.fallback]
            country = "GB"
            lat = 51.5
            lon = -0.12
            "#,
        )
        .unwrap();
        assert_eq!(g.reload_interval, Duration::from_millis(500));
        assert_eq!(g.prefixes.len(), 2);
        assert_eq!(g.prefixes[0].site.as_deref(), Some("ams"));
        assert_eq!(g.prefixes[0].asn, Some(64501));
        assert_eq!(g.prefixes[1].cidr, "2001:db8:1::/48".parse::<IpNet>().unwrap());
        assert_eq!(g.fallback.country.as_deref(), Some("GB"));
    }

    #[test]
    fn mistakes_name_the_key() {
        let cases = [
            ("[geo]\ncity = \"x\"", "unknown field"),
            ("[geo]\nreload_interval = \"0s\"", "geo.reload_interval"),
            ("[geo]\nreload_interval = \"soon\"", "not a duration"),
            ("[[geo.prefixes]]\ncidr = \"127.1.0.0/33\"", "invalid"),
            ("[[geo.prefixes]]\nsite = \"ams\"", "missing field `cidr`"),
            (
                "[[geo.prefixes]]\ncidr = \"127.1.2.3/16\"",
                "geo.prefixes[0].cidr: `127.1.2.3/16` has host bits set",
            ),
            (
                "[[geo.prefixes]]\ncidr = \"127.1.0.0/16\"\nsite = \" \"",
                "geo.prefixes[0].site",
            ),
            (
                "[[geo.prefixes]]\ncidr = \"127.1.0.0/16\"\ncountry = \"gb\"",
                "geo.prefixes[0].country",
            ),
            (
                "[[geo.prefixes]]\ncidr = \"127.1.0.0/16\"\nlat = 1.0",
                "geo.prefixes[0].lon",
            ),
            (
                "[[geo.prefixes]]\ncidr = \"127.1.0.0/16\"\nlat = 91.0\nlon = 0.0",
                "geo.prefixes[0].lat",
            ),
            (
                "[[geo.prefixes]]\ncidr = \"127.1.0.0/16\"\nlat = 0.0\nlon = 181.0",
                "geo.prefixes[0].lon",
            ),
            (
                "[[geo.prefixes]]\ncidr = \"127.1.0.0/16\"\n[[geo.prefixes]]\ncidr = \"127.1.0.0/16\"",
                "geo.prefixes[1].cidr: `127.1.0.0/16` is already listed at index 0",
            ),
            (
                "[[geo.prefixes]]\ncidr = \"10.0.0.0/8\"\n[[geo.prefixes]]\ncidr = \"::ffff:10.0.0.0/104\"",
                "geo.prefixes[1].cidr",
            ),
            ("[geo.fallback]\ncountry = \"GBR\"", "geo.fallback.country"),
            ("[geo.fallback]\nlon = 3.0", "geo.fallback.lat"),
            ("[geo.fallback]\nregion = \"x\"", "unknown field"),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err:?} does not contain {want:?}");
        }
    }
}
