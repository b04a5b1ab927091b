# lr-merge: a trained adapter folded into the base gives a valid HF folder
# (bf16 by default, f32 on request) that lr-mkmodel --check accepts; usage
# and input errors. (Logit equality: test_merge and tests/ref/tune_ref.py.)
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
echo ok
