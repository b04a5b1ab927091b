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
# st_close A B TOL: every float32 tensor of safetensors files A and B within
# TOL of each other, as max |A - B| / max |B| per tensor; prints the worst
st_close() {
    python3 - "$1" "$2" "$3" <<'PY'
import array, json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    out = {}
    for k, t in json.loads(b[8:8 + n]).items():
        if k != "__metadata__":
            lo, hi = t["data_offsets"]
            out[k] = array.array("f", b[8 + n + lo:8 + n + hi])
    return out
a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
assert a.keys() == b.keys(), "different tensors"
worst = max(max(abs(x - y) for x, y in zip(a[k], b[k])) / (max(abs(x) for x in b[k]) or 1.0) for k in a)
print("%.3g" % worst)
sys.exit(0 if worst < tol else 1)
PY
}
# logs_close A B LOSS_TOL NORM_TOL FIELD...: lr-tune logs A and B have the
# same steps, losses and grad norms within those relative tolerances of B's,
# and every FIELD (lr, examples, ...) equal
logs_close() {
    local a=$1 b=$2 tl=$3 tn=$4 eq="" f; shift 4
    for f in step "$@"; do eq+=" and \$x.$f == \$y.$f"; done
    jq -se --slurpfile b "$b" --argjson tl "$tl" --argjson tn "$tn" 'length == ($b | length) and length > 0 and
        ([range(0; length) as $i | .[$i] as $x | $b[$i] as $y |
          (($x.loss - $y.loss) | fabs) <= $tl * ($y.loss | fabs) and
          (($x.grad_norm - $y.grad_norm) | fabs) <= $tn * ($y.grad_norm | fabs)'"$eq"'] | all)' "$a" > /dev/null
}
