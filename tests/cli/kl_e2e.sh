# lr-infer -> lr-kl -> lr-contrast on two tiny random models: lr-kl accepts
# real lr-infer streams; with whole-vocabulary rows (--full) its KL equals
# METHOD.md's sum recomputed here in jq; without them the compact KL is a
# lower bound within kl_err of it (the documented bound, on real lists); the
# masks lr-contrast builds from the lists equal those of the full rows.
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN T=$LR_TMP
"$B/lr-mkmodel" "$T/exp" --seed 1 > /dev/null
"$B/lr-mkmodel" "$T/ama" --seed 2 --layers 1 > /dev/null
head -n 4 "$LR_ROOT/data/gsm8k/train.jsonl" > "$T/q.jsonl"
# temperature > 0: a random model's greedy trace repeats one token
"$B/lr-infer" --model "$T/exp" --data "$T/q.jsonl" --layout gsm8k --max-new-tokens 12 --temperature 1 --seed 3 \
    --top-k-max 40 --full -o "$T/e.lrs" 2> /dev/null
"$B/lr-infer" --model "$T/ama" --follow "$T/e.lrs" --full -o "$T/a.lrs" 2> /dev/null
"$B/lr-kl" -q --beta 0 "$T/e.lrs" "$T/a.lrs" > "$T/klf.lrs"
for s in e a; do "$B/lr-dump" "$T/$s.lrs" | jq -c 'del(.full)' | "$B/lr-dump" --from-json > "$T/${s}c.lrs"; done
"$B/lr-kl" -q --beta 0 "$T/ec.lrs" "$T/ac.lrs" > "$T/klc.lrs"
kl() { "$B/lr-dump" "$1" | jq -c 'select(.kl != null) | [.idx, .step, .kl, .kl_err, .exact]'; }
kl "$T/klf.lrs" > "$T/f"
kl "$T/klc.lrs" > "$T/c"
[ "$(wc -l < "$T/f")" = 44 ] || die "expected 4 x 11 steps, got $(wc -l < "$T/f")"

# exact KL = sum_a (pE + eps) log((pE + eps)/(pA + eps)) over the full rows
"$B/lr-dump" "$T/e.lrs" | jq -c 'select(.full != null) | [.idx, (.tokens | length), .full]' > "$T/ef"
"$B/lr-dump" "$T/a.lrs" | jq -c 'select(.full != null) | .full' > "$T/af"
paste -d' ' "$T/ef" "$T/af" | jq -sc --slurpfile got "$T/f" '
  def p: if type == "string" then 0 else exp end;
  [ range(0; length / 2) as $k | .[2 * $k] + [.[2 * $k + 1]] ] as $rows
  | [ $rows[] as [$i, $n, $fe, $fa] | ($fe | length / $n) as $V | range(1; $n) as $t
    | [range($t * $V; ($t + 1) * $V)] | map(($fe[.] | p + 1e-12) as $a | ($fa[.] | p + 1e-12) as $b
    | $a * (($a | log) - ($b | log))) | add | [$i, $t, .] ] as $want
  | [$want, $got] | transpose | map(select((.[0][2] - .[1][2] | fabs) > 1e-6 * (1 + (.[0][2] | fabs))
    or .[0][0] != .[1][0] or .[0][1] != .[1][1] or (.[1][4] | not)))
  | if length > 0 then error("exact KL differs: \(.[0])") else empty end' || die "exact KL"

# compact <= exact <= compact + kl_err, step by step
jq -se --slurpfile c "$T/c" '[., $c] | transpose | length == 44 and all(.[]; .[0][2] as $exact | .[1] as [$i, $t, $lo, $err, $ex]
    | ($ex | not) and $lo <= $exact + 1e-9 and $exact <= $lo + $err + 1e-9)' "$T/f" \
    > /dev/null || die "compact KL outside [exact - err, exact]: $(paste -d' ' "$T/f" "$T/c" | head -3)"

# masks from the lists equal the masks of the full rows (alpha 0.2, double here)
"$B/lr-contrast" -q "$T/klf.lrs" | "$B/lr-dump" | jq -c 'select(.target_ids != null) | .target_ids' > "$T/m"
jq -c '.[0] as $i | .[1] as $n | .[2] as $fe | ($fe | length / $n) as $V | range(1; $n) as $t
    | [$fe[$t * $V:($t + 1) * $V][] | if type == "string" then 0 else exp end] as $p | ($p | max) as $mx
    | [range(0; $V) | select($p[.] >= 0.2 * $mx)]' "$T/ef" > "$T/mw"
# where no unlisted token can reach the threshold (min(tail, smallest listed p)
# < 0.2 max) the masks are equal; elsewhere the listed mask is a subset
"$B/lr-dump" "$T/klf.lrs" | jq -c 'select(.ids != null) | [.lp_e[] | if type == "string" then 0 else exp end] as $p
    | ([.tail_e, ($p | min)] | min) < 0.2 * ($p | max)' > "$T/complete"
paste -d' ' "$T/complete" "$T/m" "$T/mw" | jq -sc '[range(0; length / 3) as $k | .[3 * $k:3 * $k + 3]]
    | [(map(select(.[0])) | length), all(.[]; if .[0] then .[1] == .[2] else (.[1] - .[2]) == [] end)]' > "$T/mres"
jq -e '.[0] >= 10 and .[1]' "$T/mres" > /dev/null || die "masks from the listed tokens vs the full rows': $(cat "$T/mres")"
echo ok
