#!/usr/bin/env bash
# The whole suite twice: release build, then ASan + UBSan build.
# Ends with one line "N passed, N failed" over both runs.
set -u
cd "$(dirname "$0")/.."
c1=$(mktemp) c2=$(mktemp)
LR_COUNTS=$c1 tests/run.sh bin build/rel/tests rel "${1:-}"; r1=$?
LR_COUNTS=$c2 tests/run.sh build/san/bin build/san/tests san "${1:-}"; r2=$?
read -r p1 f1 < "$c1"; read -r p2 f2 < "$c2"; rm -f "$c1" "$c2"
echo "$((p1+p2)) passed, $((f1+f2)) failed"
[ $r1 -eq 0 ] && [ $r2 -eq 0 ]
