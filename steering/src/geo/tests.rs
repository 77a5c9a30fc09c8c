//! The locator as the service uses it: databases built by [`super::write`]
//! and MaxMind's test databases on disk, the prefix map, the fallback, and
//! reloads under concurrent lookups.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::testdata::{bad_data_files, city_entry as city, maxmind_dir, TempDir};
use super::write::{asn_db, city_db, AsnEntry, CityEntry};
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn asn(net: &str, asn: u32, org: &str) -> AsnEntry {
    AsnEntry {
        network: net.parse().unwrap(),
        asn,
        org: Some(org.into()),
    }
}

fn prefix(cidr: &str) -> PrefixEntry {
    PrefixEntry {
        cidr: cidr.parse().unwrap(),
        site: None,
        asn: None,
        isp: None,
        country: None,
        lat: None,
        lon: None,
    }
}

/// The demo's world: three loopback ISPs plus the documentation prefixes.
fn cities() -> Vec<CityEntry> {
    vec![
        city("127.1.0.0/16", "NL", "Amsterdam", 52.37, 4.89),
        city("127.2.0.0/16", "DE", "Frankfurt", 50.11, 8.68),
        city("127.3.0.0/16", "US", "New York", 40.71, -74.01),
        city("192.0.2.0/24", "GB", "London", 51.51, -0.13),
        city("198.51.100.0/24", "FR", "Paris", 48.86, 2.35),
        city("198.51.100.128/25", "BE", "Brussels", 50.85, 4.35),
        city("2001:db8::/32", "JP", "Tokyo", 35.68, 139.69),
    ]
}

fn asns() -> Vec<AsnEntry> {
    vec![
        asn("127.1.0.0/16", 64501, "Amsterdam Net"),
        asn("127.2.0.0/16", 64502, "Frankfurt Net"),
        asn("127.3.0.0/16", 64503, "New York Net"),
        asn("192.0.2.0/24", 64496, "Doc Net"),
        asn("2001:db8::/32", 64510, "Doc Six"),
        asn("2001:db8:1::/48", 64511, "Doc Six One"),
    ]
}

/// What the databases of [`world`] say about 127.1.0.0/16.
fn amsterdam() -> Location {
    Location {
        source: Source::Geo,
        country: Some("NL".into()),
        city: Some("Amsterdam".into()),
        lat: Some(52.37),
        lon: Some(4.89),
        accuracy_km: Some(50),
        asn: Some(64501),
        isp: Some("Amsterdam Net".into()),
        site: None,
    }
}

const EPOCH: u64 = 1_700_000_000;

/// A directory with `city.mmdb` and `asn.mmdb` from the lists above.
fn world() -> (TempDir, GeoConfig) {
    let dir = TempDir::new();
    let at = UNIX_EPOCH + Duration::from_secs(EPOCH);
    std::fs::write(dir.path().join("city.mmdb"), city_db(&cities(), at).unwrap()).unwrap();
    std::fs::write(
        dir.path().join("asn.mmdb"),
        asn_db(&asns(), at + Duration::from_secs(1)).unwrap(),
    )
    .unwrap();
    let cfg = GeoConfig {
        city_db: Some(dir.path().join("city.mmdb")),
        asn_db: Some(dir.path().join("asn.mmdb")),
        ..GeoConfig::default()
    };
    (dir, cfg)
}

#[test]
fn built_databases_answer_country_city_coordinates_and_asn() {
    let (_dir, cfg) = world();
    let l = Locator::open(&cfg).unwrap();
    assert_eq!(l.locate(ip("127.1.2.3")), amsterdam());
    let loc = l.locate(ip("127.3.255.254"));
    assert_eq!(
        (loc.country.as_deref(), loc.asn, loc.lon),
        (Some("US"), Some(64503), Some(-74.01))
    );
    let loc = l.locate(ip("192.0.2.200"));
    assert_eq!((loc.city.as_deref(), loc.asn), (Some("London"), Some(64496)));
    // City only (no ASN entry): still a geo answer.
    let loc = l.locate(ip("198.51.100.1"));
    assert_eq!(
        (loc.source, loc.city.as_deref(), loc.asn),
        (Source::Geo, Some("Paris"), None)
    );
    // The more specific network of a database wins too.
    assert_eq!(l.locate(ip("198.51.100.200")).city.as_deref(), Some("Brussels"));
    // IPv6, and the nested ASN network.
    let loc = l.locate(ip("2001:db8:ffff::1"));
    assert_eq!(
        (loc.country.as_deref(), loc.lat, loc.asn),
        (Some("JP"), Some(35.68), Some(64510))
    );
    assert_eq!(l.locate(ip("2001:db8:1::1")).asn, Some(64511));
    // IPv4-mapped IPv6 is IPv4.
    assert_eq!(l.locate(ip("::ffff:127.2.0.9")), l.locate(ip("127.2.0.9")));
    assert_eq!(l.locate(ip("::ffff:127.2.0.9")).city.as_deref(), Some("Frankfurt"));
    let mut ages = l.database_ages();
    ages.sort();
    assert_eq!(ages, vec![("asn", EPOCH + 1), ("city", EPOCH)]);
}

#[test]
fn fallback_when_nothing_matches() {
    let (_dir, mut cfg) = world();
    let l = Locator::open(&cfg).unwrap();
    let loc = l.locate(ip("127.9.0.1"));
    assert_eq!(loc.source, Source::Fallback);
    assert_eq!((loc.country, loc.lat, loc.asn, loc.site), (None, None, None, None));
    cfg.fallback = Fallback {
        country: Some("GB".into()),
        lat: Some(51.5),
        lon: Some(-0.12),
    };
    let l = Locator::open(&cfg).unwrap();
    for addr in ["127.9.0.1", "203.0.113.5", "2001:db9::1", "::1", "0.0.0.0"] {
        let loc = l.locate(ip(addr));
        assert_eq!(loc.source, Source::Fallback, "{addr}");
        assert_eq!(
            (loc.country.as_deref(), loc.lat, loc.lon),
            (Some("GB"), Some(51.5), Some(-0.12)),
            "{addr}"
        );
        assert_eq!((loc.city, loc.asn, loc.isp), (None, None, None), "{addr}");
    }
    // Nothing configured at all: every address is the fallback.
    let l = Locator::open(&GeoConfig::default()).unwrap();
    assert_eq!(l.locate(ip("81.2.69.142")).source, Source::Fallback);
    assert!(l.database_ages().is_empty());
    assert!(l.reload_if_changed().is_empty());
}

#[test]
fn prefix_map_wins_and_the_longest_prefix_wins() {
    let (_dir, mut cfg) = world();
    cfg.prefixes = vec![
        PrefixEntry {
            site: Some("ams".into()),
            asn: Some(65001),
            isp: Some("Operator ISP".into()),
            country: Some("BE".into()),
            lat: Some(50.0),
            lon: Some(4.0),
            ..prefix("127.1.0.0/16")
        },
        PrefixEntry {
            site: Some("ams-2".into()),
            ..prefix("127.1.2.0/24")
        },
        PrefixEntry {
            site: Some("v6".into()),
            ..prefix("2001:db8:1::/48")
        },
        PrefixEntry {
            site: Some("v6-narrow".into()),
            ..prefix("2001:db8:1:2::/64")
        },
        PrefixEntry {
            site: Some("nowhere".into()),
            ..prefix("203.0.113.0/24")
        },
    ];
    let l = Locator::open(&cfg).unwrap();
    // A complete entry: nothing from the databases.
    assert_eq!(
        l.locate(ip("127.1.9.9")),
        Location {
            source: Source::Prefix,
            country: Some("BE".into()),
            city: None,
            lat: Some(50.0),
            lon: Some(4.0),
            accuracy_km: None,
            asn: Some(65001),
            isp: Some("Operator ISP".into()),
            site: Some("ams".into()),
        }
    );
    // The /24 inside it wins; what it leaves out comes from the databases.
    assert_eq!(
        l.locate(ip("127.1.2.3")),
        Location {
            source: Source::Prefix,
            site: Some("ams-2".into()),
            ..amsterdam()
        }
    );
    assert_eq!(l.locate(ip("::ffff:127.1.2.3")).site.as_deref(), Some("ams-2"));
    let loc = l.locate(ip("2001:db8:1:2::1"));
    assert_eq!(
        (loc.source, loc.site.as_deref(), loc.asn),
        (Source::Prefix, Some("v6-narrow"), Some(64511))
    );
    assert_eq!(l.locate(ip("2001:db8:1:3::1")).site.as_deref(), Some("v6"));
    assert_eq!(l.locate(ip("2001:db8:2::1")).source, Source::Geo);
    // A prefix the databases do not know: just the entry.
    let loc = l.locate(ip("203.0.113.1"));
    assert_eq!(
        (loc.source, loc.site.as_deref(), loc.country),
        (Source::Prefix, Some("nowhere"), None)
    );
    // Outside every prefix: the databases.
    assert_eq!(l.locate(ip("127.2.0.1")).source, Source::Geo);
}

#[test]
fn prefix_file_merges_with_inline_entries_and_reloads() {
    let dir = TempDir::new();
    let file = dir.path().join("prefixes.toml");
    std::fs::write(
        &file,
        "[[prefixes]]\ncidr = \"127.1.2.0/24\"\nsite = \"file-24\"\n\n[[prefixes]]\ncidr = \"2001:db8::/32\"\nsite = \"file-v6\"\n",
    )
    .unwrap();
    let cfg = GeoConfig {
        prefixes: vec![PrefixEntry {
            site: Some("inline-16".into()),
            ..prefix("127.1.0.0/16")
        }],
        prefix_file: Some(file.clone()),
        ..GeoConfig::default()
    };
    let l = Locator::open(&cfg).unwrap();
    let site = |a: &str| l.locate(ip(a)).site;
    assert_eq!(site("127.1.2.3").as_deref(), Some("file-24"));
    assert_eq!(site("127.1.3.3").as_deref(), Some("inline-16"));
    assert_eq!(site("2001:db8::1").as_deref(), Some("file-v6"));

    dir.replace(
        "prefixes.toml",
        b"[[prefixes]]\ncidr = \"127.1.2.0/25\"\nsite = \"file-25\"\n",
    );
    let out = l.reload_if_changed();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].key, out[0].result.is_ok()), ("geo.prefix_file", true));
    assert_eq!(site("127.1.2.3").as_deref(), Some("file-25"));
    assert_eq!(site("127.1.2.200").as_deref(), Some("inline-16"));
    assert_eq!(site("2001:db8::1"), None);

    // Refused versions leave the last good map in use.
    for (bad, why) in [
        (
            "[[prefixes]]\ncidr = \"127.1.0.0/16\"\n",
            "also listed in geo.prefixes[0]",
        ),
        ("[[prefixes]]\ncidr = \"127.1.2.3/24\"\n", "host bits"),
        ("[[prefixes]]\ncidr = \"nonsense\"\n", "line 2"),
        ("[[prefix]]\ncidr = \"127.5.0.0/16\"\n", "unknown field"),
    ] {
        dir.replace("prefixes.toml", bad.as_bytes());
        let out = l.reload_if_changed();
        let e = out[0].result.as_ref().expect_err(bad).to_string();
        assert!(
            e.contains(why) && e.contains("geo.prefix_file") && e.contains("prefixes.toml"),
            "{e}"
        );
        assert_eq!(site("127.1.2.3").as_deref(), Some("file-25"), "{bad}");
    }
    // The same mistakes at start-up are errors.
    std::fs::write(&file, "[[prefixes]]\ncidr = \"127.1.0.0/16\"\n").unwrap();
    let e = Locator::open(&cfg).err().unwrap().to_string();
    assert!(e.contains("also listed") && e.contains("prefixes.toml"), "{e}");
}

#[test]
fn official_test_databases() {
    let dir = maxmind_dir();
    for city in ["GeoIP2-City-Test.mmdb", "GeoLite2-City-Test.mmdb"] {
        let cfg = GeoConfig {
            city_db: Some(dir.join(city)),
            asn_db: Some(dir.join("GeoLite2-ASN-Test.mmdb")),
            ..GeoConfig::default()
        };
        let l = Locator::open(&cfg).unwrap();
        let loc = l.locate(ip("81.2.69.142"));
        assert_eq!(loc.source, Source::Geo, "{city}");
        assert_eq!(
            (loc.country.as_deref(), loc.city.as_deref()),
            (Some("GB"), Some("London")),
            "{city}"
        );
        assert!(loc.lat.is_some_and(|v| (v - 51.51).abs() < 0.1), "{city}: {loc:?}");
        assert!(loc.lon.is_some_and(|v| (v + 0.09).abs() < 0.1), "{city}: {loc:?}");
        let loc = l.locate(ip("1.128.0.0"));
        assert_eq!((loc.source, loc.asn), (Source::Geo, Some(1221)), "{city}");
        assert!(loc.isp.as_deref().is_some_and(|s| s.contains("Telstra")), "{loc:?}");
        assert_eq!(l.locate(ip("::ffff:1.128.0.0")).asn, Some(1221));
        assert_eq!(l.database_ages().len(), 2);
    }
}

#[test]
fn wrong_schema_and_missing_files_are_refused_at_open() {
    let dir = maxmind_dir();
    let cfg = GeoConfig {
        city_db: Some(dir.join("GeoLite2-ASN-Test.mmdb")),
        ..GeoConfig::default()
    };
    let e = Locator::open(&cfg).err().expect("an ASN database accepted as city_db");
    assert!(matches!(e, GeoError::Schema { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("geo.city_db") && msg.contains("GeoLite2-ASN-Test.mmdb") && msg.contains("wrong schema"),
        "{msg}"
    );
    let cfg = GeoConfig {
        asn_db: Some(dir.join("GeoIP2-City-Test.mmdb")),
        ..GeoConfig::default()
    };
    assert!(matches!(Locator::open(&cfg), Err(GeoError::Schema { .. })));
    let cfg = GeoConfig {
        asn_db: Some(dir.join("no-such-file.mmdb")),
        ..GeoConfig::default()
    };
    let e = Locator::open(&cfg).err().unwrap();
    assert!(matches!(e, GeoError::Read { .. }), "{e}");
    assert!(e.to_string().contains("geo.asn_db") && e.to_string().contains("no-such-file.mmdb"));
    // Not a database at all.
    let cfg = GeoConfig {
        city_db: Some(dir.join("LICENSE-MIT")),
        ..GeoConfig::default()
    };
    assert!(matches!(Locator::open(&cfg), Err(GeoError::Corrupt { .. })));
    let cfg = GeoConfig {
        reload_interval: Duration::ZERO,
        ..GeoConfig::default()
    };
    assert!(matches!(Locator::open(&cfg), Err(GeoError::Config { .. })));
}

#[test]
fn every_bad_data_file_is_refused_or_harmless() {
    for path in bad_data_files() {
        for as_city in [true, false] {
            let cfg = GeoConfig {
                city_db: as_city.then(|| path.clone()),
                asn_db: (!as_city).then(|| path.clone()),
                ..GeoConfig::default()
            };
            match Locator::open(&cfg) {
                Err(e) => assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}"),
                Ok(l) => {
                    for a in ["1.1.1.1", "81.2.69.142", "::1", "2001:db8::1"] {
                        let _ = l.locate(ip(a));
                    }
                }
            }
        }
    }
}

/// A log sink for one test.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Run `f` with this sink as the thread's subscriber.
    ///
    /// tracing caches each callsite's interest process-wide; while only one
    /// dispatcher is registered, a test thread without a subscriber can
    /// cache "never" for a callsite this test then uses (tokio-rs/tracing
    /// #3611). A second dispatcher that lives as long as the process makes
    /// every callsite ask all live dispatchers, this one included.
    fn capture<R>(&self, f: impl FnOnce() -> R) -> R {
        static ANCHOR: OnceLock<tracing::Dispatch> = OnceLock::new();
        ANCHOR.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::with_default(subscriber, f)
    }

    fn take(&self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut *self.0.lock().unwrap())).into_owned()
    }
}

fn one_city(name: &str, epoch: u64) -> Vec<u8> {
    city_db(
        &[city("127.1.0.0/16", "NL", name, 52.0, 4.0)],
        UNIX_EPOCH + Duration::from_secs(epoch),
    )
    .unwrap()
}

#[test]
fn reload_swaps_new_versions_and_keeps_the_old_one_on_bad_files() {
    let dir = TempDir::new();
    let path = dir.path().join("city.mmdb");
    std::fs::write(&path, one_city("One", 1)).unwrap();
    let l = Locator::open(&GeoConfig {
        city_db: Some(path.clone()),
        ..GeoConfig::default()
    })
    .unwrap();
    let city = || l.locate(ip("127.1.0.1")).city;
    let logs = Logs::default();
    assert_eq!(city().as_deref(), Some("One"));
    assert!(l.reload_if_changed().is_empty(), "nothing changed");

    // Written beside it and renamed over it.
    dir.replace("city.mmdb", &one_city("Two", 2));
    let out = logs.capture(|| l.reload_if_changed());
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].key, &out[0].path, out[0].result.is_ok()),
        ("geo.city_db", &path, true)
    );
    assert_eq!(city().as_deref(), Some("Two"));
    assert_eq!(l.database_ages(), vec![("city", 2)]);
    assert!(logs.take().contains("INFO"));

    // Garbage: refused with a warning naming the file and the reason.
    dir.replace("city.mmdb", b"this is not a MaxMind DB");
    let out = logs.capture(|| l.reload_if_changed());
    assert!(matches!(out[0].result, Err(GeoError::Corrupt { .. })), "{out:?}");
    let log = logs.take();
    assert!(
        log.contains("WARN") && log.contains("city.mmdb") && log.contains("not a valid MaxMind DB"),
        "{log}"
    );
    assert_eq!(city().as_deref(), Some("Two"));
    assert_eq!(l.database_ages(), vec![("city", 2)]);
    assert!(
        logs.capture(|| l.reload_if_changed()).is_empty(),
        "a refused file is reported once"
    );
    assert_eq!(logs.take(), "");

    // A truncated database.
    let mut cut = one_city("Three", 3);
    cut.truncate(cut.len() / 2);
    dir.replace("city.mmdb", &cut);
    assert!(l.reload_if_changed()[0].result.is_err());
    assert_eq!(city().as_deref(), Some("Two"));

    // The wrong schema.
    dir.replace("city.mmdb", &asn_db(&asns(), UNIX_EPOCH).unwrap());
    let out = logs.capture(|| l.reload_if_changed());
    assert!(matches!(out[0].result, Err(GeoError::Schema { .. })), "{out:?}");
    assert!(logs.take().contains("wrong schema"));
    assert_eq!(city().as_deref(), Some("Two"));

    // Overwritten in place (same inode), as `cp new.mmdb city.mmdb` does.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.write_all(&one_city("Four-in-place", 4)).unwrap();
    drop(f);
    assert!(l.reload_if_changed()[0].result.is_ok());
    assert_eq!(city().as_deref(), Some("Four-in-place"));
    assert_eq!(l.database_ages(), vec![("city", 4)]);

    // Deleted: warned once, still answering; back: loaded.
    std::fs::remove_file(&path).unwrap();
    let out = l.reload_if_changed();
    assert!(matches!(out[0].result, Err(GeoError::Read { .. })), "{out:?}");
    assert_eq!(city().as_deref(), Some("Four-in-place"));
    std::fs::write(&path, one_city("Five", 5)).unwrap();
    assert!(l.reload_if_changed()[0].result.is_ok());
    assert_eq!(city().as_deref(), Some("Five"));
}

/// Lookups on other threads while the files are replaced (renames, in-place
/// overwrites, garbage) never see a failed or mixed answer.
#[test]
fn lookups_never_fail_during_reloads() {
    let dir = TempDir::new();
    let city_path = dir.path().join("city.mmdb");
    let asn_path = dir.path().join("asn.mmdb");
    // Versions differ in length, so an in-place overwrite always changes
    // the size even within one tick of the file times.
    let versions: Vec<(String, Vec<u8>, Vec<u8>)> = (0..4)
        .map(|v| {
            let name = format!("City{}", "v".repeat(v + 1));
            let city = one_city(&name, v as u64);
            let asn = asn_db(&[asn("127.1.0.0/16", 64500 + v as u32, &name)], UNIX_EPOCH).unwrap();
            (name, city, asn)
        })
        .collect();
    std::fs::write(&city_path, &versions[0].1).unwrap();
    std::fs::write(&asn_path, &versions[0].2).unwrap();
    let l = Arc::new(
        Locator::open(&GeoConfig {
            city_db: Some(city_path.clone()),
            asn_db: Some(asn_path.clone()),
            ..GeoConfig::default()
        })
        .unwrap(),
    );
    let names: Vec<String> = versions.iter().map(|v| v.0.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let lookups = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (l, stop, lookups, names) = (l.clone(), stop.clone(), lookups.clone(), names.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let loc = l.locate(ip("127.1.2.3"));
                    assert_eq!(loc.source, Source::Geo, "{loc:?}");
                    assert!(names.contains(loc.city.as_ref().unwrap()), "{loc:?}");
                    assert!(names.contains(loc.isp.as_ref().unwrap()), "{loc:?}");
                    assert!(loc.asn.is_some_and(|a| (64500..64504).contains(&a)), "{loc:?}");
                    assert_eq!(loc.country.as_deref(), Some("NL"));
                    lookups.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut reloaded = 0;
    for round in 0..40 {
        let (_, c, a) = &versions[round % versions.len()];
        match round % 4 {
            0 => {
                dir.replace("city.mmdb", c);
                dir.replace("asn.mmdb", a);
            }
            1 => {
                std::fs::write(&city_path, c).unwrap();
                std::fs::write(&asn_path, a).unwrap();
            }
            2 => {
                dir.replace("city.mmdb", b"garbage");
                std::fs::write(&asn_path, b"garbage, in place").unwrap();
            }
            _ => {
                // Half a file, then the rest, checked in between.
                std::fs::write(&city_path, &c[..c.len() / 2]).unwrap();
                l.reload_if_changed();
                std::fs::write(&city_path, c).unwrap();
            }
        }
        reloaded += l.reload_if_changed().iter().filter(|o| o.result.is_ok()).count();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("a lookup failed during a reload");
    }
    assert!(reloaded >= 20, "only {reloaded} reloads took effect");
    assert!(lookups.load(Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn watch_reloads_until_shutdown() {
    let dir = TempDir::new();
    let path = dir.path().join("city.mmdb");
    std::fs::write(&path, one_city("Before", 1)).unwrap();
    let l = Arc::new(
        Locator::open(&GeoConfig {
            city_db: Some(path.clone()),
            ..GeoConfig::default()
        })
        .unwrap(),
    );
    let shutdown = Shutdown::new();
    let task = tokio::spawn(watch(l.clone(), Duration::from_millis(20), shutdown.clone()));
    dir.replace("city.mmdb", &one_city("After", 2));
    let deadline = SystemTime::now() + Duration::from_secs(5);
    while l.locate(ip("127.1.0.1")).city.as_deref() != Some("After") {
        assert!(SystemTime::now() < deadline, "watch did not reload the changed file");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("watch did not stop on shutdown")
        .unwrap();
}
