#!/usr/bin/env bash
# Runs the unit test binaries (test_*) and the shell tests (tests/cli/*.sh)
# of one or more builds, LR_TEST_JOBS at a time (default: the number of
# cores); prints PASS/FAIL per test as each ends, then a "[LABEL] N passed,
# N failed" line per build.
#
# Usage: tests/run.sh BIN_DIR UNIT_DIR LABEL [FILTER]
#        tests/run.sh --all [FILTER]      the release build and the ASan +
#            UBSan build in one queue (what `make test` runs), ending with
#            one "N passed, N failed" line over both
#
# The sanitizer build's tests run the emulated device in its reverse order
# (LR_EMU_ORDER=reverse: blocks last first, threads highest first), the
# release build's in the default one, so a race between the threads of a
# block or between blocks shows as a failure in one of the two.
#
# Every test runs in its own process with its own empty LR_TMP, so tests of
# both builds can share the cores: most are single-threaded, and one queue
# keeps both cores busy to the end. The longest ones are started first (a
# fixed list below: a short test queued last costs little, a long one a
# whole tail), so the suite ends close to its total time / jobs.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
# Everything the tests read lies inside the repository: data/, tests/golden/,
# and the Qwen tokenizer, unpacked from tests/fixtures/qwen into build/.
make -s -C "$root" build/tokenizers/qwen/tokenizer.json build/tokenizers/qwen/tokenizer_config.json > /dev/null ||
    { echo "cannot unpack the Qwen tokenizer (tests/fixtures/qwen)" >&2; exit 1; }
suites=()
if [ "${1:-}" = --all ]; then
    filter=${2:-}
    suites=("$root/bin $root/build/rel/tests rel" "$root/build/san/bin $root/build/san/tests san")
else
    [ $# -ge 3 ] || { echo "usage: tests/run.sh BIN_DIR UNIT_DIR LABEL [FILTER] | --all [FILTER]" >&2; exit 2; }
    filter=${4:-}
    for d in "$1" "$2"; do [ -d "$d" ] || { echo "tests/run.sh: no directory $d" >&2; exit 2; }; done
    suites=("$(cd "$1" && pwd) $(cd "$2" && pwd) $3")
fi
jobs_max=${LR_TEST_JOBS:-$(nproc 2> /dev/null || echo 1)}
# Started first, in this order (names as printed; a missing one is skipped).
first=(cli/fuzz cli/method_smoke test_gpu_paged cli/gpu_emu cli/tune_gpu_emu cli/infer_batching)

# The queue: "LABEL|BIN|UNITS|NAME" per test: the long ones of every build
# first, then the rest of the san build's (slower), then the rest.
queue=() rest=()
for ((s = ${#suites[@]} - 1; s >= 0; s--)); do
    read -r bin units label <<< "${suites[s]}"
    names=()
    for t in "$units"/test_*; do [ -x "$t" ] && names+=("$(basename "$t")"); done
    for t in "$root"/tests/cli/*.sh; do [ -f "$t" ] && names+=("cli/$(basename "$t" .sh)"); done
    for n in "${names[@]}"; do
        [ -n "$filter" ] && [[ $n != *$filter* ]] && continue
        printf '%s\n' "${first[@]}" | grep -qxF "$n" || rest+=("$label|$bin|$units|$n")
    done
done
for n in "${first[@]}"; do
    for s in "${suites[@]}"; do
        read -r bin units label <<< "$s"
        [ -n "$filter" ] && [[ $n != *$filter* ]] && continue
        if [[ $n == cli/* ]]; then [ -f "$root/tests/$n.sh" ] || continue; else [ -x "$units/$n" ] || continue; fi
        queue+=("$label|$bin|$units|$n")
    done
done
queue+=("${rest[@]}")

declare -A pass=() fail=() failed=() jname=() jlog=() jt0=()
for s in "${suites[@]}"; do read -r _ _ label <<< "$s"; pass[$label]=0 fail[$label]=0 failed[$label]=; done
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
# every emulated launch's kernel, block and dynamic shared memory, for
# cuda/resources at the end (cuda/emu.cc, tests/cuda_resources.py)
mkdir "$logs/launches"
launch() { # LABEL|BIN|UNITS|NAME
    local label bin units name; IFS='|' read -r label bin units name <<< "$1"
    local log="$logs/$label.${name//\//_}"
    (
        export LR_BIN=$bin LR_ROOT=$root LR_TMP LR_EMU_LAUNCH_DIR=$logs/launches; LR_TMP=$(mktemp -d)
        if [ "$label" = san ]; then
            export LR_SAN=1 ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
            export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
            # the emulated device runs blocks and threads in the reverse order here (cuda/emu.cc): a race
            # between threads or blocks that the default order hides changes the results in this one
            export LR_EMU_ORDER=${LR_EMU_ORDER:-reverse}
        fi
        if [[ $name == cli/* ]]; then exec bash "$root/tests/$name.sh"; else exec "$units/$name"; fi
    ) > "$log" 2>&1 &
    jname[$!]="$label|$name" jlog[$!]=$log jt0[$!]=$SECONDS
}
reap() { # waits for one test and prints its line
    local pid rc
    wait -n -p pid; rc=$?
    local label=${jname[$pid]%%|*} name=${jname[$pid]#*|}
    if [ "$rc" = 0 ]; then
        pass[$label]=$((pass[$label] + 1))
        printf 'PASS %-40s [%s] %ss\n' "$name" "$label" $((SECONDS - jt0[$pid]))
    else
        fail[$label]=$((fail[$label] + 1)) failed[$label]+=" $name"
        printf 'FAIL %-40s [%s] exit %s, %ss\n' "$name" "$label" "$rc" $((SECONDS - jt0[$pid]))
        tail -n 30 "${jlog[$pid]}" | sed 's/^/    /'
    fi
    rm -f "${jlog[$pid]}"
    unset "jname[$pid]" "jlog[$pid]" "jt0[$pid]"
}
t0=$SECONDS
for q in "${queue[@]}"; do
    while [ ${#jname[@]} -ge "$jobs_max" ]; do reap; done
    launch "$q"
done
while [ ${#jname[@]} -gt 0 ]; do reap; done

# cuda/resources: the launches of the whole suite against ptxas's registers
# and shared memory of the real build's kernels (tests/cuda_resources.py);
# only after an unfiltered run (a filtered one launches too few kernels),
# and only where nvcc built the real backend.
P=0 F=0
if [ -z "$filter" ]; then
    res=$root/build/cuda/cuda
    if ls "$res"/*.ptxas > /dev/null 2>&1 && [ -x "$root/build/cuda/occupancy" ]; then
        t1=$SECONDS
        if python3 "$root/tests/cuda_resources.py" "$root/build/cuda/occupancy" "$res" "$logs/launches" > "$logs/resources" 2>&1; then
            P=$((P + 1))
            printf 'PASS %-40s [%s] %ss\n' cuda/resources cuda $((SECONDS - t1))
        else
            F=$((F + 1))
            printf 'FAIL %-40s [%s] %ss\n' cuda/resources cuda $((SECONDS - t1))
            tail -n 30 "$logs/resources" | sed 's/^/    /'
        fi
    else
        echo "[cuda] SKIP cuda/resources: no real CUDA build (nvcc not found), so no ptxas report to check launches against"
    fi
fi
for s in "${suites[@]}"; do
    read -r _ _ label <<< "$s"
    command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L > /dev/null 2>&1 ||
        echo "[$label] SKIP real-GPU checks: no GPU here; the CUDA kernels ran on the emulated device (cuda/emu.h) only; tests/gpu/run.sh checks a real one"
    echo "[$label] ${pass[$label]} passed, ${fail[$label]} failed"
    [ -z "${failed[$label]}" ] || echo "[$label] failed:${failed[$label]}"
    P=$((P + pass[$label])) F=$((F + fail[$label]))
done
echo "($((SECONDS - t0)) s, $jobs_max at a time)"
[ "${1:-}" = --all ] && echo "$P passed, $F failed"
[ "$F" -eq 0 ]
