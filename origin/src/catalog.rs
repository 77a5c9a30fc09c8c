//! The synthetic catalog: HLS titles generated from the config, whose
//! segment bytes are a pure function of the URL path and the byte offset,
//! so any range of any segment can be produced without the rest of it.
//!
//! Layout under the prefix (default `/synth`), for title `t` in
//! `0..titles`, rendition `i` in `0..renditions.len()`, segment `n` in
//! `0..segments`:
//!
//! | path | content |
//! |---|---|
//! | `/synth/t0000/master.m3u8` | multivariant playlist, one `#EXT-X-STREAM-INF` per rendition → `r{i}/index.m3u8` |
//! | `/synth/t0000/r0/index.m3u8` | VOD media playlist with `#EXT-X-MAP:URI="init.mp4"` and `seg{n:05}.m4s` entries |
//! | `/synth/t0000/r0/init.mp4` | [`INIT_SIZE`] bytes |
//! | `/synth/t0000/r0/seg00000.m4s` | `bitrate * segment_seconds / 8` bytes |
//!
//! Names are canonical: `t0001` exists, `t1` and `t00001` do not. Titles
//! below 10,000 have four digits (`t0042`), larger ones as many as needed.
//! Init and media segments are pseudo-random bytes, not decodable video.

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

use crate::config::SyntheticConfig;

/// Size of every synthetic `init.mp4`.
pub const INIT_SIZE: u64 = 1024;

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of the object at `path`: the first 8 bytes of SHA-256(path),
/// little-endian.
pub fn seed(path: &str) -> u64 {
    let digest = Sha256::digest(path.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// Fill `out` with the synthetic bytes at `offset..offset + out.len()` of the
/// object with `seed`.
pub fn fill(seed: u64, offset: u64, out: &mut [u8]) {
    let mut pos = offset;
    let mut i = 0;
    while i < out.len() {
        let index = pos / 8;
        let word = mix(seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GAMMA))).to_le_bytes();
        let within = (pos % 8) as usize;
        let n = (8 - within).min(out.len() - i);
        out[i..i + n].copy_from_slice(&word[within..within + n]);
        i += n;
        pos += n as u64;
    }
}

/// The bytes at `offset..offset + len` of the synthetic object served at
/// URL path `path` (as normalized by the origin: decoded, single slashes,
/// e.g. `/synth/t0000/r0/seg00000.m4s`).
///
/// Byte `o` of an object is byte `o % 8` (little-endian) of output number
/// `o / 8` of SplitMix64 seeded with [`seed`]`(path)`. The function is
/// defined for every offset; the origin serves `0..size` of each object.
pub fn synthetic_bytes(path: &str, offset: u64, len: usize) -> Bytes {
    let mut buf = BytesMut::zeroed(len);
    fill(seed(path), offset, &mut buf);
    buf.freeze()
}

/// A display resolution for a bitrate, for `RESOLUTION=` in the
/// multivariant playlist.
pub fn resolution(bitrate: u64) -> &'static str {
    match bitrate {
        0..=1_000_000 => "640x360",
        1_000_001..=2_000_000 => "960x540",
        2_000_001..=4_000_000 => "1280x720",
        4_000_001..=8_000_000 => "1920x1080",
        _ => "3840x2160",
    }
}

/// Name of title `t`: `t0000`.
pub fn title_name(t: u32) -> String {
    format!("t{t:04}")
}

/// Name of segment `n`: `seg00000.m4s`.
pub fn segment_name(n: u32) -> String {
    format!("seg{n:05}.m4s")
}

/// What a catalog path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A playlist (multivariant or media), generated once at start.
    Playlist(Bytes),
    /// Pseudo-random bytes of this length (init or media segment).
    Generated { len: u64 },
}

/// The catalog built from a [`SyntheticConfig`]. Playlists use relative
/// URIs, so they are the same for every title and are built once.
#[derive(Debug, Clone)]
pub struct Catalog {
    prefix: Vec<String>,
    titles: u32,
    renditions: Vec<u64>,
    segment_seconds: u32,
    segments: u32,
    master: Bytes,
    media: Vec<Bytes>,
}

impl Catalog {
    /// Build the catalog. The config is assumed validated (prefix in
    /// canonical form).
    pub fn new(cfg: &SyntheticConfig) -> Self {
        let prefix = cfg
            .prefix
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let master = master_playlist(&cfg.renditions);
        let media = cfg
            .renditions
            .iter()
            .map(|_| media_playlist(cfg.segment_seconds, cfg.segments))
            .collect();
        Self {
            prefix,
            titles: cfg.titles,
            renditions: cfg.renditions.clone(),
            segment_seconds: cfg.segment_seconds,
            segments: cfg.segments,
            master,
            media,
        }
    }

    /// The prefix as path segments.
    pub fn prefix(&self) -> &[String] {
        &self.prefix
    }

    /// Size of every media segment of rendition `r`.
    pub fn segment_size(&self, r: usize) -> Option<u64> {
        self.renditions
            .get(r)
            .map(|&b| b.saturating_mul(u64::from(self.segment_seconds)) / 8)
    }

    /// Look up the segments after the prefix (`["t0000", "master.m3u8"]`).
    pub fn lookup(&self, rest: &[String]) -> Option<Entry> {
        match rest {
            [title, file] => {
                self.title(title)?;
                (file == "master.m3u8").then(|| Entry::Playlist(self.master.clone()))
            }
            [title, rendition, file] => {
                self.title(title)?;
                let r = usize::try_from(index(rendition, "r", 0)?).ok()?;
                let size = self.segment_size(r)?;
                if file == "index.m3u8" {
                    return self.media.get(r).map(|m| Entry::Playlist(m.clone()));
                }
                if file == "init.mp4" {
                    return Some(Entry::Generated { len: INIT_SIZE });
                }
                let n = index(file.strip_suffix(".m4s")?, "seg", 5)?;
                (n < self.segments).then_some(Entry::Generated { len: size })
            }
            _ => None,
        }
    }

    fn title(&self, name: &str) -> Option<u32> {
        index(name, "t", 4).filter(|&t| t < self.titles)
    }
}

/// Parse `{letter}{digits}` written exactly as `format!("{letter}{n:0width$}")`.
fn index(name: &str, letter: &str, width: usize) -> Option<u32> {
    let digits = name.strip_prefix(letter)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = digits.parse().ok()?;
    (format!("{n:0width$}") == digits).then_some(n)
}

fn master_playlist(renditions: &[u64]) -> Bytes {
    let mut s = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (i, &bitrate) in renditions.iter().enumerate() {
        s.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={bitrate},AVERAGE-BANDWIDTH={bitrate},RESOLUTION={}\nr{i}/index.m3u8\n",
            resolution(bitrate)
        ));
    }
    Bytes::from(s)
}

fn media_playlist(segment_seconds: u32, segments: u32) -> Bytes {
    let mut s = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{segment_seconds}\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n"
    );
    for n in 0..segments {
        s.push_str(&format!("#EXTINF:{segment_seconds}.000,\n{}\n", segment_name(n)));
    }
    s.push_str("#EXT-X-ENDLIST\n");
    Bytes::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SyntheticConfig {
        SyntheticConfig {
            titles: 3,
            segments: 5,
            ..SyntheticConfig::default()
        }
    }

    fn rest(path: &str) -> Vec<String> {
        path.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }

    #[test]
    fn bytes_are_deterministic_and_offset_addressable() {
        let path = "/synth/t0000/r0/seg00000.m4s";
        let whole = synthetic_bytes(path, 0, 4096);
        assert_eq!(whole, synthetic_bytes(path, 0, 4096));
        for (offset, len) in [
            (0usize, 1usize),
            (1, 7),
            (3, 13),
            (7, 1),
            (8, 8),
            (9, 100),
            (1000, 3000),
            (4095, 1),
        ] {
            assert_eq!(
                synthetic_bytes(path, offset as u64, len),
                whole.slice(offset..offset + len),
                "{offset}+{len}"
            );
        }
        assert_eq!(synthetic_bytes(path, 10, 0).len(), 0);
        // Different paths give different bytes.
        assert_ne!(whole, synthetic_bytes("/synth/t0001/r0/seg00000.m4s", 0, 4096));
        assert_ne!(whole.slice(0..8), whole.slice(8..16));
        // Offsets far out are fine (no overflow).
        assert_eq!(synthetic_bytes(path, u64::MAX - 3, 3).len(), 3);
    }

    #[test]
    fn bytes_have_a_known_value() {
        // Pins the definition so the edge and the bench can rely on it:
        // SplitMix64 output 0 for seed s is mix(s + GAMMA).
        let s = seed("/x");
        let first = mix(s.wrapping_add(GAMMA)).to_le_bytes();
        assert_eq!(&synthetic_bytes("/x", 0, 8)[..], &first);
        let second = mix(s.wrapping_add(GAMMA.wrapping_mul(2))).to_le_bytes();
        assert_eq!(&synthetic_bytes("/x", 8, 8)[..], &second);
        // The standard SplitMix64 test vector: seed 1234567 → 6457827717110365317.
        assert_eq!(mix(1234567u64.wrapping_add(GAMMA)), 6457827717110365317);
    }

    #[test]
    fn bytes_look_random() {
        let b = synthetic_bytes("/synth/t0000/r1/seg00003.m4s", 0, 1 << 16);
        let mut counts = [0u32; 256];
        for &x in b.iter() {
            counts[x as usize] += 1;
        }
        // 256 expected per value; allow a wide margin.
        assert!(counts.iter().all(|&c| (150..400).contains(&c)), "{counts:?}");
    }

    #[test]
    fn lookup_maps_paths() {
        let c = Catalog::new(&cfg());
        assert_eq!(c.prefix(), ["synth"]);
        assert!(matches!(c.lookup(&rest("t0000/master.m3u8")), Some(Entry::Playlist(_))));
        assert!(matches!(
            c.lookup(&rest("t0002/r2/index.m3u8")),
            Some(Entry::Playlist(_))
        ));
        assert_eq!(
            c.lookup(&rest("t0001/r0/init.mp4")),
            Some(Entry::Generated { len: INIT_SIZE })
        );
        assert_eq!(
            c.lookup(&rest("t0001/r0/seg00000.m4s")),
            Some(Entry::Generated { len: 400_000 })
        );
        assert_eq!(
            c.lookup(&rest("t0001/r1/seg00004.m4s")),
            Some(Entry::Generated { len: 1_250_000 })
        );
        assert_eq!(
            c.lookup(&rest("t0001/r2/seg00004.m4s")),
            Some(Entry::Generated { len: 3_000_000 })
        );
    }

    #[test]
    fn out_of_range_and_odd_names_are_missing() {
        let c = Catalog::new(&cfg());
        for p in [
            "",
            "t0000",
            "t0003/master.m3u8",
            "t1/master.m3u8",
            "t00000/master.m3u8",
            "t-001/master.m3u8",
            "t+001/master.m3u8",
            "T0000/master.m3u8",
            "t0000/index.m3u8",
            "t0000/r3/index.m3u8",
            "t0000/r00/index.m3u8",
            "t0000/r/index.m3u8",
            "t0000/r0/seg00005.m4s",
            "t0000/r0/seg0.m4s",
            "t0000/r0/seg000000.m4s",
            "t0000/r0/seg00000.mp4",
            "t0000/r0/seg00000.m4s.m4s",
            "t0000/r0/master.m3u8",
            "t0000/r0/x/seg00000.m4s",
            "t99999999999/master.m3u8",
            "t0000/r99999999999999999999/index.m3u8",
        ] {
            assert_eq!(c.lookup(&rest(p)), None, "{p}");
        }
    }

    #[test]
    fn big_catalogs_use_wider_names() {
        let c = Catalog::new(&SyntheticConfig {
            titles: 12_000,
            segments: 5,
            ..SyntheticConfig::default()
        });
        assert_eq!(title_name(11_999), "t11999");
        assert!(c.lookup(&rest("t11999/master.m3u8")).is_some());
        assert!(c.lookup(&rest("t12000/master.m3u8")).is_none());
        assert!(c.lookup(&rest("t0042/master.m3u8")).is_some());
    }

    fn text(e: Option<Entry>) -> String {
        match e {
            Some(Entry::Playlist(b)) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("not a playlist: {other:?}"),
        }
    }

    #[test]
    fn master_playlist_is_valid() {
        let c = Catalog::new(&cfg());
        let m = text(c.lookup(&rest("t0000/master.m3u8")));
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(lines[0], "#EXTM3U");
        assert!(lines.contains(&"#EXT-X-VERSION:7"));
        let inf: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.starts_with("#EXT-X-STREAM-INF:"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(inf.len(), 3);
        for (r, &i) in inf.iter().enumerate() {
            let bitrate = cfg().renditions[r];
            assert!(lines[i].contains(&format!("BANDWIDTH={bitrate},")), "{}", lines[i]);
            assert!(
                lines[i].contains(&format!("RESOLUTION={}", resolution(bitrate))),
                "{}",
                lines[i]
            );
            // Each STREAM-INF is followed by its URI, which resolves in the catalog.
            assert_eq!(lines[i + 1], format!("r{r}/index.m3u8"));
            assert!(c.lookup(&rest(&format!("t0000/{}", lines[i + 1]))).is_some());
        }
        assert!(!m.contains("#EXT-X-ENDLIST"));
    }

    #[test]
    fn media_playlist_is_valid_vod() {
        let c = Catalog::new(&cfg());
        let m = text(c.lookup(&rest("t0001/r1/index.m3u8")));
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(lines[0], "#EXTM3U");
        assert_eq!(*lines.last().unwrap(), "#EXT-X-ENDLIST");
        for tag in [
            "#EXT-X-VERSION:7",
            "#EXT-X-TARGETDURATION:4",
            "#EXT-X-PLAYLIST-TYPE:VOD",
            "#EXT-X-MAP:URI=\"init.mp4\"",
        ] {
            assert!(lines.contains(&tag), "{tag}");
        }
        let uris: Vec<&str> = lines.iter().copied().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            uris,
            [
                "seg00000.m4s",
                "seg00001.m4s",
                "seg00002.m4s",
                "seg00003.m4s",
                "seg00004.m4s"
            ]
        );
        for (i, l) in lines.iter().enumerate() {
            if l.starts_with("#EXTINF:") {
                assert_eq!(*l, "#EXTINF:4.000,");
                let seg = lines[i + 1];
                assert!(c.lookup(&rest(&format!("t0001/r1/{seg}"))).is_some(), "{seg}");
            }
        }
        assert!(crate::kind::hls_is_finished(m.as_bytes()));
    }

    #[test]
    fn index_parsing() {
        assert_eq!(index("t0000", "t", 4), Some(0));
        assert_eq!(index("t0123", "t", 4), Some(123));
        assert_eq!(index("t12345", "t", 4), Some(12345));
        assert_eq!(index("t123", "t", 4), None);
        assert_eq!(index("t01234", "t", 4), None);
        assert_eq!(index("r0", "r", 0), Some(0));
        assert_eq!(index("r10", "r", 0), Some(10));
        assert_eq!(index("r01", "r", 0), None);
        assert_eq!(index("r", "r", 0), None);
        assert_eq!(index("x0", "r", 0), None);
    }
}
