# lr-infer --shots 0|5 with --preset toolkit: mmlu_stem's prompt carries the
# toolkit's five examples by default (its evaluation script) or none (the
# authors' command passes no --num_shots); other benchmarks have none; the
# count is a setting of the run; any other count is refused.
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN T=$LR_TMP
"$B/lr-mkmodel" "$T/m" --seed 2 --layers 1 --hidden 32 --heads 2 --kv-heads 1 --inter 64 > /dev/null
run() { "$B/lr-infer" --model "$T/m" --preset toolkit --limit 2 --max-new-tokens 1 --max-context 8192 "$@"; }
plen() { "$B/lr-dump" "$1" | sed '1d;$d' | jq -s 'map(.prompt | length)'; }
run --data "$LR_ROOT/data/mmlu_stem/test.jsonl" -o "$T/m5.lrs" 2> /dev/null
run --data "$LR_ROOT/data/mmlu_stem/test.jsonl" --shots 0 -o "$T/m0.lrs" 2> /dev/null
run --data "$LR_ROOT/data/gsm8k/test.jsonl" -o "$T/g5.lrs" 2> /dev/null
run --data "$LR_ROOT/data/gsm8k/test.jsonl" --shots 0 -o "$T/g0.lrs" 2> /dev/null
jq -e -n --argjson a "$(plen "$T/m5.lrs")" --argjson b "$(plen "$T/m0.lrs")" \
    '[range(0; 2) as $i | $a[$i] > $b[$i] + 500] | all' > /dev/null || die "mmlu_stem: 5 shots not longer than 0"
[ "$(plen "$T/g5.lrs")" = "$(plen "$T/g0.lrs")" ] || die "gsm8k: --shots changed a benchmark without shots"
[ "$("$B/lr-dump" --header "$T/m0.lrs" | jq .params.shots)" = 0 ] || die "header: shots"
[ "$("$B/lr-dump" --header "$T/m5.lrs" | jq .params.shots)" = 5 ] || die "header: shots default"
expect_fail 1 run --data "$LR_ROOT/data/mmlu_stem/test.jsonl" --shots 3 -o "$T/x.lrs"
[[ $LAST_ERR == *"--shots"* ]] || die "message: $LAST_ERR"
echo ok
