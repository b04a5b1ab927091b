# lr-contrast and the reference implementation's JSON lines: --from-ref
# tokenizes exactly as the reference's training script does (golden ids from
# transformers, tests/ref/ref_json.py), --to-ref writes its format, and the
# two are inverse on targets, weights, steps and KL.
source "$LR_ROOT/tests/lib.sh"
D=$LR_BIN/lr-dump K=$LR_BIN/lr-kl C=$LR_BIN/lr-contrast
G=$LR_ROOT/tests/golden
Q=$LR_ROOT/build/tokenizers/qwen
[ -f "$Q/tokenizer.json" ] || die "no Qwen tokenizer at $Q"

# --from-ref: context ids and prompt_len as transformers computes them
"$C" --from-ref --tokenizer "$Q" "$G/ref_samples.jsonl" > "$LR_TMP/ex.lrs" 2> "$LR_TMP/err"
grep -q "5 examples from 5 lines" "$LR_TMP/err" || die "summary: $(cat "$LR_TMP/err")"
"$D" "$LR_TMP/ex.lrs" | jq -c 'select(.context != null) | {context, prompt_len}' > "$LR_TMP/got.jsonl"
jq -c '{context, prompt_len}' "$G/ref_expected.jsonl" | cmp - "$LR_TMP/got.jsonl" || die "--from-ref token ids differ from transformers"
"$D" "$LR_TMP/ex.lrs" | jq -sc 'map(select(.context != null)) | map([.idx, .step, .target_ids, .weights, .kl])' > "$LR_TMP/got"
[ "$(cat "$LR_TMP/got")" = '[[0,3,[1477,8253,11047],[0.699999988,0.200000003,0.100000001],0.52],[0,17,[1156],[1],1.3],[0,40,[16,17,220],[0.5,0.25,0.25],0.9],[1,1,[11,1184],[0.400000006,0.600000024],0.41],[1,9,[15],[1],2.5]]' ] \
    || die "--from-ref targets: $(cat "$LR_TMP/got")"
"$D" --header "$LR_TMP/ex.lrs" | jq -e '.kind == "example" and .tokenizer.hash == "52aa2fc01271d8f1"
    and .params.source == "reference-jsonl" and .params.prompt == "lightreasoner"' > /dev/null || die "--from-ref header"

# --from-ref refuses bad lines: exit 2, one line naming the line and field
bad_ref() { # bad_ref PATTERN JQ-FILTER
    jq -c "$2" "$G/ref_samples.jsonl" > "$LR_TMP/bad.jsonl"
    expect_fail 2 "$C" --from-ref --tokenizer "$Q" -o "$LR_TMP/bad.lrs" "$LR_TMP/bad.jsonl"
    [ "$(echo "$LAST_ERR" | wc -l)" = 1 ] || die "more than one stderr line: $LAST_ERR"
    case "$LAST_ERR" in *$1*) ;; *) die "message: $LAST_ERR" ;; esac
    [ -e "$LR_TMP/bad.lrs" ] && die "partial output left under its final name"
    set +e; "$C" --from-ref --tokenizer "$Q" "$LR_TMP/bad.jsonl" 2>/dev/null | "$D" > /dev/null 2>&1
    local rc=${PIPESTATUS[1]}; set -e
    [ "$rc" = 2 ] || die "partial output on stdout looks complete"
}
bad_ref 'line 2: field "weights"' 'if .step == 17 then .weights = [0.5, 0.5] else . end'
bad_ref 'line 3: field "token_ids"' 'if .step == 40 then .token_ids[0] = 999999 else . end'
bad_ref 'line 1: field "prompt_id"' 'if .step == 3 then del(.prompt_id) else . end'
bad_ref 'line 4: field "weights"' 'if .step == 1 then .weights[0] = -1 else . end'
bad_ref 'line 5: field "token_ids": repeated' 'if .step == 9 then .token_ids = [15, 15] | .weights = [0.5, 0.5] else . end'
printf '{"prompt_id": "x", "step"\n' > "$LR_TMP/bad.jsonl"
expect_fail 2 "$C" --from-ref --tokenizer "$Q" "$LR_TMP/bad.jsonl"
case "$LAST_ERR" in *"line 1: not a JSON object"*) ;; *) die "malformed JSON: $LAST_ERR" ;; esac
expect_fail 1 "$C" --from-ref "$G/ref_samples.jsonl"
expect_fail 1 "$C" --from-ref --to-ref --tokenizer "$Q"
expect_fail 1 "$C" --from-ref --tokenizer "$Q" --prompt nosuch "$G/ref_samples.jsonl"

# --to-ref: a kl stream whose header names the Qwen tokenizer
info=$("$LR_BIN/lr-tok" --info "$Q")
hash=$(echo "$info" | jq -r .hash) nv=$(echo "$info" | jq -r .vocab_size)
for s in expert amateur; do
    jq -c --arg h "$hash" --argjson v "$nv" 'if .lrs then .tokenizer = {name: "qwen", hash: $h, vocab: $v}
        | .model.vocab = (if .model.name == "expert" then 152064 else 151936 end) else del(.full) end' \
        "$G/kl_$s.jsonl" | "$D" --from-json > "$LR_TMP/$s.lrs"
done
"$K" -q "$LR_TMP/expert.lrs" "$LR_TMP/amateur.lrs" > "$LR_TMP/kl.lrs"
"$C" -q --to-ref --tokenizer "$Q" "$LR_TMP/kl.lrs" > "$LR_TMP/ref.jsonl"
"$C" -q "$LR_TMP/kl.lrs" > "$LR_TMP/ours.lrs"
n=$("$D" --count "$LR_TMP/ours.lrs")
[ "$(wc -l < "$LR_TMP/ref.jsonl")" = "$n" ] || die "--to-ref wrote $(wc -l < "$LR_TMP/ref.jsonl") lines for $n examples"
jq -e 'keys_unsorted == ["prompt_id", "step", "prefix", "tokens", "token_ids", "weights", "kl_divergence"]
    and (.prompt_id | test("^Question [0-9]+[?]$")) and (.tokens | length) == (.token_ids | length)' \
    "$LR_TMP/ref.jsonl" > /dev/null || die "--to-ref fields"
# prefix = the tokenizer's decoding of the expert prefix; tokens = each id decoded
"$D" "$LR_TMP/ours.lrs" | jq -c 'select(.context != null) | .context[.prompt_len:]' \
    | "$LR_BIN/lr-tok" --decode "$Q" | jq -c . > "$LR_TMP/prefixes"
jq -c '.prefix' "$LR_TMP/ref.jsonl" | cmp - "$LR_TMP/prefixes" || die "--to-ref prefix is not the decoded expert prefix"
jq -c '.token_ids[]' "$LR_TMP/ref.jsonl" | sed 's/.*/[&]/' | "$LR_BIN/lr-tok" --decode "$Q" | jq -c . > "$LR_TMP/toks"
jq -c '.tokens[]' "$LR_TMP/ref.jsonl" | cmp - "$LR_TMP/toks" || die "--to-ref tokens are not the decoded ids"
# the round trip keeps steps, targets, weights and KL
"$C" -q --from-ref --tokenizer "$Q" "$LR_TMP/ref.jsonl" > "$LR_TMP/back.lrs"
pick='select(.context != null) | [.step, .target_ids, .weights, .kl, .question]'
cmp <("$D" "$LR_TMP/ours.lrs" | jq -c "$pick") <("$D" "$LR_TMP/back.lrs" | jq -c "$pick") \
    || die "--to-ref | --from-ref changed the examples"
# a stream from another tokenizer is refused
"$K" -q "$LR_ROOT/tests/golden/kl_expert.jsonl" /dev/null 2>/dev/null && die "lr-kl read JSON"
"$D" --from-json "$G/kl_expert.jsonl" > "$LR_TMP/te.lrs"
"$D" --from-json "$G/kl_amateur.jsonl" > "$LR_TMP/ta.lrs"
"$K" -q "$LR_TMP/te.lrs" "$LR_TMP/ta.lrs" > "$LR_TMP/toy.lrs"
expect_fail 2 "$C" --to-ref --tokenizer "$Q" "$LR_TMP/toy.lrs"
case "$LAST_ERR" in *"not the stream's tokenizer"*) ;; *) die "--to-ref tokenizer check: $LAST_ERR" ;; esac
echo ok
