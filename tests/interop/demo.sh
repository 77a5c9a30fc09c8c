#!/usr/bin/env bash
# The demo as a user runs it, with real players:
#
#   bash tests/interop/demo.sh          (from anywhere; .ci/run calls it)
#
#   0. installs its tools if missing (Debian chromium, ffmpeg, curl, npm;
#      npm playwright-core from tests/interop/player's lockfile);
#   1. `cargo build` (debug), then `outpost demo --state-dir <fresh dir>`:
#      it must print its summary and write endpoints.json (exact keys);
#   2. a second `outpost demo` says one is running instead of failing;
#   3. each client network in endpoints.json, via curl bound to an address
#      in it, gets its own ISP's edge first from POST /v1/play;
#   4. tests/interop/player/play.mjs: hls.js over HTTP/3 and dash.js over
#      HTTPS in headless Chromium through the demo page, each checked in the
#      edges' access logs, each surviving a SIGKILL of its serving edge;
#   5. Ctrl-C (SIGINT) stops the demo and every process it started.
# Every check prints `ok - NAME` or `FAIL - NAME: reason`; the last line is
# `demo interop: N passed, M failed`; non-zero exit on a failure.
#
# Env: INTEROP_KEEP=1 keeps the scratch directory (state dir, logs, shots).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/interop"
cd "$ROOT"

say() { echo "demo interop: $*"; }
summary() { echo "demo interop: $PASSED passed, $FAILED failed"; }
# shellcheck source=tests/interop/lib.sh
source "$HERE/lib.sh"

# ------------------------------------------------------------ 0. tools ------
apt_pkgs=()
command -v chromium >/dev/null || apt_pkgs+=(chromium)
command -v ffmpeg >/dev/null || apt_pkgs+=(ffmpeg)
command -v curl >/dev/null || apt_pkgs+=(curl ca-certificates)
command -v npm >/dev/null || apt_pkgs+=(nodejs npm)
command -v python3 >/dev/null || apt_pkgs+=(python3)
apt_install "${apt_pkgs[@]}"
if [ ! -d "$HERE/player/node_modules/playwright-core" ]; then
    say "installing playwright-core (npm ci; it drives Debian's chromium, no browser download)"
    (cd "$HERE/player" && npm ci --no-audit --no-fund --loglevel=error)
fi

# ------------------------------------------------------------ 1. start ------
say "building"
cargo build --quiet --bin outpost
BIN="$ROOT/target/debug/outpost"
S="$(mktemp -d /tmp/outpost-demo-interop.XXXXXX)"
STATE="$S/state"
DEMO_PID=""
cleanup() {
    if [ -n "$DEMO_PID" ] && kill -0 "$DEMO_PID" 2>/dev/null; then
        kill -INT "$DEMO_PID" 2>/dev/null || true
        sleep 5
        kill -KILL "$DEMO_PID" 2>/dev/null || true
    fi
    pkill -KILL -f "$STATE/configs/" 2>/dev/null || true
    if [ "${INTEROP_KEEP:-0}" = 1 ]; then say "kept $S"; else rm -rf "$S"; fi
}
trap cleanup EXIT

say "starting outpost demo --state-dir $STATE (first start: encodes the title, installs the players)"
T0=$SECONDS
"$BIN" demo --state-dir "$STATE" >"$S/demo.out" 2>"$S/demo.err" &
DEMO_PID=$!
while ! grep -q "Outpost demo is running" "$S/demo.out" 2>/dev/null; do
    if ! kill -0 "$DEMO_PID" 2>/dev/null; then
        cat "$S/demo.out" "$S/demo.err"
        abort "demo starts" "outpost demo exited before its summary"
    fi
    if [ $((SECONDS - T0)) -gt 240 ]; then
        cat "$S/demo.out" "$S/demo.err"
        abort "demo starts" "no summary after 240 s"
    fi
    sleep 1
done
TOOK=$((SECONDS - T0))
if [ "$TOOK" -le 120 ]; then
    ok "demo prints its summary within 2 minutes after the build (${TOOK} s)"
else
    fail "demo prints its summary within 2 minutes after the build" "${TOOK} s"
fi
sed -n '1,14p' "$S/demo.out"

EP="$STATE/endpoints.json"
if python3 - "$EP" <<'EOF'; then ok "endpoints.json has exactly the documented keys"; else fail "endpoints.json has exactly the documented keys" "see above"; fi
import json, sys
e = json.load(open(sys.argv[1]))
want = {"ca_cert", "origin", "steering", "cache_control", "edges", "titles", "clients"}
assert set(e) == want, f"keys {sorted(e)}"
assert len(e["edges"]) == 3 and all(set(x) == {"id", "site", "url", "admin"} for x in e["edges"]), e["edges"]
assert len(e["cache_control"]) == 2, e["cache_control"]
assert "demo" in e["titles"], e["titles"][:3]
assert all(set(c) == {"network", "expected_site"} for c in e["clients"]), e["clients"]
EOF

# ------------------------------------------------------- 2. second demo -----
if out=$(timeout 30 "$BIN" demo --state-dir "$S/other" 2>&1); then
    fail "a second demo says one is running" "it started: $out"
elif [ $? -eq 124 ]; then
    fail "a second demo says one is running" "it was still running after 30 s"
elif grep -q "already running" <<<"$out"; then
    ok "a second demo says one is running"
else
    fail "a second demo says one is running" "$out"
fi

# --------------------------------------------------- 3. clients by ISP ------
CA=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ca_cert"])' "$EP")
STEERING=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["steering"])' "$EP")
while read -r network expected; do
    src="${network%.0.0/16}.0.10"
    got=$(curl -s --cacert "$CA" --interface "$src" "$STEERING/v1/play" -d '{"title":"demo"}' |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["edges"][0]["site"], d["edges"][0]["reason"])' 2>&1 || true)
    if [ "$got" = "$expected isp" ]; then
        ok "a client at $src ($network) gets its ISP's edge first ($expected)"
    else
        fail "a client at $src ($network) gets its ISP's edge first ($expected)" "got '$got'"
    fi
done < <(python3 -c 'import json,sys; [print(c["network"], c["expected_site"]) for c in json.load(open(sys.argv[1]))["clients"]]' "$EP")

# ----------------------------------------------------------- 4. players -----
mkdir -p "$S/shots"
if SHOTS_DIR="$S/shots" node "$HERE/player/play.mjs" "$EP" | tee "$S/players.out"; then :; fi
PASSED=$((PASSED + $(grep -c '^ok - ' "$S/players.out" || true)))
FAILED=$((FAILED + $(grep -c '^FAIL - ' "$S/players.out" || true)))
grep -q '^# players:' "$S/players.out" || fail "players" "play.mjs did not finish (see above)"

# -------------------------------------------------------------- 5. stop -----
kill -INT "$DEMO_PID"
for _ in $(seq 1 30); do
    kill -0 "$DEMO_PID" 2>/dev/null || break
    sleep 0.5
done
if kill -0 "$DEMO_PID" 2>/dev/null; then
    fail "Ctrl-C stops the demo" "still running after 15 s"
elif pgrep -f "$STATE/configs/" >/dev/null; then
    fail "Ctrl-C stops the demo" "left processes: $(pgrep -af "$STATE/configs/" | head -3)"
else
    ok "Ctrl-C stops the demo and every process it started"
fi
DEMO_PID=""

say "finished in $((SECONDS - T0)) s after the build"
summary
[ "$FAILED" -eq 0 ]
