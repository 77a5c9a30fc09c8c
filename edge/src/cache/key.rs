//! Cache keys: a normalized path plus the configured query parameters.
//!
//! Normalization makes equivalent request targets share one entry
//! (`/a/%62.m4s` and `/a/b.m4s`; `//a` and `/a`) and refuses targets that
//! try to leave the path hierarchy (`..`, encoded or not). The playback
//! token (`/t/<token>/…` or `?CAT=`) never reaches a key: callers strip it
//! before building one, and `CAT` is never a key parameter.

use std::fmt;

/// Why a request target cannot be a cache key. Always the client's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("request target must be an absolute path")]
    NotAbsolute,
    #[error("path contains a dot segment")]
    DotSegment,
    #[error("path contains a forbidden byte")]
    ForbiddenByte,
    #[error("path has a malformed percent-encoding")]
    BadEncoding,
    #[error("path is too long")]
    TooLong,
}

/// Longest path accepted, in bytes.
pub const MAX_PATH: usize = 4096;

/// A normalized cache key. Its string form is also the upstream
/// request target, so the edge never forwards an unnormalized path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

impl CacheKey {
    /// Build a key from a raw path and raw query, keeping only the query
    /// parameters named in `keep` (sorted, so their order does not matter).
    pub fn new(raw_path: &str, raw_query: Option<&str>, keep: &[String]) -> Result<Self, KeyError> {
        let mut key = normalize_path(raw_path)?;
        if let Some(q) = raw_query {
            let mut params: Vec<(&str, &str)> = q
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .filter(|(k, _)| keep.iter().any(|w| w == k) && !k.eq_ignore_ascii_case("cat"))
                .collect();
            params.sort();
            for (i, (k, v)) in params.iter().enumerate() {
                key.push(if i == 0 { '?' } else { '&' });
                key.push_str(k);
                if !v.is_empty() {
                    key.push('=');
                    key.push_str(v);
                }
            }
        }
        Ok(Self(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path part (without the query).
    pub fn path(&self) -> &str {
        self.0.split_once('?').map_or(&self.0, |(p, _)| p)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Normalize a path: decode percent-encoded unreserved characters, upper-case
/// the remaining escapes, collapse repeated slashes, and refuse dot segments
/// (plain, encoded or double-encoded), NUL, backslashes and control bytes.
pub fn normalize_path(raw: &str) -> Result<String, KeyError> {
    if !raw.starts_with('/') {
        return Err(KeyError::NotAbsolute);
    }
    if raw.len() > MAX_PATH {
        return Err(KeyError::TooLong);
    }
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (h, l) = match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => (h, l),
                _ => return Err(KeyError::BadEncoding),
            };
            let decoded = h << 4 | l;
            if decoded == 0 || decoded == b'\\' || decoded < 0x20 || decoded == 0x7f {
                return Err(KeyError::ForbiddenByte);
            }
            // An escape of '%' (double encoding) or '/' stays opaque but is
            // checked below so "%252e%252e" and "..%2f" cannot smuggle a dot segment.
            if is_unreserved(decoded) {
                out.push(decoded as char);
            } else {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[h as usize]));
                out.push(char::from(b"0123456789ABCDEF"[l as usize]));
            }
            i += 3;
            continue;
        }
        if b == b'\\' || b < 0x20 || b == 0x7f {
            return Err(KeyError::ForbiddenByte);
        }
        if b == b'/' && out.ends_with('/') {
            i += 1;
            continue;
        }
        if b >= 0x80 {
            // Raw UTF-8 becomes its percent-encoded form, so both spellings
            // share one key and the upstream target stays ASCII.
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[(b >> 4) as usize]));
            out.push(char::from(b"0123456789ABCDEF"[(b & 15) as usize]));
            i += 1;
            continue;
        }
        out.push(b as char);
        i += 1;
    }
    for seg in out.split('/') {
        if is_dot_segment(seg) {
            return Err(KeyError::DotSegment);
        }
    }
    Ok(out)
}

/// A segment that is `.`/`..` after any number of decodings, or that hides
/// an encoded slash or backslash next to dots.
fn is_dot_segment(seg: &str) -> bool {
    let mut s = seg.to_ascii_uppercase();
    // Undo up to three rounds of encoding of '%', '.', '/', '\'.
    for _ in 0..3 {
        s = s.replace("%25", "%").replace("%2E", ".");
    }
    if s == "." || s == ".." {
        return true;
    }
    s.split(['/', '\\'])
        .chain(s.split("%2F"))
        .chain(s.split("%5C"))
        .any(|p| p == "." || p == "..")
        && (s.contains("%2F") || s.contains("%5C") || s.contains('\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str) -> Result<String, KeyError> {
        CacheKey::new(p, None, &[]).map(|k| k.0)
    }

    #[test]
    fn decodes_unreserved_and_collapses_slashes() {
        assert_eq!(key("/a/%62.m4s").unwrap(), "/a/b.m4s");
        assert_eq!(key("//a///b.m4s").unwrap(), "/a/b.m4s");
        assert_eq!(key("/a%2fb").unwrap(), "/a%2Fb");
        assert_eq!(key("/a b").unwrap(), "/a b");
        assert_eq!(key("/vid\u{e9}/s.m4s").unwrap(), "/vid%C3%A9/s.m4s");
        assert_eq!(key("/vid%c3%a9/s.m4s").unwrap(), "/vid%C3%A9/s.m4s");
    }

    #[test]
    fn refuses_traversal_in_every_spelling() {
        for p in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/a/./b",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/x",
            "/.%2e/x",
            "/%252e%252e/x",
            "/%25252e%25252e/x",
            "/..%2f..%2fetc",
            "/..%255cetc",
            "/a/..",
        ] {
            assert_eq!(key(p), Err(KeyError::DotSegment), "{p}");
        }
        assert_eq!(key("/a\\..\\b"), Err(KeyError::ForbiddenByte));
        assert_eq!(key("/a%00b"), Err(KeyError::ForbiddenByte));
        assert_eq!(key("/a%5cb"), Err(KeyError::ForbiddenByte));
        assert_eq!(key("/..%5cetc"), Err(KeyError::ForbiddenByte));
        assert_eq!(key("/a%zz"), Err(KeyError::BadEncoding));
        assert_eq!(key("/a%4"), Err(KeyError::BadEncoding));
        assert_eq!(key("etc/passwd"), Err(KeyError::NotAbsolute));
        assert_eq!(key("*"), Err(KeyError::NotAbsolute));
        assert_eq!(key(&format!("/{}", "a".repeat(MAX_PATH))), Err(KeyError::TooLong));
    }

    #[test]
    fn dots_inside_names_are_fine() {
        assert_eq!(key("/t/..seg.m4s").unwrap(), "/t/..seg.m4s");
        assert_eq!(key("/t/a..b/c").unwrap(), "/t/a..b/c");
    }

    #[test]
    fn query_params_filtered_and_sorted() {
        let keep = vec!["v".to_string(), "a".to_string(), "CAT".to_string()];
        let k = CacheKey::new("/x.m3u8", Some("z=1&v=2&a=&CAT=secret&utm=3"), &keep).unwrap();
        assert_eq!(k.as_str(), "/x.m3u8?a&v=2");
        assert_eq!(k.path(), "/x.m3u8");
        let k2 = CacheKey::new("/x.m3u8", Some("v=2&a"), &keep).unwrap();
        assert_eq!(k, k2, "order of parameters does not matter");
        assert_eq!(CacheKey::new("/x", Some("v=1"), &[]).unwrap().as_str(), "/x");
    }
}
