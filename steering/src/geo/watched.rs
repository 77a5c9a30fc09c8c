//! A file loaded at start-up and swapped for its new version when it
//! changes on disk (the City and ASN databases, the prefix file).
//!
//! A change is seen through the file's identity and metadata (device,
//! inode, size, modification and change times), checked when asked, not
//! by the clock. New contents are read whole, checked by the caller's
//! loader, and only then swapped in with one atomic pointer store: a
//! lookup sees the old version or the new one, never a half state and
//! never nothing. A read during which the file changed (an in-place
//! overwrite still being written) is thrown away and retried on the next
//! check; contents that fail the loader are refused with a warning and the
//! previous version stays in use.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};

use super::{GeoError, ReloadOutcome};

/// What the filesystem says about a file's current contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Fingerprint {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// The last state of the path a check looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    File(Fingerprint),
    Unreadable(io::ErrorKind),
}

/// One read of a file.
enum Contents {
    /// Read whole while its metadata did not change.
    Settled(Vec<u8>, Fingerprint),
    /// The file changed while it was read.
    Changing,
    /// The metadata matches what was seen last: nothing to read.
    Unchanged,
}

/// Open `path` and read it unless its fingerprint equals `seen`.
fn read(path: &Path, seen: Option<Seen>) -> io::Result<Contents> {
    let mut file = File::open(path)?;
    let before = Fingerprint::of(&file.metadata()?);
    if seen == Some(Seen::File(before)) {
        return Ok(Contents::Unchanged);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(before.len).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    let after = Fingerprint::of(&file.metadata()?);
    if before != after || bytes.len() as u64 != after.len {
        return Ok(Contents::Changing);
    }
    Ok(Contents::Settled(bytes, before))
}

/// How many reads [`Watched::open`] tries to get one that is not changing.
const OPEN_ATTEMPTS: usize = 3;

/// A file's current contents, loaded by `load`.
pub(crate) struct Watched<T> {
    key: &'static str,
    path: PathBuf,
    current: ArcSwap<T>,
    /// Also serializes checks of this file.
    seen: Mutex<Option<Seen>>,
}

impl<T> Watched<T> {
    /// Load the file at start-up; any failure is an error naming `key`
    /// (the config key) and the file.
    pub fn open(
        key: &'static str,
        path: &Path,
        load: impl Fn(&Path, Vec<u8>) -> Result<T, GeoError>,
    ) -> Result<Self, GeoError> {
        let read_error = |source| GeoError::Read {
            key,
            path: path.to_owned(),
            source,
        };
        let mut attempt = 0;
        let (bytes, fingerprint) = loop {
            attempt += 1;
            match read(path, None).map_err(read_error)? {
                Contents::Settled(bytes, fp) => break (bytes, Some(fp)),
                // Use what was read; the next check reads it again.
                Contents::Changing | Contents::Unchanged if attempt >= OPEN_ATTEMPTS => {
                    break (std::fs::read(path).map_err(read_error)?, None)
                }
                Contents::Changing | Contents::Unchanged => {}
            }
        };
        let value = load(path, bytes)?;
        Ok(Self {
            key,
            path: path.to_owned(),
            current: ArcSwap::from_pointee(value),
            seen: Mutex::new(fingerprint.map(Seen::File)),
        })
    }

    /// The contents in use now.
    pub fn current(&self) -> Guard<Arc<T>> {
        self.current.load()
    }

    /// Swap in the file's new contents if it changed since the last check;
    /// `None` when there was nothing (yet) to do.
    pub fn reload_if_changed(&self, load: impl Fn(&Path, Vec<u8>) -> Result<T, GeoError>) -> Option<ReloadOutcome> {
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (bytes, fingerprint) = match read(&self.path, *seen) {
            Ok(Contents::Unchanged) => return None,
            Ok(Contents::Changing) => {
                tracing::debug!(file = %self.path.display(), "{} is being written; checking again later", self.key);
                return None;
            }
            Ok(Contents::Settled(bytes, fp)) => (bytes, fp),
            Err(e) => {
                let now = Seen::Unreadable(e.kind());
                if *seen == Some(now) {
                    return None;
                }
                *seen = Some(now);
                return Some(self.refused(GeoError::Read {
                    key: self.key,
                    path: self.path.clone(),
                    source: e,
                }));
            }
        };
        *seen = Some(Seen::File(fingerprint));
        match load(&self.path, bytes) {
            Ok(value) => {
                self.current.store(Arc::new(value));
                tracing::info!(file = %self.path.display(), "{}: loaded the changed file", self.key);
                Some(ReloadOutcome {
                    key: self.key,
                    path: self.path.clone(),
                    result: Ok(()),
                })
            }
            Err(e) => Some(self.refused(e)),
        }
    }

    fn refused(&self, e: GeoError) -> ReloadOutcome {
        tracing::warn!(file = %self.path.display(), "refused the changed file, the previous version stays in use: {e}");
        ReloadOutcome {
            key: self.key,
            path: self.path.clone(),
            result: Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::testdata::TempDir;

    /// A "loader" that accepts text starting with "ok".
    fn load(path: &Path, bytes: Vec<u8>) -> Result<String, GeoError> {
        let s = String::from_utf8(bytes).unwrap_or_default();
        if s.starts_with("ok") {
            Ok(s)
        } else {
            Err(GeoError::Corrupt {
                key: "test",
                path: path.to_owned(),
                reason: format!("not ok: {s:?}"),
            })
        }
    }

    #[test]
    fn open_fails_on_missing_and_refused_files() {
        let dir = TempDir::new();
        let path = dir.path().join("f");
        let e = Watched::open("test", &path, load).err().unwrap();
        assert!(matches!(e, GeoError::Read { .. }), "{e}");
        std::fs::write(&path, "bad").unwrap();
        let e = Watched::open("test", &path, load).err().unwrap();
        assert!(matches!(e, GeoError::Corrupt { .. }), "{e}");
    }

    #[test]
    fn reloads_only_changes_and_keeps_the_last_good_version() {
        let dir = TempDir::new();
        let path = dir.path().join("f");
        std::fs::write(&path, "ok 1").unwrap();
        let w = Watched::open("test", &path, load).unwrap();
        assert_eq!(**w.current(), "ok 1");
        assert!(w.reload_if_changed(load).is_none(), "unchanged file reloaded");

        // Atomic replacement (new inode).
        dir.replace("f", b"ok two");
        let o = w.reload_if_changed(load).expect("rename not seen");
        assert!(o.result.is_ok() && o.key == "test" && o.path == path);
        assert_eq!(**w.current(), "ok two");
        assert!(w.reload_if_changed(load).is_none());

        // Refused: previous stays, and it is reported once, not every check.
        dir.replace("f", b"garbage");
        let o = w.reload_if_changed(load).expect("garbage not seen");
        assert!(matches!(o.result, Err(GeoError::Corrupt { .. })));
        assert_eq!(**w.current(), "ok two");
        assert!(w.reload_if_changed(load).is_none());

        // In-place overwrite (same inode, other size).
        std::fs::write(&path, "ok three!").unwrap();
        assert!(w.reload_if_changed(load).expect("overwrite not seen").result.is_ok());
        assert_eq!(**w.current(), "ok three!");

        // Removed: reported once, previous stays; back: loaded.
        std::fs::remove_file(&path).unwrap();
        let o = w.reload_if_changed(load).expect("removal not seen");
        assert!(matches!(o.result, Err(GeoError::Read { .. })));
        assert!(w.reload_if_changed(load).is_none());
        assert_eq!(**w.current(), "ok three!");
        std::fs::write(&path, "ok 4").unwrap();
        assert!(w.reload_if_changed(load).expect("re-creation not seen").result.is_ok());
        assert_eq!(**w.current(), "ok 4");
    }
}
