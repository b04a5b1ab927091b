# lr-tune end to end on a tiny model: soft-KL on `example` records and SFT
# on `dist` records, the loss falls; the JSON-lines log has one line per
# step; a run stopped after a checkpoint and resumed ends byte-identical to
# an uninterrupted one; the PEFT layout; usage and input errors.
source "$LR_ROOT/tests/lib.sh"
T=$LR_BIN/lr-tune
"$LR_BIN/lr-mkmodel" "$LR_TMP/m" --seed 3
"$LR_BIN/lr-dump" --from-json "$LR_ROOT/tests/fixtures/examples_small.jsonl" > "$LR_TMP/ex.lrs"
"$LR_BIN/lr-dump" --from-json "$LR_ROOT/tests/fixtures/dist_small.jsonl" > "$LR_TMP/d.lrs"

# soft-KL, 30 steps on one batch of 12 examples: the loss falls by > 60%
"$T" --model "$LR_TMP/m" --out "$LR_TMP/a" --lr 2e-2 --batch 12 --accum 1 --max-steps 30 --targets all \
    --log "$LR_TMP/a.jsonl" "$LR_TMP/ex.lrs" 2> "$LR_TMP/a.err"
[ "$(wc -l < "$LR_TMP/a.jsonl")" = 30 ] || die "log: one line per step"
jq -se 'all(.[]; has("loss") and has("grad_norm") and has("lr") and has("tokens_per_s"))' "$LR_TMP/a.jsonl" > /dev/null || die "log fields"
jq -se '.[29].loss < 0.4 * .[0].loss' "$LR_TMP/a.jsonl" > /dev/null || die "soft-KL loss did not fall: $(jq -s '[.[0].loss, .[29].loss]' "$LR_TMP/a.jsonl")"
jq -se '(.[0].lr - 0.02 | fabs) < 1e-8 and .[29].lr < .[0].lr' "$LR_TMP/a.jsonl" > /dev/null || die "linear lr schedule"
grep -q "token rows forwarded per example (packed)" "$LR_TMP/a.err" || die "packing report"
jq -e '.r == 8 and .lora_alpha == 16 and .peft_type == "LORA" and (.target_modules | length) == 7' "$LR_TMP/a/adapter_config.json" > /dev/null || die "adapter_config.json"
"$LR_BIN/lr-mkmodel" --check "$LR_TMP/a/adapter_model.safetensors" > "$LR_TMP/chk" || die "adapter safetensors invalid"
grep -q "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight" "$LR_TMP/a/adapter_model.safetensors" || die "PEFT tensor names"

# SFT on dist records
"$T" --model "$LR_TMP/m" --out "$LR_TMP/s" --lr 2e-2 --batch 2 --accum 1 --max-steps 20 --log "$LR_TMP/s.jsonl" "$LR_TMP/d.lrs" 2> /dev/null
jq -se '.[19].loss < 0.5 * .[0].loss' "$LR_TMP/s.jsonl" > /dev/null || die "SFT loss did not fall"

# SFT on what lr-infer generated (the SFT baseline's pipeline on a tiny model)
"$LR_BIN/lr-infer" --model "$LR_TMP/m" --data "$LR_ROOT/data/gsm8k/train.jsonl" --limit 4 --max-new-tokens 12 \
    --temperature 1 --seed 3 -o "$LR_TMP/gen.lrs" 2> /dev/null
"$T" --model "$LR_TMP/m" --out "$LR_TMP/g" --lr 1e-2 --batch 4 --accum 1 --max-steps 30 --max-len 512 \
    --log "$LR_TMP/g.jsonl" "$LR_TMP/gen.lrs" 2> /dev/null
jq -se '.[29].loss < 0.6 * .[0].loss' "$LR_TMP/g.jsonl" > /dev/null || die "SFT on lr-infer output: $(jq -s '[.[0].loss, .[29].loss]' "$LR_TMP/g.jsonl")"

# resume: stopped after step 4 (checkpoint at 4), resumed to 7 == one run of 7 (dropout on)
args=(--model "$LR_TMP/m" --lr 1e-2 --batch 3 --accum 2 --max-steps 7 --save-every 2 --dropout 0.1 "$LR_TMP/ex.lrs")
"$T" --out "$LR_TMP/full" "${args[@]}" 2> /dev/null
"$T" --out "$LR_TMP/res" --stop-after 5 "${args[@]}" 2> /dev/null
[ -d "$LR_TMP/res/checkpoint-4" ] && [ ! -d "$LR_TMP/res/checkpoint-2" ] || die "checkpoint-4 only"
[ ! -e "$LR_TMP/res/adapter_model.safetensors" ] || die "a stopped run wrote its final adapter"
"$T" --out "$LR_TMP/res" --resume "${args[@]}" 2> "$LR_TMP/res.err"
grep -q "resuming from .*checkpoint-4" "$LR_TMP/res.err" || die "did not resume"
cmp "$LR_TMP/full/adapter_model.safetensors" "$LR_TMP/res/adapter_model.safetensors" || die "resumed run differs"
# and the run is deterministic
"$T" --out "$LR_TMP/full2" "${args[@]}" 2> /dev/null
cmp "$LR_TMP/full/adapter_model.safetensors" "$LR_TMP/full2/adapter_model.safetensors" || die "not deterministic"

# full-parameter training overfits one batch to near-zero loss (LoRA alone
# cannot: the tiny model's fixed final norm and lm_head bound its logits)
"$T" --model "$LR_TMP/m" --out "$LR_TMP/f" --full --lr 1e-2 --batch 12 --accum 1 --max-steps 60 --log "$LR_TMP/f.jsonl" \
    "$LR_TMP/ex.lrs" 2> /dev/null
jq -se '.[59].loss < 0.01 and .[0].loss > 4' "$LR_TMP/f.jsonl" > /dev/null || die "full training did not overfit: $(jq -s '[.[0].loss, .[59].loss]' "$LR_TMP/f.jsonl")"
"$LR_BIN/lr-mkmodel" --check "$LR_TMP/f" > /dev/null || die "--full output is not a valid model folder"
# full-parameter resume is exact too; length-grouped batches run
fargs=(--model "$LR_TMP/m" --full --lr 1e-3 --batch 4 --accum 1 --max-steps 5 --save-every 2 --group-by-length "$LR_TMP/ex.lrs")
"$T" --out "$LR_TMP/ff" "${fargs[@]}" 2> /dev/null
"$T" --out "$LR_TMP/fr" --stop-after 3 "${fargs[@]}" 2> /dev/null
"$T" --out "$LR_TMP/fr" --resume "${fargs[@]}" 2> /dev/null
cmp "$LR_TMP/ff/model.safetensors" "$LR_TMP/fr/model.safetensors" || die "resumed full training differs"
expect_fail 1 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" --full --init-adapter "$LR_TMP/a" "$LR_TMP/ex.lrs"

"$T" --help | grep -q "usage: lr-tune" || die "--help"
expect_fail 1 "$T" --out "$LR_TMP/x" "$LR_TMP/ex.lrs"
expect_fail 1 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" --targets q,w "$LR_TMP/ex.lrs"
expect_fail 1 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" --objective sft "$LR_TMP/ex.lrs"
expect_fail 1 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" --batch 0 "$LR_TMP/ex.lrs"
expect_fail 3 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" "$LR_TMP/missing.lrs"
# a token id the model does not have: exit 2 naming the example
jq -c 'if .idx == 2 and .step == 5 then .context[3] = 5000 else . end' "$LR_ROOT/tests/fixtures/examples_small.jsonl" |
    "$LR_BIN/lr-dump" --from-json > "$LR_TMP/badtok.lrs"
expect_fail 2 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" --no-shuffle "$LR_TMP/badtok.lrs"
echo "$LAST_ERR" | grep -q "problem 2, step 5): token 5000 at position 3 is outside" || die "bad token message: $LAST_ERR"
head -c 100 "$LR_TMP/ex.lrs" > "$LR_TMP/cut.lrs"
expect_fail 2 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" "$LR_TMP/cut.lrs"
echo ok
