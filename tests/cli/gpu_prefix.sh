# lr-infer --device cuda (the emulated device) on prompts with a common
# few-shot header: the header's whole KV pages are computed once and shared
# (one stderr line says so), and the records are those of
# --no-shared-prefix: the same tokens, log-probs within float
# rounding (preemption with shared pages: test_gpu_prefix).
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN T=$LR_TMP
if [ "${LR_SAN:-}" = 1 ]; then E=$LR_ROOT/build/san/emu; else E=$LR_ROOT/build/rel/emu; fi
[ -x "$E/lr-infer" ] || die "no emulated-device lr-infer at $E"
"$B/lr-mkmodel" "$T/exp" --seed 1 --hidden 64 --heads 4 --kv-heads 2 > /dev/null
H="Solve each problem step by step and give the final answer after four hashes. Example: What is 2 plus 3? 2 plus 3 is 5. #### 5. Example: What is 4 times 6? 4 times 6 is 24. #### 24."
# the problem without the header comes first: the rule takes what most prompts share, not the first one's start
echo '{"question": "A problem without the header: 3 times 9?", "answer": "#### 27"}' > "$T/q.jsonl"
for i in 1 2 3 4 5; do echo "{\"question\": \"$H Now: what is $i plus $((i * 7)) times two?\", \"answer\": \"#### $i\"}"; done \
    >> "$T/q.jsonl"
# FMA attention (LR_GPU_TCATT=0): the calls differ with sharing, and tensor-core prefill is chosen by a call's shape
run=(--model "$T/exp" --data "$T/q.jsonl" --layout gsm8k --preset raw --max-new-tokens 12 --max-context 256
     --device cuda --batch 6)
LR_GPU_TCATT=0 "$E/lr-infer" "${run[@]}" -o "$T/on.lrs" 2> "$T/on.log"
LR_GPU_TCATT=0 "$E/lr-infer" "${run[@]}" --no-shared-prefix -o "$T/off.lrs" 2> "$T/off.log"
grep -q "shared prefix: 128 tokens, 2 pages" "$T/on.log" || die "no shared prefix line: $(cat "$T/on.log")"
! grep -q "shared prefix" "$T/off.log" || die "--no-shared-prefix still shares: $(cat "$T/off.log")"
recs() { "$B/lr-dump" "$1" | tail -n +2 | grep -v "\"lrs_end\""; }
[ "$(recs "$T/on.lrs" | wc -l)" = 6 ] || die "record count"
[ "$(recs "$T/on.lrs" | jq -c '[.idx, .prompt, .tokens, .k, .finish]')" = \
  "$(recs "$T/off.lrs" | jq -c '[.idx, .prompt, .tokens, .k, .finish]')" ] || die "sharing changed the records"
# log-probs within 2e-2, compared sorted (this near-flat random model's lists hold ties whose order rounding
# may swap). Measured: 4 of the 6 records bit-identical, 2 within 1.0e-2 from their first step: the
# unshared run's first call runs every prompt whole, the shared one only the rows after the prefix, and
# GEMMs of other row counts round otherwise (a wrong page moves log-probs by far more)
worst=$(paste <(recs "$T/on.lrs" | jq -c '.top_lp | sort') <(recs "$T/off.lrs" | jq -c '.top_lp | sort') |
    jq -sR '[split("\n")[] | select(length > 0) | split("\t") | map(fromjson) | transpose[] | (.[0] - .[1]) | fabs] | max')
jq -ne "$worst < 2e-2" > /dev/null || die "log-probs moved by $worst"
echo "shared prefix: 128 tokens; the same tokens, log-probs within $worst"
