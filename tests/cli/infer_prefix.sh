# lr-infer --device cpu on prompts with a common few-shot header: the
# header is computed once and each prompt that starts with it runs on a
# copy of its keys and values (one stderr line says so), and the records
# are those of --no-shared-prefix: the same tokens and list lengths,
# log-probs within float rounding (the engine's cases: test_prefix_cpu).
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN T=$LR_TMP
"$B/lr-mkmodel" "$T/exp" --seed 1 --hidden 64 --heads 4 --kv-heads 2 > /dev/null
H="Solve each problem step by step and give the final answer after four hashes. Example: What is 2 plus 3? 2 plus 3 is 5. #### 5. Example: What is 4 times 6? 4 times 6 is 24. #### 24."
# the problem without the header comes first: the rule takes what most prompts share, not the first one's start
echo '{"question": "A problem without the header: 3 times 9?", "answer": "#### 27"}' > "$T/q.jsonl"
for i in 1 2 3 4 5; do echo "{\"question\": \"$H Now: what is $i plus $((i * 7)) times two?\", \"answer\": \"#### $i\"}"; done \
    >> "$T/q.jsonl"
# 4 slots for 6 problems: two of them join on the prefix in a slot freed by another
run=(--model "$T/exp" --data "$T/q.jsonl" --layout gsm8k --preset raw --max-new-tokens 12 --max-context 256
     --device cpu --batch 4 --threads 1)
"$B/lr-infer" "${run[@]}" -o "$T/on.lrs" 2> "$T/on.log"
"$B/lr-infer" "${run[@]}" --no-shared-prefix -o "$T/off.lrs" 2> "$T/off.log"
n=$(sed -n 's/.*shared prefix: \([0-9]*\) tokens, copied into each slot that shares it (half the first 4 prompts share \([0-9]*\)).*/\1 \2/p' "$T/on.log")
read -r kept lcp <<< "${n:-0 0}"
[ "$kept" -gt 100 ] && [ "$kept" = "$lcp" ] || die "no shared prefix line: $(cat "$T/on.log")"
! grep -q "shared prefix" "$T/off.log" || die "--no-shared-prefix still shares: $(cat "$T/off.log")"
recs() { "$B/lr-dump" "$1" | tail -n +2 | grep -v "\"lrs_end\""; }
[ "$(recs "$T/on.lrs" | wc -l)" = 6 ] || die "record count"
[ "$(recs "$T/on.lrs" | jq -c '[.idx, .prompt, .tokens, .k, .finish]')" = \
  "$(recs "$T/off.lrs" | jq -c '[.idx, .prompt, .tokens, .k, .finish]')" ] || die "sharing changed the records"
# log-probs within 1e-5, compared sorted (this near-flat random model's lists hold near-ties whose order
# rounding may swap): BLAS rounds a row's sums by the rows of its call (the prefix alone, then the own
# rows), a wrong context moves them by far more
worst=$(paste <(recs "$T/on.lrs" | jq -c '.top_lp | sort') <(recs "$T/off.lrs" | jq -c '.top_lp | sort') |
    jq -sR '[split("\n")[] | select(length > 0) | split("\t") | map(fromjson) | transpose[] | (.[0] - .[1]) | fabs] | max')
jq -ne "$worst < 1e-5" > /dev/null || die "log-probs moved by $worst"
echo "shared prefix: $kept tokens; the same tokens, log-probs within $worst"
