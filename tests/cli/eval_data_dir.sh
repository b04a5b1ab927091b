# lr-eval score --data-dir: ids that name more benchmark files than the
# command line has arguments (all seven, no --out-dir) are all scored, and
# the per-problem lines on stdout are the ones --out-dir writes.
source "$LR_ROOT/tests/lib.sh"
E=$LR_BIN/lr-eval S=$LR_ROOT/data
benches="gsm8k math500 svamp asdiv minerva_math olympiadbench mmlu_stem"
# first two rows of each benchmark, the gold itself as the prediction
for b in $benches; do
    head -n 2 "$S/$b/test.jsonl" > "$LR_TMP/$b.jsonl"
    "$E" prompts --layout "$b" "$LR_TMP/$b.jsonl" 2> /dev/null
done | jq -c '{id: (.id | sub("/[^:]*:"; "/test:")), prediction: ("so \\boxed{" + (.gold | tostring) + "}")}' > "$LR_TMP/pred.jsonl"
[ "$(wc -l < "$LR_TMP/pred.jsonl")" = 14 ] || die "$(wc -l < "$LR_TMP/pred.jsonl") predictions"
"$E" score --pred "$LR_TMP/pred.jsonl" --data-dir "$S" > "$LR_TMP/out.jsonl" 2> "$LR_TMP/err"
for b in $benches; do grep -q "^| $b | " "$LR_TMP/err" || die "no summary row for $b: $(cat "$LR_TMP/err")"; done
n=0; for b in $benches; do n=$((n + $(grep -c . "$S/$b/test.jsonl"))); done
[ "$(wc -l < "$LR_TMP/out.jsonl")" = "$n" ] || die "$(wc -l < "$LR_TMP/out.jsonl") per-problem lines, want $n"
jq -e -s 'map(select(.missing | not)) | length == 14' "$LR_TMP/out.jsonl" > /dev/null || die "not every prediction joined"
"$E" score --pred "$LR_TMP/pred.jsonl" --data-dir "$S" --out-dir "$LR_TMP/od" 2> /dev/null
cmp "$LR_TMP/out.jsonl" "$LR_TMP/od/results.jsonl" || die "stdout differs from results.jsonl"
