# lr-infer's failure modes: an output naming an input is refused before
# anything is touched; numeric options are checked; failing problems stop
# the run after a few lines and --limit bounds it; a prompt token the model
# has no embedding row for names tokenizer.json and config.json; nothing
# appears under the output's final name when a run fails.
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN T=$LR_TMP
"$B/lr-mkmodel" "$T/m" --layers 1 --hidden 32 --heads 2 --kv-heads 1 --inter 32 > /dev/null
for i in $(seq 0 29); do printf '{"q": "question %d"}\n' $i; done > "$T/p.jsonl"
cp "$T/p.jsonl" "$T/p.saved"
RUN=(--model "$T/m" --field q --preset raw --max-new-tokens 2)

# an output that is one of the inputs: refused, the input intact
expect_fail 1 "$B/lr-infer" "${RUN[@]}" --data "$T/p.jsonl" -o "$T/p.jsonl"
case "$LAST_ERR" in *"p.jsonl: is also an input"*) ;; *) die "output = input message: $LAST_ERR" ;; esac
cmp -s "$T/p.jsonl" "$T/p.saved" || die "the input was changed"
ln "$T/p.jsonl" "$T/hard.jsonl"
expect_fail 1 "$B/lr-infer" "${RUN[@]}" --data "$T/p.jsonl" -o "$T/hard.jsonl"
"$B/lr-infer" "${RUN[@]}" --data "$T/p.jsonl" --limit 2 -o "$T/e.lrs" 2> /dev/null
cp "$T/e.lrs" "$T/e.saved"
expect_fail 1 "$B/lr-infer" --model "$T/m" --follow "$T/e.lrs" -o "$T/e.lrs"
cmp -s "$T/e.lrs" "$T/e.saved" || die "the followed stream was changed"
expect_fail 1 "$B/lr-infer" "${RUN[@]}" --data "$T/p.jsonl" -o "$T/m/config.json"
expect_fail 1 "$B/lr-infer" "${RUN[@]}" --data "$T/p.jsonl" -o "$T/m"   # a folder: refused before the run

# checked numbers
for bad in "--seed abc" "--seed -1" "--seed 1x" "--temperature nan" "--top-p 2" "--limit -3" "--top-k -1" \
           "--max-new-tokens 0" "--shard 2/2" "--shard 1/x" "--batch 1e3"; do
    # shellcheck disable=SC2086
    expect_fail 1 "$B/lr-infer" "${RUN[@]}" --data "$T/p.jsonl" $bad -o "$T/x.lrs"
    case "$LAST_ERR" in *"${bad%% *}"*) ;; *) die "$bad: message: $LAST_ERR" ;; esac
done
[ ! -e "$T/x.lrs" ] && [ ! -e "$T/x.lrs.part" ] || die "a refused command left an output"
"$B/lr-infer" --help > "$T/help"
grep -q -- "--max-context N" "$T/help" || die "--help lacks --max-context"
grep -q -- "--top-k N" "$T/help" || die "--help lacks --top-k"
grep -q "130 interrupted" "$T/help" || die "--help lacks exit code 130"

# failing problems: a wrong layout fails every row; the run stops after 10
set +e; "$B/lr-infer" --model "$T/m" --data "$T/p.jsonl" --layout gsm8k -o "$T/w.lrs" 2> "$T/w.err"; rc=$?; set -e
[ "$rc" = 2 ] || die "wrong layout: exit $rc (wanted 2)"
[ "$(wc -l < "$T/w.err")" = 11 ] || die "wrong layout: $(wc -l < "$T/w.err") lines on stderr (wanted 10 + a summary)"
tail -1 "$T/w.err" | grep -q "stopped after 10 failed problems" || die "no summary: $(tail -1 "$T/w.err")"
[ ! -e "$T/w.lrs" ] || die "a stopped run left FILE"
# ... and --limit bounds the run whatever fails
set +e; "$B/lr-infer" --model "$T/m" --data "$T/p.jsonl" --layout gsm8k --limit 2 -o "$T/w.lrs" 2> "$T/w.err"; rc=$?; set -e
[ "$rc" = 2 ] || die "--limit 2: exit $rc (wanted 2)"
[ "$(grep -c 'line [0-9]*:' "$T/w.err")" = 2 ] || die "--limit 2: $(cat "$T/w.err")"
# a single bad problem is one line naming file, line and field; the others are written
printf '{"q": "ok"}\n{"nope": 1}\n{"q": "fine"}\n' > "$T/one.jsonl"
expect_fail 2 "$B/lr-infer" "${RUN[@]}" --data "$T/one.jsonl" -o "$T/one.lrs"
[ "$(echo "$LAST_ERR" | wc -l)" = 1 ] || die "one bad problem, several lines: $LAST_ERR"
case "$LAST_ERR" in *'one.jsonl: line 2: field "q"'*) ;; *) die "bad row message: $LAST_ERR" ;; esac
[ "$("$B/lr-dump" --count "$T/one.lrs")" = 2 ] || die "the good problems must still be written"

# a prompt token past the model's embedding rows: the files that disagree
"$B/lr-mkmodel" "$T/v" --vocab 600 --layers 1 --hidden 32 --heads 2 --kv-heads 1 --inter 32 > /dev/null
cp "$LR_ROOT/tests/golden/tiny_tokenizer.json" "$T/v/tokenizer.json"   # 608 ids, "word" is 602
rm -f "$T/v/tokenizer_config.json"
printf '{"q": "a word"}\n' > "$T/v.jsonl"
expect_fail 2 "$B/lr-infer" --model "$T/v" --data "$T/v.jsonl" --field q --preset raw -o "$T/v.lrs"
case "$LAST_ERR" in *"v/tokenizer.json: token id 602"*"600 embedding rows"*"v/config.json"*) ;;
    *) die "token past the rows: $LAST_ERR" ;; esac
[ ! -e "$T/v.lrs" ] && [ ! -e "$T/v.lrs.part" ] || die "a failed run left an output"
echo ok
