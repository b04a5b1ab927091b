# lr-mkmodel: deterministic generation, --check summaries, and the
# safetensors / config validation errors (exit code + one clear message).
source "$LR_ROOT/tests/lib.sh"
mk=$LR_BIN/lr-mkmodel
T=$LR_TMP

# writes a safetensors file: mkst FILE HEADER_JSON DATA_BYTES [CLAIMED_HEADER_LEN]
mkst() {
    local len=${4:-${#2}} i
    { for i in 0 1 2 3 4 5 6 7; do printf "\\x$(printf %02x $(( (len >> (8 * i)) & 255 )))"; done
      printf '%s' "$2"; head -c "$3" /dev/zero; } > "$1"
}

# --- generation ---
"$mk" --help | grep -q '^usage: lr-mkmodel' || die "--help"
expect_fail 1 "$mk"
expect_fail 1 "$mk" "$T/x" --bogus 3
expect_fail 1 "$mk" "$T/x" --arch qwen2 --no-bias
[[ $LAST_ERR == *"qwen2 always has q/k/v biases"* ]] || die "no-bias msg: $LAST_ERR"
expect_fail 1 "$mk" "$T/x" --heads 3
"$mk" "$T/a" --seed 7
"$mk" "$T/b" --seed 7
"$mk" "$T/c" --seed 8
for f in config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json; do
    cmp -s "$T/a/$f" "$T/b/$f" || die "$f differs for the same seed"
done
cmp -s "$T/a/model.safetensors" "$T/c/model.safetensors" && die "seeds 7 and 8 gave the same weights"
"$mk" --check "$T/a" > "$T/sum"
grep -qx 'model_type qwen2' "$T/sum" && grep -qx 'vocab 300' "$T/sum" && grep -qx 'eos 269 271' "$T/sum" || { cat "$T/sum"; die "summary"; }
grep -qx 'name a' "$T/sum" || die "name"
hash_a=$(sed -n 's/^hash //p' "$T/sum")
hash_b=$("$mk" --check "$T/b" | sed -n 's/^hash //p')
hash_c=$("$mk" --check "$T/c" | sed -n 's/^hash //p')
[ "$hash_a" = "$hash_b" ] || die "same model, different identity"
[[ $hash_a =~ ^[0-9a-f]{16}$ ]] || die "hash format: $hash_a"
"$mk" "$T/l3" --arch llama --layers 3 --tied --dtype bf16 --kv-heads 4
"$mk" --check "$T/l3" | grep -qx 'layers 3' || die "llama summary"
"$mk" --check "$T/l3/model.safetensors" | grep -qx 'model.embed_tokens.weight BF16 \[300, 64\]' || die "file listing"
"$mk" "$T/qt" --tokenizer "$LR_ROOT/build/tokenizers/qwen/tokenizer.json" --hidden 8 --heads 2 --kv-heads 1 --inter 8 --tied
cmp -s "$T/qt/tokenizer.json" "$LR_ROOT/build/tokenizers/qwen/tokenizer.json" || die "tokenizer not copied"
"$mk" --check "$T/qt" > "$T/sum"
grep -qx 'vocab 1516[0-9][0-9]' "$T/sum" && grep -qx 'eos 151643 151645' "$T/sum" || { cat "$T/sum"; die "qwen tokenizer summary"; }

# --- safetensors files ---
mkst "$T/ok.st" '{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"__metadata__":{"format":"pt"}}' 16
"$mk" --check "$T/ok.st" | grep -qx 'a F32 \[2, 2\]' || die "hand-made file"
mkst "$T/bad.st" '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}' 24
expect_fail 2 "$mk" --check "$T/bad.st"
[[ $LAST_ERR == *"bad.st: tensor b: data_offsets overlap tensor a"* ]] || die "overlap msg: $LAST_ERR"
mkst "$T/bad.st" '{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}' 16
expect_fail 2 "$mk" --check "$T/bad.st"
[[ $LAST_ERR == *"tensor a: 3 elements of F32 need 12 bytes, data_offsets give 16"* ]] || die "size msg: $LAST_ERR"
mkst "$T/bad.st" '{"a":{"dtype":"F7","shape":[4],"data_offsets":[0,16]}}' 16
expect_fail 2 "$mk" --check "$T/bad.st"
[[ $LAST_ERR == *'tensor a: field "dtype": unknown dtype "F7"'* ]] || die "dtype msg: $LAST_ERR"
mkst "$T/bad.st" '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}' 16 100000
expect_fail 2 "$mk" --check "$T/bad.st"
[[ $LAST_ERR == *"header length 100000 beyond the file"* ]] || die "header length msg: $LAST_ERR"
mkst "$T/bad.st" '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}' 16 99999999999
expect_fail 2 "$mk" --check "$T/bad.st"
mkst "$T/bad.st" '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]' 16
expect_fail 2 "$mk" --check "$T/bad.st"
[[ $LAST_ERR == *"header: bad JSON"* ]] || die "json msg: $LAST_ERR"
mkst "$T/bad.st" '{"a":{"dtype":"F32","shape":[4],"data_offsets":[4,20]}}' 20
expect_fail 2 "$mk" --check "$T/bad.st"
[[ $LAST_ERR == *"hole of 4 bytes"* ]] || die "hole msg: $LAST_ERR"
printf 'abc' > "$T/bad.st"
expect_fail 2 "$mk" --check "$T/bad.st"
[[ $LAST_ERR == *"truncated"* ]] || die "tiny file msg: $LAST_ERR"
expect_fail 3 "$mk" --check "$T/nonexistent"

# --- model folders ---
cp -r "$T/a" "$T/trunc"
head -c -10 "$T/a/model.safetensors" > "$T/trunc/model.safetensors"
expect_fail 2 "$mk" --check "$T/trunc"
[[ $LAST_ERR == *"model.safetensors: tensor lm_head.weight: field \"data_offsets\""*"outside"* ]] || die "truncated msg: $LAST_ERR"
"$mk" "$T/kv4" --kv-heads 4
cp -r "$T/a" "$T/shape" && cp "$T/kv4/config.json" "$T/shape/"
expect_fail 2 "$mk" --check "$T/shape"
[[ $LAST_ERR == *"model.safetensors: tensor model.layers.0.self_attn.k_proj.weight: shape [32, 64], expected [64, 64]"* ]] || die "shape msg: $LAST_ERR"
"$mk" "$T/tied" --tied
cp -r "$T/tied" "$T/miss" && cp "$T/a/config.json" "$T/miss/"
expect_fail 2 "$mk" --check "$T/miss"
[[ $LAST_ERR == *"tensor lm_head.weight: missing"* ]] || die "missing msg: $LAST_ERR"
"$mk" "$T/three" --layers 3
cp -r "$T/three" "$T/extra" && cp "$T/a/config.json" "$T/extra/"
expect_fail 2 "$mk" --check "$T/extra"
cp -r "$T/a" "$T/four" && cp "$T/three/config.json" "$T/four/" && sed -i 's/"num_hidden_layers": 3/"num_hidden_layers": 4/' "$T/four/config.json"
expect_fail 2 "$mk" --check "$T/four"
[[ $LAST_ERR == *"tensor model.layers.2.input_layernorm.weight: missing"* ]] || die "missing layer msg: $LAST_ERR"
cp -r "$T/a" "$T/rs" && sed -i 's/"rope_scaling": null/"rope_scaling": {"type": "linear", "factor": 2.0}/' "$T/rs/config.json"
expect_fail 2 "$mk" --check "$T/rs"
[[ $LAST_ERR == *'config.json: field "rope_scaling": only null is supported'* ]] || die "rope_scaling msg: $LAST_ERR"
cp -r "$T/a" "$T/mt" && sed -i 's/"model_type": "qwen2"/"model_type": "mistral"/' "$T/mt/config.json"
expect_fail 2 "$mk" --check "$T/mt"
[[ $LAST_ERR == *'"mistral" unsupported'* ]] || die "model_type msg: $LAST_ERR"
echo '{"metadata": {}}' > "$T/a/model.safetensors.index.json"
expect_fail 2 "$mk" --check "$T/a"
[[ $LAST_ERR == *'field "weight_map": missing'* ]] || die "index msg: $LAST_ERR"
expect_fail 1 "$mk" "$T/a" --seed 7 # an existing model folder is never replaced silently
[[ $LAST_ERR == *"exists: give --force"* ]] || die "existing folder msg: $LAST_ERR"
"$mk" "$T/a" --seed 7 --force # regenerating removes the stale index
"$mk" "$T/deep/er/m" --layers 1 && [ -f "$T/deep/er/m/model.safetensors" ] || die "folders above OUT_DIR are created"
[ "$("$mk" --check "$T/a" | sed -n 's/^hash //p')" = "$hash_a" ] || die "regenerated model differs"
# a full disk (a file-size limit: writes fail with EFBIG): exit 3, no model
# folder and no temporary left behind
set +e; (trap '' XFSZ; ulimit -f 64; exec "$mk" "$T/full" --hidden 256 --inter 512) 2> "$T/full.err"; rc=$?; set -e
[ $rc = 3 ] || die "full disk: exit $rc: $(cat "$T/full.err")"
[ ! -e "$T/full" ] && [ -z "$(ls -d "$T"/full.part* 2> /dev/null)" ] || die "full disk left $(ls -d "$T"/full*)"
# option values and absurd configs
expect_fail 1 "$mk" "$T/x" --seed -1
expect_fail 1 "$mk" "$T/x" --seed x
expect_fail 1 "$mk" "$T/x" --rope-theta nan
cp -r "$T/b" "$T/hd" && jq '.head_dim = 1000000000' "$T/b/config.json" > "$T/hd/config.json"
expect_fail 2 "$mk" --check "$T/hd"
[[ $LAST_ERR == *'field "head_dim": 1000000000'* ]] || die "head_dim msg: $LAST_ERR"
rm "$T/mt/config.json"
expect_fail 3 "$mk" --check "$T/mt"
echo ok
