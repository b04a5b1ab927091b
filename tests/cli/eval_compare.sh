#!/usr/bin/env bash
# lr-eval compare: any number of runs against a base, paired by problem id;
# delta with a paired-bootstrap interval and McNemar's exact p, checked
# against scipy/statsmodels (tests/ref/compare_ref.py wrote the fixtures and
# expected numbers under tests/golden/compare) and against hand-computed
# binomial cases; groups of seeds; bad input.
source "$LR_ROOT/tests/lib.sh"
E=$LR_BIN/lr-eval
G=$LR_ROOT/tests/golden/compare

"$E" compare --json "$LR_TMP/got.jsonl" "$G/base" "$G/single/summary.json" "grp=$G/grp-s1,$G/grp-s2,$G/grp-s3" \
    > "$LR_TMP/cmp.md"
# every expected row: accuracies, sd, delta and p exactly (1e-9); the
# bootstrap interval within Monte-Carlo error of scipy's own resampling
# (10,000 resamples: the 2.5% quantile wanders by ~0.1 point; 0.6 allowed)
jq -n -e --slurpfile got "$LR_TMP/got.jsonl" --slurpfile want "$G/expected.json" '
  def near($a; $b; $t): ($a - $b | fabs) <= $t;
  [$want[] as $w | ($got | map(select(.bench == $w.bench and .label == $w.label)) | .[0]) as $g |
    if $g == null then "missing row \($w.bench) \($w.label)"
    elif ($g.runs != $w.runs) or (near($g.acc; $w.acc; 1e-9) | not) then "acc \($w.label) \($g.acc) vs \($w.acc)"
    elif $w.label == "base" then empty
    elif (near($g.acc_sd; $w.acc_sd; 1e-9) and near($g.delta; $w.delta; 1e-9)) | not then "sd/delta \($w.label)"
    elif (near($g.p; $w.p; 1e-9 * $w.p) and near($g.p_min; $w.p_min; 1e-9 * $w.p_min) and near($g.p_max; $w.p_max; 1e-9 * $w.p_max)) | not
      then "McNemar \($w.bench) \($w.label): \($g.p) vs scipy \($w.p)"
    elif (near($g.base_only; $w.base_only; 1e-9) and near($g.run_only; $w.run_only; 1e-9)) | not then "discordant counts \($w.label)"
    elif (near($g.ci_lo; $w.ci_lo; 0.6) and near($g.ci_hi; $w.ci_hi; 0.6)) | not
      then "bootstrap \($w.bench) \($w.label): [\($g.ci_lo), \($g.ci_hi)] vs scipy [\($w.ci_lo), \($w.ci_hi)]"
    else empty end] | if length == 0 then true else (.[] | stderr) | false end' > /dev/null || die "compare vs scipy"
[ "$(wc -l < "$LR_TMP/got.jsonl")" = 6 ] || die "json rows: $(wc -l < "$LR_TMP/got.jsonl")"
grep -q '^| run | runs | accuracy (%) | sd | delta | 95% interval | McNemar p | base only / run only |$' "$LR_TMP/cmp.md" || die "header"
for b in gsm8k svamp; do grep -q "^$b: .* problems" "$LR_TMP/cmp.md" || die "no $b table"; done
[ "$(grep -c '^| grp | 3 | ' "$LR_TMP/cmp.md")" = 2 ] || die "group rows: $(cat "$LR_TMP/cmp.md")"
# gsm8k (the paper's order) before svamp
[ "$(grep -o '^[a-z0-9]*: ' "$LR_TMP/cmp.md" | tr -d ': \n')" = gsm8ksvamp ] || die "benchmark order"
# seeded: the same table twice; another seed moves only the intervals
"$E" compare "$G/base" "$G/single" "grp=$G/grp-s1,$G/grp-s2,$G/grp-s3" | cmp - "$LR_TMP/cmp.md" || die "not deterministic"
"$E" compare --seed 9 "$G/base" "$G/single" > "$LR_TMP/s9.md"
"$E" compare "$G/base" "$G/single" | cmp -s - "$LR_TMP/s9.md" && die "--seed has no effect"
"$E" --compare "$G/base" "$G/single" > /dev/null || die "--compare alias"

# hand-computed McNemar (two-sided exact binomial): b discordant one way, c
# the other, p = min(1, 2 * sum_{k <= min(b,c)} C(b+c, k) / 2^(b+c))
mk() { # dir label verdicts (a string of 0/1, one per problem)
    mkdir -p "$LR_TMP/$1"; echo "{\"label\": \"$2\", \"benchmarks\": {}}" > "$LR_TMP/$1/summary.json"
    local v=$3 i; : > "$LR_TMP/$1/results.jsonl"
    for ((i = 0; i < ${#v}; i++)); do
        echo "{\"id\": \"gsm8k/test:$i\", \"bench\": \"gsm8k\", \"correct\": $([ "${v:i:1}" = 1 ] && echo true || echo false)}" \
            >> "$LR_TMP/$1/results.jsonl"
    done
}
mk h0 base 1000000000
mk h1 one9 0111111111      # b = 1, c = 9: 2 * (1 + 10) / 1024
mk h2 zero5 1111110000     # b = 0, c = 5: 2 / 32
mk h3 tie 0100000000       # b = 1, c = 1: 1
"$E" compare --json "$LR_TMP/h.jsonl" "$LR_TMP/h0" "$LR_TMP/h1" "$LR_TMP/h2" "$LR_TMP/h3" > "$LR_TMP/h.md"
jq -e -s 'def near($a; $b): ($a - $b | fabs) <= 1e-12 * $b; map({(.label): .p}) | add |
    near(.one9; 0.021484375) and near(.zero5; 0.0625) and .tie == 1' "$LR_TMP/h.jsonl" > /dev/null \
    || die "hand McNemar: $(cat "$LR_TMP/h.jsonl")"
grep -q '^| one9 | 1 | 90.0 | - | +80.0 | \[+40.0, +100.0\] | 0.021 | 1 / 9 |$' "$LR_TMP/h.md" || die "row: $(cat "$LR_TMP/h.md")"
# a run right everywhere the base is: the interval is that one point
mk h4 same 1000000000
"$E" compare --json "$LR_TMP/s.jsonl" "$LR_TMP/h0" "$LR_TMP/h4" > /dev/null
jq -e '.label != "same" or (.delta == 0 and .ci_lo == 0 and .ci_hi == 0 and .p == 1)' "$LR_TMP/s.jsonl" > /dev/null || die "identical runs"

# bad input: one line naming the file, line and field
expect_fail 1 "$E" compare "$G/base"
expect_fail 1 "$E" compare --resamples abc "$G/base" "$G/single"
expect_fail 1 "$E" compare --level 2 "$G/base" "$G/single"
expect_fail 1 "$E" compare --nosuch "$G/base" "$G/single"
expect_fail 1 "$E" compare "b=$G/base,$G/single" "$G/single"
[[ $LAST_ERR == *"base (first argument) must be one run"* ]] || die "$LAST_ERR"
expect_fail 3 "$E" compare "$G/base" "$LR_TMP/nope"
mkdir -p "$LR_TMP/nores" && cp "$G/single/summary.json" "$LR_TMP/nores/"
expect_fail 3 "$E" compare "$G/base" "$LR_TMP/nores"
[[ $LAST_ERR == *"nores/results.jsonl"* ]] || die "$LAST_ERR"
cp -r "$G/single" "$LR_TMP/short" && sed -i '$d' "$LR_TMP/short/results.jsonl"
expect_fail 2 "$E" compare "$G/base" "$LR_TMP/short"
[[ $LAST_ERR == *"short/results.jsonl: svamp: 1 of the base's 60 problems have no result"* ]] || die "$LAST_ERR"
cp -r "$G/single" "$LR_TMP/dup" && head -n 1 "$G/single/results.jsonl" >> "$LR_TMP/dup/results.jsonl"
expect_fail 2 "$E" compare "$G/base" "$LR_TMP/dup"
[[ $LAST_ERR == *"dup/results.jsonl: line 261: field \"id\": duplicate id"* ]] || die "$LAST_ERR"
cp -r "$G/single" "$LR_TMP/other" && echo '{"id": "gsm8k/test:999", "bench": "gsm8k", "correct": true}' >> "$LR_TMP/other/results.jsonl"
expect_fail 2 "$E" compare "$G/base" "$LR_TMP/other"
[[ $LAST_ERR == *'line 261: field "id": problem "gsm8k/test:999" is not in the base'* ]] || die "$LAST_ERR"
cp -r "$G/single" "$LR_TMP/badc" && sed -i '3s/"correct": [a-z]*/"correct": "yes"/' "$LR_TMP/badc/results.jsonl"
expect_fail 2 "$E" compare "$G/base" "$LR_TMP/badc"
[[ $LAST_ERR == *'line 3: field "correct": missing or not a boolean'* ]] || die "$LAST_ERR"
cp -r "$G/single" "$LR_TMP/badj" && sed -i '5s/}$//' "$LR_TMP/badj/results.jsonl"
expect_fail 2 "$E" compare "$G/base" "$LR_TMP/badj"
[ "$(echo "$LAST_ERR" | wc -l)" = 1 ] && [[ $LAST_ERR == *"line 5: not JSON"* ]] || die "$LAST_ERR"
echo '{"x": 1}' > "$LR_TMP/notsummary.json"
expect_fail 2 "$E" compare "$G/base" "$LR_TMP/notsummary.json"
exit 0
