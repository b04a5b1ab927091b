# lr-infer --stop TEXT: generation ends at the first token whose text
# completes TEXT (as the toolkit's stop strings end vLLM's), finish "stop";
# the tokens are the unstopped run's up to that token; the setting is part
# of the header, so a resume with other stop strings is refused.
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN T=$LR_TMP
DATA=$LR_ROOT/data/gsm8k/train.jsonl
"$B/lr-mkmodel" "$T/m" --seed 5 --layers 2 --hidden 64 > /dev/null
run() { "$B/lr-infer" --model "$T/m" --data "$DATA" --limit 4 --max-new-tokens 40 --preset raw --field question "$@"; }
run -o "$T/all.lrs" 2> /dev/null
"$B/lr-dump" "$T/all.lrs" | sed '1d;$d' > "$T/all.jsonl"
# a stop string: the middle one of the ASCII letters in problem 0's text
# (a random model writes bytes; a letter decodes the same in any window)
stop=$(jq -rs '.[0].text | explode | map(select((. >= 97 and . <= 122) or (. >= 65 and . <= 90)))
               | if length < 3 then "" else [.[length / 2 | floor]] | implode end' "$T/all.jsonl")
[ -n "$stop" ] || die "problem 0 wrote too few letters to stop at"
run --stop "$stop" -o "$T/s.lrs" 2> /dev/null
"$B/lr-dump" "$T/s.lrs" | sed '1d;$d' > "$T/s.jsonl"
# each problem: stopped exactly where the text first contains the string,
# or, when it never does, the same as without --stop
jq -e -n --slurpfile a "$T/all.jsonl" --slurpfile s "$T/s.jsonl" --arg stop "$stop" '
  [range(0; $a | length) as $i | $a[$i] as $x | $s[$i] as $y
   | if ($x.text | contains($stop)) then
       $y.finish == "stop" and ($y.text | contains($stop))
       and ($y.tokens == $x.tokens[0:($y.tokens | length)])
       and ($y.tokens | length) < ($x.tokens | length)
     else $y.tokens == $x.tokens and $y.finish == $x.finish end] | all' > /dev/null \
    || die "--stop \"$stop\": records do not stop where the text first contains it"
# not one token later or earlier: the text without the last token lacks it
first=$(jq -rs '.[0].tokens | length' "$T/s.jsonl")
jq -sc '.[0].tokens[0:-1]' "$T/s.jsonl" > "$T/short.json"
short=$("$B/lr-tok" "$T/m" --decode --skip-special < "$T/short.json" | jq -r .)
[[ $short != *"$stop"* ]] || die "stopped later than the first occurrence (${first} tokens)"
# the stop strings are a setting of the run: another one does not resume
sz=$(stat -c %s "$T/s.lrs")
head -c $((sz * 2 / 3)) "$T/s.lrs" > "$T/cut.lrs.part"
expect_fail 2 run --stop "zz" -o "$T/cut.lrs"
[[ $LAST_ERR == *'setting "stop" differs'* ]] || die "resume refusal does not name the setting: $LAST_ERR"
expect_fail 1 run --stop "" -o "$T/x.lrs"
echo ok
