# lr-tune end to end on a tiny model: soft-KL on `example` records and SFT
# on `dist` records, the loss falls; the JSON-lines log has one line per
# step; a run stopped after a checkpoint and resumed ends byte-identical to
# an uninterrupted one, also from the checkpoint before a damaged one, and
# a resume with other settings or inputs is refused; NaN stops training;
# outputs never replace an input or an existing folder; --max-steps cycles
# the data; --reference-quirks gives the authors' loss; signals; the PEFT
# layout; usage and input errors (file, record and field named).
source "$LR_ROOT/tests/lib.sh"
T=$LR_BIN/lr-tune
"$LR_BIN/lr-mkmodel" "$LR_TMP/m" --seed 3
"$LR_BIN/lr-dump" --from-json "$LR_ROOT/tests/fixtures/examples_small.jsonl" > "$LR_TMP/ex.lrs"
# the fixture's header names a made-up tokenizer: give it the tiny model's size
jq -c 'if .lrs then .tokenizer = {"name": "tiny", "hash": "", "vocab": 272} else . end' "$LR_ROOT/tests/fixtures/dist_small.jsonl" |
    "$LR_BIN/lr-dump" --from-json > "$LR_TMP/d.lrs"
"$LR_BIN/lr-dump" --from-json "$LR_ROOT/tests/fixtures/dist_small.jsonl" > "$LR_TMP/d_othertok.lrs"
# st_set FILE TENSOR VALUE: every float32 element of TENSOR set to VALUE
st_set() {
    python3 - "$@" <<'PY'
import json, struct, sys
path, name, value = sys.argv[1], sys.argv[2], float(sys.argv[3])
b = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
t = json.loads(b[8:8 + n])[name]
assert t["dtype"] == "F32"
lo, hi = t["data_offsets"]
b[8 + n + lo:8 + n + hi] = struct.pack("<f", value) * ((hi - lo) // 4)
open(path, "wb").write(b)
PY
}

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

# resume: stopped after step 5 (checkpoints at 2 and 4, in OUT.part), resumed
# to 7 == one run of 7 (dropout on); the log holds each step once
args=(--model "$LR_TMP/m" --lr 1e-2 --batch 3 --accum 2 --max-steps 7 --save-every 2 --dropout 0.1 "$LR_TMP/ex.lrs")
"$T" --out "$LR_TMP/full" "${args[@]}" 2> /dev/null
"$T" --out "$LR_TMP/res" --stop-after 5 --log "$LR_TMP/res.jsonl" "${args[@]}" 2> /dev/null
[ -d "$LR_TMP/res.part/checkpoint-4" ] && [ -d "$LR_TMP/res.part/checkpoint-2" ] || die "the newest two checkpoints"
[ ! -e "$LR_TMP/res" ] || die "a stopped run made its final folder"
[ ! -e "$LR_TMP/res.part/adapter_config.json" ] || die "a stopped run wrote its final adapter"
cp -r "$LR_TMP/res.part" "$LR_TMP/res2.part" && cp -r "$LR_TMP/res.part" "$LR_TMP/res3.part"
# a changed setting or input is refused, naming it
expect_fail 1 "$T" --out "$LR_TMP/res" --resume "${args[@]}" --lr 2e-2
[[ $LAST_ERR == *"written with --lr 0.01, this run has --lr 0.02"* ]] || die "changed --lr msg: $LAST_ERR"
expect_fail 1 "$T" --out "$LR_TMP/res" --resume "${args[@]}" --max-steps 9
[[ $LAST_ERR == *"--max-steps 7, this run has --max-steps 9"* ]] || die "changed --max-steps msg: $LAST_ERR"
expect_fail 1 "$T" --out "$LR_TMP/res" --resume "${args[@]/ex.lrs/d.lrs}"
[[ $LAST_ERR == *"inputs (content)"* ]] || die "changed input msg: $LAST_ERR"
"$T" --out "$LR_TMP/res" --resume --log "$LR_TMP/res.jsonl" "${args[@]}" 2> "$LR_TMP/res.err"
grep -q "resuming from .*res.part/checkpoint-4" "$LR_TMP/res.err" || die "did not resume"
cmp "$LR_TMP/full/adapter_model.safetensors" "$LR_TMP/res/adapter_model.safetensors" || die "resumed run differs"
[ ! -e "$LR_TMP/res.part" ] && [ -d "$LR_TMP/res/checkpoint-4" ] || die "OUT.part not renamed onto OUT"
[ "$(jq -s 'map(.step)' "$LR_TMP/res.jsonl" | jq -c .)" = "[1,2,3,4,5,6,7]" ] || die "log after resume: $(jq -sc 'map(.step)' "$LR_TMP/res.jsonl")"
# a damaged newest checkpoint: resume falls back to the one before, same result
head -c 100 "$LR_TMP/res2.part/checkpoint-4/optimizer.safetensors" > "$LR_TMP/cut.st"
mv "$LR_TMP/cut.st" "$LR_TMP/res2.part/checkpoint-4/optimizer.safetensors"
"$T" --out "$LR_TMP/res2" --resume "${args[@]}" 2> "$LR_TMP/res2.err"
grep -q "checkpoint-4 is damaged (.*); falling back to checkpoint-2" "$LR_TMP/res2.err" || die "no fallback: $(cat "$LR_TMP/res2.err")"
cmp "$LR_TMP/full/adapter_model.safetensors" "$LR_TMP/res2/adapter_model.safetensors" || die "run resumed from the fallback differs"
# a state that turns the weights into NaN stops training (exit 2), keeping the checkpoints
st_set "$LR_TMP/res3.part/checkpoint-4/optimizer.safetensors" exp_avg_sq -1
set +e; "$T" --out "$LR_TMP/res3" --resume "${args[@]}" 2> "$LR_TMP/res3.err"; rc=$?; set -e
[ $rc = 2 ] || die "NaN after resume: exit $rc"
grep -q "step 5: parameter .* is -\?nan after the AdamW update" "$LR_TMP/res3.err" || die "NaN msg: $(tail -1 "$LR_TMP/res3.err")"
[ -d "$LR_TMP/res3.part/checkpoint-4" ] && [ ! -e "$LR_TMP/res3" ] || die "the last checkpoint must stay, no adapter"
# --eps 0: Adam divides 0 by 0 where a gradient is 0: exit 2, nothing written
set +e; "$T" --model "$LR_TMP/m" --out "$LR_TMP/e0" --eps 0 --max-steps 2 "$LR_TMP/ex.lrs" 2> "$LR_TMP/e0.err"; rc=$?; set -e
[ $rc = 2 ] && grep -q "step 1: parameter .* is -\?nan" "$LR_TMP/e0.err" || die "--eps 0: exit $rc: $(tail -1 "$LR_TMP/e0.err")"
[ ! -e "$LR_TMP/e0" ] && [ -z "$(ls -d "$LR_TMP"/e0.part* 2> /dev/null)" ] || die "--eps 0 left an output"
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
# outputs: never over an input, never over an existing folder without --force
sum0=$(md5sum < "$LR_TMP/m/model.safetensors")
expect_fail 1 "$T" --model "$LR_TMP/m" --out "$LR_TMP/m" --full --max-steps 1 "$LR_TMP/ex.lrs"
[[ $LAST_ERR == *"is also an input"* ]] || die "--out MODEL msg: $LAST_ERR"
[ "$(md5sum < "$LR_TMP/m/model.safetensors")" = "$sum0" ] || die "the base model changed"
expect_fail 1 "$T" --model "$LR_TMP/m" --out "$LR_TMP/a" --max-steps 1 "$LR_TMP/ex.lrs"
[[ $LAST_ERR == *"exists: give --force"* ]] || die "existing --out msg: $LAST_ERR"
"$T" --model "$LR_TMP/m" --out "$LR_TMP/a" --force --max-steps 1 "$LR_TMP/ex.lrs" 2> /dev/null || die "--force"
# --max-steps past the data: the examples cycle, the schedule reaches 0 at the last step
"$T" --model "$LR_TMP/m" --out "$LR_TMP/cy" --lr 1e-2 --batch 2 --accum 2 --max-steps 7 --log "$LR_TMP/cy.jsonl" "$LR_TMP/ex.lrs" 2> /dev/null
jq -se 'length == 7 and .[6].epoch == 2 and all(to_entries[]; (.value.lr - 0.01 * (7 - .key) / 7 | fabs) < 1e-9)' \
    "$LR_TMP/cy.jsonl" > /dev/null ||
    die "cycling / schedule: $(jq -sc 'map([.epoch, .lr])' "$LR_TMP/cy.jsonl")"

"$T" --help > "$LR_TMP/help" && grep -q "usage: lr-tune" "$LR_TMP/help" || die "--help" # a file, not a pipe: grep -q would cut the text short
expect_fail 1 "$T" --out "$LR_TMP/x" "$LR_TMP/ex.lrs"
expect_fail 1 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" --targets q,w "$LR_TMP/ex.lrs"
expect_fail 1 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" --objective sft "$LR_TMP/ex.lrs"
expect_fail 1 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" --batch 0 "$LR_TMP/ex.lrs"
for bad in "--clip nan" "--lr 1e30" "--seed x" "--seed -1" "--max-steps 0" "--dropout 1"; do
    expect_fail 1 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" $bad "$LR_TMP/ex.lrs"
    [[ $LAST_ERR == *"${bad%% *}: expected"* ]] || die "$bad msg: $LAST_ERR"
done
# the examples' tokenizer must be the model's
expect_fail 2 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" "$LR_TMP/d_othertok.lrs"
[[ $LAST_ERR == *"d_othertok.lrs: header: field \"tokenizer\""*"abcd"*"not the same tokenizer"* ]] || die "tokenizer msg: $LAST_ERR"
# kinds: another kind, or two kinds mixed (the messages once read freed memory)
jq -c 'if .lrs then .kind = "kl" else . end' "$LR_ROOT/tests/fixtures/examples_small.jsonl" | head -1 > "$LR_TMP/kl.jsonl"
echo '{"lrs_end": 0}' >> "$LR_TMP/kl.jsonl"
"$LR_BIN/lr-dump" --from-json "$LR_TMP/kl.jsonl" > "$LR_TMP/kl.lrs"
expect_fail 2 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" "$LR_TMP/kl.lrs"
[[ $LAST_ERR == *'kl.lrs: header: record kind "kl": lr-tune reads'* ]] || die "kind msg: $LAST_ERR"
expect_fail 2 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" "$LR_TMP/ex.lrs" "$LR_TMP/d.lrs"
[[ $LAST_ERR == *'d.lrs: header: record kind "dist" mixed with'* ]] || die "mixed kinds msg: $LAST_ERR"
# bad example records: file, record and field named
bad_ex() { # JQ-EDIT FIELD-MESSAGE
    jq -c "if .idx == 2 and .step == 5 then $1 else . end" "$LR_ROOT/tests/fixtures/examples_small.jsonl" |
        "$LR_BIN/lr-dump" --from-json > "$LR_TMP/bad.lrs"
    expect_fail 2 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" "$LR_TMP/bad.lrs"
    [[ $LAST_ERR == *"bad.lrs: record "[0-9]*": field $2"* ]] || die "bad record ($1): $LAST_ERR"
}
bad_ex '.prompt_len = 1000000' '"prompt_len": 1000000: outside'
bad_ex '.prompt_len = -3' '"prompt_len": -3: outside'
bad_ex '.weights = [] | .target_ids = []' '"target_ids": empty'
bad_ex '.target_ids[0] = 300' '"target_ids": token 300 at position 0 is outside'
bad_ex '.weights[0] = -0.5' '"weights": weight -0.5 at position 0'
expect_fail 3 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" "$LR_TMP/missing.lrs"
# a token id the model does not have: exit 2 naming the example
jq -c 'if .idx == 2 and .step == 5 then .context[3] = 5000 else . end' "$LR_ROOT/tests/fixtures/examples_small.jsonl" |
    "$LR_BIN/lr-dump" --from-json > "$LR_TMP/badtok.lrs"
expect_fail 2 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" --no-shuffle "$LR_TMP/badtok.lrs"
echo "$LAST_ERR" | grep -q 'badtok.lrs: record [0-9]*: field "context": token 5000 at position 3 is outside' || die "bad token message: $LAST_ERR"
head -c 100 "$LR_TMP/ex.lrs" > "$LR_TMP/cut.lrs"
expect_fail 2 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" "$LR_TMP/cut.lrs"
# the pipeline trains as the paper: 1000 steps of 8 x 2, the schedule over those steps
# (the plan is captured first: `make -n | grep -q` under pipefail fails
# whenever grep exits before make has written everything)
plan=$(make -n -C "$LR_ROOT" -f pipelines/lightreasoner.mk EXPERT=e AMATEUR=a OUT="$LR_TMP/run" \
    "$LR_TMP/run/adapter/adapter_config.json" 2> /dev/null || true)
grep -q -- "--max-steps 1000 --batch 8 --accum 2" <<< "$plan" || die "pipeline training defaults"
# --reference-quirks: the authors' padded collate, their loss on that batch
# (tests/ref/quirks_ref.py), from the stream through lr-tune
Q=$LR_ROOT/tests/golden/quirks_ref.json
jq -c '.stream[]' "$Q" | "$LR_BIN/lr-dump" --from-json > "$LR_TMP/q.lrs"
"$LR_BIN/lr-mkmodel" "$LR_TMP/qm" $(jq -r '.args[]' "$Q")
qargs=(--model "$LR_TMP/qm" --init-adapter "$LR_ROOT/tests/golden/quirks_init" --no-shuffle --batch 4 --accum 1 --max-steps 1)
"$T" "${qargs[@]}" --reference-quirks --out "$LR_TMP/qa" --log "$LR_TMP/q.jsonl" "$LR_TMP/q.lrs" 2> "$LR_TMP/q.err"
grep -q "1 sequences cut to --max-len 512 tokens" "$LR_TMP/q.err" || die "quirks: no truncation to 512"
jq -se --slurpfile r "$Q" '(.[0].loss / $r[0].loss - 1 | fabs) < 1e-5 and (.[0].grad_norm / $r[0].grad_norm - 1 | fabs) < 1e-4' \
    "$LR_TMP/q.jsonl" > /dev/null || die "quirks loss $(jq -c '[.loss, .grad_norm]' "$LR_TMP/q.jsonl") vs $(jq -c '[.loss, .grad_norm]' "$Q")"
# without the switch (same vocabulary limit and length): the unpadded loss
"$T" "${qargs[@]}" --vocab-limit 269 --max-len 512 --out "$LR_TMP/qb" --log "$LR_TMP/q2.jsonl" "$LR_TMP/q.lrs" 2> /dev/null
jq -se --slurpfile r "$Q" '(.[0].loss / $r[0].loss_unpadded - 1 | fabs) < 1e-5' "$LR_TMP/q2.jsonl" > /dev/null || die "unpadded loss"
expect_fail 1 "$T" --model "$LR_TMP/m" --out "$LR_TMP/x" --reference-quirks "$LR_TMP/d.lrs"
# SIGINT mid-run (after the first step is logged): exit 130 and no output
# left; SIGTERM with --save-every: exit 130, the checkpoints stay in OUT.part
started() { for _ in $(seq 600); do [ -s "$1" ] && return 0; sleep 0.1; done; die "no step logged in 60 s"; }
"$T" --model "$LR_TMP/m" --out "$LR_TMP/int" --max-steps 1000000 --log "$LR_TMP/int.jsonl" "$LR_TMP/ex.lrs" 2> /dev/null & pid=$!
started "$LR_TMP/int.jsonl"; kill -INT $pid; set +e; wait $pid; rc=$?; set -e
[ $rc = 130 ] || die "SIGINT: exit $rc"
[ ! -e "$LR_TMP/int" ] && [ -z "$(ls -d "$LR_TMP"/int.part* 2> /dev/null)" ] || die "SIGINT left $(ls -d "$LR_TMP"/int*)"
rm "$LR_TMP/int.jsonl"
"$T" --model "$LR_TMP/m" --out "$LR_TMP/int" --max-steps 1000000 --save-every 1 --log "$LR_TMP/int.jsonl" "$LR_TMP/ex.lrs" \
    2> /dev/null & pid=$!
started "$LR_TMP/int.jsonl"; sleep 0.2; kill -TERM $pid; set +e; wait $pid; rc=$?; set -e
[ $rc = 130 ] && [ -n "$(ls -d "$LR_TMP"/int.part/checkpoint-* 2> /dev/null)" ] || die "SIGTERM with checkpoints: exit $rc"
[ -z "$(ls -d "$LR_TMP"/int.part/*.part-* 2> /dev/null)" ] || die "SIGTERM left a partial checkpoint"
echo ok
