#!/usr/bin/env bash
# `make bench`: runs every benchmark (bench/*.sh scripts and the compiled
# build/rel/bench/bench_* programs). Each prints its own ratios against a
# baseline measured in the same run. Benchmarks never run in CI.
set -u
cd "$(dirname "$0")/.."
rc=0
for b in build/rel/bench/bench_*; do [ -x "$b" ] && { echo "== $b"; "$b" || rc=1; }; done
for s in bench/*.sh; do [ "$(basename "$s")" = run.sh ] && continue; echo "== $s"; bash "$s" || rc=1; done
exit $rc
