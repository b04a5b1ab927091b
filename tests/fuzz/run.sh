#!/usr/bin/env bash
# Builds the libFuzzer targets in tests/fuzz with clang (ASan + UBSan, any
# UB a crash) and runs each for SECONDS (default 60) from the committed
# seeds in tests/fuzz/corpus/<target>/ (copied, so what the fuzzer adds
# stays under build/fuzz). Exits 1 when any target crashed; the input that
# did it is kept as build/fuzz/artifacts/<target>-crash-*. Without clang it
# says so and exits 0 (plain `make test` needs only gcc).
# Usage: tests/fuzz/run.sh [SECONDS] [TARGET...]     (`make fuzz FUZZ_SECONDS=N`)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
shift || true
targets=${*:-stream safetensors tokenizer answer}
CLANG=${CLANG:-$(command -v clang || command -v clang-14 || true)}
if [ -z "$CLANG" ]; then
    echo "fuzz: SKIP: no clang (apt-get install clang); the targets need libFuzzer" >&2
    exit 0
fi
out=build/fuzz
mkdir -p "$out/obj" "$out/artifacts"
flags="-std=c11 -g -O1 -D_GNU_SOURCE -Ilib -I/usr/include/x86_64-linux-gnu/openblas-pthread
    -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# The library once per run (cuda/none.c: no GPU backend), two compiles at a time.
ls lib/*/*.c cuda/none.c | xargs -P 2 -I{} sh -c \
    'o='"$out"'/obj/$(echo {} | tr / _).o; [ "$o" -nt {} ] && [ "$o" -nt tests/fuzz/run.sh ] || '"$CLANG"' '"$(echo $flags)"' -c {} -o "$o"'
libs="-lmsgpackc -lzstd -ljansson -lpcre2-8 -lutf8proc -lopenblas -lm -lpthread"
declare -A maxlen=([stream]=65536 [safetensors]=16384 [tokenizer]=32768 [answer]=4096)
failed=()
for t in $targets; do
    [ -f "tests/fuzz/fuzz_$t.c" ] || { echo "fuzz: no target $t" >&2; exit 1; }
    $CLANG $flags -fsanitize=fuzzer "tests/fuzz/fuzz_$t.c" "$out"/obj/*.o $libs -o "$out/fuzz_$t"
    rm -rf "$out/corpus_$t"; mkdir -p "$out/corpus_$t"
    cp tests/fuzz/corpus/"$t"/* "$out/corpus_$t/"
    echo "fuzz: $t for ${secs}s from $(ls tests/fuzz/corpus/"$t" | wc -l) seeds" >&2
    if ! ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 TMPDIR=$out \
        "$out/fuzz_$t" -max_total_time="$secs" -max_len="${maxlen[$t]}" -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" "$out/corpus_$t" > "$out/$t.log" 2>&1; then
        failed+=("$t")
        tail -n 40 "$out/$t.log" >&2
    else
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/$t.log" | sed "s/^/fuzz: $t: /" >&2
    fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: FAILED: ${failed[*]} (inputs in $out/artifacts/)" >&2; exit 1; }
echo "fuzz: ok: $targets" >&2
