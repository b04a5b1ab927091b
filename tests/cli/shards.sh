# lr-infer --shard K/N and lr-dump --cat: N = 3 shards joined give exactly
# the unsharded run's stream (the same records, byte for byte in lr-dump's
# JSON, in the same order; the header's params those of the unsharded run,
# so lr-infer continues the joined file as its own output), in generate and
# follow mode, on the cpu and the (emulated) cuda backend, for lr-eval, in
# any order of the inputs; and every way of joining
# streams that are not the shards of one run is refused with one line,
# exit 2, and no output.
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN T=$LR_TMP
"$B/lr-mkmodel" "$T/m" --seed 4 > /dev/null
"$B/lr-mkmodel" "$T/a" --seed 5 > /dev/null
for i in $(seq 0 9); do printf '{"q": "Problem %d: what is %d times %d?"}\n' $i $i $((i + 3)); done > "$T/q.jsonl"
# batch 1 and one thread: every problem's forward passes are the same
# computation sharded or not, so the log-probs are equal to the bit
RUN=(--model "$T/m" --data "$T/q.jsonl" --field q --preset raw --eos 'ě' --max-new-tokens 6 --batch 1 --threads 1)
records() { "$B/lr-dump" "$1" | sed 1d; }
params() { "$B/lr-dump" --header "$1" | jq -cS '[.kind, .kind_version, .model, .tokenizer, .params]'; }

"$B/lr-infer" "${RUN[@]}" -o "$T/all.lrs" 2> /dev/null
for k in 0 1 2; do "$B/lr-infer" "${RUN[@]}" --shard $k/3 -o "$T/s$k.lrs" 2> /dev/null; done
"$B/lr-dump" --header "$T/s1.lrs" | jq -e '.params.shard == "1/3"' > /dev/null || die "shard not in the header"
[ "$(records "$T/s1.lrs" | jq -s -c '[.[:-1][].idx]')" = "[1,4,7]" ] || die "shard 1/3: not problems 1, 4, 7"

"$B/lr-dump" --cat -o "$T/j.lrs" "$T/s0.lrs" "$T/s1.lrs" "$T/s2.lrs"
cmp <(records "$T/j.lrs") <(records "$T/all.lrs") || die "joined shards: records differ from the unsharded run"
[ "$(params "$T/j.lrs")" = "$(params "$T/all.lrs")" ] || die "joined header: not the unsharded run's settings"
"$B/lr-dump" --header "$T/j.lrs" | jq -e '(.argv[0] | endswith("lr-dump")) and .argv[1] == "--cat"' > /dev/null || die "joined argv"
# any order of the inputs, and stdout
"$B/lr-dump" --cat "$T/s2.lrs" "$T/s0.lrs" "$T/s1.lrs" > "$T/j2.lrs"
cmp <(records "$T/j2.lrs") <(records "$T/all.lrs") || die "shards given in another order"
# the joined file is the unsharded run's output: rerunning it adds nothing
"$B/lr-infer" "${RUN[@]}" -o "$T/j.lrs" 2> "$T/cont.err"
grep -q "holds this run" "$T/cont.err" || die "lr-infer does not take the joined file as its own: $(cat "$T/cont.err")"
grep -q ": 0 problems written" "$T/cont.err" || die "the rerun wrote problems: $(cat "$T/cont.err")"

# follow mode: the amateur over the expert stream, sharded and joined
FOL=(--model "$T/a" --follow "$T/all.lrs" --batch 1 --threads 1)
"$B/lr-infer" "${FOL[@]}" -o "$T/fall.lrs" 2> /dev/null
for k in 0 1 2; do "$B/lr-infer" "${FOL[@]}" --shard $k/3 -o "$T/f$k.lrs" 2> /dev/null; done
"$B/lr-dump" --cat -o "$T/fj.lrs" "$T/f0.lrs" "$T/f1.lrs" "$T/f2.lrs"
cmp <(records "$T/fj.lrs") <(records "$T/fall.lrs") || die "follow shards: records differ from the unsharded run"
[ "$(params "$T/fj.lrs")" = "$(params "$T/fall.lrs")" ] || die "follow: joined header differs"

# the cuda backend (the emulated device here) shards and joins the same way
if [ "${LR_SAN:-}" = 1 ]; then E=$LR_ROOT/build/san/emu; else E=$LR_ROOT/build/rel/emu; fi
CU=(--model "$T/m" --data "$T/q.jsonl" --field q --preset raw --limit 4 --max-new-tokens 3 --batch 1 --device cuda)
"$E/lr-infer" "${CU[@]}" -o "$T/call.lrs" 2> /dev/null
for k in 0 1; do "$E/lr-infer" "${CU[@]}" --shard $k/2 -o "$T/c$k.lrs" 2> /dev/null; done
"$B/lr-dump" --cat -o "$T/cj.lrs" "$T/c0.lrs" "$T/c1.lrs"
"$B/lr-dump" --header "$T/cj.lrs" | jq -e '.params.device == "cuda"' > /dev/null || die "cuda: not a cuda stream"
cmp <(records "$T/cj.lrs") <(records "$T/call.lrs") || die "cuda shards: records differ from the unsharded run"

# evaluation generation sharded over a benchmark file: lr-eval scores the
# joined stream exactly as the unsharded one
mkdir -p "$T/gsm8k" && head -n 5 "$LR_ROOT/data/gsm8k/test.jsonl" > "$T/gsm8k/test.jsonl"
EV=(--model "$T/m" --data "$T/gsm8k/test.jsonl" --max-new-tokens 4 --batch 1 --threads 1)
"$B/lr-infer" "${EV[@]}" -o "$T/eall.lrs" 2> /dev/null
for k in 0 1; do "$B/lr-infer" "${EV[@]}" --shard $k/2 -o "$T/e$k.lrs" 2> /dev/null; done
"$B/lr-dump" --cat -o "$T/ej.lrs" "$T/e1.lrs" "$T/e0.lrs"
"$B/lr-eval" score --pred "$T/eall.lrs" --data "$T/gsm8k/test.jsonl" --label x --out-dir "$T/sa" > /dev/null
"$B/lr-eval" score --pred "$T/ej.lrs" --data "$T/gsm8k/test.jsonl" --label x --out-dir "$T/sj" > /dev/null
[ -s "$T/sa/results.jsonl" ] && diff -r "$T/sa" "$T/sj" > /dev/null || die "lr-eval: the joined stream scores differently"

# a bad input row is reported by its own shard alone (4 mod 3 = 1), as once
# by the unsharded run, and the joined records are still the same
sed '5s/.*/not json/' "$T/q.jsonl" > "$T/qb.jsonl"
BAD=(--model "$T/m" --data "$T/qb.jsonl" --field q --preset raw --max-new-tokens 3 --batch 1 --threads 1)
expect_fail 2 "$B/lr-infer" "${BAD[@]}" -o "$T/ball.lrs"
[[ $LAST_ERR == *"line 5"* ]] || die "bad row: $LAST_ERR"
for k in 0 2; do "$B/lr-infer" "${BAD[@]}" --shard $k/3 -o "$T/b$k.lrs" 2> /dev/null || die "shard $k/3 failed on shard 1's row"; done
expect_fail 2 "$B/lr-infer" "${BAD[@]}" --shard 1/3 -o "$T/b1.lrs"
[[ $LAST_ERR == *"line 5"* ]] || die "bad row in shard 1/3: $LAST_ERR"
"$B/lr-dump" --cat -o "$T/bj.lrs" "$T/b0.lrs" "$T/b1.lrs" "$T/b2.lrs"
cmp <(records "$T/bj.lrs") <(records "$T/ball.lrs") || die "bad row: joined records differ"

# refused: exit 2, one line naming the file, no output
refused() { # what, pattern, inputs...
    local what=$1 pat=$2; shift 2
    expect_fail 2 "$B/lr-dump" --cat -o "$T/bad.lrs" "$@"
    [[ $LAST_ERR == *$pat* ]] || die "$what: message \"$LAST_ERR\" lacks \"$pat\""
    [ ! -e "$T/bad.lrs" ] || die "$what: left an output"
}
refused "a shard missing" "a run of 3 shards, 2 files given" "$T/s0.lrs" "$T/s2.lrs"
refused "a shard twice" "shard 0/3 again" "$T/s0.lrs" "$T/s0.lrs" "$T/s2.lrs"
"$B/lr-infer" "${RUN[@]}" --max-new-tokens 5 --shard 1/3 -o "$T/o1.lrs" 2> /dev/null
refused "another run's shard" 'params "max_new_tokens" is 5' "$T/s0.lrs" "$T/o1.lrs" "$T/s2.lrs"
refused "generate and follow shards" "not shards of one run" "$T/s0.lrs" "$T/f1.lrs" "$T/s2.lrs"
cat "$T/s0.lrs" "$T/s1.lrs" > "$T/c01.lrs" # headers say 0/3, records of shard 1 follow
refused "a record of another shard" 'field "idx": 1 is not a problem of shard 0/3' "$T/c01.lrs" "$T/s1.lrs" "$T/s2.lrs"
sz=$(stat -c %s "$T/s2.lrs"); head -c $((sz - 20)) "$T/s2.lrs" > "$T/cut.lrs"
refused "an incomplete shard" "cut.lrs" "$T/s0.lrs" "$T/s1.lrs" "$T/cut.lrs"
"$B/lr-dump" "$T/s1.lrs" | jq -c 'if .lrs then del(.params.shard) else . end' | "$B/lr-dump" --from-json -o "$T/ns.lrs"
refused "no shard setting" 'no "params"."shard"' "$T/s0.lrs" "$T/ns.lrs" "$T/s2.lrs"
expect_fail 1 "$B/lr-dump" --cat -o "$T/bad.lrs"
expect_fail 1 "$B/lr-dump" --cat --count "$T/s0.lrs"
expect_fail 1 "$B/lr-dump" --cat -o "$T/s0.lrs" "$T/s0.lrs" "$T/s1.lrs" "$T/s2.lrs"
echo ok
