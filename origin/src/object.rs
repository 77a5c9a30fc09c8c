//! An object ready to be served: its length, type, cache class, validators
//! and where its bytes come from (memory, a file, or the generator).

use std::time::SystemTime;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::catalog::{self, Catalog, Entry};
use crate::kind::{content_type, CacheClass, Kind};
use crate::path::RequestPath;
use outpost_proto::conditional::Validators;

/// Where the bytes of an object come from.
#[derive(Debug)]
pub enum Source {
    /// Held in memory (playlists).
    Memory(Bytes),
    /// An open library file, read from `offset` onwards.
    File(tokio::fs::File),
    /// Synthetic bytes with this seed (see [`catalog::fill`]).
    Synthetic { seed: u64 },
}

/// One servable representation.
#[derive(Debug)]
pub struct Object {
    pub len: u64,
    pub content_type: &'static str,
    pub cache_class: CacheClass,
    pub validators: Validators,
    pub source: Source,
}

/// A strong entity tag from the hash of `parts`: 16 hex digits in quotes.
pub fn etag(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefix every part so boundaries cannot shift.
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    format!("\"{}\"", hex::encode(&h.finalize()[..8]))
}

/// The entity tag of a file from its size and modification time.
pub fn file_etag(len: u64, modified: SystemTime) -> String {
    let (secs, nanos) = match modified.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (d.as_secs(), d.subsec_nanos()),
        Err(_) => (0, 0),
    };
    etag(&[b"file", &len.to_le_bytes(), &secs.to_le_bytes(), &nanos.to_le_bytes()])
}

/// Look a normalized path up in the synthetic catalog. `rest` are the
/// segments after the prefix; `started` is the catalog's `Last-Modified`.
pub fn synthetic(catalog: &Catalog, path: &RequestPath, rest: &[String], started: SystemTime) -> Option<Object> {
    let name = path.file_name()?;
    let entry = catalog.lookup(rest)?;
    let normalized = path.normalized();
    let kind = Kind::of(name);
    let content_type = content_type(name);
    Some(match entry {
        Entry::Playlist(body) => Object {
            len: body.len() as u64,
            content_type,
            cache_class: kind.cache_class(Some(&body)),
            validators: Validators::new(etag(&[b"synthetic", normalized.as_bytes(), &body]), started),
            source: Source::Memory(body),
        },
        Entry::Generated { len } => Object {
            len,
            content_type,
            cache_class: kind.cache_class(None),
            validators: Validators::new(
                etag(&[b"synthetic", normalized.as_bytes(), &len.to_le_bytes()]),
                started,
            ),
            source: Source::Synthetic {
                seed: catalog::seed(&normalized),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SyntheticConfig;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn etags_are_strong_and_distinct() {
        let a = etag(&[b"ab", b"c"]);
        assert!(a.starts_with('"') && a.ends_with('"') && a.len() == 18, "{a}");
        assert_ne!(a, etag(&[b"a", b"bc"]));
        assert_eq!(a, etag(&[b"ab", b"c"]));
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(file_etag(10, t), file_etag(10, t));
        assert_ne!(file_etag(10, t), file_etag(11, t));
        assert_ne!(file_etag(10, t), file_etag(10, t + Duration::from_nanos(1)));
    }

    #[test]
    fn synthetic_objects() {
        let catalog = Catalog::new(&SyntheticConfig {
            titles: 2,
            segments: 3,
            ..SyntheticConfig::default()
        });
        let started = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let get = |raw: &str| {
            let p = RequestPath::parse(raw).unwrap();
            let rest = p.strip_prefix(catalog.prefix()).unwrap().to_vec();
            synthetic(&catalog, &p, &rest, started)
        };
        let seg = get("/synth/t0001/r0/seg00002.m4s").unwrap();
        assert_eq!(seg.len, 400_000);
        assert_eq!(seg.content_type, "video/iso.segment");
        assert_eq!(seg.cache_class, CacheClass::Segment);
        assert!(
            matches!(seg.source, Source::Synthetic { seed } if seed == catalog::seed("/synth/t0001/r0/seg00002.m4s"))
        );
        // `//` collapses to the same object and the same validators.
        let again = get("/synth//t0001/r0/seg00002.m4s").unwrap();
        assert_eq!(again.validators, seg.validators);
        assert_ne!(
            get("/synth/t0000/r0/seg00002.m4s").unwrap().validators.etag,
            seg.validators.etag
        );

        let init = get("/synth/t0001/r0/init.mp4").unwrap();
        assert_eq!(
            (init.len, init.content_type, init.cache_class),
            (1024, "video/mp4", CacheClass::Segment)
        );

        let media = get("/synth/t0001/r0/index.m3u8").unwrap();
        assert_eq!(media.content_type, "application/vnd.apple.mpegurl");
        assert_eq!(media.cache_class, CacheClass::VodPlaylist);
        let master = get("/synth/t0001/master.m3u8").unwrap();
        assert_eq!(master.cache_class, CacheClass::VodPlaylist);
        assert_eq!(master.validators.last_modified, started);

        assert!(get("/synth/t0002/master.m3u8").is_none());
        assert!(get("/synth/t0001/master.m3u8/").is_none());
    }
}
