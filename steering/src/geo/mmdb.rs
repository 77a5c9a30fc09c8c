//! One MaxMind DB file in memory: checked when loaded (the format, the
//! schema named by its `database_type`, and a full `verify()` walk of the
//! search tree and data section), then looked up without ever failing: a
//! lookup error is logged at debug and answers "no data".
//!
//! The file is read into memory rather than mapped, so an operator
//! overwriting it in place can never change bytes under a reader.

use std::net::IpAddr;
use std::path::Path;

use maxminddb::{geoip2, MaxMindDbError, Reader};

use super::GeoError;

/// Which of the two database schemas a file must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// GeoIP2-City / GeoLite2-City (or GeoIP2-Enterprise, a superset).
    City,
    /// GeoLite2-ASN (or GeoIP2-ISP, a superset).
    Asn,
}

impl Kind {
    /// The config key, used in errors and logs.
    pub fn key(self) -> &'static str {
        match self {
            Kind::City => "geo.city_db",
            Kind::Asn => "geo.asn_db",
        }
    }

    /// Short name for metrics (`database_ages`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::City => "city",
            Kind::Asn => "asn",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::City => "a City database (GeoIP2-City, GeoLite2-City or GeoIP2-Enterprise)",
            Kind::Asn => "an ASN database (GeoLite2-ASN or GeoIP2-ISP)",
        }
    }

    fn accepts(self, database_type: &str) -> bool {
        match self {
            Kind::City => database_type.contains("City") || database_type.contains("Enterprise"),
            Kind::Asn => database_type.contains("ASN") || database_type.contains("ISP"),
        }
    }
}

/// What the City database says about an address.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CityAnswer {
    pub country: Option<String>,
    pub city: Option<String>,
    /// Both or neither, always within range.
    pub coords: Option<(f64, f64)>,
    pub accuracy_km: Option<u32>,
}

/// What the ASN database says about an address.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AsnAnswer {
    pub asn: Option<u32>,
    pub org: Option<String>,
}

/// A loaded, checked database.
pub(crate) struct Mmdb {
    reader: Reader<Vec<u8>>,
}

impl Mmdb {
    /// Check `bytes` (read from `path`, named in errors) as a database of
    /// `kind`. The schema is checked before the (slower) full verification
    /// so a wrong file is reported as such.
    pub fn load(kind: Kind, path: &Path, bytes: Vec<u8>) -> Result<Self, GeoError> {
        let corrupt = |e: MaxMindDbError| GeoError::Corrupt {
            key: kind.key(),
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let reader = Reader::from_source(bytes).map_err(corrupt)?;
        let database_type = &reader.metadata().database_type;
        if !kind.accepts(database_type) {
            return Err(GeoError::Schema {
                key: kind.key(),
                path: path.to_owned(),
                actual: database_type.clone(),
                expected: kind.expected(),
            });
        }
        reader.verify().map_err(corrupt)?;
        Ok(Self { reader })
    }

    /// `build_epoch` from the metadata (seconds since 1970).
    pub fn build_epoch(&self) -> u64 {
        self.reader.metadata().build_epoch
    }

    /// The City record for `ip`, if any.
    pub fn city(&self, ip: IpAddr) -> Option<CityAnswer> {
        let ip = ip.to_canonical();
        let record = self.lookup::<geoip2::City>(ip)?;
        let coords = match (record.location.latitude, record.location.longitude) {
            (Some(lat), Some(lon)) if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) => {
                Some((lat, lon))
            }
            _ => None,
        };
        let answer = CityAnswer {
            country: record.country.iso_code.map(str::to_owned),
            city: record.city.names.english.map(str::to_owned),
            coords,
            accuracy_km: coords.and(record.location.accuracy_radius.map(u32::from)),
        };
        (answer != CityAnswer::default()).then_some(answer)
    }

    /// The ASN record for `ip`, if any.
    pub fn asn(&self, ip: IpAddr) -> Option<AsnAnswer> {
        let ip = ip.to_canonical();
        let record = self.lookup::<geoip2::Asn>(ip)?;
        let answer = AsnAnswer {
            asn: record.autonomous_system_number,
            org: record.autonomous_system_organization.map(str::to_owned),
        };
        (answer != AsnAnswer::default()).then_some(answer)
    }

    fn lookup<'a, T: serde::Deserialize<'a>>(&'a self, ip: IpAddr) -> Option<T> {
        if ip.is_ipv6() && self.reader.metadata().ip_version == 4 {
            return None;
        }
        match self.reader.lookup(ip).and_then(|r| r.decode::<T>()) {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(%ip, database_type = %self.reader.metadata().database_type, error = %e,
                    "geo lookup failed; treating the address as unknown");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::testdata::{bad_data_files, city_entry, maxmind_dir};

    fn open(kind: Kind, name: &str) -> Result<Mmdb, GeoError> {
        let path = maxmind_dir().join(name);
        let bytes = std::fs::read(&path).unwrap();
        Mmdb::load(kind, &path, bytes)
    }

    #[test]
    fn official_city_test_databases() {
        for name in ["GeoIP2-City-Test.mmdb", "GeoLite2-City-Test.mmdb"] {
            let db = open(Kind::City, name).unwrap();
            let a = db.city("81.2.69.142".parse().unwrap()).expect(name);
            assert_eq!(a.country.as_deref(), Some("GB"), "{name}");
            assert_eq!(a.city.as_deref(), Some("London"), "{name}");
            let (lat, lon) = a.coords.expect(name);
            assert!(
                (lat - 51.5142).abs() < 0.01 && (lon + 0.0931).abs() < 0.01,
                "{name}: {lat},{lon}"
            );
            assert!(a.accuracy_km.is_some(), "{name}");
            // The same through an IPv4-mapped IPv6 address.
            assert_eq!(db.city("::ffff:81.2.69.142".parse().unwrap()), Some(a), "{name}");
            assert_eq!(db.city("10.0.0.1".parse().unwrap()), None, "{name}");
            assert!(db.build_epoch() > 1_000_000_000, "{name}");
        }
    }

    #[test]
    fn official_asn_test_databases() {
        for name in ["GeoLite2-ASN-Test.mmdb", "GeoIP2-ISP-Test.mmdb"] {
            let db = open(Kind::Asn, name).unwrap();
            let a = db.asn("1.128.0.0".parse().unwrap()).expect(name);
            assert_eq!(a.asn, Some(1221), "{name}");
            assert!(a.org.as_deref().is_some_and(|o| o.contains("Telstra")), "{name}: {a:?}");
            assert_eq!(db.asn("10.0.0.1".parse().unwrap()), None, "{name}");
        }
    }

    #[test]
    fn wrong_schema_is_refused_by_name() {
        for (kind, name) in [
            (Kind::City, "GeoLite2-ASN-Test.mmdb"),
            (Kind::City, "GeoIP2-Country-Test.mmdb"),
            (Kind::Asn, "GeoLite2-City-Test.mmdb"),
            (Kind::Asn, "GeoIP2-Country-Test.mmdb"),
        ] {
            let Err(e) = open(kind, name) else {
                panic!("{name} accepted as {kind:?}");
            };
            assert!(matches!(e, GeoError::Schema { .. }), "{name}: {e}");
            let msg = e.to_string();
            assert!(
                msg.contains(kind.key()) && msg.contains(name) && msg.contains("wrong schema"),
                "{msg}"
            );
        }
    }

    /// Damage the format checks alone do not see (a record's string made
    /// invalid UTF-8) is found by the full verification at load.
    #[test]
    fn damaged_data_section_is_refused_at_load() {
        let entry = city_entry("127.1.0.0/16", "NL", "Amsterdam", 52.37, 4.89);
        let mut bytes = crate::geo::write::city_db(&[entry], std::time::UNIX_EPOCH).unwrap();
        let at = bytes.windows(9).position(|w| w == b"Amsterdam").unwrap();
        bytes[at] = 0xff;
        // The damage is real: a reader without the check fails the lookup.
        let unchecked = Mmdb {
            reader: Reader::from_source(bytes.clone()).unwrap(),
        };
        assert_eq!(unchecked.city("127.1.0.1".parse().unwrap()), None);
        let e = Mmdb::load(Kind::City, Path::new("damaged.mmdb"), bytes)
            .err()
            .expect("damaged file accepted");
        assert!(matches!(e, GeoError::Corrupt { .. }), "{e}");
    }

    /// Every corrupt file is refused at load, or (had it loaded) answers
    /// lookups without panicking. Lookups are also tried on files that fail
    /// only `verify()`, through a reader built without it.
    #[test]
    fn bad_data_never_panics() {
        let ips: Vec<IpAddr> = [
            "1.1.1.1",
            "81.2.69.142",
            "1.128.0.0",
            "0.0.0.0",
            "255.255.255.255",
            "2001:db8::1",
            "::",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        for path in &bad_data_files() {
            let bytes = std::fs::read(path).unwrap();
            for kind in [Kind::City, Kind::Asn] {
                match Mmdb::load(kind, path, bytes.clone()) {
                    Ok(db) => {
                        for ip in &ips {
                            let _ = (db.city(*ip), db.asn(*ip));
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        assert!(msg.contains(&*path.to_string_lossy()), "{msg}");
                    }
                }
            }
            // Past the checks: raw lookups must not panic either.
            if let Ok(reader) = Reader::from_source(bytes) {
                let db = Mmdb { reader };
                for ip in &ips {
                    let _ = (db.city(*ip), db.asn(*ip));
                }
            }
        }
    }
}
