//! Content Steering documents, pure text in and out:
//! - a per-session HLS multivariant playlist: the title's own playlist with
//!   `#EXT-X-CONTENT-STEERING` and every variant repeated once per pathway
//!   (one pathway per ranked edge, absolute URIs under the edge's token
//!   path so relative media URIs inherit the token);
//! - a per-session DASH MPD with `<ContentSteering>` and one
//!   `<BaseURL serviceLocation>` per pathway;
//! - the steering manifest (`VERSION`, `TTL`, `RELOAD-URI`,
//!   `PATHWAY-PRIORITY`, and `SERVICE-LOCATION-PRIORITY` for older DASH
//!   players), and parsing of the players' `_HLS_pathway` /
//!   `_DASH_pathway` query parameters.

use serde::Serialize;

/// One pathway: its id and the base URL media URIs are resolved against
/// (`https://edge/t/<token>/vod/bbb/`, ending in `/`).
#[derive(Debug, Clone, PartialEq)]
pub struct Pathway {
    pub id: String,
    pub base: String,
}

/// A pathway id from an edge id: HLS allows `[A-Za-z0-9._-]`.
pub fn pathway_id(edge_id: &str) -> String {
    let s: String = edge_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() {
        "edge".into()
    } else {
        s
    }
}

/// The directory a manifest's relative URIs resolve against: the title's
/// path plus the manifest's own directory (`/vod/bbb/` and
/// `hls/master.m3u8` give `/vod/bbb/hls/`).
pub fn directory_of(title_path: &str, manifest: &str) -> String {
    let dir = manifest.rfind('/').map(|i| &manifest[..=i]).unwrap_or("");
    format!("{}/{}", title_path.trim_end_matches('/'), dir.trim_start_matches('/'))
}

fn absolute(base: &str, uri: &str) -> String {
    if uri.contains("://") {
        uri.to_string()
    } else {
        format!("{}/{}", base.trim_end_matches('/'), uri.trim_start_matches('/'))
    }
}

/// Replace (or add) one quoted attribute in an HLS attribute list.
fn set_attr(line: &str, name: &str, value: &str) -> String {
    let key = format!("{name}=\"");
    if let Some(start) = find_attr(line, &key) {
        let vstart = start + key.len();
        if let Some(len) = line[vstart..].find('"') {
            return format!("{}{value}{}", &line[..vstart], &line[vstart + len..]);
        }
    }
    format!("{line},{name}=\"{value}\"")
}

/// Position of `KEY="` as a whole attribute (after `:` or `,`).
fn find_attr(line: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = line[from..].find(key) {
        let at = from + i;
        if at > 0 && matches!(line.as_bytes()[at - 1], b':' | b',') {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

fn get_attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = find_attr(line, &key)? + key.len();
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// Why a playlist could not be rewritten. The origin's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("not an HLS playlist (no #EXTM3U)")]
    NotHls,
    #[error("a media playlist, not a multivariant one")]
    MediaPlaylist,
    #[error("not a DASH MPD (no <MPD> element)")]
    NotMpd,
}

/// The per-session HLS multivariant playlist.
pub fn hls_multivariant(original: &str, pathways: &[Pathway], steering_uri: &str) -> Result<String, ManifestError> {
    let mut lines = original.lines().map(str::trim_end).filter(|l| !l.is_empty());
    if lines.next() != Some("#EXTM3U") {
        return Err(ManifestError::NotHls);
    }
    let mut header = Vec::new();
    let mut media = Vec::new(); // EXT-X-MEDIA
    let mut variants: Vec<(String, String)> = Vec::new(); // (STREAM-INF, URI)
    let mut iframes = Vec::new();
    let mut pending: Option<String> = None;
    for l in lines {
        if let Some(inf) = pending.take() {
            if !l.starts_with('#') {
                variants.push((inf, l.to_string()));
                continue;
            }
            pending = Some(inf); // tags between STREAM-INF and its URI
            continue;
        }
        if l.starts_with("#EXTINF") || l.starts_with("#EXT-X-TARGETDURATION") {
            return Err(ManifestError::MediaPlaylist);
        }
        if l.starts_with("#EXT-X-STREAM-INF:") {
            pending = Some(l.to_string());
        } else if l.starts_with("#EXT-X-MEDIA:") {
            media.push(l.to_string());
        } else if l.starts_with("#EXT-X-I-FRAME-STREAM-INF:") {
            iframes.push(l.to_string());
        } else if l.starts_with("#EXT-X-CONTENT-STEERING") || !l.starts_with('#') {
            // Our steering replaces theirs; stray URIs are dropped.
        } else {
            header.push(l.to_string());
        }
    }
    let mut out = String::from("#EXTM3U\n");
    for h in &header {
        out.push_str(h);
        out.push('\n');
    }
    if let Some(first) = pathways.first() {
        out.push_str(&format!(
            "#EXT-X-CONTENT-STEERING:SERVER-URI=\"{steering_uri}\",PATHWAY-ID=\"{}\"\n",
            first.id
        ));
    }
    for p in pathways {
        // Rendition groups are per pathway so audio follows the video's edge.
        let group = |g: &str| format!("{g}-{}", p.id);
        for m in &media {
            let mut line = m.clone();
            if let Some(g) = get_attr(m, "GROUP-ID") {
                line = set_attr(&line, "GROUP-ID", &group(g));
            }
            if let Some(u) = get_attr(m, "URI") {
                line = set_attr(&line, "URI", &absolute(&p.base, u));
            }
            out.push_str(&line);
            out.push('\n');
        }
        for (inf, uri) in &variants {
            let mut line = set_attr(inf, "PATHWAY-ID", &p.id);
            for kind in ["AUDIO", "SUBTITLES", "VIDEO"] {
                if let Some(g) = get_attr(inf, kind) {
                    line = set_attr(&line, kind, &group(g));
                }
            }
            out.push_str(&format!("{line}\n{}\n", absolute(&p.base, uri)));
        }
        for f in &iframes {
            let mut line = set_attr(f, "PATHWAY-ID", &p.id);
            if let Some(u) = get_attr(f, "URI") {
                line = set_attr(&line, "URI", &absolute(&p.base, u));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    Ok(out)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The per-session DASH MPD: MPD-level `<BaseURL>`s replaced by one per
/// pathway, and a `<ContentSteering>` element.
pub fn dash_mpd(original: &str, pathways: &[Pathway], steering_uri: &str) -> Result<String, ManifestError> {
    let open = original.find("<MPD").ok_or(ManifestError::NotMpd)?;
    let open_end = open + original[open..].find('>').ok_or(ManifestError::NotMpd)? + 1;
    let first_period = original[open_end..]
        .find("<Period")
        .map_or(original.len(), |i| open_end + i);
    // Drop MPD-level BaseURLs (those before the first Period).
    let mut head = original[open_end..first_period].to_string();
    while let Some(s) = head.find("<BaseURL") {
        let Some(e) = head[s..].find("</BaseURL>") else { break };
        head.replace_range(s..s + e + "</BaseURL>".len(), "");
    }
    let mut ours = String::from("\n");
    for p in pathways {
        ours.push_str(&format!(
            "  <BaseURL serviceLocation=\"{}\">{}</BaseURL>\n",
            xml_escape(&p.id),
            xml_escape(&format!("{}/", p.base.trim_end_matches('/')))
        ));
    }
    if let Some(first) = pathways.first() {
        ours.push_str(&format!(
            "  <ContentSteering defaultServiceLocation=\"{}\" queryBeforeStart=\"false\">{}</ContentSteering>",
            xml_escape(&first.id),
            xml_escape(steering_uri)
        ));
    }
    Ok(format!(
        "{}{ours}{head}{}",
        &original[..open_end],
        &original[first_period..]
    ))
}

/// The steering manifest (HLS and DASH read the same JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SteeringManifest {
    #[serde(rename = "VERSION")]
    pub version: u32,
    #[serde(rename = "TTL")]
    pub ttl: u64,
    #[serde(rename = "RELOAD-URI")]
    pub reload_uri: String,
    #[serde(rename = "PATHWAY-PRIORITY")]
    pub pathway_priority: Vec<String>,
    #[serde(rename = "SERVICE-LOCATION-PRIORITY")]
    pub service_location_priority: Vec<String>,
}

impl SteeringManifest {
    pub fn new(ttl: u64, reload_uri: String, priority: Vec<String>) -> Self {
        Self {
            version: 1,
            ttl,
            reload_uri,
            service_location_priority: priority.clone(),
            pathway_priority: priority,
        }
    }
}

/// What the player said in its steering request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlayerState {
    /// The pathway(s) in use (`_HLS_pathway=A`, `_DASH_pathway="A"` or
    /// `"A,B"`), first is current.
    pub pathways: Vec<String>,
    /// Measured throughput, bit/s.
    pub throughput: Option<u64>,
}

/// Parse the query of a steering request.
pub fn player_state(query: Option<&str>) -> PlayerState {
    let mut st = PlayerState::default();
    for kv in query.unwrap_or("").split('&') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
        match k {
            "_HLS_pathway" | "_DASH_pathway" => {
                st.pathways = v
                    .trim_matches('"')
                    .split(',')
                    .map(|p| p.trim().trim_matches('"').to_string())
                    .filter(|p| !p.is_empty())
                    .collect();
            }
            "_HLS_throughput" | "_DASH_throughput" => {
                st.throughput = v.trim_matches('"').parse::<f64>().ok().map(|t| t as u64);
            }
            _ => {}
        }
    }
    st
}

#[cfg(test)]
mod tests {

    #[test]
    fn relative_uris_resolve_against_the_manifests_directory() {
        assert_eq!(directory_of("/vod/bbb/", "master.m3u8"), "/vod/bbb/");
        assert_eq!(directory_of("/vod/bbb/", "hls/master.m3u8"), "/vod/bbb/hls/");
        assert_eq!(directory_of("/vod/bbb", "dash/x/manifest.mpd"), "/vod/bbb/dash/x/");
    }

    use super::*;

    const MASTER: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n\
        #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"en\",DEFAULT=YES,URI=\"audio/index.m3u8\"\n\
        #EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,AUDIO=\"aud\"\nr0/index.m3u8\n\
        #EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720,AUDIO=\"aud\"\nr1/index.m3u8\n\
        #EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100000,URI=\"r0/iframes.m3u8\"\n";

    fn paths() -> Vec<Pathway> {
        vec![
            Pathway {
                id: "edge-a".into(),
                base: "https://127.0.1.1:8443/t/TOK/vod/bbb/".into(),
            },
            Pathway {
                id: "edge-b".into(),
                base: "https://127.0.2.1:8443/t/TOK/vod/bbb".into(),
            },
        ]
    }

    #[test]
    fn hls_repeats_variants_per_pathway() {
        let out = hls_multivariant(MASTER, &paths(), "https://s/v1/steering/S").unwrap();
        assert!(out.starts_with("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n"));
        assert!(out.contains("#EXT-X-CONTENT-STEERING:SERVER-URI=\"https://s/v1/steering/S\",PATHWAY-ID=\"edge-a\"\n"));
        assert_eq!(out.matches("#EXT-X-STREAM-INF").count(), 4);
        assert!(out.contains(
            "#EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720,AUDIO=\"aud-edge-b\",PATHWAY-ID=\"edge-b\"\nhttps://127.0.2.1:8443/t/TOK/vod/bbb/r1/index.m3u8\n"
        ));
        assert!(out.contains("GROUP-ID=\"aud-edge-a\",NAME=\"en\",DEFAULT=YES,URI=\"https://127.0.1.1:8443/t/TOK/vod/bbb/audio/index.m3u8\""));
        assert!(out.contains("URI=\"https://127.0.2.1:8443/t/TOK/vod/bbb/r0/iframes.m3u8\",PATHWAY-ID=\"edge-b\""));
        assert_eq!(hls_multivariant("nope", &paths(), "x"), Err(ManifestError::NotHls));
        let media = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg0.m4s\n";
        assert_eq!(
            hls_multivariant(media, &paths(), "x"),
            Err(ManifestError::MediaPlaylist)
        );
    }

    #[test]
    fn attributes_match_whole_names() {
        let l = "#EXT-X-STREAM-INF:XAUDIO=\"z\",AUDIO=\"a\"";
        assert_eq!(get_attr(l, "AUDIO"), Some("a"));
        assert_eq!(set_attr(l, "AUDIO", "b"), "#EXT-X-STREAM-INF:XAUDIO=\"z\",AUDIO=\"b\"");
    }

    #[test]
    fn dash_gets_base_urls_and_content_steering() {
        let mpd = "<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"static\">\n  <BaseURL>old/</BaseURL>\n  <Period id=\"0\"><BaseURL>keep/</BaseURL></Period>\n</MPD>\n";
        let out = dash_mpd(mpd, &paths(), "https://s/v1/steering/S?a=1&b=2").unwrap();
        assert!(!out.contains("old/"), "MPD-level BaseURL replaced");
        assert!(
            out.contains("<Period id=\"0\"><BaseURL>keep/</BaseURL></Period>"),
            "Period-level kept"
        );
        assert!(out.contains("<BaseURL serviceLocation=\"edge-a\">https://127.0.1.1:8443/t/TOK/vod/bbb/</BaseURL>"));
        assert!(out.contains("<BaseURL serviceLocation=\"edge-b\">https://127.0.2.1:8443/t/TOK/vod/bbb/</BaseURL>"));
        assert!(out.contains(
            "<ContentSteering defaultServiceLocation=\"edge-a\" queryBeforeStart=\"false\">https://s/v1/steering/S?a=1&amp;b=2</ContentSteering>"
        ));
        assert!(out.find("<ContentSteering").unwrap() < out.find("<Period").unwrap());
        assert_eq!(dash_mpd("<html/>", &paths(), "x"), Err(ManifestError::NotMpd));
    }

    #[test]
    fn player_queries_as_hls_js_and_dash_js_send_them() {
        assert_eq!(
            player_state(Some("_HLS_pathway=edge-a&_HLS_throughput=5000000")).pathways,
            ["edge-a"]
        );
        assert_eq!(
            player_state(Some("_HLS_throughput=5000000")).throughput,
            Some(5_000_000)
        );
        assert_eq!(player_state(Some("_DASH_pathway=%22edge-a%22")).pathways, ["edge-a"]);
        assert_eq!(
            player_state(Some("_DASH_pathway=%22edge-a,edge-b%22&_DASH_throughput=12.5")).pathways,
            ["edge-a", "edge-b"]
        );
        assert_eq!(player_state(Some("_DASH_pathway=\"a,b\"")).pathways, ["a", "b"]);
        assert_eq!(player_state(None), PlayerState::default());
        assert_eq!(player_state(Some("%zz=%")).pathways, Vec::<String>::new());
        assert_eq!(player_state(Some("_HLS_pathway=%C3%A9%")).pathways, ["é%"]);
        assert_eq!(pathway_id("edge ams/1"), "edge-ams-1");
    }

    #[test]
    fn steering_manifest_json() {
        let m = SteeringManifest::new(10, "https://s/v1/steering/S".into(), vec!["b".into(), "a".into()]);
        let j = serde_json::to_value(&m).unwrap();
        assert_eq!(j["VERSION"], 1);
        assert_eq!(j["TTL"], 10);
        assert_eq!(j["PATHWAY-PRIORITY"], serde_json::json!(["b", "a"]));
        assert_eq!(j["SERVICE-LOCATION-PRIORITY"], serde_json::json!(["b", "a"]));
    }
}
