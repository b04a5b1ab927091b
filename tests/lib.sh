# Sourced by the CLI tests. LR_BIN, LR_ROOT and LR_TMP come from
# tests/run.sh. Each helper dies (nonzero exit) on the first broken expectation.
set -euo pipefail
die() { echo "FAIL: $*" >&2; exit 1; }
# expect_fail CODE CMD...: CMD must exit with CODE and print exactly one line on stderr
expect_fail() {
    local code=$1; shift
    local err=$LR_TMP/stderr.$$
    set +e; "$@" > "$LR_TMP/stdout.$$" 2> "$err"; local rc=$?; set -e
    [ "$rc" = "$code" ] || { cat "$err" >&2; die "exit $rc (wanted $code): $*"; }
    # ASan/UBSan reports are more than one line and must fail the case anyway
    local lines; lines=$(wc -l < "$err")
    [ "$lines" = 1 ] || { cat "$err" >&2; die "$lines lines on stderr (wanted exactly one): $*"; }
    LAST_ERR=$(cat "$err")
}
