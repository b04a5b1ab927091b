# The bad-input classes of docs/RELIABILITY.md, one `bad` case per table
# row: the tool must exit with the row's code, print exactly one stderr line
# holding the row's message, and leave no file under an output's final name.
# The table and these cases are compared at the end, so neither can drift:
# a row without a case, or a case without a row, fails the test.
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN G=$LR_ROOT/tests/golden T=$LR_TMP
rows=$T/rows
: > "$rows"
# bad TOOL "CLASS" CODE "MESSAGE" CMD...: one table row
bad() {
    local tool=$1 cls=$2 code=$3 msg=$4; shift 4
    expect_fail "$code" "$@"
    [[ $LAST_ERR == *"$msg"* ]] || die "$tool: $cls: message lacks \"$msg\": $LAST_ERR"
    printf '| %s | %s | %s | %s |\n' "$tool" "$cls" "$code" "$msg" >> "$rows"
}
# no_output PATH...: nothing under the final name, no temporary beside it
no_output() {
    for p in "$@"; do
        [ -d "$(dirname "$p")" ] || continue
        [ -e "$p" ] && die "$p: left under its final name"
        ls "$(dirname "$p")" | grep -qF "$(basename "$p").part" && die "$p: temporary left behind"
    done
    return 0
}

E=$T/e.lrs A=$T/a.lrs
"$B/lr-dump" --from-json "$G/kl_expert.jsonl" > "$E"
"$B/lr-dump" --from-json "$G/kl_amateur.jsonl" > "$A"
"$B/lr-kl" -q "$E" "$A" > "$T/kl.lrs"
cp "$E" "$T/e.keep"; cp "$T/kl.lrs" "$T/kl.keep"

# ---- an output that names an input
bad lr-kl "-o names an input" 1 "is also an input" "$B/lr-kl" -q "$E" "$A" -o "$E"
bad lr-kl "--stats names an input" 1 "is also an input" "$B/lr-kl" -q "$E" "$A" --stats "$A"
cmp "$E" "$T/e.keep" || die "lr-kl changed its input"
bad lr-contrast "-o names an input" 1 "is also an input" "$B/lr-contrast" -q "$T/kl.lrs" -o "$T/kl.lrs"
cmp "$T/kl.lrs" "$T/kl.keep" || die "lr-contrast changed its input"
"$B/lr-dump" "$E" > "$T/e.jsonl"; cp "$T/e.jsonl" "$T/e.jsonl.keep"
bad lr-dump "--from-json -o names an input" 1 "is also an input" "$B/lr-dump" --from-json "$T/e.jsonl" -o "$T/e.jsonl"
cmp "$T/e.jsonl" "$T/e.jsonl.keep" || die "lr-dump changed its input"
ln "$T/e.jsonl" "$T/e-link.jsonl"   # the same file by another name (device and inode)
bad lr-dump "-o is a hard link to the input" 1 "is also an input" "$B/lr-dump" --from-json "$T/e.jsonl" -o "$T/e-link.jsonl"

# ---- options: checked values, one line
bad lr-kl "--seed not a number" 1 "--seed: expected an integer" "$B/lr-kl" --seed x "$E" "$A"
bad lr-kl "--seed negative" 1 "--seed: expected an integer" "$B/lr-kl" --seed -1 "$E" "$A"
bad lr-kl "--beta NaN" 1 "--beta: expected a number" "$B/lr-kl" --beta nan "$E" "$A"
bad lr-kl "unknown option" 1 "unknown option" "$B/lr-kl" --bogus "$E" "$A"
bad lr-kl "one input" 1 "expected two inputs" "$B/lr-kl" "$E"
bad lr-contrast "--alpha outside [0, 1]" 1 "--alpha: expected a number in [0, 1]" "$B/lr-contrast" --alpha 2 "$T/kl.lrs"
bad lr-contrast "--vocab not a count" 1 "--vocab: expected an integer" "$B/lr-contrast" --from-ref --vocab x --tokenizer "$G/tiny_tokenizer.json"
bad lr-dump "--head not a count" 1 "--head: expected an integer" "$B/lr-dump" --head 3x "$E"
bad lr-dump "-o without --from-json" 1 "-o is for --from-json" "$B/lr-dump" -o "$T/x.json" "$E"
bad lr-eval "no command" 1 "expected a command" "$B/lr-eval"

# ---- lr-contrast: fields it passes through are checked first
edit_kl() { "$B/lr-dump" "$T/kl.lrs" | jq -c "if .step != null and .idx == 4 then $1 else . end" | "$B/lr-dump" --from-json > "$2"; }
edit_kl '.prompt_len = 1000000' "$T/kl_plbig.lrs"
bad lr-contrast "prompt_len past the context" 2 'field "prompt_len": 1000000 outside the context' \
    "$B/lr-contrast" -q "$T/kl_plbig.lrs" -o "$T/ex1.lrs"
no_output "$T/ex1.lrs"
edit_kl '.prompt_len = -3' "$T/kl_plneg.lrs"
bad lr-contrast "prompt_len negative" 2 'field "prompt_len": -3 outside the context' \
    "$B/lr-contrast" -q "$T/kl_plneg.lrs" -o "$T/ex2.lrs"
no_output "$T/ex2.lrs"
# --from-ref with the toy tokenizer: all-zero weights, a NUL in the question
ref() { printf '{"prompt_id": "%s", "step": 1, "prefix": "ab", "tokens": ["a"], "token_ids": [%s], "weights": [%s], "kl_divergence": 0.5}\n' "$@"; }
ref "Q?" 65 0 > "$T/ref0.jsonl"
bad lr-contrast "--from-ref all-zero weights" 2 'line 1: field "weights": all zero' \
    "$B/lr-contrast" --from-ref --tokenizer "$G/tiny_tokenizer.json" -o "$T/ex3.lrs" "$T/ref0.jsonl"
no_output "$T/ex3.lrs"
ref 'Q\u0000?' 65 1 > "$T/refnul.jsonl"
bad lr-contrast "--from-ref NUL in prompt_id" 2 'line 1: field "prompt_id": contains a NUL' \
    "$B/lr-contrast" --from-ref --tokenizer "$G/tiny_tokenizer.json" "$T/refnul.jsonl"
nv=$("$B/lr-tok" --info "$G/tiny_tokenizer.json" | jq .vocab_size)
ref "Q?" "$nv" 1 > "$T/refpast.jsonl"
bad lr-contrast "--from-ref id past the tokenizer" 2 'field "token_ids": not a token id of the tokenizer' \
    "$B/lr-contrast" --from-ref --tokenizer "$G/tiny_tokenizer.json" "$T/refpast.jsonl"
# ... which --vocab (the model's rows) accepts, as --to-ref writes such ids
"$B/lr-contrast" -q --from-ref --vocab $((nv + 5)) --tokenizer "$G/tiny_tokenizer.json" "$T/refpast.jsonl" \
    | "$B/lr-dump" | jq -se ".[1].target_ids == [$nv] and .[0].params.vocab == $((nv + 5))" > /dev/null || die "--vocab"
# a token that decodes to byte 0 survives --to-ref | --from-ref ("\u0000" in JSON)
ref 'Q?' 65 1 | sed 's/"prefix": "ab"/"prefix": "a\\u0000b"/' > "$T/refnulprefix.jsonl"
nul=$(echo '"\u0000"' | "$B/lr-tok" "$G/tiny_tokenizer.json" | jq '.[0]')
"$B/lr-contrast" -q --from-ref --tokenizer "$G/tiny_tokenizer.json" "$T/refnulprefix.jsonl" | "$B/lr-dump" \
    | jq -se ".[1].context | index([$nul]) != null" > /dev/null || die "NUL in a prefix did not read back"

# ---- streams with empty arrays (a problem that generated nothing) pass, sanitizers included
for s in expert amateur; do
    jq -c 'if .idx == 0 then .tokens = [] | .k = [] | .top_ids = [] | .top_lp = [] | .tail = []
        | if has("ref_lp") then .ref_lp = [] | .ref_tail = [] else . end | del(.full) else . end' \
        "$G/kl_$s.jsonl" | "$B/lr-dump" --from-json > "$T/empty_$s.lrs"
done
"$B/lr-kl" -q --beta 0 "$T/empty_expert.lrs" "$T/empty_amateur.lrs" | "$B/lr-contrast" -q | "$B/lr-dump" --count > /dev/null \
    || die "a problem with no tokens broke lr-kl | lr-contrast"

# ---- the tokenizer: a byte-level vocabulary without all 256 byte tokens
jq -c 'del(.model.vocab["z"]) | .model.merges |= map(select((if type == "array" then join(" ") else . end) | test("z") | not))' \
    "$G/tiny_tokenizer.json" > "$T/tok_noz.json"
bad lr-tok "byte-level vocabulary lacks a byte token" 2 'no token for byte 0x7a' "$B/lr-tok" "$T/tok_noz.json"

# ---- lr-eval score: streams, dumps and what a cut leaves
mkdir -p "$T/data/gsm8k"
for i in 0 1 2; do printf '{"question": "Q%d?", "answer": "so #### %d"}\n' $i $i; done > "$T/data/gsm8k/test.jsonl"
printf '{"id": "gsm8k/test:%d", "prediction": "\\\\boxed{%d}"}\n' 0 0 1 1 2 7 > "$T/pred.jsonl"
score() { "$B/lr-eval" score --layout gsm8k --data "$T/data/gsm8k/test.jsonl" "$@"; }
score --pred "$T/pred.jsonl" > /dev/null 2>&1 || die "plain predictions"
# an lr-infer-like dist stream, read as it is and as lr-dump's JSON: the same verdicts
jq -c 'if .lrs then . else .id = "gsm8k/test:\(.idx)" | .text = "\\boxed{\(.idx)}" end' "$G/kl_expert.jsonl" \
    | "$B/lr-dump" --from-json > "$T/g.lrs"
score --pred "$T/g.lrs" 2> /dev/null | jq -c '[.id, .correct]' > "$T/v_lrs"
"$B/lr-dump" "$T/g.lrs" | score --pred - 2> /dev/null | jq -c '[.id, .correct]' > "$T/v_json"
[ "$(cat "$T/v_lrs")" = "$(printf '["gsm8k/test:0",true]\n["gsm8k/test:1",true]\n["gsm8k/test:2",true]')" ] || die "score --pred x.lrs: $(cat "$T/v_lrs")"
cmp "$T/v_lrs" "$T/v_json" || die "the stream and its dump score differently"
"$B/lr-dump" "$T/g.lrs" | head -n -1 > "$T/cut.jsonl"
bad lr-eval "score: a dump cut short" 2 "the dump was cut short" score --pred "$T/cut.jsonl"
"$B/lr-dump" "$T/g.lrs" | sed '$s/.*/{"lrs_end":99}/' > "$T/miscount.jsonl"
bad lr-eval "score: lrs_end miscounts" 2 'field "lrs_end": counts 99 records' score --pred "$T/miscount.jsonl"
head -c 200 "$T/g.lrs" > "$T/cut.lrs"
bad lr-eval "score: a stream cut short" 2 "cut.lrs: record" score --pred "$T/cut.lrs"
bad lr-eval "score: a stream cut short, on stdin" 2 "<stdin>: record" score --pred - < "$T/cut.lrs"
jq -c 'if .lrs then . else .id = "gsm8k/test:\(.idx)" | del(.text) end' "$G/kl_expert.jsonl" | "$B/lr-dump" --from-json > "$T/notext.lrs"
bad lr-eval "score: stream without text, no --tokenizer" 2 'field "text": missing (give --tokenizer' score --pred "$T/notext.lrs"
# --out-dir: a failed run leaves no summary (not even an empty one)
bad lr-eval "score --out-dir: bad predictions" 2 "the dump was cut short" score --pred "$T/cut.jsonl" --out-dir "$T/ev"
no_output "$T/ev/summary.json" "$T/ev/summary.md" "$T/ev/results.jsonl"
score --pred "$T/pred.jsonl" --out-dir "$T/ev" 2> /dev/null
jq -e '.benchmarks.gsm8k.correct == 2' "$T/ev/summary.json" > /dev/null || die "--out-dir summary"
bad lr-eval "score --out-dir: the output is the predictions" 1 "is also an input" \
    score --pred "$T/ev/results.jsonl" --out-dir "$T/ev"

# ---- signals mid-run: exit 130, nothing under the final name
# The tool reads FEED from a pipe that stays open, so it is mid-stream (its
# output open, waiting for more input) when the signal arrives.
sig_case() { # sig_case TOOL "CLASS" SIGNAL FEED OUT CMD... (the command reads stdin)
    local tool=$1 cls=$2 sig=$3 feed=$4 out=$5; shift 5
    rm -f "$T/fifo"; mkfifo "$T/fifo"
    "$@" < "$T/fifo" 2> "$T/sig.err" & local pid=$!
    exec 7> "$T/fifo"
    cat "$feed" >&7
    local i=0
    until ls "$(dirname "$out")" | grep -qF "$(basename "$out").part"; do
        i=$((i + 1)); [ $i -lt 100 ] || { exec 7>&-; die "$tool: no temporary output while running"; }
        sleep 0.1
    done
    sleep 0.3
    kill -"$sig" "$pid"
    set +e; wait "$pid"; local rc=$?; set -e
    exec 7>&-
    [ "$rc" = 130 ] || die "$tool: SIG$sig mid-run: exit $rc (wanted 130): $(cat "$T/sig.err")"
    no_output "$out"
    printf '| %s | %s | %s | %s |\n' "$tool" "$cls" 130 "(none)" >> "$rows"
}
head -n 2 "$G/kl_expert.jsonl" > "$T/two_lines.jsonl"
# The stream reader fills 128 KiB at a time: a feed of several such blocks
# gets the binary readers past their headers before the pipe stalls.
big() { # 1200 problems, log-probs shifted per copy so that zstd cannot fold the copies
    jq -sc '(.[0]) as $h | [range(100) as $k | .[1:-1][] | .idx += 12 * $k | .idx as $i | .id = "toy/train:\($i)"
        | (if .top_lp then .top_lp |= map(if type == "number" then . - $k * 0.00137 - $i * 1e-5 else . end) else . end)
        | (if .ref_lp then .ref_lp |= map(if type == "number" then . - $k * 0.00113 else . end) else . end)] as $r
        | $h, $r[], {lrs_end: ($r | length)} | del(.full?)' "$1" | "$B/lr-dump" --from-json
}
big "$G/kl_expert.jsonl" > "$T/big_e.lrs"
big "$G/kl_amateur.jsonl" > "$T/big_a.lrs"
"$B/lr-kl" -q --beta 0 "$T/big_e.lrs" "$T/big_a.lrs" > "$T/big_kl.lrs"
sig_case lr-dump "SIGTERM while writing -o" TERM "$T/two_lines.jsonl" "$T/sig1.lrs" "$B/lr-dump" --from-json -o "$T/sig1.lrs"
sig_case lr-dump "SIGINT while writing -o" INT "$T/two_lines.jsonl" "$T/sig3.lrs" "$B/lr-dump" --from-json -o "$T/sig3.lrs"
sig_case lr-kl "SIGTERM while writing -o" TERM "$T/big_e.lrs" "$T/sig2.lrs" "$B/lr-kl" -q - "$T/big_a.lrs" -o "$T/sig2.lrs"
sig_case lr-contrast "SIGTERM while writing -o" TERM "$T/big_kl.lrs" "$T/sig4.lrs" "$B/lr-contrast" -q -o "$T/sig4.lrs"

# ---- the table in docs/RELIABILITY.md is exactly these cases
grep '^| lr-' "$LR_ROOT/docs/RELIABILITY.md" | sed 's/`//g' | sort > "$T/table"
sort "$rows" > "$T/cases"
diff "$T/cases" "$T/table" > "$T/drift" || die "docs/RELIABILITY.md and tests/cli/reliability.sh differ (< case, > table):
$(cat "$T/drift")"
echo ok
