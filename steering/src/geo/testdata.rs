//! Test helpers: MaxMind's test databases, database entries, a scratch
//! directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::write::CityEntry;

/// MaxMind's test databases and their corrupt files: `$OUTPOST_MAXMIND_TESTDATA`,
/// else `shared/testdata/maxmind` next to the repository or next to any
/// folder above it (a clone in /tmp finds /work/shared the same way as a
/// checkout at /work/main), else `/work/shared/testdata/maxmind`.
/// Panics with the places it looked when none has them.
pub(crate) fn maxmind_dir() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut candidates: Vec<PathBuf> = std::env::var_os("OUTPOST_MAXMIND_TESTDATA")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.extend(repo.ancestors().map(|a| a.join("shared/testdata/maxmind")));
    candidates.push(PathBuf::from("/work/shared/testdata/maxmind"));
    candidates
        .iter()
        .find(|d| d.join("GeoLite2-City-Test.mmdb").is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "MaxMind's test databases are missing (set OUTPOST_MAXMIND_TESTDATA); looked in {:?}",
                candidates
            )
        })
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
