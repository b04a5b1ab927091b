# The method end to end on two tiny random models: lr-infer (expert samples,
# amateur follows) -> lr-kl -> lr-contrast -> lr-tune: the soft-KL training
# loss falls over epochs, and packing runs far fewer token rows per example
# than one forward per example (the reference's way).
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN T=$LR_TMP
"$B/lr-mkmodel" "$T/exp" --seed 1 > /dev/null
"$B/lr-mkmodel" "$T/ama" --seed 2 --layers 1 > /dev/null
nq=8; [ -n "${LR_SAN:-}" ] && nq=4 # ASan: fewer problems
head -n $nq "$LR_ROOT/data/gsm8k/train.jsonl" > "$T/q.jsonl"
"$B/lr-infer" --model "$T/exp" --data "$T/q.jsonl" --layout gsm8k --max-new-tokens 16 --temperature 1 --seed 3 -o "$T/e.lrs" 2> /dev/null
"$B/lr-infer" --model "$T/ama" --follow "$T/e.lrs" -o "$T/a.lrs" 2> /dev/null
"$B/lr-kl" -q "$T/e.lrs" "$T/a.lrs" > "$T/kl.lrs"
"$B/lr-contrast" -q "$T/kl.lrs" > "$T/ex.lrs"
n=$("$B/lr-dump" --count "$T/ex.lrs")
[ "$n" -gt 20 ] || die "only $n examples"
"$B/lr-tune" --model "$T/exp" --out "$T/ad" --lr 1e-2 --targets all --batch 8 --accum 1 --epochs 4 --group-by-problem \
    --log "$T/log.jsonl" "$T/ex.lrs" 2> "$T/tune.err"
jq -se 'group_by(.epoch) | map(map(.loss) | add / length) | .[3] < 0.85 * .[0]' "$T/log.jsonl" > /dev/null ||
    die "soft-KL loss did not fall: $(jq -sc 'group_by(.epoch) | map(map(.loss) | add / length)' "$T/log.jsonl")"
# rows per example in epoch 0 (same seed: the same batches) packed and not
rows() { jq -s --argjson n "$n" '[.[] | select(.epoch == 0) | .tokens] | add / $n' "$1"; }
"$B/lr-tune" --model "$T/exp" --out "$T/ad2" --no-pack --batch 8 --accum 1 --epochs 1 --group-by-problem \
    --log "$T/log2.jsonl" "$T/ex.lrs" 2> /dev/null
packed=$(rows "$T/log.jsonl") unpacked=$(rows "$T/log2.jsonl")
echo "token rows per example: packed $packed, unpacked $unpacked" >&2
[ "$(echo "$packed * 3 < $unpacked" | bc)" = 1 ] || die "packing saved too little: $packed vs $unpacked"

# the tuned expert: lr-infer --adapter equals lr-infer on lr-merge's f32 folder,
# and its streams carry an identity different from the base model's
"$B/lr-merge" --dtype f32 "$T/exp" "$T/ad" "$T/merged" 2> /dev/null
"$B/lr-infer" --model "$T/exp" --adapter "$T/ad" --data "$LR_ROOT/data/gsm8k/test.jsonl" --limit 2 --max-new-tokens 6 -o "$T/ta.lrs" 2> /dev/null
"$B/lr-infer" --model "$T/merged" --data "$LR_ROOT/data/gsm8k/test.jsonl" --limit 2 --max-new-tokens 6 -o "$T/tm.lrs" 2> /dev/null
jq -sne --slurpfile a <("$B/lr-dump" "$T/ta.lrs" | sed '1d;$d') --slurpfile b <("$B/lr-dump" "$T/tm.lrs" | sed '1d;$d') \
    'all(range(0; 2); . as $i | $a[$i].tokens == $b[$i].tokens and
        ([$a[$i].top_lp, $b[$i].top_lp] | transpose | map(select(length == 2 and .[0] != null and .[1] != null) | (.[0] - .[1]) | fabs) | max) < 1e-4)' \
    > /dev/null || die "--adapter differs from the merged model"
[ "$("$B/lr-dump" --header "$T/ta.lrs" | jq -r .model.hash)" != "$("$B/lr-dump" --header "$T/e.lrs" | jq -r .model.hash)" ] ||
    die "adapter run has the base model's identity"
expect_fail 3 "$B/lr-infer" --model "$T/exp" --adapter "$T/nonexistent" --data "$LR_ROOT/data/gsm8k/test.jsonl" --limit 1 -o "$T/x.lrs"
echo ok
