# lr-infer against transformers (tests/golden/infer_ref.json from
# tests/ref/infer_ref.py): the prompt ids, the greedy tokens, the expert's
# top log-probs and the amateur's teacher-forced log-probs of them; then
# sharding, resume after a crash, and every kind of bad input.
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN G=$LR_ROOT/tests/golden/infer_ref.json T=$LR_TMP
DATA=$LR_ROOT/data/gsm8k/train.jsonl
"$B/lr-mkmodel" "$T/exp" $(jq -r '.expert|join(" ")' "$G") > /dev/null
"$B/lr-mkmodel" "$T/ama" $(jq -r '.amateur|join(" ")' "$G") > /dev/null
NEW=$(jq .new_tokens "$G")

"$B/lr-infer" --model "$T/exp" --data "$DATA" --limit 3 --max-new-tokens "$NEW" --batch 2 -o "$T/e.lrs"
"$B/lr-infer" --model "$T/ama" --follow "$T/e.lrs" --batch 2 -o "$T/a.lrs"
"$B/lr-dump" "$T/e.lrs" | sed '1d;$d' > "$T/e.jsonl"
"$B/lr-dump" "$T/a.lrs" | sed '1d;$d' > "$T/a.jsonl"
[ "$(wc -l < "$T/e.jsonl")" = 3 ] || die "expected 3 expert records"

# Per problem and step: listed ids must start with the reference's top 5 and
# every log-prob must agree to 1e-4.
check='
  def offs(k): reduce k[] as $x ([0]; . + [.[-1] + $x]);
  [ range(0; 3) as $i | $g.problems[$i] as $r | $e[$i] as $x | $a[$i] as $y
    | offs($x.k) as $o
    | if $x.prompt != $r.prompt then "problem \($i): prompt ids differ"
      elif $x.tokens != $r.tokens then "problem \($i): tokens \($x.tokens) vs \($r.tokens)"
      elif $y.tokens != $r.tokens or $y.prompt != $r.prompt then "problem \($i): follower tokens differ"
      else (range(0; $r.tokens|length) as $t
        | ($x.top_ids[$o[$t]:$o[$t]+5]) as $ids
        | if $ids != $r.top_ids[$t] then "problem \($i) step \($t): top ids \($ids) vs \($r.top_ids[$t])"
          else (range(0; 5) as $j
            | ($x.top_lp[$o[$t]+$j] - $r.top_lp[$t][$j] | fabs) as $d1
            | ($y.ref_lp[$o[$t]+$j] - $r.ref_lp[$t][$j] | fabs) as $d2
            | if $d1 > 1e-4 then "problem \($i) step \($t): expert lp off by \($d1)"
              elif $d2 > 1e-4 then "problem \($i) step \($t): amateur lp off by \($d2)" else empty end)
          end)
      end ] | .[]'
errs=$(jq -rn --slurpfile g "$G" --slurpfile e "$T/e.jsonl" --slurpfile a "$T/a.jsonl" \
       '$g[0] as $g | '"$check")
[ -z "$errs" ] || die "$(echo "$errs" | head -5)"
# tails and k agree with the lists; the header names model and tokenizer
jq -e '(.k|length) == (.tokens|length) and (.k|add) == (.top_ids|length) and (.tail|all(. >= 0 and . <= 1))' \
    "$T/e.jsonl" > /dev/null || die "k/top_ids/tail inconsistent"
"$B/lr-dump" --header "$T/a.lrs" | jq -e '.params.mode == "follow" and (.tokenizer.hash|length) == 16' > /dev/null \
    || die "follow header"

# same problems, same tokens, log-probs equal up to float noise (batch
# composition changes BLAS blocking, so bit-equality is not expected)
same_run() {
    jq -e -sn --slurpfile a <("$B/lr-dump" "$1" | sed '1d;$d') --slurpfile b <("$B/lr-dump" "$2" | sed '1d;$d') '
      ($a | sort_by(.idx)) as $x | ($b | sort_by(.idx)) as $y
      | ($x|length) == ($y|length) and
        all(range(0; $x|length); . as $i | $x[$i].idx == $y[$i].idx and $x[$i].tokens == $y[$i].tokens
            and all(range(0; [$x[$i].top_lp, $y[$i].top_lp] | map(length) | min);
                    . as $j | ($x[$i].top_lp[$j] - $y[$i].top_lp[$j] | fabs) < 1e-5))' > /dev/null
}

# shards concatenate to the whole job
for k in 0 1 2; do "$B/lr-infer" --model "$T/exp" --data "$DATA" --limit 7 --max-new-tokens 4 --shard $k/3 -o "$T/s$k.lrs"; done
cat "$T/s0.lrs" "$T/s1.lrs" "$T/s2.lrs" > "$T/s.lrs"
"$B/lr-infer" --model "$T/exp" --data "$DATA" --limit 7 --max-new-tokens 4 -o "$T/all.lrs"
same_run "$T/s.lrs" "$T/all.lrs" || die "shards differ from one run"

# resume: a run cut inside its last frame continues without loss or duplicates
"$B/lr-infer" --model "$T/exp" --data "$DATA" --limit 7 --max-new-tokens 4 --batch 2 -o "$T/r.lrs"
# (an interrupted run's output is FILE.part; FILE appears only when complete)
sz=$(stat -c %s "$T/r.lrs"); head -c $((sz * 2 / 3)) "$T/r.lrs" > "$T/r.lrs.part"; rm "$T/r.lrs"
"$B/lr-infer" --model "$T/exp" --data "$DATA" --limit 7 --max-new-tokens 4 --batch 2 -o "$T/r.lrs" 2> "$T/resume.err"
grep -q "resuming" "$T/resume.err" || die "no resume message"
same_run "$T/r.lrs" "$T/all.lrs" || die "resumed run differs"
# rerunning a complete output adds nothing
"$B/lr-infer" --model "$T/exp" --data "$DATA" --limit 7 --max-new-tokens 4 -o "$T/r.lrs"
[ "$("$B/lr-dump" --count "$T/r.lrs")" = 7 ] || die "rerun duplicated problems"

# sampling is seeded and independent of batching
"$B/lr-infer" --model "$T/exp" --data "$DATA" --limit 3 --max-new-tokens 6 --temperature 1 --top-p 0.9 --seed 5 --batch 1 -o "$T/p1.lrs"
"$B/lr-infer" --model "$T/exp" --data "$DATA" --limit 3 --max-new-tokens 6 --temperature 1 --top-p 0.9 --seed 5 --batch 3 -o "$T/p3.lrs"
same_run "$T/p1.lrs" "$T/p3.lrs" || die "sampling depends on batching"
# top-k 1 keeps only the most probable token: sampling at any temperature is greedy
"$B/lr-infer" --model "$T/exp" --data "$DATA" --limit 3 --max-new-tokens 6 --batch 3 -o "$T/g1.lrs" 2> /dev/null
"$B/lr-infer" --model "$T/exp" --data "$DATA" --limit 3 --max-new-tokens 6 --batch 3 --temperature 2 --top-k 1 --seed 9 -o "$T/k1.lrs" 2> /dev/null
same_run "$T/g1.lrs" "$T/k1.lrs" || die "--top-k 1 differs from greedy"

# evaluation prompts: the toolkit's per-benchmark prompt, decoded text kept
"$B/lr-infer" --model "$T/exp" --data "$LR_ROOT/data/math500/test.jsonl" --limit 2 --preset toolkit --max-new-tokens 3 -o "$T/tk.lrs"
"$B/lr-dump" "$T/tk.lrs" | sed -n 2p | jq -e '(.text|type) == "string" and .id == "math500/test:0"' > /dev/null || die "toolkit preset / text"
echo '{"prompt":"x"}' > "$T/tk.jsonl"
expect_fail 1 "$B/lr-infer" --model "$T/exp" --data "$T/tk.jsonl" --field prompt --preset toolkit -o "$T/tk2.lrs"

# bad inputs
expect_fail 3 "$B/lr-infer" --model "$T/nonexistent" --data "$DATA" -o "$T/x.lrs"
printf '{"q": "ok"}\n{"nope": 1}\n{"q": "fine"}\n' > "$T/p.jsonl"
expect_fail 2 "$B/lr-infer" --model "$T/exp" --data "$T/p.jsonl" --field q --max-new-tokens 2 -o "$T/f.lrs"
case "$LAST_ERR" in *'line 2: field "q"'*) ;; *) die "missing field message: $LAST_ERR" ;; esac
[ "$("$B/lr-dump" --count "$T/f.lrs")" = 2 ] || die "the good problems must still be written"
# any JSON lines with --field/--id-field (e.g. lr-eval prompts output)
printf '{"id":"x/1","prompt":"hello"}\n{"id":"x/2","prompt":"bye"}\n' > "$T/pp.jsonl"
"$B/lr-infer" --model "$T/exp" --data "$T/pp.jsonl" --field prompt --id-field id --preset raw --max-new-tokens 2 -o "$T/pp.lrs"
[ "$("$B/lr-dump" "$T/pp.lrs" | sed '1d;$d' | jq -r .id | tr '\n' ' ')" = "x/1 x/2 " ] || die "--id-field"
# (one problem: each bad problem is a line of its own, and expect_fail wants one)
expect_fail 2 "$B/lr-infer" --model "$T/exp" --data "$T/p.jsonl" --field q --id-field id --max-new-tokens 2 --limit 1 -o "$T/ppx.lrs"
expect_fail 2 "$B/lr-infer" --model "$T/exp" --data "$DATA" --limit 1 --max-context 100 -o "$T/c.lrs"
case "$LAST_ERR" in *"gsm8k/train:0"*context*) ;; *) die "context message: $LAST_ERR" ;; esac
"$B/lr-mkmodel" "$T/qw" --tokenizer "$LR_ROOT/build/tokenizers/qwen/tokenizer.json" --layers 1 --hidden 32 --heads 2 --kv-heads 1 --inter 32 > /dev/null
expect_fail 2 "$B/lr-infer" --model "$T/qw" --follow "$T/e.lrs" -o "$T/q.lrs"
case "$LAST_ERR" in *"tokenizers differ"*) ;; *) die "tokenizer message: $LAST_ERR" ;; esac
head -c 300 "$T/e.lrs" > "$T/trunc.lrs"
expect_fail 2 "$B/lr-infer" --model "$T/ama" --follow "$T/trunc.lrs" -o "$T/t.lrs"
# NaN logits: FLT_MAX in the final norm overflows the logits to inf/NaN
cp -r "$T/exp" "$T/nan"
hl=$(od -An -tu8 -N8 "$T/nan/model.safetensors" | tr -d ' ')
off=$(dd if="$T/nan/model.safetensors" bs=1 skip=8 count="$hl" status=none | jq '."model.norm.weight".data_offsets[0]')
for j in 0 4 8 12; do printf '\xff\xff\x7f\x7f' | dd of="$T/nan/model.safetensors" bs=1 seek=$((8 + hl + off + j)) conv=notrunc status=none; done
expect_fail 2 "$B/lr-infer" --model "$T/nan" --data "$DATA" --limit 1 --max-new-tokens 2 -o "$T/n.lrs"
case "$LAST_ERR" in *"gsm8k/train:0"*NaN*) ;; *) die "NaN message: $LAST_ERR" ;; esac
expect_fail 1 "$B/lr-infer" --model "$T/exp" --shard 3/2
expect_fail 1 "$B/lr-infer" --data "$DATA"
"$B/lr-infer" --help | grep -q "usage: lr-infer" || die "--help"
echo ok
