# The paper's real model folders, in small: lr-infer prompts with the model's
# own chat template (tests/golden/chat_templates.json, rendered there by
# transformers) and refuses an unknown or unreadable one; an expert and an
# amateur whose tokenizers differ only in added tokens (as DeepSeek-R1-
# Distill-Qwen and Qwen2.5 do) run through lr-infer --follow and lr-kl, said
# once and recorded in the header; a real vocabulary mismatch is refused
# naming the ids; lr-tok --chat and --compare.
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN T=$LR_TMP G=$LR_ROOT/tests/golden/chat_templates.json
"$B/lr-mkmodel" "$T/ama" --seed 3 > /dev/null
printf '%s\n' '{"question": "What is 2 + 3?"}' '{"question": "  Natalia sold 48 clips.  "}' > "$T/q.jsonl"

# --- the model's own prompt ---------------------------------------------
# lr-mkmodel writes the plain ChatML template: the prompt is METHOD.md's.
"$B/lr-infer" --model "$T/ama" --data "$T/q.jsonl" --field question --max-new-tokens 2 -o "$T/a0.lrs" 2> "$T/err"
"$B/lr-dump" --header "$T/a0.lrs" | jq -e '.params.preset == "chat_template" and .params.chat_template == "chatml"' \
    > /dev/null || die "chat template not recorded in the header"
want=$(jq -c -n --arg q "What is 2 + 3?" '$q' | "$B/lr-tok" --prompt lightreasoner "$T/ama")
[ "$("$B/lr-dump" "$T/a0.lrs" | sed -n 2p | jq -c .prompt)" = "$want" ] || die "chatml prompt ids"

# Every family of the golden: lr-infer's prompt ids are the ids of the text
# transformers rendered (question 0), and lr-tok --chat agrees.
for i in $(seq 0 $(( $(jq '.known|length' "$G") - 1 ))); do
    name=$(jq -r ".known[$i].name" "$G")
    rm -rf "$T/m" "$T/c.lrs"; cp -r "$T/ama" "$T/m"
    jq ".known[$i] | {bos_token, chat_template}" "$G" > "$T/m/tokenizer_config.json"
    jq -c '{question: .questions[0]}' "$G" > "$T/q0.jsonl"
    "$B/lr-infer" --model "$T/m" --data "$T/q0.jsonl" --field question --max-new-tokens 1 -o "$T/c.lrs" 2> /dev/null
    want=$(jq -c ".known[$i].renders[0]" "$G" | "$B/lr-tok" "$T/m")
    [ "$("$B/lr-dump" "$T/c.lrs" | sed -n 2p | jq -c .prompt)" = "$want" ] || die "$name: lr-infer prompt ids"
    [ "$(jq -c '.questions[0]' "$G" | "$B/lr-tok" --chat "$T/m")" = "$want" ] || die "$name: lr-tok --chat"
    fam=$(jq -r ".known[$i].family" "$G")
    "$B/lr-dump" --header "$T/c.lrs" | jq -e --arg f "$fam" '.params.chat_template == $f' > /dev/null || die "$name: family"
done

# An unknown template is refused, naming --preset and --prompt-file; with
# --preset it runs. Nothing is written under the output's name.
rm -rf "$T/u"; cp -r "$T/ama" "$T/u"
jq '.unknown[0] | {chat_template}' "$G" > "$T/u/tokenizer_config.json"
expect_fail 2 "$B/lr-infer" --model "$T/u" --data "$T/q.jsonl" --field question -o "$T/u.lrs"
[[ $LAST_ERR == *--preset* && $LAST_ERR == *--prompt-file* && $LAST_ERR == *tokenizer_config.json* ]] || die "unknown template message: $LAST_ERR"
[ ! -e "$T/u.lrs" ] || die "unknown template: output written"
"$B/lr-infer" --model "$T/u" --data "$T/q.jsonl" --field question --preset lightreasoner --max-new-tokens 1 -o "$T/u.lrs"
# A tokenizer_config.json that cannot be read: one line naming file and field.
echo '{"chat_template": ' > "$T/u/tokenizer_config.json"
expect_fail 2 "$B/lr-infer" --model "$T/u" --data "$T/q.jsonl" --field question -o "$T/u2.lrs"
[[ $LAST_ERR == *tokenizer_config.json* ]] || die "bad config message: $LAST_ERR"
[ ! -e "$T/u2.lrs" ] || die "bad config: output written"
echo '{"chat_template": ["x"]}' > "$T/u/tokenizer_config.json"
expect_fail 2 "$B/lr-infer" --model "$T/u" --data "$T/q.jsonl" --field question -o "$T/u2.lrs"
[[ $LAST_ERR == *'field "chat_template"'* ]] || die "bad field message: $LAST_ERR"
# No template at all: the lightreasoner preset, said on stderr.
rm "$T/u/tokenizer_config.json"
"$B/lr-infer" --model "$T/u" --data "$T/q.jsonl" --field question --max-new-tokens 1 -o "$T/u3.lrs" 2> "$T/err"
grep -q "no chat template" "$T/err" || die "no note for a folder without a template"
"$B/lr-dump" --header "$T/u3.lrs" | jq -e '.params.preset == "lightreasoner"' > /dev/null || die "fallback preset"

# --- tokenizers that differ only in added tokens -----------------------------
# The expert: the amateur's weights, its tokenizer with id 270 renamed
# (<|im_start|> -> <｜User｜>, as DeepSeek-R1-Distill-Qwen's 151644) and one
# more added token, and DeepSeek's template.
rm -rf "$T/exp"; cp -r "$T/ama" "$T/exp"
jq '.added_tokens |= (map(if .id == 270 then .content = "<｜User｜>" else . end) + [.[0] + {id: 272, content: "<think>"}])' \
    "$T/ama/tokenizer.json" > "$T/exp/tokenizer.json"
jq '.known[] | select(.name == "deepseek-r1-distill") | {bos_token, chat_template}' "$G" > "$T/exp/tokenizer_config.json"
"$B/lr-infer" --model "$T/exp" --data "$T/q.jsonl" --field question --max-new-tokens 4 -o "$T/e.lrs" 2> /dev/null
"$B/lr-dump" "$T/e.lrs" | sed -n 2p | jq -e '.prompt | index(270) != null' > /dev/null || die "expert prompt lacks id 270"
"$B/lr-infer" --model "$T/ama" --follow "$T/e.lrs" -o "$T/a.lrs" 2> "$T/err"
[ "$(grep -c "differ only in added tokens" "$T/err")" = 1 ] || { cat "$T/err"; die "follow: not said once"; }
grep -q "2 ids (270, 272)" "$T/err" || { cat "$T/err"; die "follow: count/ids of differing ids"; }
"$B/lr-dump" --header "$T/a.lrs" | jq -e --arg h "$("$B/lr-dump" --header "$T/e.lrs" | jq -r .tokenizer.hash)" \
    '.params.added_ids_differ == 2 and .params.followed_tokenizer == $h' > /dev/null || die "follow header"
"$B/lr-kl" "$T/e.lrs" "$T/a.lrs" --beta 0 > "$T/kl.lrs" 2> "$T/err"
grep -q "differ only in added tokens: 2 ids" "$T/err" || { cat "$T/err"; die "lr-kl: no note"; }
[ "$("$B/lr-dump" --count "$T/kl.lrs")" -gt 0 ] || die "lr-kl: no steps"
out=$("$B/lr-tok" --compare "$T/exp" "$T/ama")
echo "$out" | jq -e '.compatible and .added_ids_differ == 2 and .first_ids == [270, 272]' > /dev/null || die "--compare: $out"

# --- a real mismatch: two regular tokens swapped -----------------------------
rm -rf "$T/bad"; cp -r "$T/ama" "$T/bad"
jq '.model.vocab.a = 98 | .model.vocab.b = 97' "$T/ama/tokenizer.json" > "$T/bad/tokenizer.json"
"$B/lr-infer" --model "$T/bad" --data "$T/q.jsonl" --field question --max-new-tokens 2 -o "$T/b.lrs" 2> /dev/null
expect_fail 2 "$B/lr-infer" --model "$T/ama" --follow "$T/b.lrs" -o "$T/ab.lrs"
[[ $LAST_ERR == *"regular vocabularies differ, first within ids 0..255"* ]] || die "mismatch message: $LAST_ERR"
[ ! -e "$T/ab.lrs" ] || die "mismatch: output written"
"$B/lr-infer" --model "$T/bad" --follow "$T/b.lrs" -o "$T/bb.lrs" 2> /dev/null
expect_fail 2 "$B/lr-kl" "$T/b.lrs" "$T/a0.lrs"
[[ $LAST_ERR == *"regular vocabularies differ"* ]] || die "lr-kl mismatch message: $LAST_ERR"
set +e; out=$("$B/lr-tok" --compare "$T/bad" "$T/ama" 2> "$T/err"); rc=$?; set -e
[ $rc = 2 ] || die "--compare mismatch: exit $rc"
echo "$out" | jq -e '(.compatible | not) and (.difference | test("first at id 97"))' > /dev/null || die "--compare ids: $out"
# --- generation_config.json ---------------------------------------------------
# The authors' "greedy" is whatever the file says; flags override.
rm -rf "$T/g"; cp -r "$T/ama" "$T/g"
"$B/lr-infer" --model "$T/g" --data "$T/q.jsonl" --field question --max-new-tokens 8 -o "$T/g0.lrs" 2> /dev/null
greedy=$("$B/lr-dump" "$T/g0.lrs" | sed '1d;$d' | jq -c .tokens)
echo '{"do_sample": true, "temperature": 0.7, "top_p": 0.9, "top_k": 5, "eos_token_id": [271, 269]}' > "$T/g/generation_config.json"
"$B/lr-infer" --model "$T/g" --data "$T/q.jsonl" --field question --max-new-tokens 8 -o "$T/g1.lrs" 2> "$T/err"
grep -q "generation_config.json samples: temperature 0.7, top_p 0.9, top_k 5" "$T/err" || { cat "$T/err"; die "no sampling note"; }
"$B/lr-dump" --header "$T/g1.lrs" | jq -e '.params | .temperature == 0.7 and .top_p == 0.9 and .top_k == 5
    and .sampling == "generation_config.json"' > /dev/null || die "sampling settings not in the header"
rm -f "$T/g2.lrs"
"$B/lr-infer" --model "$T/g" --data "$T/q.jsonl" --field question --max-new-tokens 8 --temperature 0 -o "$T/g2.lrs" 2> /dev/null
"$B/lr-dump" --header "$T/g2.lrs" | jq -e '.params | .temperature == 0 and .top_k == 5
    and .sampling == "generation_config.json, flags override"' > /dev/null || die "--temperature 0 does not override"
[ "$("$B/lr-dump" "$T/g2.lrs" | sed '1d;$d' | jq -c .tokens)" = "$greedy" ] || die "--temperature 0 is not greedy"
# top_k 1 keeps only the argmax: sampling then gives the greedy tokens, while
# a hot temperature without top_k does not.
echo '{"do_sample": true, "temperature": 1.0, "top_k": 1, "eos_token_id": [271, 269]}' > "$T/g/generation_config.json"
"$B/lr-infer" --model "$T/g" --data "$T/q.jsonl" --field question --max-new-tokens 8 --seed 5 -o "$T/g3.lrs" 2> /dev/null
[ "$("$B/lr-dump" "$T/g3.lrs" | sed '1d;$d' | jq -c .tokens)" = "$greedy" ] || die "top_k 1 is not greedy"
"$B/lr-infer" --model "$T/g" --data "$T/q.jsonl" --field question --max-new-tokens 8 --seed 5 --top-k 0 \
    --temperature 5 -o "$T/g4.lrs" 2> /dev/null
[ "$("$B/lr-dump" "$T/g4.lrs" | sed '1d;$d' | jq -c .tokens)" != "$greedy" ] || die "sampling at T=5 gave the greedy tokens"
# A generation_config.json that cannot be read: one line naming file and field.
echo '{"do_sample": true, "top_p": 2}' > "$T/g/generation_config.json"
expect_fail 2 "$B/lr-infer" --model "$T/g" --data "$T/q.jsonl" --field question -o "$T/g5.lrs"
[[ $LAST_ERR == *'generation_config.json: field "top_p"'* ]] || die "bad top_p message: $LAST_ERR"
[ ! -e "$T/g5.lrs" ] || die "bad generation config: output written"
echo '{"do_sample": ' > "$T/g/generation_config.json"
expect_fail 2 "$B/lr-infer" --model "$T/g" --data "$T/q.jsonl" --field question -o "$T/g5.lrs"
[[ $LAST_ERR == *'generation_config.json: line'* ]] || die "unparsable generation config message: $LAST_ERR"
[ ! -e "$T/g5.lrs" ] || die "unparsable generation config: output written"
exit 0
