//! The library: a directory of files served as-is, through [`crate::path`]'s
//! checks. Media is streamed from disk; playlists (small, and classified by
//! their contents) are read into memory.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::StatusCode;

use crate::kind::{content_type, Kind};
use crate::object::{file_etag, Object, Source};
use crate::path::{self, RequestPath, Resolved};
use outpost_proto::conditional::Validators;

/// Playlists up to this size are read and classified; larger ones are
/// streamed and count as live (the short cache lifetime).
pub const MAX_PLAYLIST_BYTES: u64 = 8 << 20;

/// A library root, canonicalized at start.
#[derive(Debug, Clone)]
pub struct Library {
    root: PathBuf,
}

impl Library {
    /// Open a library at `root`, which must be an existing directory.
    pub fn open(root: &Path) -> io::Result<Self> {
        Ok(Self {
            root: path::canonical_root(root)?,
        })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Find and open the file for `path`. Errors are the status to answer
    /// with: 404 for anything not servable, 500 if the blocking task died.
    pub async fn lookup(&self, path: &RequestPath) -> Result<Object, StatusCode> {
        let root = self.root.clone();
        let path = path.clone();
        match tokio::task::spawn_blocking(move || lookup_blocking(&root, &path)).await {
            Ok(Some(object)) => Ok(object),
            Ok(None) => Err(StatusCode::NOT_FOUND),
            Err(e) => {
                tracing::error!(error = %e, "library lookup task failed");
                Err(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

fn lookup_blocking(root: &Path, path: &RequestPath) -> Option<Object> {
    let name = path.file_name()?;
    let canonical = match path::resolve(root, path) {
        Resolved::File(p) => p,
        Resolved::NotFound(miss) => {
            tracing::debug!(path = %path.normalized(), ?miss, "library miss");
            return None;
        }
    };
    let file = std::fs::File::open(&canonical).ok()?;
    // Metadata of the open file, so what is checked is what is served.
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let modified = meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
    let kind = Kind::of(name);
    let validators = Validators::new(file_etag(meta.len(), modified), modified);
    let content_type = content_type(name);
    if kind.is_playlist() && meta.len() <= MAX_PLAYLIST_BYTES {
        let mut body = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_PLAYLIST_BYTES).read_to_end(&mut body).ok()?;
        let cache_class = kind.cache_class(Some(&body));
        return Some(Object {
            len: body.len() as u64,
            content_type,
            cache_class,
            validators,
            source: Source::Memory(Bytes::from(body)),
        });
    }
    Some(Object {
        len: meta.len(),
        content_type,
        cache_class: kind.cache_class(None),
        validators,
        source: Source::File(tokio::fs::File::from_std(file)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::CacheClass;
    use std::fs;

    #[tokio::test]
    async fn lookups() {
        let tmp = crate::tests::TempDir::new("file");
        let dir = &tmp.0;
        fs::create_dir_all(dir.join("t/sub")).unwrap();
        fs::write(dir.join("t/live.m3u8"), "#EXTM3U\n#EXTINF:4,\ns.ts\n").unwrap();
        fs::write(dir.join("t/vod.m3u8"), "#EXTM3U\n#EXTINF:4,\ns.ts\n#EXT-X-ENDLIST\n").unwrap();
        fs::write(dir.join("t/s.ts"), vec![7u8; 1000]).unwrap();
        let lib = Library::open(dir).unwrap();
        let get = |raw: &str| {
            let p = RequestPath::parse(raw).unwrap();
            let lib = lib.clone();
            async move { lib.lookup(&p).await }
        };
        let live = get("/t/live.m3u8").await.unwrap();
        assert_eq!(live.cache_class, CacheClass::LivePlaylist);
        assert!(matches!(live.source, Source::Memory(_)));
        let vod = get("/t/vod.m3u8").await.unwrap();
        assert_eq!(vod.cache_class, CacheClass::VodPlaylist);
        let seg = get("/t/s.ts").await.unwrap();
        assert_eq!(
            (seg.len, seg.content_type, seg.cache_class),
            (1000, "video/mp2t", CacheClass::Segment)
        );
        assert!(matches!(seg.source, Source::File(_)));
        assert_ne!(seg.validators.etag, vod.validators.etag);
        assert_eq!(get("/t/sub").await.unwrap_err(), StatusCode::NOT_FOUND);
        assert_eq!(get("/t/").await.unwrap_err(), StatusCode::NOT_FOUND);
        assert_eq!(get("/t/nope").await.unwrap_err(), StatusCode::NOT_FOUND);
        assert!(Library::open(&dir.join("missing")).is_err());
    }
}
