# TAP helpers for integration scripts: source it, call `ok COND_CMD... -- "description"`-style
# helpers below, end with `done_testing`. Every script runs in its own temporary directory.
set -u
_tap_n=0; _tap_fail=0
SEGX=${SEGX_BIN:-$SEGX_ROOT/bin}/segx
SEGX_TRAIN=${SEGX_BIN:-$SEGX_ROOT/bin}/segx-train
TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/segx-it.XXXXXX")
trap 'rm -rf "$TEST_TMP"' EXIT
# pass "desc" / fail "desc" [details]
pass() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n - $1"; }
fail() { _tap_n=$((_tap_n + 1)); _tap_fail=$((_tap_fail + 1)); echo "not ok $_tap_n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
skip() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n # SKIP $1"; }
# check "desc" CMD...: passes when CMD exits 0
check() { local d=$1; shift; local out; if out=$("$@" 2>&1); then pass "$d"; else fail "$d" "command: $*" "$(echo "$out" | tail -5)"; fi; }
# check_eq "desc" EXPECTED ACTUAL
check_eq() { if [ "$2" == "$3" ]; then pass "$1"; else fail "$1" "expected: $2" "actual:   $3"; fi; }
done_testing() { echo "1..$_tap_n"; [ "$_tap_fail" -eq 0 ]; }
