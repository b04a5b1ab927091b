#!/usr/bin/env bash
# The report's Makefiles (pipelines/report.mk over ablations.mk, sft.mk,
# common.mk) shortened to a few dozen problems and a few steps on the
# shipped models of examples/arith: every stage's output well formed, its
# statistics sane, every row of the table present; a failing stage stops
# naming itself and leaves nothing under its final name; a rerun redoes
# only what is missing.
#
# Without the shipped models (a checkout of the tools alone) it runs on two
# tiny random models (lr-mkmodel) and the problems of
# tests/fixtures/arith-mini instead: beta is then the median KL of stage 1
# (random models disagree everywhere), and since a random model solves
# nothing, SFT is checked up to its filtered samples and left out of the
# table (as it is when the shipped expert solves none of the sampled
# problems).
source "$LR_ROOT/tests/lib.sh"
W=${LR_WORLD:-$LR_ROOT/examples/arith}
O=$LR_TMP/run
count() { "$LR_BIN/lr-dump" --count "$1"; }
ALL="lightreasoner sft no-select no-contrast no-contrast-onehot no-both random lowest"
if [ -f "$W/expert/config.json" ] && [ -f "$W/amateur/config.json" ]; then
    world=1 E=$W/expert A=$W/amateur D=$W/data/gsm8k ROWS=$ALL
else
    echo "method_smoke: no models in $W: tiny random models and tests/fixtures/arith-mini"
    world=0 E=$LR_TMP/expert A=$LR_TMP/amateur D=$LR_ROOT/tests/fixtures/arith-mini/gsm8k ROWS=${ALL/sft /}
    "$LR_BIN/lr-mkmodel" "$E" --layers 2 --hidden 64 --seed 21 > /dev/null
    "$LR_BIN/lr-mkmodel" "$A" --arch llama --layers 1 --hidden 32 --heads 2 --kv-heads 1 --inter 64 --seed 22 > /dev/null
fi
args=(--no-print-directory -C "$LR_ROOT" OUT="$O" BIN="$LR_BIN" EXPERT="$E" AMATEUR="$A"
      DATA="$D/train.jsonl" EVAL_DATA="$D/test.jsonl" N=24 MAX_NEW=64 EVAL_N=24 EVAL_MAX_NEW=96
      SFT_N=24 SFT_SAMPLES=2 SFT_MAX_NEW=96 SEEDS="1 2" ROWS="$ROWS" THREADS=1 DEVICE=cpu
      TUNE_FLAGS="--lr 1e-3 --batch 4 --accum 1 --max-steps 8")
export OPENBLAS_NUM_THREADS=1

# a failing stage names itself, leaves no file a rerun would take as made
mkdir -p "$LR_TMP/nomodel"
if make "${args[@]}" AMATEUR="$LR_TMP/nomodel" -f pipelines/ablations.mk "$O/stage1/amateur.lrs" > "$LR_TMP/f.out" 2> "$LR_TMP/f.err"; then
    die "a missing amateur was accepted"
fi
grep -q '^pipeline: stage sample amateur failed' "$LR_TMP/f.err" || die "failure not named: $(tail -n 5 "$LR_TMP/f.err")"
[ ! -e "$O/stage1/amateur.lrs" ] || die "a failed stage left its output"
[ "$(count "$O/stage1/expert.lrs")" = 24 ] || die "expert.lrs"
touch -d '2001-01-01' "$O/stage1/expert.lrs"   # kept as made: a rerun must not redo it
if [ $world = 0 ]; then
    make "${args[@]}" -f pipelines/ablations.mk "$O/stage1/amateur.lrs" 2> /dev/null
    "$LR_BIN/lr-kl" --beta 0 "$O/stage1/expert.lrs" "$O/stage1/amateur.lrs" 2> "$LR_TMP/kl0" > /dev/null
    args+=(BETA="$(sed -n 's/.* KL p50 \([0-9.]*\) .*/\1/p' "$LR_TMP/kl0")")
fi
# SFT's samples: the SFT row needs at least one right (a weak expert may
# solve none of 24 problems; the filter is checked either way)
make -j2 "${args[@]}" -f pipelines/sft.mk "$O/sft/samples/k1.kept.lrs" "$O/sft/samples/k2.kept.lrs" 2> /dev/null
sftrow=0
[ $(( $(count "$O/sft/samples/k1.kept.lrs") + $(count "$O/sft/samples/k2.kept.lrs") )) -gt 0 ] && [ $world = 1 ] && sftrow=1
if [ $sftrow = 0 ]; then
    ROWS=${ALL/sft /}
    for i in "${!args[@]}"; do [[ ${args[$i]} == ROWS=* ]] && args[$i]="ROWS=$ROWS"; done
    echo "method_smoke: no sampled solution was right: the SFT row is left out"
fi

make -j2 "${args[@]}" -f pipelines/report.mk > "$LR_TMP/r.out" 2> "$LR_TMP/r.err" || { tail -n 20 "$LR_TMP/r.err" >&2; die "report.mk failed"; }
grep -q 'stage sample expert' "$LR_TMP/r.err" && die "stage 1 made again"
[ "$(stat -c %Y "$O/stage1/expert.lrs")" = "$(date -d 2001-01-01 +%s)" ] || die "expert.lrs rewritten"
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

# training: a log line per step and an adapter for every run
for r in $ROWS; do
    for sd in 1 2; do
        f=$O/$r/s$sd/tune-log.jsonl
        [ "$(wc -l < "$f")" = 8 ] || die "$f: steps"
        [ -f "$O/$r/s$sd/adapter/adapter_config.json" ] || die "$r: adapter"
    done
done
# the loss falls: lr-tune on the first 4 of the method's examples, one
# batch repeated (no shuffle, no dropout), so every step sees the same data
{ "$LR_BIN/lr-dump" --head 4 "$L/examples.lrs"; echo '{"lrs_end": 4}'; } | "$LR_BIN/lr-dump" --from-json -o "$LR_TMP/ex4.lrs"
"$LR_BIN/lr-tune" --model "$E" --out "$LR_TMP/a4" --batch 4 --accum 1 --max-steps 6 --no-shuffle --dropout 0 --lr 1e-3 \
    --log "$LR_TMP/l4.jsonl" "$LR_TMP/ex4.lrs" 2> /dev/null
jq -s -e '.[0].loss > .[-1].loss' "$LR_TMP/l4.jsonl" > /dev/null || die "loss did not fall: $(jq -c .loss "$LR_TMP/l4.jsonl" | tr '\n' ' ')"

# the table: every row, accuracies in range, intervals around the deltas
R=$O/report.md
sft_label="SFT (rejection sampling)"; [ $sftrow = 1 ] || sft_label=base
for l in base LightReasoner "$sft_label" "w/o Select (beta 0)" "w/o Contrast (expert dist.)" "w/o Contrast (one-hot)" \
         "w/o Select and Contrast" "control: random steps" "control: lowest-KL steps"; do
    grep -qF "| $l |" "$R" || die "row \"$l\" missing"
done
jq -s -e --argjson n $((8 + sftrow)) 'length == $n and all(.acc >= 0 and .acc <= 100) and
    all(.[1:][]; .runs == 2 and .ci_lo <= .delta + 1e-9 and .delta <= .ci_hi + 1e-9 and .p > 0 and .p <= 1)' \
    "$O/report/compare.jsonl" > /dev/null || die "compare numbers"
for p in kl-hist kl-trace loss; do
    [ "$(head -c 4 "$O/$p.png" | od -An -tx1 | tr -d ' ')" = 89504e47 ] || die "$p.png is not a PNG"
    grep -q "($p.png)" "$R" || die "$p.png not in the report"
done
grep -q '^| LightReasoner | 2 | .* | [0-9]* | [0-9]* | [0-9]* | [0-9]* | 32 | [0-9.]* | .* -> .* |$' "$R" \
    || die "efficiency columns: $(grep LightReasoner "$R")"

# complete: a rerun does nothing; a lost evaluation is redone alone
make "${args[@]}" -f pipelines/report.mk 2>&1 | grep -q 'stage ' && die "a complete run redid a stage"
rm -rf "$O/random/s2/eval"
make "${args[@]}" -f pipelines/report.mk > /dev/null 2> "$LR_TMP/again.err"
[ "$(grep -c 'stage .* \.\.\.$' "$LR_TMP/again.err")" = 1 ] && grep -q 'stage eval control: random steps seed 2 \.\.\.' "$LR_TMP/again.err" \
    || die "rerun: $(grep stage "$LR_TMP/again.err")"

# pipelines/lightreasoner.mk on its own: every stage timed, the efficiency lines
make --no-print-directory -C "$LR_ROOT" -f pipelines/lightreasoner.mk OUT="$LR_TMP/lr" BIN="$LR_BIN" EXPERT="$E" AMATEUR="$A" \
    DATA="$D/train.jsonl" EVAL_DATA="$D/test.jsonl" N=12 MAX_NEW=48 EVAL_N=12 EVAL_MAX_NEW=64 \
    DEVICE=cpu STEPS=3 TUNE_BATCH=4 ACCUM=1 TUNE_FLAGS="--lr 1e-3" > "$LR_TMP/lr.out" 2> "$LR_TMP/lr.err" \
    || { tail -n 20 "$LR_TMP/lr.err" >&2; die "lightreasoner.mk failed"; }
for st in sample-expert sample-amateur select tune; do
    grep -q "^wall time $st: [0-9.]* s$" "$LR_TMP/lr/summary.md" || die "no wall time of $st: $(cat "$LR_TMP/lr/summary.md")"
done
grep -q '^pipeline: problems used [0-9]* of 12; tokens tuned (selected steps) [0-9]*$' "$LR_TMP/lr/summary.md" || die "efficiency line"
grep -q '^| tuned | 1 | ' "$LR_TMP/lr/summary.md" || die "lightreasoner.mk table"
exit 0
