#!/usr/bin/env bash
# lr-eval score / compare: predictions joined with benchmark rows by id;
# missing and unmatched ids and rows without an answer are counted and
# reported, never dropped; summaries in markdown and JSON; the paper's
# baseline-vs-tuned delta table.
source "$LR_ROOT/tests/lib.sh"
E=$LR_BIN/lr-eval
S=$LR_ROOT/data
D=$LR_TMP/data
mkdir -p "$D/gsm8k" "$D/mmlu_stem"
head -n 3 "$S/gsm8k/test.jsonl" > "$D/gsm8k/test.jsonl"
echo '{"question": "a row without an answer"}' >> "$D/gsm8k/test.jsonl"
head -n 2 "$S/mmlu_stem/test.jsonl" > "$D/mmlu_stem/test.jsonl"   # golds C, C

cat > "$LR_TMP/base.jsonl" <<'J'
{"id": "gsm8k/test:0", "prediction": "She makes \\boxed{18} dollars.", "tokens": 100}
{"id": "gsm8k/test:1", "prediction": "The answer is 4.", "tokens": 50}
{"id": "mmlu_stem/test:0", "prediction": "The answer is (C).", "tokens": 10}
{"id": "mmlu_stem/test:1", "prediction": "The answer is (A).", "tokens": 20}
{"id": "gsm8k/test:99", "prediction": "no such row"}
J
"$E" score --pred "$LR_TMP/base.jsonl" --data-dir "$D" --out-dir "$LR_TMP/base" --label base 2> "$LR_TMP/err"
j=$LR_TMP/base/summary.json
jq -e '.benchmarks.gsm8k | .total == 3 and .scored == 2 and .correct == 1 and .missing == 1 and .skipped_rows == 1 and .mean_tokens == 75' "$j" > /dev/null || die "gsm8k summary: $(jq -c .benchmarks.gsm8k "$j")"
jq -e '.benchmarks.mmlu_stem | .total == 2 and .correct == 1 and .acc == 50' "$j" > /dev/null || die "mmlu summary"
jq -e '.unmatched_predictions == 1 and .label == "base"' "$j" > /dev/null || die "unmatched"
grep -q 'gsm8k: 1 of 3 problems have no prediction' "$LR_TMP/err" || die "missing not reported"
grep -q 'no benchmark row: id "gsm8k/test:99"' "$LR_TMP/err" || die "unmatched not reported"
grep -q 'skipped row: .*line 4: field "answer"' "$LR_TMP/err" || die "skipped row not reported"
grep -q '| gsm8k | 3 | 2 | 1 | 33.3 | 1 | 1 | 75.0 |' "$LR_TMP/base/summary.md" || die "markdown: $(cat "$LR_TMP/base/summary.md")"
[ "$(wc -l < "$LR_TMP/base/results.jsonl")" = 5 ] || die "per-problem lines"
jq -e -s 'map(select(.id == "gsm8k/test:0"))[0] | .extracted == "18" and .gold == "18" and .correct and (.prediction | test("boxed"))' \
    "$LR_TMP/base/results.jsonl" > /dev/null || die "per-problem record"
jq -e -s 'map(select(.id == "gsm8k/test:2"))[0] | .missing and (.correct | not)' "$LR_TMP/base/results.jsonl" > /dev/null || die "missing record"

# explicit --data files, per-problem lines on stdout
"$E" score --pred "$LR_TMP/base.jsonl" --data "$D/mmlu_stem/test.jsonl" > "$LR_TMP/stdout.jsonl" 2>/dev/null
[ "$(wc -l < "$LR_TMP/stdout.jsonl")" = 2 ] || die "--data"

# lr-dump's JSON of an lr-infer stream: header and end lines skipped, "text" and token lists
{ echo '{"lrs": 1, "kind": "dist"}'
  echo '{"id": "gsm8k/test:0", "idx": 0, "text": "The answer is 18.", "tokens": [1, 2, 3, 4]}'
  echo '{"lrs_end": 1}'; } | "$E" score --pred - --data "$D/gsm8k/test.jsonl" > "$LR_TMP/dump.out" 2>/dev/null
jq -e -s '.[0] | .correct and .tokens == 4' "$LR_TMP/dump.out" > /dev/null || die "lr-dump JSON as predictions"

# end to end from lr-infer (a tiny random model): records without "text" are
# decoded with --tokenizer; without it, one clear line
"$LR_BIN/lr-mkmodel" "$LR_TMP/m" $(jq -r '.expert|join(" ")' "$LR_ROOT/tests/golden/infer_ref.json") > /dev/null
"$LR_BIN/lr-infer" --model "$LR_TMP/m" --data "$D/gsm8k/test.jsonl" --preset qwen25-math-cot --limit 2 \
    --max-new-tokens 4 -o "$LR_TMP/g.lrs" 2>/dev/null
# lr-infer writes "text"; drop it to exercise decoding the token ids
"$LR_BIN/lr-dump" "$LR_TMP/g.lrs" | jq -c 'del(.text)' > "$LR_TMP/g.jsonl"
"$E" score --pred "$LR_TMP/g.jsonl" --data "$D/gsm8k/test.jsonl" --tokenizer "$LR_ROOT/build/tokenizers/qwen" \
    > "$LR_TMP/g.out" 2>/dev/null
jq -e -s 'length == 3 and (map(select(.missing | not)) | length == 2 and all(.tokens > 0 and (.prediction | type) == "string"))' \
    "$LR_TMP/g.out" > /dev/null || die "lr-infer -> lr-eval"
expect_fail 2 "$E" score --pred "$LR_TMP/g.jsonl" --data "$D/gsm8k/test.jsonl"
[[ $LAST_ERR == *"give --tokenizer"* ]] || die "$LAST_ERR"

# tuned run and the delta table
sed -e 's/is 4\./is 3./' -e 's/(A)/(C)/' "$LR_TMP/base.jsonl" > "$LR_TMP/tuned.jsonl"
"$E" score --pred "$LR_TMP/tuned.jsonl" --data-dir "$D" --out-dir "$LR_TMP/tuned" --label tuned 2>/dev/null
"$E" compare "$LR_TMP/base" "$LR_TMP/tuned/summary.json" > "$LR_TMP/cmp.md"
grep -q '^| base | 1 | 33.3 | - | | | | |$' "$LR_TMP/cmp.md" || die "compare base: $(cat "$LR_TMP/cmp.md")"
grep -q '^| tuned | 1 | 66.7 | - | +33.3 | .* | 1.000 | 0 / 1 |$' "$LR_TMP/cmp.md" || die "compare gsm8k: $(cat "$LR_TMP/cmp.md")"
grep -q '^| tuned | 1 | 100.0 | - | +50.0 | .* | 1.000 | 0 / 1 |$' "$LR_TMP/cmp.md" || die "compare mmlu"
"$E" --compare "$j" "$LR_TMP/tuned/summary.json" | cmp - "$LR_TMP/cmp.md" || die "--compare alias"

cp "$D/gsm8k/test.jsonl" "$LR_TMP/plain.jsonl"
# prompts: the toolkit's prompt per row (byte for byte), ids that score joins on
"$E" prompts "$D/mmlu_stem/test.jsonl" > "$LR_TMP/prompts.jsonl" 2> "$LR_TMP/perr"
head -n 1 "$LR_TMP/prompts.jsonl" | jq -j .prompt | cmp - "$LR_ROOT/tests/golden/prompt_mmlu_stem_0.txt" || die "mmlu prompt"
"$E" prompts "$D/gsm8k/test.jsonl" 2> "$LR_TMP/perr" | jq -c '{id, prediction: "The answer is 18."}' > "$LR_TMP/gen.jsonl"
grep -q "3 prompts, 1 rows skipped" "$LR_TMP/perr" || die "prompts skip count: $(cat "$LR_TMP/perr")"
"$E" score --pred "$LR_TMP/gen.jsonl" --data "$D/gsm8k/test.jsonl" 2>/dev/null | jq -e -s 'map(.correct) == [true, false, false]' > /dev/null || die "prompts -> score"
"$E" prompts - --layout gsm8k < "$D/gsm8k/test.jsonl" > "$LR_TMP/sp.jsonl" 2>/dev/null
head -n 1 "$LR_TMP/sp.jsonl" | jq -e '.id == "gsm8k/stdin:0"' > /dev/null || die "prompts from stdin"
expect_fail 1 "$E" prompts
expect_fail 1 "$E" prompts "$LR_TMP/plain.jsonl"

# bad input
expect_fail 1 "$E" score --pred "$LR_TMP/base.jsonl"
expect_fail 1 "$E" score --pred "$LR_TMP/base.jsonl" --data "$D/gsm8k/test.jsonl" --layout nosuch
[[ $LAST_ERR == *'unknown benchmark layout "nosuch"'* ]] || die "$LAST_ERR"
expect_fail 1 "$E" score --pred "$LR_TMP/base.jsonl" --data "$LR_TMP/plain.jsonl"
[[ $LAST_ERR == *"cannot tell the benchmark layout"* ]] || die "$LAST_ERR"
"$E" score --pred "$LR_TMP/base.jsonl" --data "$LR_TMP/plain.jsonl" --layout gsm8k > /dev/null 2>&1 || die "--layout"
expect_fail 3 "$E" score --pred "$LR_TMP/nope.jsonl" --data-dir "$D"
{ cat "$LR_TMP/base.jsonl"; echo '{"id": "gsm8k/test:0", "prediction": "again"}'; } > "$LR_TMP/dup.jsonl"
expect_fail 2 "$E" score --pred "$LR_TMP/dup.jsonl" --data-dir "$D"
[[ $LAST_ERR == *'line 6: field "id": duplicate id "gsm8k/test:0" (first on line 1)'* ]] || die "$LAST_ERR"
echo '{"id": 3, "prediction": "x"}' > "$LR_TMP/badid.jsonl"
expect_fail 2 "$E" score --pred "$LR_TMP/badid.jsonl" --data-dir "$D"
echo '{"id": "gsm8k/test:0", "prediction": "x"' > "$LR_TMP/trunc.jsonl"
expect_fail 2 "$E" score --pred "$LR_TMP/trunc.jsonl" --data-dir "$D"
[ "$(echo "$LAST_ERR" | wc -l)" = 1 ] || die "one line: $LAST_ERR"
echo '{"x": 1}' > "$LR_TMP/notsummary.json"
expect_fail 2 "$E" compare "$LR_TMP/notsummary.json" "$j"
expect_fail 1 "$E" compare "$j"
exit 0
