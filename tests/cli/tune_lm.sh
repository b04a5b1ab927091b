# lr-tune --objective lm: JSON lines of {"text"} train the plain next-token
# loss. Step 1's loss equals the mean negative log-prob of every token after
# the first as lr-infer --follow computes it (an independent forward), and
# a run equals SFT on `dist` records whose prompt is the first token (same
# losses, same weights); special tokens in the text are single tokens;
# malformed input is named by file and line.
source "$LR_ROOT/tests/lib.sh"
T=$LR_BIN/lr-tune
"$LR_BIN/lr-mkmodel" "$LR_TMP/m" --seed 5
cat > "$LR_TMP/c.jsonl" <<'TXT'
{"text": "Question: Tom has 47 apples. He gives 19 away.\nAnswer: 47-19=28.\n#### 28<|endoftext|>"}

{"text": "<|im_start|>user\n3+4?<|im_end|>\n<|im_start|>assistant\n\\boxed{7}<|im_end|>"}
TXT
jq -c .text "$LR_TMP/c.jsonl" | "$LR_BIN/lr-tok" "$LR_TMP/m" > "$LR_TMP/ids"
[ "$(wc -l < "$LR_TMP/ids")" = 2 ] || die "tokenize"
eot=$("$LR_BIN/lr-tok" "$LR_TMP/m" <<< '"<|endoftext|>"' | jq '.[0]')
jq -e --argjson e "$eot" '.[-1] == $e' <(head -1 "$LR_TMP/ids") > /dev/null || die "<|endoftext|> is not one token"

# the same tokens as `dist` records: prompt = first token, tokens = the rest
info=$("$LR_BIN/lr-tok" --info "$LR_TMP/m")
{
    jq -c '{lrs: "lightreasoner-stream", format_version: 1, kind: "dist", kind_version: 1, tool: "lr-infer",
        tool_version: "0.1.0", argv: ["lr-infer"], model: {name: "m", hash: "00", vocab: 300},
        tokenizer: {name: "m", hash: .hash, vocab: .vocab_size}, params: {preset: "raw", max_new_tokens: 512}}' <<< "$info"
    jq -c -s 'to_entries[] | .key as $i | .value as $v | {id: "t:\($i)", idx: $i, prompt: [$v[0]], tokens: $v[1:],
        finish: "length", k: [$v[1:][] | 1], top_ids: $v[1:], top_lp: [$v[1:][] | 0], tail: [$v[1:][] | 0]}' "$LR_TMP/ids"
    echo '{"lrs_end":2}'
} | "$LR_BIN/lr-dump" --from-json -o "$LR_TMP/d.lrs"

args=(--model "$LR_TMP/m" --full --lr 1e-3 --batch 2 --accum 1 --max-steps 4 --no-shuffle)
"$T" "${args[@]}" --out "$LR_TMP/lm" --objective lm --log "$LR_TMP/lm.log" "$LR_TMP/c.jsonl" 2> "$LR_TMP/lm.err"
grep -q "2 examples (lm)" "$LR_TMP/lm.err" || die "lm: $(cat "$LR_TMP/lm.err")"
"$T" "${args[@]}" --out "$LR_TMP/sft" --log "$LR_TMP/sft.log" "$LR_TMP/d.lrs" 2> /dev/null
jq -se '.[3].loss < .[0].loss' "$LR_TMP/lm.log" > /dev/null || die "lm loss did not fall"
paste -d ' ' <(jq .loss "$LR_TMP/lm.log") <(jq .loss "$LR_TMP/sft.log") |
    awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-6 * $2) { print "lm " $1 " vs sft " $2; exit 1 } }' ||
    die "lm losses differ from SFT on the same tokens"
cmp "$LR_TMP/lm/model.safetensors" "$LR_TMP/sft/model.safetensors" || die "lm weights differ from SFT on the same tokens"

# hand computation: mean over the 2 texts' predicted tokens of -log p, each
# log p from lr-infer --follow of the untrained model (ref_lp of top_ids)
"$LR_BIN/lr-infer" --model "$LR_TMP/m" --follow "$LR_TMP/d.lrs" -o "$LR_TMP/f.lrs" 2> /dev/null
want=$("$LR_BIN/lr-dump" "$LR_TMP/f.lrs" | jq -s '[.[] | select(has("ref_lp")) | .ref_lp[]] | (map(-.) | add) / length')
got=$(jq -s '.[0].loss' "$LR_TMP/lm.log")
awk -v a="$got" -v b="$want" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 1e-4 * b) }' || die "step-1 loss $got, hand computation $want"

# bad input: one line naming file and line, exit 2
printf '{"text": "ok ok"}\n{"txt": "x"}\n' > "$LR_TMP/bad.jsonl"
expect_fail 2 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" --full --objective lm "$LR_TMP/bad.jsonl"
[[ $LAST_ERR == *"bad.jsonl: line 2: field \"text\""* ]] || die "message: $LAST_ERR"
printf '{"text": "ok ok"}\n{"text": \n' > "$LR_TMP/bad2.jsonl"
expect_fail 2 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" --full --objective lm "$LR_TMP/bad2.jsonl"
[[ $LAST_ERR == *"bad2.jsonl: line 2:"* ]] || die "message: $LAST_ERR"
expect_fail 3 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" --full --objective lm "$LR_TMP/none.jsonl"

# --resume --reschedule: a run planned for 6 steps, stopped at its step-2
# checkpoint, continues under a 4-step schedule: step 3 has the loss of the
# uninterrupted run's step 3 (same weights) and the new schedule's rate,
# lr * (4 - 2) / 4; without --reschedule the new total is refused
rs=(--model "$LR_TMP/m" --full --objective lm --lr 1e-3 --batch 1 --accum 1 --no-shuffle --save-every 2 "$LR_TMP/c.jsonl")
"$T" "${rs[@]}" --out "$LR_TMP/r6" --max-steps 6 --log "$LR_TMP/r6.log" 2> /dev/null
"$T" "${rs[@]}" --out "$LR_TMP/r" --max-steps 6 --stop-after 2 --log "$LR_TMP/r.log" 2> /dev/null
expect_fail 1 "$T" "${rs[@]}" --out "$LR_TMP/r" --max-steps 4 --resume
[[ $LAST_ERR == *"--max-steps"* ]] || die "message: $LAST_ERR"
expect_fail 1 "$T" "${rs[@]}" --out "$LR_TMP/x" --max-steps 4 --reschedule
"$T" "${rs[@]}" --out "$LR_TMP/r" --max-steps 4 --resume --reschedule --log "$LR_TMP/r.log" 2> "$LR_TMP/r.err"
grep -q "resuming from .*checkpoint-2" "$LR_TMP/r.err" || die "did not resume: $(cat "$LR_TMP/r.err")"
[ "$(wc -l < "$LR_TMP/r.log")" = 4 ] || die "rescheduled log: $(cat "$LR_TMP/r.log")"
jq -se --slurpfile u "$LR_TMP/r6.log" '(.[2].loss == $u[2].loss) and ((.[2].lr - 0.0005) | fabs) < 1e-9 and (.[3].lr - 0.00025 | fabs) < 1e-9' \
    "$LR_TMP/r.log" > /dev/null || die "rescheduled steps: $(jq -c '[.step, .loss, .lr]' "$LR_TMP/r.log") vs $(jq -c '[.step, .loss, .lr]' "$LR_TMP/r6.log")"
[ -f "$LR_TMP/r/model.safetensors" ] || die "rescheduled run wrote no model"
