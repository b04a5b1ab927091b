#!/usr/bin/env bash
# The report's Makefiles (pipelines/report.mk over ablations.mk, sft.mk,
# common.mk) shortened to a few dozen problems and a few steps on the
# shipped models of examples/arith: every stage's output well formed, its
# statistics sane, every row of the table present; a failing stage stops
# naming itself and leaves nothing under its final name; a rerun redoes
# only what is missing.
source "$LR_ROOT/tests/lib.sh"
W=${LR_WORLD:-$LR_ROOT/examples/arith}
for f in expert/config.json amateur/config.json data/gsm8k/train.jsonl data/gsm8k/test.jsonl; do
    [ -f "$W/$f" ] || die "$W/$f missing"
done
O=$LR_TMP/run
ROWS="lightreasoner sft no-select no-contrast no-contrast-onehot no-both random lowest"
args=(--no-print-directory -C "$LR_ROOT" OUT="$O" BIN="$LR_BIN" EXPERT="$W/expert" AMATEUR="$W/amateur"
      DATA="$W/data/gsm8k/train.jsonl" EVAL_DATA="$W/data/gsm8k/test.jsonl" N=24 MAX_NEW=64 EVAL_N=24 EVAL_MAX_NEW=96
      SFT_N=24 SFT_SAMPLES=2 SFT_MAX_NEW=96 SEEDS="1 2" ROWS="$ROWS" THREADS=1 DEVICE=cpu
      TUNE_FLAGS="--lr 1e-3 --batch 4 --accum 1 --max-steps 8")
export OPENBLAS_NUM_THREADS=1
count() { "$LR_BIN/lr-dump" --count "$1"; }

# a failing stage names itself, leaves no file a rerun would take as made
mkdir -p "$LR_TMP/nomodel"
if make "${args[@]}" AMATEUR="$LR_TMP/nomodel" -f pipelines/ablations.mk "$O/stage1/amateur.lrs" > "$LR_TMP/f.out" 2> "$LR_TMP/f.err"; then
    die "a missing amateur was accepted"
fi
grep -q '^pipeline: stage sample amateur failed' "$LR_TMP/f.err" || die "failure not named: $(tail -n 5 "$LR_TMP/f.err")"
[ ! -e "$O/stage1/amateur.lrs" ] || die "a failed stage left its output"
[ "$(count "$O/stage1/expert.lrs")" = 24 ] || die "expert.lrs"
touch -d '2001-01-01' "$O/stage1/expert.lrs"   # kept as made: a rerun must not redo it

make -j2 "${args[@]}" -f pipelines/report.mk > "$LR_TMP/r.out" 2> "$LR_TMP/r.err" || { tail -n 20 "$LR_TMP/r.err" >&2; die "report.mk failed"; }
grep -q 'stage sample expert' "$LR_TMP/r.err" && die "stage 1 made again"
[ "$(count "$O/stage1/amateur.lrs")" = 24 ] || die "amateur.lrs"

# selection: the share kept in (0, 1); the controls keep as many steps; w/o
# Select keeps every step; one-hot targets have one id
kept() { sed -n 's/.* \([0-9]*\) kept (.*/\1/p' "$1"; }
seen() { sed -n 's/.* \([0-9]*\) steps seen .*/\1/p' "$1"; }
L=$O/lightreasoner
k=$(kept "$L/kl.log") s=$(seen "$L/kl.log")
[ "$k" -gt 0 ] && [ "$k" -lt "$s" ] || die "lightreasoner kept $k of $s steps"
[ "$(count "$L/examples.lrs")" = "$k" ] || die "examples vs kept"
for d in random/s1 random/s2 lowest; do [ "$(count "$O/$d/examples.lrs")" = "$k" ] || die "$d: not as many steps"; done
cmp -s "$O/random/s1/examples.lrs" "$O/random/s2/examples.lrs" && die "random draws do not depend on the seed"
[ "$(count "$O/no-select/examples.lrs")" = "$s" ] || die "no-select is not every step"
"$LR_BIN/lr-dump" "$O/no-contrast-onehot/examples.lrs" | jq -e -s 'map(select(.target_ids)) | all(.target_ids | length == 1)' > /dev/null \
    || die "one-hot targets"
# the lowest-KL control's steps have lower KL than the method's
jq -n -e --argjson a "$("$LR_BIN/lr-dump" "$L/examples.lrs" | jq -s 'map(select(.kl) | .kl) | max')" \
    --argjson b "$("$LR_BIN/lr-dump" "$O/lowest/examples.lrs" | jq -s 'map(select(.kl) | .kl) | max')" '$b <= $a' > /dev/null || die "lowest"

# SFT: only samples scored right are kept
for kk in 1 2; do
    n=$("$LR_BIN/lr-dump" "$O/sft/samples/k$kk.kept.lrs" | jq -r 'select(.id) | .id' | sort | tee "$LR_TMP/kept$kk" | wc -l)
    jq -r 'select(.correct) | .id' "$O/sft/samples/k$kk.score/results.jsonl" | sort | cmp - "$LR_TMP/kept$kk" || die "sft kept $kk"
    [ "$n" -le 24 ] || die "sft kept $n"
done

# training: a log line per step, and the loss fell (first two steps vs last two, mean over seeds)
for r in $ROWS; do
    for sd in 1 2; do
        f=$O/$r/s$sd/tune-log.jsonl
        [ "$(wc -l < "$f")" = 8 ] || die "$f: steps"
        [ -f "$O/$r/s$sd/adapter/adapter_config.json" ] || die "$r: adapter"
    done
done
jq -s -e '(.[0:2] | map(.loss) | add) > (.[-2:] | map(.loss) | add)' <(cat "$O"/sft/s{1,2}/tune-log.jsonl | jq -c 'select(.step <= 2 or .step >= 7)') \
    > /dev/null || die "sft loss did not fall"
jq -s -e '(.[0:2] | map(.loss) | add) > (.[-2:] | map(.loss) | add)' <(cat "$O"/lightreasoner/s{1,2}/tune-log.jsonl | jq -c 'select(.step <= 2 or .step >= 7)') \
    > /dev/null || die "lightreasoner loss did not fall"

# the table: every row, accuracies in range, intervals around the deltas
R=$O/report.md
for l in base LightReasoner "SFT (rejection sampling)" "w/o Select (beta 0)" "w/o Contrast (expert dist.)" "w/o Contrast (one-hot)" \
         "w/o Select and Contrast" "control: random steps" "control: lowest-KL steps"; do
    grep -qF "| $l |" "$R" || die "row \"$l\" missing"
done
jq -s -e 'length == 9 and all(.acc >= 0 and .acc <= 100) and
    all(.[1:][]; .runs == 2 and .ci_lo <= .delta + 1e-9 and .delta <= .ci_hi + 1e-9 and .p > 0 and .p <= 1)' \
    "$O/report/compare.jsonl" > /dev/null || die "compare numbers"
for p in kl-hist kl-trace loss; do
    [ "$(head -c 4 "$O/$p.png" | od -An -tx1 | tr -d ' ')" = 89504e47 ] || die "$p.png is not a PNG"
    grep -q "($p.png)" "$R" || die "$p.png not in the report"
done
grep -q '^| LightReasoner | 2 | .* | [0-9]* | [0-9]* | [0-9]* | [0-9]* | [0-9.]* | .* -> .* |$' "$R" || die "efficiency columns: $(grep LightReasoner "$R")"

# complete: a rerun does nothing; a lost evaluation is redone alone
make "${args[@]}" -f pipelines/report.mk 2>&1 | grep -q 'stage ' && die "a complete run redid a stage"
rm -rf "$O/random/s2/eval"
make "${args[@]}" -f pipelines/report.mk > /dev/null 2> "$LR_TMP/again.err"
[ "$(grep -c 'stage .* \.\.\.$' "$LR_TMP/again.err")" = 1 ] && grep -q 'stage eval control: random steps seed 2 \.\.\.' "$LR_TMP/again.err" \
    || die "rerun: $(grep stage "$LR_TMP/again.err")"
exit 0
