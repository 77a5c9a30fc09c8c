//! The demo's real title: a short H.264/AAC video with two renditions,
//! encoded once with `ffmpeg` (when it is installed) into the origin's
//! library as CMAF segments with both an HLS multivariant playlist
//! (`hls/master.m3u8`) and a DASH MPD (`dash/manifest.mpd`), and kept in
//! the state directory for the next start.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Seconds of media: long enough to watch an edge fail over mid-title.
pub const SECONDS: u32 = 90;
/// Segment length in seconds (a keyframe every segment).
const SEGMENT: u32 = 2;
const FPS: u32 = 24;

/// The renditions: (width, height, video kbit/s).
const LADDER: [(u32, u32, u32); 2] = [(480, 270, 400), (960, 540, 1200)];

/// What the library holds for the title, or why it does not.
pub enum Title {
    Ready,
    NoFfmpeg,
    /// ffmpeg is there but failed (e.g. built without libx264).
    Failed(anyhow::Error),
}

/// The title's directory in the library (`library/vod/demo`).
pub fn dir(library: &Path) -> PathBuf {
    library.join(super::topology::TITLE_PATH.trim_matches('/'))
}

fn complete(dir: &Path) -> bool {
    dir.join("hls/master.m3u8").is_file() && dir.join("dash/manifest.mpd").is_file() && dir.join(".complete").is_file()
}

fn ffmpeg_present() -> bool {
    Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Make sure the title exists: kept from an earlier start, or encoded now.
pub fn ensure(library: &Path) -> Title {
    let dir = dir(library);
    if complete(&dir) {
        return Title::Ready;
    }
    if !ffmpeg_present() {
        return Title::NoFfmpeg;
    }
    match encode(&dir) {
        Ok(()) => Title::Ready,
        Err(e) => Title::Failed(e),
    }
}

fn encode(dir: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let work = dir.join("work");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    eprintln!(
        "demo: encoding the demo title ({SECONDS} s, {} renditions) with ffmpeg, once…",
        LADDER.len()
    );
    let gop = (SEGMENT * FPS).to_string();
    // 1. One encode: a test pattern with a running clock and a tone, two
    //    renditions with aligned keyframes, into one mezzanine file.
    let mut filter = format!("[0:v]split={}", LADDER.len());
    for i in 0..LADDER.len() {
        filter.push_str(&format!("[v{i}]"));
    }
    for (i, (w, h, _)) in LADDER.iter().enumerate() {
        filter.push_str(&format!(";[v{i}]scale={w}:{h}[s{i}]"));
    }
    let mezz = work.join("mezz.mp4");
    let mut enc = Command::new("ffmpeg");
    enc.args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=960x540:rate={FPS}:duration={SECONDS}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:beep_factor=4:sample_rate=48000:duration={SECONDS}"
        ))
        .args(["-filter_complex", &filter]);
    for (i, (_, _, kbps)) in LADDER.iter().enumerate() {
        enc.args(["-map", &format!("[s{i}]")]);
        enc.arg(format!("-b:v:{i}")).arg(format!("{kbps}k"));
        enc.arg(format!("-maxrate:v:{i}")).arg(format!("{}k", kbps * 5 / 4));
        enc.arg(format!("-bufsize:v:{i}")).arg(format!("{}k", kbps * 2));
    }
    enc.args(["-map", "1:a"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "main",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-g", &gop, "-keyint_min", &gop, "-sc_threshold", "0"])
        .args(["-c:a", "aac", "-b:a", "96k", "-ac", "2"])
        .arg(&mezz);
    run(enc, "encode")?;

    // 2. HLS: one variant per rendition, audio muxed into each, fMP4.
    let hls = dir.join("hls");
    std::fs::create_dir_all(&hls)?;
    let mut pack = Command::new("ffmpeg");
    pack.args(["-hide_banner", "-loglevel", "error", "-y", "-i"]).arg(&mezz);
    let mut map = Vec::new();
    for (i, (_, height, _)) in LADDER.iter().enumerate() {
        pack.args(["-map", &format!("0:v:{i}"), "-map", "0:a:0"]);
        map.push(format!("v:{i},a:{i},name:{height}p"));
    }
    pack.args(["-c", "copy", "-f", "hls"])
        .args(["-hls_time", &SEGMENT.to_string(), "-hls_playlist_type", "vod"])
        .args(["-hls_segment_type", "fmp4", "-hls_flags", "independent_segments"])
        .args(["-hls_fmp4_init_filename", "init.mp4"])
        .args(["-master_pl_name", "master.m3u8"])
        .args(["-var_stream_map", &map.join(" ")])
        .arg("-hls_segment_filename")
        .arg(hls.join("%v/seg%05d.m4s"))
        .arg(hls.join("%v/index.m3u8"));
    run(pack, "HLS packaging")?;

    // 3. DASH: the same encode, SegmentTemplate with $Number$.
    let dash = dir.join("dash");
    std::fs::create_dir_all(&dash)?;
    let mut pack = Command::new("ffmpeg");
    pack.args(["-hide_banner", "-loglevel", "error", "-y", "-i"]).arg(&mezz);
    for i in 0..LADDER.len() {
        pack.args(["-map", &format!("0:v:{i}")]);
    }
    pack.args(["-map", "0:a:0", "-c", "copy", "-f", "dash"])
        .args([
            "-seg_duration",
            &SEGMENT.to_string(),
            "-use_template",
            "1",
            "-use_timeline",
            "0",
        ])
        .args(["-adaptation_sets", "id=0,streams=v id=1,streams=a"])
        .args(["-init_seg_name", "init-$RepresentationID$.m4s"])
        .args(["-media_seg_name", "seg-$RepresentationID$-$Number%05d$.m4s"])
        .arg(dash.join("manifest.mpd"));
    run(pack, "DASH packaging")?;

    add_codecs(&hls.join("master.m3u8"), &dash.join("manifest.mpd"))?;
    std::fs::remove_dir_all(&work)?;
    std::fs::write(dir.join(".complete"), "")?;
    Ok(())
}

/// ffmpeg leaves `CODECS` out of the HLS multivariant playlist when it
/// copies streams; players then have to guess from the init segment. The
/// DASH MPD of the same encode names them: add them to each variant.
fn add_codecs(master: &Path, mpd: &Path) -> Result<()> {
    let mpd = std::fs::read_to_string(mpd)?;
    let codecs: Vec<&str> = mpd
        .split("codecs=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    let audio = codecs.iter().find(|c| c.starts_with("mp4a")).copied();
    let mut video = codecs.iter().filter(|c| c.starts_with("avc1"));
    let text = std::fs::read_to_string(master)?;
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        if line.starts_with("#EXT-X-STREAM-INF:") && !line.contains("CODECS=") {
            if let (Some(v), Some(a)) = (video.next(), audio) {
                out.push_str(&format!(",CODECS=\"{v},{a}\",FRAME-RATE={FPS}.000"));
            }
        }
        out.push('\n');
    }
    std::fs::write(master, out)?;
    Ok(())
}

fn run(mut cmd: Command, what: &str) -> Result<()> {
    use std::os::unix::process::CommandExt;
    // ffmpeg dies with the demo: this blocking thread waits for it, so it
    // lives exactly as long as ffmpeg runs.
    // SAFETY: prctl is async-signal-safe; nothing else runs in the hook.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ffmpeg ({what})"))?;
    if !out.status.success() {
        bail!(
            "ffmpeg {what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
