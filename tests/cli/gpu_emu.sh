# lr-infer --device cuda end to end on the emulated device (the same
# cuda/*.cu source built by g++ against cuda/emu.h): the amateur's follow
# stream from the device backend against the CPU one, through lr-kl: the
# same steps selected (bf16 may flip steps whose KL sits at beta: a few
# allowed), log-probs close; a generate run on the device makes a valid
# stream whose header says so; and the real build without a GPU refuses
# --device cuda with exit 4 and writes nothing.
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN T=$LR_TMP
if [ "${LR_SAN:-}" = 1 ]; then E=$LR_ROOT/build/san/emu; else E=$LR_ROOT/build/rel/emu; fi
[ -x "$E/lr-infer" ] || die "no emulated-device lr-infer at $E"
"$B/lr-mkmodel" "$T/exp" --seed 1 --hidden 64 --heads 4 --kv-heads 2 > /dev/null
"$B/lr-mkmodel" "$T/ama" --seed 2 --layers 1 > /dev/null
head -n 3 "$LR_ROOT/data/gsm8k/train.jsonl" > "$T/q.jsonl"
n=10
[ "${LR_SAN:-}" = 1 ] && n=6
# sampled (a random model's greedy trace repeats one token), on the cpu
"$B/lr-infer" --model "$T/exp" --data "$T/q.jsonl" --layout gsm8k --max-new-tokens $n --temperature 1 --seed 3 \
    --top-k-max 40 --device cpu -o "$T/e.lrs" 2> /dev/null
"$B/lr-infer" --model "$T/ama" --follow "$T/e.lrs" --device cpu -o "$T/a_cpu.lrs" 2> /dev/null
"$E/lr-infer" --model "$T/ama" --follow "$T/e.lrs" --device cuda -o "$T/a_gpu.lrs" 2> "$T/log"
grep -q "device cuda (emulated CUDA device" "$T/log" || die "no device line: $(cat "$T/log")"
"$B/lr-dump" --header "$T/a_gpu.lrs" | jq -e '.params.device == "cuda"' > /dev/null || die "header params.device"

# the followed log-probs: bf16 forward vs float32, close
paste -d' ' <("$B/lr-dump" "$T/a_cpu.lrs" | jq -c 'select(.ref_lp != null) | .ref_lp') \
            <("$B/lr-dump" "$T/a_gpu.lrs" | jq -c 'select(.ref_lp != null) | .ref_lp') \
    | jq -se '[range(0; length / 2) as $k | [.[2 * $k], .[2 * $k + 1]] | transpose[] | (.[0] - .[1]) | fabs] | max < 0.05' \
    > /dev/null || die "ref_lp differ by more than 0.05 between the cpu and the emulated cuda backend"

# lr-kl's selection from either amateur stream: >= 95% of steps agree here
# (tiny random models have near-flat distributions and KLs near any beta)
sel() { "$B/lr-kl" -q --beta 0.1 "$T/e.lrs" "$1" | "$B/lr-dump" | jq -c 'select(.kl != null) | [.idx, .step]'; }
kall() { "$B/lr-kl" -q --beta 0 "$T/e.lrs" "$1" | "$B/lr-dump" | jq -c 'select(.kl != null) | [.idx, .step]' | wc -l; }
sel "$T/a_cpu.lrs" | sort > "$T/s_cpu"
sel "$T/a_gpu.lrs" | sort > "$T/s_gpu"
steps=$(kall "$T/a_cpu.lrs")
diff_steps=$(comm -3 "$T/s_cpu" "$T/s_gpu" | wc -l)
[ "$steps" -ge 3 ] && [ "$(wc -l < "$T/s_cpu")" -ge 1 ] || die "too few steps to compare ($steps)"
[ $((diff_steps * 100)) -le $((steps * 5)) ] || die "$diff_steps of $steps steps selected differently"
echo "selection: $diff_steps of $steps steps differ"

# generate on the device: a valid stream of the same problems
"$E/lr-infer" --model "$T/exp" --data "$T/q.jsonl" --layout gsm8k --max-new-tokens 4 --device cuda \
    -o "$T/e_gpu.lrs" 2> /dev/null
[ "$("$B/lr-dump" --count "$T/e_gpu.lrs")" = 3 ] || die "generate on the device: record count"
"$B/lr-dump" "$T/e_gpu.lrs" | jq -se '[.[] | select(.k != null) | (.tokens | length) == 4 and (.k | all(. >= 1))] | all' \
    > /dev/null || die "generate on the device: records"

# sampling on the device (the host sends one uniform per row, the device
# draws): --top-k 1 keeps only the argmax, so it must give the greedy tokens
# exactly; the same seed the same tokens; and against the cpu backend, whose
# float32 logits differ from the device's bf16 ones, the same tokens until
# a draw lands near a boundary the rounding moved (here 70 of 96 steps
# agree before the first divergence and all 8 first tokens; at least half
# and 6 are required)
head -n 8 "$LR_ROOT/data/gsm8k/train.jsonl" > "$T/q8.jsonl"
m=12
[ "${LR_SAN:-}" = 1 ] && m=6
toks() { "$B/lr-dump" "$1" | jq -c 'select(.tokens != null) | .tokens'; }
smp=(--model "$T/exp" --data "$T/q8.jsonl" --layout gsm8k --max-new-tokens $m)
"$E/lr-infer" "${smp[@]}" --device cuda -o "$T/g_gpu.lrs" 2> /dev/null
"$E/lr-infer" "${smp[@]}" --device cuda --temperature 0.8 --top-k 1 --seed 5 -o "$T/k1_gpu.lrs" 2> /dev/null
[ "$(toks "$T/g_gpu.lrs")" = "$(toks "$T/k1_gpu.lrs")" ] || die "device sampling with --top-k 1 is not greedy"
for d in 1 2; do
    "$E/lr-infer" "${smp[@]}" --device cuda --temperature 0.8 --top-p 0.9 --top-k 20 --seed 3 -o "$T/s_gpu$d.lrs"         2> /dev/null
done
[ "$(toks "$T/s_gpu1.lrs")" = "$(toks "$T/s_gpu2.lrs")" ] || die "device sampling: the same seed gave other tokens"
[ "$(toks "$T/s_gpu1.lrs")" != "$(toks "$T/g_gpu.lrs")" ] || die "device sampling gave the greedy tokens"
"$B/lr-infer" "${smp[@]}" --device cpu --temperature 0.8 --top-p 0.9 --top-k 20 --seed 3 -o "$T/s_cpu.lrs" 2> /dev/null
agree=$(paste -d' ' <(toks "$T/s_cpu.lrs") <(toks "$T/s_gpu1.lrs") | jq -s '[range(0; length / 2) as $k | [.[2 * $k], .[2 * $k + 1]]
    | (first(range(0; .[0] | length) as $i | select(.[0][$i] != .[1][$i]) | $i) // (.[0] | length))] | [add, (map(select(. > 0)) | length)] | @tsv' -r)
read -r same first <<< "$agree"
echo "sampled: $same of $((8 * m)) steps agree with the cpu before the first divergence; $first of 8 first tokens"
[ $((same * 2)) -ge $((8 * m)) ] && [ "$first" -ge 6 ] || die "device sampling departs from the cpu's: $agree"

# the paged KV cache: short prompts (25 tokens), 64 new, a context of 128
# (2 pages of 64): pools of 3 and 4 pages preempt (3 and 2 times measured)
# and write the default pool's tokens. The attention runs on FMAs here
# (LR_GPU_TCATT=0): tensor-core prefill is chosen by a call's shape, and
# preemption changes the calls, so with it a near-tie may flip (it did, at
# 2 of 8 problems' late tokens); the final line counts the preemptions, and
# bad page settings are refused
for i in 1 2 3 4 5 6 7 8; do echo "{\"question\": \"What is $i plus $((i * 7)) times two?\", \"answer\": \"#### $i\"}"; done \
    > "$T/qs.jsonl"
kvr=(--model "$T/exp" --data "$T/qs.jsonl" --layout gsm8k --preset raw --max-new-tokens 64 --max-context 128 --device cuda
     --batch 8)
LR_GPU_TCATT=0 "$E/lr-infer" "${kvr[@]}" -o "$T/kv_all.lrs" 2> /dev/null
LR_GPU_TCATT=0 "$E/lr-infer" "${kvr[@]}" --kv-pages 4 -o "$T/kv4.lrs" 2> "$T/kv4.log"
LR_GPU_TCATT=0 "$E/lr-infer" "${kvr[@]}" --kv-pages 3 -o "$T/kv3.lrs" 2> "$T/kv3.log"
grep -q "KV cache 4 pages of 64 positions" "$T/kv4.log" || die "pool line: $(cat "$T/kv4.log")"
pre=$(sed -n 's/.* \([0-9]*\) preemptions$/\1/p' "$T/kv4.log")
pre3=$(sed -n 's/.* \([0-9]*\) preemptions$/\1/p' "$T/kv3.log")
[ "${pre:-0}" -gt 0 ] && [ "${pre3:-0}" -gt 0 ] || die "the small pools did not preempt: $(cat "$T/kv4.log" "$T/kv3.log")"
[ "$("$B/lr-dump" --count "$T/kv4.lrs")" = 8 ] || die "paged: record count"
[ "$(toks "$T/kv4.lrs")" = "$(toks "$T/kv_all.lrs")" ] && [ "$(toks "$T/kv3.lrs")" = "$(toks "$T/kv_all.lrs")" ] ||
    die "the paged pools changed the tokens"
echo "paged: $pre preemptions with 4 pages, $pre3 with 3, the same tokens"

# decode one step ahead (on by default on cuda): the log counts the
# passes queued ahead; with LR_GPU_OVERLAP=0 none are, and the tokens are
# the same, sampled and in the pool of 3 pages (preempting), and so are the
# records' lists but for the rounding of other calls
ahead=$(sed -n 's/.*: \([0-9]*\) of [0-9]* forward passes queued one step ahead.*/\1/p' "$T/kv3.log")
[ "${ahead:-0}" -gt 0 ] || die "no pass queued ahead: $(cat "$T/kv3.log")"
LR_GPU_OVERLAP=0 LR_GPU_TCATT=0 "$E/lr-infer" "${kvr[@]}" --kv-pages 3 -o "$T/kv3_off.lrs" 2> "$T/off.log"
grep -q ": 0 of [0-9]* forward passes queued one step ahead" "$T/off.log" || die "LR_GPU_OVERLAP=0: $(cat "$T/off.log")"
[ "$(toks "$T/kv3_off.lrs")" = "$(toks "$T/kv3.lrs")" ] || die "LR_GPU_OVERLAP=0 changed the paged tokens"
LR_GPU_OVERLAP=0 "$E/lr-infer" "${smp[@]}" --device cuda --temperature 0.8 --top-p 0.9 --top-k 20 --seed 3 \
    -o "$T/s_off.lrs" 2> /dev/null
[ "$(toks "$T/s_off.lrs")" = "$(toks "$T/s_gpu1.lrs")" ] || die "LR_GPU_OVERLAP=0 changed the sampled tokens"
# follow mode's calls queued one ahead too: the same records bit for bit
# (the same calls: all its tokens are known)
fa=$(sed -n 's/.*: \([0-9]*\) of [0-9]* forward passes queued one step ahead.*/\1/p' "$T/log")
[ "${fa:-0}" -gt 0 ] || die "follow: no pass queued ahead: $(cat "$T/log")"
LR_GPU_OVERLAP=0 "$E/lr-infer" --model "$T/ama" --follow "$T/e.lrs" --device cuda -o "$T/a_off.lrs" 2> /dev/null
# (the header's first line names the output: records only)
cmp -s <("$B/lr-dump" "$T/a_gpu.lrs" | tail -n +2) <("$B/lr-dump" "$T/a_off.lrs" | tail -n +2) ||
    die "follow: LR_GPU_OVERLAP=0 changed the records"
echo "one step ahead: $ahead passes queued ahead in the pool of 3 pages, $fa in follow; the same tokens with it off"
expect_fail 1 "$E/lr-infer" "${kvr[@]}" --kv-page 48 -o "$T/kvbad.lrs"
[[ $LAST_ERR == *"multiple of 64"* ]] || die "--kv-page 48 message: $LAST_ERR"
expect_fail 1 "$E/lr-infer" "${kvr[@]}" --kv-pages 1 -o "$T/kvbad.lrs"
[[ $LAST_ERR == *"cannot hold one context"* ]] || die "--kv-pages 1 message: $LAST_ERR"
[ ! -e "$T/kvbad.lrs" ] || die "output written after a refused pool"

# the device's list limit, and the real build on a machine without a GPU
"$B/lr-mkmodel" "$T/big" --layers 1 --vocab 2100 > /dev/null
expect_fail 1 "$E/lr-infer" --model "$T/big" --data "$T/q.jsonl" --layout gsm8k --device cuda --top-k-max 2000
[[ $LAST_ERR == *"device limit"* ]] || die "top-k-max message: $LAST_ERR"
if ! nvidia-smi > /dev/null 2>&1; then
    expect_fail 4 "$B/lr-infer" --model "$T/ama" --follow "$T/e.lrs" --device cuda -o "$T/none.lrs"
    [[ $LAST_ERR == *"CUDA"* ]] || die "no-GPU message: $LAST_ERR"
    [ ! -s "$T/none.lrs" ] || die "output written without a device"
fi
echo ok
