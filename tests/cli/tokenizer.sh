# lr-tok against the golden files of tests/ref/tokenizer_ref.py: hard
# strings (Qwen and the tiny tokenizer), decoding, prompt presets and
# template files, and the error exits.
source "$LR_ROOT/tests/lib.sh"
G=$LR_ROOT/tests/golden
Q=$LR_ROOT/build/tokenizers/qwen
tok=$LR_BIN/lr-tok

"$tok" --help | grep -q "usage: lr-tok" || die "--help"
expect_fail 1 "$tok"
expect_fail 1 "$tok" --bogus "$Q"
expect_fail 1 "$tok" --prompt nope "$Q"
[[ $LAST_ERR == *nope* ]] || die "unknown preset message: $LAST_ERR"
expect_fail 3 "$tok" "$LR_TMP/missing"
[ "$("$tok" --list-prompts)" = "$(printf 'lightreasoner\nqwen25-math-cot\nraw')" ] || die "--list-prompts"

# compare NAME WANT GOT [INPUT]: line by line, naming the first differing line
compare() {
    local n; n=$(cmp "$2" "$3" 2>/dev/null | sed -n 's/.* line \([0-9]*\).*/\1/p' || true)
    [ -z "$n" ] && cmp -s "$2" "$3" && return 0
    echo "first mismatch in $1 at text ${n:-?} (1-based):" >&2
    [ -n "$n" ] && [ -n "${4:-}" ] && sed -n "${n}p" "$4" | cut -c1-300 | sed 's/^/  text: /' >&2
    [ -n "$n" ] && { sed -n "${n}p" "$2" | cut -c1-300 | sed 's/^/  want: /'; sed -n "${n}p" "$3" | cut -c1-300 | sed 's/^/  got:  /'; } >&2
    die "$1"
}

# Hard strings through the real Qwen tokenizer and the tiny one.
for pair in "tokenizer_hard.jsonl:$Q" "tiny_hard.jsonl:$G/tiny_tokenizer.json"; do
    g=${pair%%:*} t=${pair#*:}
    jq -c .text "$G/$g" > "$LR_TMP/in"
    jq -c .ids "$G/$g" > "$LR_TMP/want"
    "$tok" "$t" < "$LR_TMP/in" > "$LR_TMP/got"
    compare "$g (encode)" "$LR_TMP/want" "$LR_TMP/got" "$LR_TMP/in"
done

# Decoding (ids cutting UTF-8 characters, special and unknown ids), with and
# without --skip-special; both sides re-printed by jq for equal escaping.
for skip in false true; do
    flag=; [ $skip = true ] && flag=--skip-special
    jq -c "select(.skip_special == $skip) | .ids" "$G/tokenizer_decode.jsonl" > "$LR_TMP/in"
    jq -c "select(.skip_special == $skip) | .text" "$G/tokenizer_decode.jsonl" > "$LR_TMP/want"
    "$tok" --decode $flag "$Q" < "$LR_TMP/in" | jq -c . > "$LR_TMP/got"
    compare "tokenizer_decode.jsonl (skip_special $skip)" "$LR_TMP/want" "$LR_TMP/got" "$LR_TMP/in"
done

# Prompts: --prompt and an equivalent --prompt-file give Hugging Face's ids.
jq -c .question "$G/prompt_ref.json" > "$LR_TMP/q"
for p in lightreasoner qwen25-math-cot; do
    jq -c ".\"${p}_ids\"" "$G/prompt_ref.json" > "$LR_TMP/want"
    "$tok" --prompt $p "$Q" < "$LR_TMP/q" > "$LR_TMP/got"
    compare "--prompt $p" "$LR_TMP/want" "$LR_TMP/got"
done
printf '<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{{}}.<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n' > "$LR_TMP/tmpl"
"$tok" --prompt-file "$LR_TMP/tmpl" "$Q" < "$LR_TMP/q" > "$LR_TMP/got"
compare "--prompt-file" "$LR_TMP/want" "$LR_TMP/got"

# Bad input: the message names the line; a bad template names the byte.
printf '"ok"\n"broken\n' > "$LR_TMP/bad"
expect_fail 2 "$tok" "$G/tiny_tokenizer.json" < "$LR_TMP/bad"
[[ $LAST_ERR == *"line 2"* ]] || die "malformed line message: $LAST_ERR"
printf '[1,2]\n"text"\n' > "$LR_TMP/bad"
expect_fail 2 "$tok" --decode "$G/tiny_tokenizer.json" < "$LR_TMP/bad"
[[ $LAST_ERR == *"line 2"* ]] || die "decode message: $LAST_ERR"
printf '[1,-5]\n' > "$LR_TMP/bad"
expect_fail 2 "$tok" --decode "$G/tiny_tokenizer.json" < "$LR_TMP/bad"
printf 'lone { brace {question}' > "$LR_TMP/tmpl"
expect_fail 2 "$tok" --prompt-file "$LR_TMP/tmpl" "$G/tiny_tokenizer.json" < "$LR_TMP/q"
[[ $LAST_ERR == *"byte 5"* ]] || die "template message: $LAST_ERR"
printf '"ok"\n"\\ud800 lone surrogate"\n' > "$LR_TMP/bad"
expect_fail 2 "$tok" "$G/tiny_tokenizer.json" < "$LR_TMP/bad"
[[ $LAST_ERR == *"line 2"* ]] || die "lone surrogate message: $LAST_ERR"
sed 's/"<|im_end|>": *[0-9]*/"<|im_end|>": 99999999/' "$G/tiny_tokenizer.json" > "$LR_TMP/bad.json"
expect_fail 2 "$tok" "$LR_TMP/bad.json" < /dev/null
[[ $LAST_ERR == *"model.vocab"* ]] || die "huge id message: $LAST_ERR"
echo '{"model": {}}' > "$LR_TMP/bad.json"
expect_fail 2 "$tok" "$LR_TMP/bad.json" < /dev/null
echo ok
