# Shared by the interop scripts (sourced): counting checks and installing
# Debian packages. The caller defines `say` and `summary` first.

PASSED=0
FAILED=0
ok() { PASSED=$((PASSED + 1)); echo "ok - $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $1: $2"; }
# A setup step failed: nothing after it can run.
abort() {
    fail "$1" "$2"
    summary
    exit 1
}

# apt_install PKG...: install Debian packages (nothing when none are given),
# as root or through sudo. Idempotent callers pass only what is missing.
apt_install() {
    [ $# -gt 0 ] || return 0
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    say "installing $* (apt)"
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@"
}
