//! Test helpers: MaxMind's test databases, database entries, a scratch
//! directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::write::CityEntry;

/// `../shared/testdata/maxmind/` next to the repository (MaxMind's test
/// databases and their corrupt files). Panics with the path when missing.
pub(crate) fn maxmind_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/maxmind");
    assert!(
        dir.join("GeoLite2-City-Test.mmdb").is_file(),
        "MaxMind's test databases are missing: expected them in {} (the shared test data next to the repository)",
        dir.display()
    );
    dir
}

/// Every file in MaxMind's `bad-data/` (corrupt databases), sorted.
pub(crate) fn bad_data_files() -> Vec<PathBuf> {
    let dir = maxmind_dir().join("bad-data");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected MaxMind's bad-data files in {}",
        dir.display()
    );
    files
}

/// A City database entry with every field set (accuracy 50 km).
pub(crate) fn city_entry(net: &str, country: &str, name: &str, lat: f64, lon: f64) -> CityEntry {
    CityEntry {
        network: net.parse().unwrap(),
        country: Some(country.into()),
        city: Some(name.into()),
        lat: Some(lat),
        lon: Some(lon),
        accuracy_km: Some(50),
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("outpost-geo-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Replace `name` atomically, as an operator would: write a temporary
    /// file beside it, then rename it over the old one.
    pub fn replace(&self, name: &str, bytes: &[u8]) {
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, self.0.join(name)).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
