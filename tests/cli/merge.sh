# lr-merge: a trained adapter folded into the base gives a valid HF folder
# (bf16 by default, f32 on request) that lr-mkmodel --check accepts; the
# output never replaces the base or an existing folder (without --force);
# adapters that cannot be merged and NaN weights exit 2 with nothing
# written; usage and input errors. (Logit equality: test_merge and
# tests/ref/tune_ref.py.)
source "$LR_ROOT/tests/lib.sh"
M=$LR_BIN/lr-merge
"$LR_BIN/lr-mkmodel" "$LR_TMP/m" --seed 4 --arch llama --tied
"$LR_BIN/lr-dump" --from-json "$LR_ROOT/tests/fixtures/examples_small.jsonl" > "$LR_TMP/ex.lrs"
"$LR_BIN/lr-tune" --model "$LR_TMP/m" --out "$LR_TMP/a" --lr 1e-2 --max-steps 2 --targets all "$LR_TMP/ex.lrs" 2> /dev/null
"$M" "$LR_TMP/m" "$LR_TMP/a" "$LR_TMP/out" 2> /dev/null
"$M" --dtype f32 "$LR_TMP/m" "$LR_TMP/a" "$LR_TMP/out32" 2> /dev/null
for f in config.json generation_config.json tokenizer.json tokenizer_config.json model.safetensors; do
    [ -s "$LR_TMP/out/$f" ] || die "missing $f"
done
jq -e '.torch_dtype == "bfloat16" and .tie_word_embeddings == true' "$LR_TMP/out/config.json" > /dev/null || die "config dtype"
jq -e '.torch_dtype == "float32"' "$LR_TMP/out32/config.json" > /dev/null || die "config dtype f32"
"$LR_BIN/lr-mkmodel" --check "$LR_TMP/out" > /dev/null || die "merged bf16 folder invalid"
"$LR_BIN/lr-mkmodel" --check "$LR_TMP/out32" > /dev/null || die "merged f32 folder invalid"
cmp -s "$LR_TMP/m/model.safetensors" "$LR_TMP/out32/model.safetensors" && die "merge changed nothing"
"$M" --help | grep -q "usage: lr-merge" || die "--help"
expect_fail 1 "$M" "$LR_TMP/m" "$LR_TMP/a"
expect_fail 1 "$M" --dtype f16 "$LR_TMP/m" "$LR_TMP/a" "$LR_TMP/x"
expect_fail 3 "$M" "$LR_TMP/m" "$LR_TMP/nope" "$LR_TMP/x"
"$LR_BIN/lr-mkmodel" "$LR_TMP/m2" --seed 4 --hidden 32
expect_fail 2 "$M" "$LR_TMP/m2" "$LR_TMP/a" "$LR_TMP/x"
# never over an input or an existing folder (without --force); the base stays as it was
sum0=$(md5sum < "$LR_TMP/m/model.safetensors")
expect_fail 1 "$M" "$LR_TMP/m" "$LR_TMP/a" "$LR_TMP/m"
[[ $LAST_ERR == *"is also an input"* ]] || die "OUT = BASE msg: $LAST_ERR"
[ "$(md5sum < "$LR_TMP/m/model.safetensors")" = "$sum0" ] || die "the base model changed"
expect_fail 1 "$M" "$LR_TMP/m" "$LR_TMP/a" "$LR_TMP/out"
[[ $LAST_ERR == *"exists: give --force"* ]] || die "existing OUT msg: $LAST_ERR"
"$M" --force --dtype f32 "$LR_TMP/m" "$LR_TMP/a" "$LR_TMP/out" 2> /dev/null
jq -e '.torch_dtype == "float32"' "$LR_TMP/out/config.json" > /dev/null || die "--force did not replace"
# adapters that cannot be merged: exit 2, nothing written
bad_adapter() { # NAME JQ-EDIT
    cp -r "$LR_TMP/a" "$LR_TMP/$1"
    jq "$2" "$LR_TMP/a/adapter_config.json" > "$LR_TMP/$1/adapter_config.json"
}
bad_adapter alpha '.lora_alpha = 1e300'
expect_fail 2 "$M" "$LR_TMP/m" "$LR_TMP/alpha" "$LR_TMP/x"
[[ $LAST_ERR == *'field "lora_alpha"'* ]] || die "lora_alpha msg: $LAST_ERR"
bad_adapter fifo '.fan_in_fan_out = true'
expect_fail 2 "$M" "$LR_TMP/m" "$LR_TMP/fifo" "$LR_TMP/x"
[[ $LAST_ERR == *'field "fan_in_fan_out"'* ]] || die "fan_in_fan_out msg: $LAST_ERR"
cp -r "$LR_TMP/a" "$LR_TMP/badjson" && echo '{"r": 8,' > "$LR_TMP/badjson/adapter_config.json"
expect_fail 2 "$M" "$LR_TMP/m" "$LR_TMP/badjson" "$LR_TMP/x"
[[ $LAST_ERR == *"badjson/adapter_config.json: line"* ]] || die "malformed json msg: $LAST_ERR"
# a NaN in the adapter: --check names it, and the merged weights are refused
cp -r "$LR_TMP/a" "$LR_TMP/nan"
python3 - "$LR_TMP/nan/adapter_model.safetensors" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
lo = json.loads(b[8:8 + n])["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]["data_offsets"][0]
b[8 + n + lo:8 + n + lo + 4] = struct.pack("<f", float("nan"))
open(sys.argv[1], "wb").write(b)
PY
expect_fail 2 "$LR_BIN/lr-mkmodel" --check "$LR_TMP/nan/adapter_model.safetensors"
[[ $LAST_ERR == *"tensor base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight: element 0 is nan: not finite"* ]] ||
    die "--check NaN msg: $LAST_ERR"
expect_fail 2 "$M" "$LR_TMP/m" "$LR_TMP/nan" "$LR_TMP/x"
[[ $LAST_ERR == *"tensor model.layers.0.self_attn.q_proj.weight: element "*" is nan: not writing non-finite weights"* ]] ||
    die "merge NaN msg: $LAST_ERR"
[ -z "$(ls -d "$LR_TMP"/x* 2> /dev/null)" ] || die "a refused merge left $(ls -d "$LR_TMP"/x*)"
echo ok
