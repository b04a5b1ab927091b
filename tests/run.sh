#!/usr/bin/env bash
# Runs every unit test binary in $2 and every tests/cli/*.sh against the tools
# in $1; prints PASS/FAIL per test and a closing "N passed, N failed" line.
# Usage: tests/run.sh BIN_DIR UNIT_DIR LABEL [FILTER]
set -u
bin=$1 units=$2 label=$3 filter=${4:-}
root=$(cd "$(dirname "$0")/.." && pwd)
export LR_BIN=$(cd "$bin" && pwd) LR_ROOT=$root
# Everything the tests read lies inside the repository: data/, tests/golden/,
# and the Qwen tokenizer, unpacked from tests/fixtures/qwen into build/.
make -s -C "$root" build/tokenizers/qwen/tokenizer.json build/tokenizers/qwen/tokenizer_config.json > /dev/null ||
    { echo "[$label] cannot unpack the Qwen tokenizer (tests/fixtures/qwen)" >&2; exit 1; }
[ "$label" = san ] && export LR_SAN=1 ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
pass=0 fail=0 failed=()
run_one() { # name, command...
    local name=$1; shift
    local log; log=$(mktemp)
    local t0=$SECONDS
    if LR_TMP=$(mktemp -d) "$@" >"$log" 2>&1; then
        pass=$((pass+1)); printf 'PASS %-40s [%s] %ss\n' "$name" "$label" $((SECONDS-t0))
    else
        fail=$((fail+1)); failed+=("$name")
        printf 'FAIL %-40s [%s]\n' "$name" "$label"; tail -n 30 "$log" | sed 's/^/    /'
    fi
    rm -f "$log"
}
for t in "$units"/test_*; do
    [ -x "$t" ] || continue
    n=$(basename "$t"); [ -n "$filter" ] && [[ $n != *$filter* ]] && continue
    run_one "$n" "$t"
done
for t in "$root"/tests/cli/*.sh; do
    [ -f "$t" ] || continue
    n=$(basename "$t" .sh); [ -n "$filter" ] && [[ $n != *$filter* ]] && continue
    run_one "cli/$n" bash "$t"
done
command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L > /dev/null 2>&1 ||
    echo "[$label] SKIP real-GPU checks: no GPU here; the CUDA kernels ran on the emulated device (cuda/emu.h) only; tests/gpu/run.sh checks a real one"
echo "[$label] $pass passed, $fail failed"
[ ${#failed[@]} -eq 0 ] || echo "[$label] failed: ${failed[*]}"
echo "$pass $fail" > "${LR_COUNTS:-/dev/null}"
[ "$fail" -eq 0 ]
