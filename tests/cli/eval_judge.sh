#!/usr/bin/env bash
# lr-eval judge: the regression corpus of realistic outputs gets the
# toolkit's verdicts (tests/golden/eval_corpus.jsonl, from
# tests/ref/make_eval_corpus.py); bad input is one clear line and exit 2;
# invalid UTF-8, megabyte outputs and deep nesting are scored, not fatal.
source "$LR_ROOT/tests/lib.sh"
E=$LR_BIN/lr-eval
G=$LR_ROOT/tests/golden/eval_corpus.jsonl

"$E" --help | grep -q "lr-eval judge" || die "--help"
expect_fail 1 "$E"
expect_fail 1 "$E" frobnicate
expect_fail 1 "$E" judge a b

# the corpus: extracted answers and verdicts equal the toolkit's
jq -c 'del(.extracted, .correct)' "$G" > "$LR_TMP/in.jsonl"
"$E" judge "$LR_TMP/in.jsonl" > "$LR_TMP/out.jsonl" 2> "$LR_TMP/err"
jq -c '[.note, .extracted, .correct]' "$G" > "$LR_TMP/want"
jq -c '[.note, .extracted, .correct]' "$LR_TMP/out.jsonl" > "$LR_TMP/got"
diff "$LR_TMP/want" "$LR_TMP/got" || die "judge differs from the toolkit's verdicts"
[ "$(wc -l < "$LR_TMP/got")" -ge 50 ] || die "corpus too small"
grep -q "judged $(wc -l < "$G")" "$LR_TMP/err" || die "no count on stderr"
# stdin works the same; other fields pass through
"$E" judge < "$LR_TMP/in.jsonl" | jq -e -s 'length > 0 and all(has("note") and has("bench"))' > /dev/null || die "stdin"

# bad input: one line naming the line and field, exit 2
printf '%s\n' '{"bench":"gsm8k","prediction":"1","gold":"1"}' '{"bench":' > "$LR_TMP/bad.jsonl"
expect_fail 2 "$E" judge "$LR_TMP/bad.jsonl"
[[ $LAST_ERR == *"line 2: not JSON"* ]] || die "message: $LAST_ERR"
[ "$(echo "$LAST_ERR" | wc -l)" = 1 ] || die "more than one line: $LAST_ERR"
echo '{"bench":"gsm9k","prediction":"1","gold":"1"}' > "$LR_TMP/bad.jsonl"
expect_fail 2 "$E" judge "$LR_TMP/bad.jsonl"
[[ $LAST_ERR == *'field "bench": unknown benchmark "gsm9k"'* ]] || die "message: $LAST_ERR"
echo '{"bench":"gsm8k","prediction":"1"}' > "$LR_TMP/bad.jsonl"
expect_fail 2 "$E" judge "$LR_TMP/bad.jsonl"
[[ $LAST_ERR == *'field "gold"'* ]] || die "message: $LAST_ERR"
echo '[1,2]' > "$LR_TMP/bad.jsonl"
expect_fail 2 "$E" judge "$LR_TMP/bad.jsonl"
expect_fail 3 "$E" judge "$LR_TMP/no-such-file.jsonl"

# invalid UTF-8 (a generation cut inside a character): replaced, counted, scored
printf '{"bench":"gsm8k","prediction":"x \xff\xe2\x82 The answer is 12","gold":"12"}\n' > "$LR_TMP/u.jsonl"
"$E" judge "$LR_TMP/u.jsonl" > "$LR_TMP/u.out" 2> "$LR_TMP/u.err"
jq -e '.correct == true' "$LR_TMP/u.out" > /dev/null || die "invalid UTF-8 line not scored"
grep -q "1 line(s) had invalid UTF-8" "$LR_TMP/u.err" || die "invalid UTF-8 not reported"

# a megabyte output and 10,000 nested braces (balanced or not: the grader
# drops braces before comparing, so both read as "1")
n=1000000; [ -n "${LR_SAN:-}" ] && n=200000
big=$(printf '%.0sx + 1 ' $(seq $((n / 6))))
o=$(printf '%.0s{' $(seq 10000)); c=$(printf '%.0s}' $(seq 10000))
{
    printf '{"bench":"math500","prediction":"The answer is %s","gold":"2"}\n' "$big"
    printf '{"bench":"math500","prediction":"\\\\boxed{%s1%s}","gold":"1"}\n' "$o" "$c"
    printf '{"bench":"math500","prediction":"\\\\boxed{%s1","gold":"1"}\n' "$o"
} > "$LR_TMP/big.jsonl"
"$E" judge "$LR_TMP/big.jsonl" > "$LR_TMP/big.out" 2>/dev/null || die "pathological input"
[ "$(jq -s 'map(.correct)' -c "$LR_TMP/big.out")" = "[false,true,true]" ] || die "pathological verdicts: $(jq -c .correct "$LR_TMP/big.out")"
exit 0
