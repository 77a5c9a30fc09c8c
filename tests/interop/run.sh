#!/usr/bin/env bash
# Interop suite: real third-party clients against a real origin + edge.
#
#   bash tests/interop/run.sh          (from anywhere; .ci/run calls it)
#
# What it does:
#   0. installs its tools if missing (Debian ffmpeg/ffprobe, PyPI aioquic);
#   1. `cargo build` (debug, the profile `cargo test` uses);
#   2. encodes a short real HLS title (H.264 + AAC, fMP4 segments) with ffmpeg;
#   3. starts `outpost origin` (127.72.0.1) and `outpost edge` (127.72.0.2)
#      from configs in a scratch directory, waits for their /readyz;
#   A. HTTP/3 with aioquic (not quinn): segments through the edge must be
#      byte-identical to the origin's / the file on disk, logged as proto="h3";
#   B. Debian's ffprobe/ffmpeg read the HLS title through the edge over HTTPS
#      (h1/h2), every segment of it, logged by the edge.
# Every check prints `ok - NAME` or `FAIL - NAME: reason`; the last line is
# `interop: N passed, M failed`, and the exit status is non-zero on a failure.
#
# Env: INTEROP_KEEP=1 keeps the scratch directory (configs, logs, bodies).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/interop"
cd "$ROOT"

ORIGIN_IP=127.72.0.1
EDGE_IP=127.72.0.2
ORIGIN_URL="http://$ORIGIN_IP:8080"
ORIGIN_ADMIN="$ORIGIN_IP:9080"
EDGE_PORT=8443
EDGE_URL="https://$EDGE_IP:$EDGE_PORT"
EDGE_ADMIN="$EDGE_IP:9443"

say() { echo "interop: $*"; }

# ---------------------------------------------------------------- results --
summary() {
    say "finished in $((SECONDS - T0)) s after the build"
    echo "interop: $PASSED passed, $FAILED failed"
}
# shellcheck source=tests/interop/lib.sh
source "$HERE/lib.sh"

# ------------------------------------------------------------ 0. tools ------
# Idempotent: installs only what is missing (CI starts from a fresh Debian).
apt_pkgs=()
if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
    apt_pkgs+=(ffmpeg)
fi
command -v curl >/dev/null || apt_pkgs+=(curl ca-certificates)
if ! command -v python3 >/dev/null; then
    apt_pkgs+=(python3 python3-pip)
elif ! python3 -c 'import aioquic' 2>/dev/null && ! python3 -m pip --version >/dev/null 2>&1; then
    apt_pkgs+=(python3-pip)
fi
apt_install "${apt_pkgs[@]}"
if ! python3 -c 'import aioquic' 2>/dev/null; then
    say "installing aioquic (pip)"
    # PIP_BREAK_SYSTEM_PACKAGES: Debian's own python3 refuses pip installs
    # otherwise (PEP 668); it is ignored by other pythons.
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q aioquic
fi

# ------------------------------------------------------------ 1. build ------
say "cargo build"
cargo build
BIN="$ROOT/target/debug/outpost"
T0=$SECONDS

# ---------------------------------------------------------- 2. scratch ------
S="$(mktemp -d "${TMPDIR:-/tmp}/outpost-interop.XXXXXX")"
PIDS=()
LOGS_SHOWN=0
cleanup() {
    local rc=$? pid i
    # SIGTERM first (graceful shutdown), SIGKILL whatever is left after 5 s.
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if { [ "$rc" -ne 0 ] || [ "$FAILED" -ne 0 ]; } && [ "$LOGS_SHOWN" = 0 ]; then
        # Show what the services said; the scratch dir is about to go.
        for svc in origin edge; do
            [ -f "$S/$svc.log" ] || continue
            echo "---- last 40 lines of $svc.log ----"
            tail -n 40 "$S/$svc.log" | strip_ansi
        done
    fi
    if [ "${INTEROP_KEEP:-0}" = 1 ]; then say "kept $S"; else rm -rf "$S"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Log lines without colour codes (tracing may colour them).
strip_ansi() { sed 's/\x1b\[[0-9;]*m//g'; }

# A real title: 8 s of test pattern + tone, H.264 Main + AAC-LC, 2 s fMP4
# segments: library/demo/{index.m3u8,init.mp4,seg000.m4s..seg003.m4s}.
DEMO="$S/library/demo"
mkdir -p "$DEMO" "$S/certs"
say "encoding the HLS title"
if ! ffmpeg -nostdin -hide_banner -loglevel error \
    -f lavfi -i testsrc2=size=640x360:rate=25 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -t 8 -c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p \
    -g 50 -keyint_min 50 -sc_threshold 0 \
    -c:a aac -b:a 96k \
    -f hls -hls_time 2 -hls_playlist_type vod -hls_segment_type fmp4 \
    -hls_fmp4_init_filename init.mp4 \
    -hls_segment_filename "$DEMO/seg%03d.m4s" "$DEMO/index.m3u8" >"$S/encode.log" 2>&1; then
    abort "encode HLS title" "ffmpeg failed: $(tail -n 5 "$S/encode.log")"
fi
[ -s "$DEMO/seg001.m4s" ] || abort "encode HLS title" "no $DEMO/seg001.m4s"

# --------------------------------------------------------- 3. services ------
cat >"$S/origin.toml" <<EOF
listen = "$ORIGIN_IP:8080"
admin = "$ORIGIN_ADMIN"
[library]
root = "$S/library"
[synthetic]
enabled = true
prefix = "/synth"
titles = 2
renditions = [8000000]
segment_seconds = 4
segments = 5
EOF

cat >"$S/edge.toml" <<EOF
id = "edge-interop"
listen = "$EDGE_IP:$EDGE_PORT"
admin = "$EDGE_ADMIN"
[tls]
cert = "$S/certs/edge.crt"
key = "$S/certs/edge.key"
generate = true
[upstream]
urls = ["$ORIGIN_URL"]
EOF

# start NAME: run `outpost NAME --config $S/NAME.toml`, logging to $S/NAME.log.
start() {
    NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" \
        "$BIN" "$1" --config "$S/$1.toml" >"$S/$1.log" 2>&1 &
    PIDS+=($!)
}

show_log() {
    echo "---- $1.log ----"
    strip_ansi <"$S/$1.log"
    LOGS_SHOWN=1
}

# wait_ready NAME ADMIN PID: poll http://ADMIN/readyz until 200 (30 s).
wait_ready() {
    local name=$1 admin=$2 pid=$3 code deadline=$((SECONDS + 30))
    while [ $SECONDS -lt $deadline ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log "$name"
            abort "$name ready" "process exited before /readyz answered 200"
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$admin/readyz" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.2
    done
    show_log "$name"
    abort "$name ready" "http://$admin/readyz not 200 after 30 s (last: $code)"
}

# Something still listening from an earlier run would answer for us.
for admin in "$ORIGIN_ADMIN" "$EDGE_ADMIN"; do
    if curl -s -o /dev/null --max-time 1 "http://$admin/readyz"; then
        abort "addresses free" "something already answers on $admin"
    fi
done

say "starting origin and edge"
start origin
wait_ready origin "$ORIGIN_ADMIN" "${PIDS[0]}"
start edge
wait_ready edge "$EDGE_ADMIN" "${PIDS[1]}"
CA="$S/certs/ca.crt"
[ -s "$CA" ] || abort "edge CA" "the edge wrote no $CA"

# ---------------------------------------------------------------- helpers --
sha() { sha256sum "$1" | cut -d' ' -f1; }

# h3get NAME PATH: GET PATH from the edge over HTTP/3 with aioquic into
# $S/NAME.body (headers in $S/NAME.headers). Fails with a reason in $WHY.
h3get() {
    WHY=
    if ! python3 "$HERE/h3get.py" --ca "$CA" --timeout 30 "$EDGE_IP" "$EDGE_PORT" "$2" \
        "$S/$1.body" >"$S/$1.headers" 2>"$S/$1.err"; then
        WHY="$(tail -n 3 "$S/$1.err" | tr '\n' ' ')"
        return 1
    fi
    local status
    status=$(head -n 1 "$S/$1.headers")
    if [ "$status" != "HTTP/3 200" ]; then
        WHY="got '$status', want 'HTTP/3 200'"
        return 1
    fi
}

# same_bytes NAME GOT WANT: ok when both files are non-empty and equal.
same_bytes() {
    local got=$2 want=$3
    if [ ! -s "$want" ]; then
        fail "$1" "reference $want is empty"
    elif [ "$(sha "$got")" = "$(sha "$want")" ]; then
        ok "$1"
    else
        fail "$1" "sha256 $(sha "$got") ($(stat -c %s "$got") bytes) != $(sha "$want") ($(stat -c %s "$want") bytes)"
    fi
}

# access_line PATH PROTO_REGEX: the edge's access log line for a successful
# (200/206) GET of PATH over a matching protocol, e.g.
#   INFO access: proto="h3" method=GET path=/x key=/x status=200 cache="miss" ...
# The line is written when the response finishes, so allow a moment.
access_line() {
    local path=$1 proto=$2 i
    for i in $(seq 50); do
        if strip_ansi <"$S/edge.log" |
            grep -E " access: .*proto=\"($proto)\" .*path=$path .*status=20[06] " >"$S/grep.out"; then
            head -n 1 "$S/grep.out"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# ------------------------------------------------------ A. HTTP/3 (aioquic) --
say "test A: HTTP/3 with aioquic"

SYNTH=/synth/t0000/r0/seg00001.m4s
if h3get synth "$SYNTH"; then
    ok "h3 GET $SYNTH is 200"
    code=$(curl -sS -o "$S/synth.origin" -w '%{http_code}' --max-time 30 "$ORIGIN_URL$SYNTH" || true)
    if [ "$code" = 200 ]; then
        same_bytes "h3 body of $SYNTH equals the origin's (sha256)" "$S/synth.body" "$S/synth.origin"
    else
        fail "h3 body of $SYNTH equals the origin's (sha256)" "origin answered '$code' over plain HTTP"
    fi
else
    fail "h3 GET $SYNTH is 200" "$WHY"
fi

DEMO_SEG=/demo/seg001.m4s
if h3get demo "$DEMO_SEG"; then
    ok "h3 GET $DEMO_SEG is 200"
    same_bytes "h3 body of $DEMO_SEG equals the ffmpeg file (sha256)" "$S/demo.body" "$DEMO/seg001.m4s"
else
    fail "h3 GET $DEMO_SEG is 200" "$WHY"
fi

if line=$(access_line "$SYNTH" h3); then
    ok "edge access log has proto=\"h3\" for $SYNTH"
    say "  $line"
else
    fail "edge access log has proto=\"h3\" for $SYNTH" \
        "no matching line; access lines: $(strip_ansi <"$S/edge.log" | grep -c ' access: ' || true)"
fi

# ------------------------------------------- B. ffprobe/ffmpeg over HTTPS --
say "test B: ffprobe/ffmpeg over HTTPS"
PLAYLIST="$EDGE_URL/demo/index.m3u8"

# ffmpeg does not verify TLS certificates by default (tls_verify=0).
if timeout 60 ffprobe -v error -show_streams -of json "$PLAYLIST" \
    </dev/null >"$S/probe.json" 2>"$S/probe.err"; then
    # "video:h264 audio:aac" (sorted) from the JSON.
    streams=$(python3 -c '
import json, sys
streams = json.load(open(sys.argv[1])).get("streams", [])
print(" ".join(sorted("%s:%s" % (x.get("codec_type"), x.get("codec_name")) for x in streams)))
' "$S/probe.json") || streams="(unreadable ffprobe JSON)"
    if [[ " $streams " == *" video:h264 "* && " $streams " == *" audio:aac "* ]]; then
        ok "ffprobe sees h264 video + aac audio via the edge"
    else
        fail "ffprobe sees h264 video + aac audio via the edge" "streams: '$streams'"
    fi
else
    fail "ffprobe sees h264 video + aac audio via the edge" \
        "exit $?: $(tail -n 3 "$S/probe.err" | tr '\n' ' ')"
fi

if timeout 90 ffmpeg -nostdin -v error -i "$PLAYLIST" -map 0 -c copy -f null - \
    >"$S/remux.log" 2>&1; then
    ok "ffmpeg reads the whole title via the edge"
else
    fail "ffmpeg reads the whole title via the edge" \
        "exit $?: $(tail -n 3 "$S/remux.log" | tr '\n' ' ')"
fi

# Every file of the title went through the edge over TCP TLS (h1 or h2).
missing=()
for f in index.m3u8 init.mp4 $(grep -v '^#' "$DEMO/index.m3u8"); do
    access_line "/demo/$f" 'h1|h2' >/dev/null || missing+=("$f")
done
if [ ${#missing[@]} -eq 0 ]; then
    ok "edge access log has proto=\"h1\"/\"h2\" for the playlist, init and every segment"
    say "  $(access_line /demo/seg000.m4s 'h1|h2')"
else
    fail "edge access log has proto=\"h1\"/\"h2\" for the playlist, init and every segment" \
        "no line for: ${missing[*]}"
fi

summary
[ "$FAILED" -eq 0 ]
