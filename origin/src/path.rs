//! Safe path resolution: turning a request-target path into segments that
//! cannot leave the served tree, and mapping those onto the library root.
//!
//! Two layers, both required:
//!
//! 1. [`RequestPath::parse`] is lexical. The path must be in origin form
//!    (start with `/`); it is percent-decoded exactly once, split on `/`
//!    (empty segments from `//` or a trailing `/` are dropped), and every
//!    decoded segment is refused if it is `.` or `..`, contains `\`, `%`
//!    (what is left of double encoding, e.g. `%252e` → `%2e`) or any ASCII
//!    control character (NUL included), or if the decoded path is not UTF-8.
//! 2. [`resolve`] is physical. The segments are joined under the root, the
//!    result is canonicalized (following symlinks) and must still lie under
//!    the canonical root; a symlink that escapes is treated as missing.
//!    Only regular files are served: directories are missing too.

use std::io;
use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

/// Why a request path was refused (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("request target is not an absolute path")]
    NotOriginForm,
    #[error("decoded path is not UTF-8")]
    NotUtf8,
    #[error("path has a `.` or `..` segment")]
    DotSegment,
    #[error("path segment contains a backslash")]
    Backslash,
    #[error("path segment contains a control character")]
    Control,
    #[error("path segment contains `%` after decoding (double encoding)")]
    Percent,
}

/// A request path that passed the lexical checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    segments: Vec<String>,
    directory: bool,
}

impl RequestPath {
    /// Check and decode the path of a request target (without the query).
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if !raw.starts_with('/') {
            return Err(PathError::NotOriginForm);
        }
        let decoded = percent_decode_str(raw).decode_utf8().map_err(|_| PathError::NotUtf8)?;
        let mut segments = Vec::new();
        for seg in decoded.split('/') {
            if seg.is_empty() {
                continue;
            }
            if seg == "." || seg == ".." {
                return Err(PathError::DotSegment);
            }
            if seg.contains('\\') {
                return Err(PathError::Backslash);
            }
            if seg.chars().any(|c| c.is_ascii_control()) {
                return Err(PathError::Control);
            }
            if seg.contains('%') {
                return Err(PathError::Percent);
            }
            segments.push(seg.to_owned());
        }
        let directory = segments.is_empty() || decoded.ends_with('/');
        Ok(Self { segments, directory })
    }

    /// The decoded segments, none empty, `.` or `..`.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// True when the request names a directory (`/`, or a trailing `/`).
    /// Directories are never served.
    pub fn is_directory(&self) -> bool {
        self.directory
    }

    /// The last segment, when the path names a file.
    pub fn file_name(&self) -> Option<&str> {
        if self.directory {
            return None;
        }
        self.segments.last().map(String::as_str)
    }

    /// The decoded path with single slashes, e.g. `/synth/t0000/master.m3u8`
    /// (no trailing slash).
    pub fn normalized(&self) -> String {
        let mut s = String::new();
        for seg in &self.segments {
            s.push('/');
            s.push_str(seg);
        }
        if s.is_empty() {
            s.push('/');
        }
        s
    }

    /// The segments after `prefix`, if the path lies under it.
    pub fn strip_prefix(&self, prefix: &[String]) -> Option<&[String]> {
        self.segments.strip_prefix(prefix)
    }
}

/// What [`resolve`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A regular file inside the root, as a canonical path.
    File(PathBuf),
    /// Nothing servable: missing, a directory or other non-file, or a
    /// symlink leading out of the root.
    NotFound(Miss),
}

/// Why nothing was found (for logs; every case is a 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    Missing,
    NotAFile,
    OutsideRoot,
}

/// Map `path` under `canonical_root` (which must itself be canonical, see
/// [`canonical_root`]). Blocking: call from a blocking thread.
pub fn resolve(canonical_root: &Path, path: &RequestPath) -> Resolved {
    if path.is_directory() {
        return Resolved::NotFound(Miss::NotAFile);
    }
    let mut joined = canonical_root.to_path_buf();
    for seg in path.segments() {
        // Segments were checked by `parse`: no separators, no dot segments,
        // so `push` can only append one normal component each.
        joined.push(seg);
    }
    let canonical = match std::fs::canonicalize(&joined) {
        Ok(p) => p,
        Err(_) => return Resolved::NotFound(Miss::Missing),
    };
    if !canonical.starts_with(canonical_root) {
        return Resolved::NotFound(Miss::OutsideRoot);
    }
    match std::fs::metadata(&canonical) {
        Ok(m) if m.is_file() => Resolved::File(canonical),
        Ok(_) => Resolved::NotFound(Miss::NotAFile),
        Err(_) => Resolved::NotFound(Miss::Missing),
    }
}

/// Canonicalize a library root, which must be an existing directory.
pub fn canonical_root(root: &Path) -> io::Result<PathBuf> {
    let canonical = std::fs::canonicalize(root)?;
    if !std::fs::metadata(&canonical)?.is_dir() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a directory"));
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TempDir;
    use std::fs;

    fn segs(raw: &str) -> Vec<String> {
        RequestPath::parse(raw).unwrap().segments().to_vec()
    }

    #[test]
    fn plain_paths_decode_into_segments() {
        assert_eq!(segs("/a/b.m3u8"), ["a", "b.m3u8"]);
        assert_eq!(segs("/a%20b/c"), ["a b", "c"]);
        assert_eq!(segs("/caf%C3%A9"), ["café"]);
        // `+` is not a space in paths.
        assert_eq!(segs("/a+b"), ["a+b"]);
        // Names that merely contain dots are fine.
        assert_eq!(segs("/...").len(), 1);
        assert_eq!(segs("/a..b/.hidden/..x"), ["a..b", ".hidden", "..x"]);
    }

    #[test]
    fn empty_segments_collapse_safely() {
        assert_eq!(segs("//etc/passwd"), ["etc", "passwd"]);
        assert_eq!(segs("/a//b///c"), ["a", "b", "c"]);
        let p = RequestPath::parse("//").unwrap();
        assert!(p.segments().is_empty() && p.is_directory());
        assert_eq!(p.normalized(), "/");
        assert_eq!(RequestPath::parse("/a//b").unwrap().normalized(), "/a/b");
    }

    #[test]
    fn directories_are_flagged() {
        assert!(RequestPath::parse("/").unwrap().is_directory());
        assert!(RequestPath::parse("/a/").unwrap().is_directory());
        assert!(RequestPath::parse("/a%2f").unwrap().is_directory());
        assert_eq!(RequestPath::parse("/a/").unwrap().file_name(), None);
        assert!(!RequestPath::parse("/a/b").unwrap().is_directory());
        assert_eq!(RequestPath::parse("/a/b").unwrap().file_name(), Some("b"));
    }

    #[test]
    fn traversal_is_refused() {
        use PathError::*;
        let cases = [
            ("/..", DotSegment),
            ("/../etc/passwd", DotSegment),
            ("/a/../../etc/passwd", DotSegment),
            ("/a/..", DotSegment),
            ("/./a", DotSegment),
            ("/a/.", DotSegment),
            ("/%2e%2e/etc/passwd", DotSegment),
            ("/%2E%2E/etc/passwd", DotSegment),
            ("/.%2e/x", DotSegment),
            ("/%2e/x", DotSegment),
            ("/..%2fetc%2fpasswd", DotSegment),
            ("/a/..%2F..%2Fetc", DotSegment),
            ("/%2e%2e%2f%2e%2e%2fetc", DotSegment),
            ("/..\\..\\etc", Backslash),
            ("/a\\b", Backslash),
            ("/..%5cetc", Backslash),
            ("/a%5c..", Backslash),
            ("/%252e%252e%252fetc", Percent),
            ("/%252e%252e/etc", Percent),
            ("/a%25", Percent),
            ("/a%zz", Percent),
            ("/a%", Percent),
            ("/a%2", Percent),
            ("/a%00", Control),
            ("/a%00.m3u8", Control),
            ("/%00/x", Control),
            ("/a%0ab", Control),
            ("/a%0d%0aSet-Cookie:x", Control),
            ("/a%7f", Control),
            ("/%ff", NotUtf8),
            ("/%c0%ae%c0%ae/etc", NotUtf8),
            ("a/b", NotOriginForm),
            ("", NotOriginForm),
            ("*", NotOriginForm),
            ("http://h/x", NotOriginForm),
            ("../x", NotOriginForm),
            ("\\x", NotOriginForm),
        ];
        for (raw, want) in cases {
            assert_eq!(RequestPath::parse(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn prefix_stripping_is_by_segment() {
        let prefix = segs("/synth");
        let p = RequestPath::parse("/synth/t0000/master.m3u8").unwrap();
        assert_eq!(p.strip_prefix(&prefix).unwrap(), ["t0000", "master.m3u8"]);
        let p = RequestPath::parse("/synthetic/t0000").unwrap();
        assert!(p.strip_prefix(&prefix).is_none());
        let p = RequestPath::parse("//synth//t0000").unwrap();
        assert_eq!(p.strip_prefix(&prefix).unwrap(), ["t0000"]);
    }

    #[test]
    fn resolution_stays_inside_the_root() {
        use std::os::unix::fs::symlink;
        let tmp = TempDir::new("path");
        let root = tmp.0.join("root");
        fs::create_dir_all(root.join("title/sub")).unwrap();
        fs::write(root.join("title/a.m3u8"), "#EXTM3U\n").unwrap();
        fs::write(tmp.0.join("secret.txt"), "secret").unwrap();
        fs::create_dir_all(tmp.0.join("outside")).unwrap();
        fs::write(tmp.0.join("outside/x.m4s"), "x").unwrap();
        // A symlink inside the root pointing at a file inside it is fine ...
        symlink(root.join("title/a.m3u8"), root.join("title/latest.m3u8")).unwrap();
        // ... relative symlinks that escape are not, nor directory links.
        symlink("../../secret.txt", root.join("title/escape.txt")).unwrap();
        symlink(tmp.0.join("outside"), root.join("out")).unwrap();
        symlink("/etc/passwd", root.join("passwd")).unwrap();
        symlink("missing-target", root.join("dangling")).unwrap();

        let root = canonical_root(&root).unwrap();
        let r = |raw: &str| resolve(&root, &RequestPath::parse(raw).unwrap());

        assert_eq!(r("/title/a.m3u8"), Resolved::File(root.join("title/a.m3u8")));
        assert_eq!(r("//title//a.m3u8"), Resolved::File(root.join("title/a.m3u8")));
        assert_eq!(r("/title/latest.m3u8"), Resolved::File(root.join("title/a.m3u8")));
        assert_eq!(r("/title/escape.txt"), Resolved::NotFound(Miss::OutsideRoot));
        assert_eq!(r("/out/x.m4s"), Resolved::NotFound(Miss::OutsideRoot));
        assert_eq!(r("/passwd"), Resolved::NotFound(Miss::OutsideRoot));
        assert_eq!(r("/dangling"), Resolved::NotFound(Miss::Missing));
        assert_eq!(r("/title/nope.m4s"), Resolved::NotFound(Miss::Missing));
        assert_eq!(r("/title/a.m3u8/x"), Resolved::NotFound(Miss::Missing));
        assert_eq!(r("/title"), Resolved::NotFound(Miss::NotAFile));
        assert_eq!(r("/title/sub"), Resolved::NotFound(Miss::NotAFile));
        assert_eq!(r("/title/"), Resolved::NotFound(Miss::NotAFile));
        assert_eq!(r("/"), Resolved::NotFound(Miss::NotAFile));
    }

    #[test]
    fn root_must_be_a_directory() {
        let tmp = TempDir::new("root");
        fs::write(tmp.0.join("f"), "x").unwrap();
        assert!(canonical_root(&tmp.0.join("f")).is_err());
        assert!(canonical_root(&tmp.0.join("missing")).is_err());
        assert!(canonical_root(&tmp.0).is_ok());
    }
}
