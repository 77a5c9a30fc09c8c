//! Kinds of files: `Content-Type` by extension, and which `Cache-Control`
//! class a file falls in (segments, finished playlists, live playlists,
//! everything else). Playlists are classified by their contents.

use http::HeaderValue;

use crate::config::CacheControlConfig;

/// What a file name says about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Media or init segment: `.m4s .ts .mp4 .m4a .aac`.
    Segment,
    /// HLS playlist: `.m3u8`.
    HlsPlaylist,
    /// DASH manifest: `.mpd`.
    DashManifest,
    /// Anything else.
    Other,
}

/// Which `Cache-Control` value a response gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheClass {
    Segment,
    VodPlaylist,
    LivePlaylist,
    Other,
}

fn extension(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext,
        _ => "",
    }
}

impl Kind {
    /// The kind of a file from its name (case-insensitive extension).
    pub fn of(name: &str) -> Kind {
        let ext = extension(name).to_ascii_lowercase();
        match ext.as_str() {
            "m4s" | "ts" | "mp4" | "m4a" | "aac" => Kind::Segment,
            "m3u8" => Kind::HlsPlaylist,
            "mpd" => Kind::DashManifest,
            _ => Kind::Other,
        }
    }

    /// True for playlists, whose cache class depends on their contents.
    pub fn is_playlist(self) -> bool {
        matches!(self, Kind::HlsPlaylist | Kind::DashManifest)
    }

    /// The cache class of a file of this kind; playlists need their body
    /// (`None` for a playlist too large to inspect counts as live, the
    /// conservative choice).
    pub fn cache_class(self, body: Option<&[u8]>) -> CacheClass {
        match (self, body) {
            (Kind::Segment, _) => CacheClass::Segment,
            (Kind::Other, _) => CacheClass::Other,
            (Kind::HlsPlaylist, Some(b)) if hls_is_finished(b) => CacheClass::VodPlaylist,
            (Kind::DashManifest, Some(b)) if !dash_is_dynamic(b) => CacheClass::VodPlaylist,
            (Kind::HlsPlaylist | Kind::DashManifest, _) => CacheClass::LivePlaylist,
        }
    }
}

/// `Content-Type` for a file name.
pub fn content_type(name: &str) -> &'static str {
    match extension(name).to_ascii_lowercase().as_str() {
        "m3u8" => "application/vnd.apple.mpegurl",
        "mpd" => "application/dash+xml",
        "m4s" => "video/iso.segment",
        "mp4" => "video/mp4",
        "ts" => "video/mp2t",
        "m4a" => "audio/mp4",
        "aac" => "audio/aac",
        "vtt" => "text/vtt",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// An HLS playlist is finished (VOD) when it carries `#EXT-X-ENDLIST`. A
/// multivariant playlist (`#EXT-X-STREAM-INF`) never does, but it does not
/// change while a title plays, so it is cached like a VOD playlist.
pub fn hls_is_finished(body: &[u8]) -> bool {
    body.split(|&b| b == b'\n').any(|line| {
        let line = line.trim_ascii();
        line.starts_with(b"#EXT-X-ENDLIST") || line.starts_with(b"#EXT-X-STREAM-INF")
    })
}

/// A DASH MPD is dynamic (live) when its `MPD` element has
/// `type="dynamic"`; the default `type` is static.
pub fn dash_is_dynamic(body: &[u8]) -> bool {
    // Find the MPD start tag (possibly namespace-prefixed, e.g. `<dash:MPD`).
    let mut rest = body;
    let tag = loop {
        let Some(lt) = rest.iter().position(|&b| b == b'<') else {
            return false;
        };
        rest = &rest[lt + 1..];
        let name_end = rest
            .iter()
            .position(|&b| b.is_ascii_whitespace() || b == b'>' || b == b'/')
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        let local = name.rsplit(|&b| b == b':').next().unwrap_or(name);
        if local == b"MPD" {
            let end = rest.iter().position(|&b| b == b'>').unwrap_or(rest.len());
            break &rest[name_end..end];
        }
    };
    // Scan its attributes for `type`.
    let mut attrs = tag;
    loop {
        attrs = attrs.trim_ascii_start();
        let Some(eq) = attrs.iter().position(|&b| b == b'=') else {
            return false;
        };
        let name = attrs[..eq].trim_ascii();
        let after = attrs[eq + 1..].trim_ascii_start();
        let Some(&quote) = after.first().filter(|&&q| q == b'"' || q == b'\'') else {
            return false;
        };
        let Some(close) = after[1..].iter().position(|&b| b == quote) else {
            return false;
        };
        let value = &after[1..1 + close];
        if name == b"type" {
            return value.trim_ascii() == b"dynamic";
        }
        attrs = &after[close + 2..];
    }
}

/// The configured `Cache-Control` values, checked once at start.
#[derive(Debug, Clone)]
pub struct CachePolicy {
    segment: HeaderValue,
    vod_playlist: HeaderValue,
    live_playlist: HeaderValue,
    other: HeaderValue,
}

impl CachePolicy {
    /// Fails with the offending key when a value is not a header value
    /// (config validation already refuses those).
    pub fn new(cfg: &CacheControlConfig) -> Result<Self, &'static str> {
        let hv = |key: &'static str, s: &str| HeaderValue::from_str(s).map_err(|_| key);
        Ok(Self {
            segment: hv("cache_control.segment", &cfg.segment)?,
            vod_playlist: hv("cache_control.vod_playlist", &cfg.vod_playlist)?,
            live_playlist: hv("cache_control.live_playlist", &cfg.live_playlist)?,
            other: hv("cache_control.other", &cfg.other)?,
        })
    }

    pub fn value(&self, class: CacheClass) -> &HeaderValue {
        match class {
            CacheClass::Segment => &self.segment,
            CacheClass::VodPlaylist => &self.vod_playlist,
            CacheClass::LivePlaylist => &self.live_playlist,
            CacheClass::Other => &self.other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let cases = [
            ("a.m3u8", "application/vnd.apple.mpegurl"),
            ("A.M3U8", "application/vnd.apple.mpegurl"),
            ("manifest.mpd", "application/dash+xml"),
            ("seg1.m4s", "video/iso.segment"),
            ("init.mp4", "video/mp4"),
            ("s.ts", "video/mp2t"),
            ("a.m4a", "audio/mp4"),
            ("a.aac", "audio/aac"),
            ("sub.vtt", "text/vtt"),
            ("x.json", "application/json"),
            ("x.bin", "application/octet-stream"),
            ("noext", "application/octet-stream"),
            (".m3u8", "application/octet-stream"),
            ("x.tar.ts", "video/mp2t"),
            ("x.", "application/octet-stream"),
        ];
        for (name, want) in cases {
            assert_eq!(content_type(name), want, "{name}");
        }
    }

    #[test]
    fn kinds() {
        for seg in ["a.m4s", "a.ts", "init.mp4", "a.m4a", "a.aac", "A.MP4"] {
            assert_eq!(Kind::of(seg), Kind::Segment, "{seg}");
        }
        assert_eq!(Kind::of("x.m3u8"), Kind::HlsPlaylist);
        assert_eq!(Kind::of("x.mpd"), Kind::DashManifest);
        for other in ["x.vtt", "x.json", "x", "x.m3u", "m4s"] {
            assert_eq!(Kind::of(other), Kind::Other, "{other}");
        }
    }

    #[test]
    fn hls_classes() {
        let vod = b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.000,\nseg0.m4s\n#EXT-X-ENDLIST\n";
        let vod_crlf = b"#EXTM3U\r\n#EXTINF:4.0,\r\nseg0.m4s\r\n#EXT-X-ENDLIST\r\n";
        let live = b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:4.000,\nseg7.m4s\n";
        let master = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nr0/index.m3u8\n";
        let tricky = b"#EXTM3U\n#EXTINF:4.0,\nnot-#EXT-X-ENDLIST.m4s\n";
        assert_eq!(Kind::HlsPlaylist.cache_class(Some(vod)), CacheClass::VodPlaylist);
        assert_eq!(Kind::HlsPlaylist.cache_class(Some(vod_crlf)), CacheClass::VodPlaylist);
        assert_eq!(Kind::HlsPlaylist.cache_class(Some(live)), CacheClass::LivePlaylist);
        assert_eq!(Kind::HlsPlaylist.cache_class(Some(master)), CacheClass::VodPlaylist);
        assert_eq!(Kind::HlsPlaylist.cache_class(Some(tricky)), CacheClass::LivePlaylist);
        assert_eq!(Kind::HlsPlaylist.cache_class(None), CacheClass::LivePlaylist);
    }

    #[test]
    fn dash_classes() {
        let stat = br#"<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT10M"></MPD>"#;
        let dynamic = br#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"
     profiles="urn:mpeg:dash:profile:isoff-live:2011"
     type = 'dynamic' minimumUpdatePeriod="PT2S">
  <Period/></MPD>"#;
        let untyped = br#"<MPD mediaPresentationDuration="PT1M"><Period/></MPD>"#;
        let prefixed = br#"<dash:MPD xmlns:dash="urn:mpeg:dash:schema:mpd:2011" type="dynamic"/>"#;
        let decoy =
            br#"<!-- type="dynamic" --><MPD xmlns="x" subtype="dynamic" type="static"><Period type="dynamic"/></MPD>"#;
        let broken = br#"<MPD type="dyn"#;
        assert_eq!(Kind::DashManifest.cache_class(Some(stat)), CacheClass::VodPlaylist);
        assert_eq!(Kind::DashManifest.cache_class(Some(dynamic)), CacheClass::LivePlaylist);
        assert_eq!(Kind::DashManifest.cache_class(Some(untyped)), CacheClass::VodPlaylist);
        assert_eq!(Kind::DashManifest.cache_class(Some(prefixed)), CacheClass::LivePlaylist);
        assert_eq!(Kind::DashManifest.cache_class(Some(decoy)), CacheClass::VodPlaylist);
        assert_eq!(Kind::DashManifest.cache_class(Some(broken)), CacheClass::VodPlaylist);
        assert_eq!(Kind::DashManifest.cache_class(Some(b"")), CacheClass::VodPlaylist);
        assert_eq!(Kind::DashManifest.cache_class(None), CacheClass::LivePlaylist);
    }

    #[test]
    fn other_classes() {
        assert_eq!(Kind::Segment.cache_class(None), CacheClass::Segment);
        assert_eq!(Kind::Other.cache_class(Some(b"#EXT-X-ENDLIST")), CacheClass::Other);
    }

    #[test]
    fn policy_maps_classes() {
        let p = CachePolicy::new(&CacheControlConfig::default()).unwrap();
        assert_eq!(p.value(CacheClass::Segment), "public, max-age=31536000, immutable");
        assert_eq!(p.value(CacheClass::VodPlaylist), "public, max-age=3600");
        assert_eq!(p.value(CacheClass::LivePlaylist), "public, max-age=2");
        assert_eq!(p.value(CacheClass::Other), "public, max-age=300");
        let bad = CacheControlConfig {
            other: "a\nb".into(),
            ..CacheControlConfig::default()
        };
        assert_eq!(CachePolicy::new(&bad).unwrap_err(), "cache_control.other");
    }
}
