//! Writing MaxMind DB files in the GeoLite2 City and ASN schemas, for tests
//! and for the demo, which builds its own database for its loopback
//! "ISPs". The files are IPv6 databases (IPv4 networks also answer through
//! their IPv4-mapped form) that [`super::Locator`] and MaxMind's own
//! readers accept.
//!
//! Entries may nest: the most specific network wins, whatever the order of
//! the entries. The build time is an argument (`build_epoch` in the
//! metadata, what the database age metric reports), so output is
//! reproducible.

use std::time::SystemTime;

use ipnet::IpNet;
use mmdb_writer::Writer;
use serde::Serialize;

use super::prefix::canonical_net;
use super::GeoError;

/// One network of a City database.
#[derive(Debug, Clone, PartialEq)]
pub struct CityEntry {
    pub network: IpNet,
    /// ISO 3166-1 alpha-2 code (`country.iso_code`).
    pub country: Option<String>,
    /// English city name (`city.names.en`).
    pub city: Option<String>,
    /// `location.latitude`; written only together with `lon`.
    pub lat: Option<f64>,
    /// `location.longitude`; written only together with `lat`.
    pub lon: Option<f64>,
    /// `location.accuracy_radius` in km; written only with coordinates.
    pub accuracy_km: Option<u16>,
}

/// One network of an ASN database.
#[derive(Debug, Clone, PartialEq)]
pub struct AsnEntry {
    pub network: IpNet,
    /// `autonomous_system_number`.
    pub asn: u32,
    /// `autonomous_system_organization`.
    pub org: Option<String>,
}

#[derive(Serialize)]
struct CityRecord<'a> {
    country: Option<IsoCode<'a>>,
    city: Option<Named<'a>>,
    location: Option<Coordinates>,
}

#[derive(Serialize)]
struct IsoCode<'a> {
    iso_code: &'a str,
}

#[derive(Serialize)]
struct Named<'a> {
    names: English<'a>,
}

#[derive(Serialize)]
struct English<'a> {
    en: &'a str,
}

#[derive(Serialize)]
struct Coordinates {
    latitude: f64,
    longitude: f64,
    accuracy_radius: Option<u16>,
}

#[derive(Serialize)]
struct AsnRecord<'a> {
    autonomous_system_number: u32,
    autonomous_system_organization: Option<&'a str>,
}

/// A GeoLite2-City database with these networks.
pub fn city_db(entries: &[CityEntry], build_epoch: SystemTime) -> Result<Vec<u8>, GeoError> {
    build("GeoLite2-City", "Outpost City database", build_epoch, entries, |e| {
        (
            e.network,
            CityRecord {
                country: e.country.as_deref().map(|iso_code| IsoCode { iso_code }),
                city: e.city.as_deref().map(|en| Named { names: English { en } }),
                location: match (e.lat, e.lon) {
                    (Some(latitude), Some(longitude)) => Some(Coordinates {
                        latitude,
                        longitude,
                        accuracy_radius: e.accuracy_km,
                    }),
                    _ => None,
                },
            },
        )
    })
}

/// A GeoLite2-ASN database with these networks.
pub fn asn_db(entries: &[AsnEntry], build_epoch: SystemTime) -> Result<Vec<u8>, GeoError> {
    build("GeoLite2-ASN", "Outpost ASN database", build_epoch, entries, |e| {
        (
            e.network,
            AsnRecord {
                autonomous_system_number: e.asn,
                autonomous_system_organization: e.org.as_deref(),
            },
        )
    })
}

/// Insert every entry, least specific first, so nested networks keep
/// their own record.
fn build<'a, E, R: Serialize>(
    database_type: &str,
    description: &str,
    build_epoch: SystemTime,
    entries: &'a [E],
    record: impl Fn(&'a E) -> (IpNet, R),
) -> Result<Vec<u8>, GeoError> {
    let write_error = |e: mmdb_writer::Error| GeoError::Write { reason: e.to_string() };
    let mut records: Vec<(IpNet, R)> = entries
        .iter()
        .map(|e| {
            let (net, r) = record(e);
            (canonical_net(net.trunc()), r)
        })
        .collect();
    // Depth in the IPv6 tree: IPv4 networks sit under ::/96.
    records.sort_by_key(|(net, _)| match net {
        IpNet::V4(n) => n.prefix_len() + 96,
        IpNet::V6(n) => n.prefix_len(),
    });
    let mut writer = Writer::builder(database_type)
        .description(&[("en", description)])
        .build_epoch(build_epoch)
        .build();
    for (net, r) in &records {
        writer.insert(*net, r).map_err(write_error)?;
    }
    writer.to_bytes().map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::mmdb::{AsnAnswer, Kind, Mmdb};
    use crate::geo::testdata::city_entry as city;
    use std::path::Path;
    use std::time::{Duration, UNIX_EPOCH};

    fn load(kind: Kind, bytes: Vec<u8>) -> Mmdb {
        Mmdb::load(kind, Path::new("built.mmdb"), bytes).unwrap()
    }

    #[test]
    fn city_database_round_trips_with_nesting_in_any_order() {
        let epoch = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let entries = vec![
            city("127.1.0.0/16", "NL", "Amsterdam", 52.37, 4.9),
            city("2001:db8::/32", "US", "New York", 40.71, -74.0),
            city("127.0.0.0/8", "DE", "Frankfurt", 50.11, 8.68),
            CityEntry {
                network: "192.0.2.0/24".parse().unwrap(),
                country: Some("GB".into()),
                city: None,
                lat: Some(51.5),
                lon: None,
                accuracy_km: Some(5),
            },
        ];
        let mut reversed = entries.clone();
        reversed.reverse();
        for entries in [entries, reversed] {
            let db = load(Kind::City, city_db(&entries, epoch).unwrap());
            assert_eq!(db.build_epoch(), 1_700_000_000);
            let a = db.city("127.1.2.3".parse().unwrap()).unwrap();
            assert_eq!(
                (a.country.as_deref(), a.city.as_deref()),
                (Some("NL"), Some("Amsterdam"))
            );
            assert_eq!((a.coords, a.accuracy_km), (Some((52.37, 4.9)), Some(50)));
            let a = db.city("127.2.0.1".parse().unwrap()).unwrap();
            assert_eq!(a.city.as_deref(), Some("Frankfurt"));
            assert_eq!(
                db.city("::ffff:127.1.0.1".parse().unwrap()).unwrap().city.as_deref(),
                Some("Amsterdam")
            );
            let a = db.city("2001:db8:5::1".parse().unwrap()).unwrap();
            assert_eq!((a.country.as_deref(), a.coords), (Some("US"), Some((40.71, -74.0))));
            // Half a coordinate pair is not written.
            let a = db.city("192.0.2.1".parse().unwrap()).unwrap();
            assert_eq!(
                (a.country.as_deref(), a.coords, a.accuracy_km),
                (Some("GB"), None, None)
            );
            assert_eq!(db.city("198.51.100.1".parse().unwrap()), None);
            assert_eq!(db.city("2001:db9::1".parse().unwrap()), None);
        }
        // Nothing in it reads a clock: same input, same bytes.
        assert_eq!(city_db(&[], epoch).unwrap(), city_db(&[], epoch).unwrap());
    }

    #[test]
    fn asn_database_round_trips() {
        let entries = [
            AsnEntry {
                network: "127.1.0.0/16".parse().unwrap(),
                asn: 64501,
                org: Some("Amsterdam Net".into()),
            },
            AsnEntry {
                network: "2001:db8:1::/48".parse().unwrap(),
                asn: 64510,
                org: None,
            },
        ];
        let db = load(Kind::Asn, asn_db(&entries, UNIX_EPOCH).unwrap());
        assert_eq!(
            db.asn("127.1.200.1".parse().unwrap()),
            Some(AsnAnswer {
                asn: Some(64501),
                org: Some("Amsterdam Net".into())
            })
        );
        assert_eq!(
            db.asn("2001:db8:1::9".parse().unwrap()),
            Some(AsnAnswer {
                asn: Some(64510),
                org: None
            })
        );
        assert_eq!(db.asn("127.2.0.1".parse().unwrap()), None);
    }

    #[test]
    fn each_file_has_its_schema() {
        let city = city_db(&[], UNIX_EPOCH).unwrap();
        let asn = asn_db(&[], UNIX_EPOCH).unwrap();
        assert!(Mmdb::load(Kind::Asn, Path::new("c"), city.clone()).is_err());
        assert!(Mmdb::load(Kind::City, Path::new("a"), asn.clone()).is_err());
        load(Kind::City, city);
        load(Kind::Asn, asn);
    }

    #[test]
    fn unwritable_networks_are_the_callers_error() {
        // Inside 6to4, an alias of the IPv4 space.
        let e = asn_db(
            &[AsnEntry {
                network: "2002:1::/32".parse().unwrap(),
                asn: 1,
                org: None,
            }],
            UNIX_EPOCH,
        )
        .unwrap_err();
        assert!(matches!(e, GeoError::Write { .. }), "{e}");
    }
}
