# The LoRA training rows of tests/gpu/run.sh without a GPU: tune_ref.py
# report on hand-made logs gives the rates, ratio, MFU (6 x layer params x
# tokens/s / peak, worked out here by hand) and first-step loss verdict;
# table.py turns them into the three rows with their goals; a skip line
# becomes a SKIPPED row; a --recompute always run's rate and both device
# lines' memory figures make a fourth; the example records tune_ref.py data writes pass
# lr-dump --from-json and lr-tune trains on them (one cpu step); and
# lr-tune --device cuda with LR_GPU_PROFILE=1 (emulated device) prints the
# "gpu_profile train:" line run.sh takes, which table.py makes a row of.
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN T=$LR_TMP G=$LR_ROOT/tests/gpu
mkdir -p "$T/m"
# C 4, 2 layers, I 8, 2 heads of 2, 1 kv head: per layer 4*4 + 2*4*2 + 4*4 + 3*4*8 = 144, N = 288
echo '{"hidden_size": 4, "num_hidden_layers": 2, "intermediate_size": 8, "num_attention_heads": 2,
  "num_key_value_heads": 1}' > "$T/m/config.json"
printf '%s\n' '{"step": 1, "loss": 2.0, "step_s": 5, "tokens": 100}' '{"step": 2, "loss": 1.9, "step_s": 0.5, "tokens": 100}' \
    '{"step": 3, "loss": 1.8, "step_s": 0.5, "tokens": 100}' > "$T/ours.jsonl"
printf '%s\n' '{"step": 1, "loss": 2.001, "step_s": 9}' '{"step": 2, "loss": 1.9, "step_s": 1}' \
    '{"step": 3, "loss": 1.8, "step_s": 1}' > "$T/ref.jsonl"
# after the warm-up step: ours 2 steps in 1 s (200 tok/s), PEFT 2 in 2 s;
# MFU at a 1e-6 TFLOP/s peak: 6 * 288 * 200 / 1e6 = 34.56%
out=$(python3 "$G/tune_ref.py" report --model "$T/m" --ours "$T/ours.jsonl" --ref "$T/ref.jsonl" --steps 50 --peak 1e-6)
for want in precision=f32 loss1_tol=1e-3 params_through=288 ours_steps_s=2 ours_tok_s=200 ours_50_steps_s=25.0 mfu_pct=34.56 ref_steps_s=1 \
    ratio=2 loss1_ours=2 loss1_ref=2.001 loss1_rel_diff=0.0005 loss1_result=ok steps_ours=3 steps_ref=3; do
    [[ " $out " == *" $want "* ]] || die "report lacks $want: $out"
done
echo "$out" > "$T/res.txt"
echo 'train skipped="no peft in python3: no reference"' >> "$T/res.txt"
printf '# p\n\n## GPU runs\n\n' > "$T/perf.md"
python3 "$G/table.py" "$T/res.txt" "$T/perf.md" "$T/perf2.md" --card X --date 2026-01-01 > "$T/table.md"
grep -q '^| LoRA training 1.5B shape (r 8, q,v, batch 8 x accum 2, f32) `m`: lr-tune cuda steps/s, PEFT steps/s, ratio (3 / 3 of 50 steps) | 2 steps/s, 200 tok/s | PEFT + transformers f32 1 steps/s | >= 2x | 2.00x ok |$' "$T/table.md" ||
    die "speed row: $(cat "$T/table.md")"
grep -q '^| LoRA training MFU `m` .*| 34.6% of 0 TFLOP/s (dense bf16 peak) | | >= 35% | below goal |$' "$T/table.md" || die "MFU row: $(cat "$T/table.md")"
grep -q '^| LoRA training first-step loss `m`.* | 2 | 2.001 | rel diff <= 1e-3 | 0.0005 ok |$' "$T/table.md" || die "loss row"
grep -q '^| LoRA training 1.5B shape .* | skipped: no peft in python3: no reference | | | SKIPPED |$' "$T/table.md" || die "skip row"
# bf16: the precision in the rows, the first-step loss against bf16's 1e-2;
# a log that ran in another precision than asked says so
printf '%s\n' '{"step": 1, "loss": 2.0, "step_s": 5, "tokens": 100, "precision": "bf16"}' \
    '{"step": 2, "loss": 1.9, "step_s": 0.5, "tokens": 100, "precision": "bf16"}' > "$T/ours16.jsonl"
printf '%s\n' '{"step": 1, "loss": 2.01, "step_s": 9}' '{"step": 2, "loss": 1.9, "step_s": 1}' > "$T/ref16.jsonl"
out=$(python3 "$G/tune_ref.py" report --model "$T/m" --ours "$T/ours16.jsonl" --ref "$T/ref16.jsonl" --steps 50 --precision bf16)
for want in precision=bf16 loss1_tol=1e-2 loss1_result=ok; do
    [[ " $out " == *" $want "* ]] || die "bf16 report lacks $want: $out"
done
[[ $out != *precision_ours* ]] || die "bf16 report: $out"
echo "$out" > "$T/res16.txt"
python3 "$G/table.py" "$T/res16.txt" "$T/perf.md" "$T/perf3.md" --card X --date 2026-01-01 > "$T/table16.md"
grep -q '^| LoRA training 1.5B shape (r 8, q,v, batch 8 x accum 2, bf16) `m`: .* | PEFT + transformers bf16 1 steps/s | >= 2x |' "$T/table16.md" ||
    die "bf16 speed row: $(cat "$T/table16.md")"
grep -q '^| LoRA training first-step loss `m`.* | 2 | 2.01 | rel diff <= 1e-2 | 0.00498 ok |$' "$T/table16.md" || die "bf16 loss row: $(cat "$T/table16.md")"
out=$(python3 "$G/tune_ref.py" report --model "$T/m" --ours "$T/ours.jsonl" --ref "$T/ref16.jsonl" --steps 50 --precision bf16)
[[ " $out " == *" precision_ours=f32 "* && $out == *"loss1_result=ok"* ]] || die "precision mismatch not said: $out"
# a first-step loss 1% off is reported as DIFFERS
printf '%s\n' '{"step": 1, "loss": 2.02, "step_s": 9}' > "$T/ref2.jsonl"
out=$(python3 "$G/tune_ref.py" report --model "$T/m" --ours "$T/ours.jsonl" --ref "$T/ref2.jsonl" --steps 50)
[[ $out == *"loss1_result=DIFFERS"* && $out != *ref_steps_s* && $out != *mfu_pct* ]] || die "differs: $out"
# --recompute always beside the kept run: both rates (after the warm-up
# step: recomputing 2 steps in 1.25 s, 1.6 steps/s, 0.8 of the kept 2) and
# both device lines' memory figures, in one row
printf '%s\n' '{"step": 1, "loss": 2.0, "step_s": 6, "tokens": 100}' '{"step": 2, "loss": 1.9, "step_s": 0.625, "tokens": 100}' \
    '{"step": 3, "loss": 1.8, "step_s": 0.625, "tokens": 100}' > "$T/rec.jsonl"
echo 'lr-tune: device cuda (X, cuda backend), precision bf16, recompute off (auto: keeping every activation takes 7800.5 MiB of 130000.0 MiB free), weights 2944.0 MiB, activations 6600.2 MiB' > "$T/ours.err"
echo 'lr-tune: device cuda (X, cuda backend), precision bf16, recompute on (always: keeping every activation takes 7800.5 MiB of 130000.0 MiB free), weights 2944.0 MiB, activations 560.7 MiB' > "$T/rec.err"
out=$(python3 "$G/tune_ref.py" report --model "$T/m" --ours "$T/ours.jsonl" --ref "$T/ref.jsonl" --steps 50 --ours-err "$T/ours.err" \
    --recomp "$T/rec.jsonl" --recomp-err "$T/rec.err" | grep '^train_recompute ')
for want in steps_kept=3 steps_recomp=3 kept_steps_s=2 recomp_steps_s=1.6 ratio=0.8 kept_recompute=off recomp_recompute=on \
    kept_keep_mib=7800.5 kept_free_mib=130000.0 kept_act_mib=6600.2 recomp_act_mib=560.7 kept_weights_mib=2944.0; do
    [[ " $out " == *" $want "* ]] || die "recompute report lacks $want: $out"
done
echo "$out" > "$T/resr.txt"
python3 "$G/table.py" "$T/resr.txt" "$T/perf.md" "$T/perf4.md" --card X --date 2026-01-01 > "$T/tabler.md"
grep -qF '| LoRA training `m`, `--recompute always` vs kept: steps/s (3 / 3 steps), device activations (keeping every activation takes 7800 MiB of 130000 MiB free) | 1.6 steps/s, 561 MiB | kept 2 steps/s, 6600 MiB (weights 2944 MiB) | one more forward a layer | 0.80x of kept |' "$T/tabler.md" ||
    die "recompute row: $(cat "$T/tabler.md")"
# the stage's input is a valid example stream
python3 "$G/tune_ref.py" data --n 5 --len 30 --vocab 300 > "$T/ex.jsonl"
"$B/lr-dump" --from-json "$T/ex.jsonl" > "$T/ex.lrs" || die "lr-dump --from-json rejects the examples"
[ "$("$B/lr-dump" "$T/ex.lrs" | grep -c '"context"')" = 5 ] || die "not 5 records: $("$B/lr-dump" "$T/ex.lrs" | head -3)"
# ... that lr-tune trains on (one step of the stage's settings on the cpu)
"$B/lr-mkmodel" "$T/tiny" --seed 1 > /dev/null
V=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$T/tiny/config.json")
python3 "$G/tune_ref.py" data --n 4 --len 30 --vocab "$V" > "$T/ex2.jsonl"
"$B/lr-dump" --from-json "$T/ex2.jsonl" > "$T/ex2.lrs"
"$B/lr-tune" --model "$T/tiny" --out "$T/ad" --r 8 --alpha 16 --targets q,v --dropout 0.05 --batch 2 --accum 2 \
    --max-steps 1 --no-shuffle --no-pack --log "$T/tl.jsonl" "$T/ex2.lrs" 2> "$T/tl.err" || die "lr-tune: $(tail -n 2 "$T/tl.err")"
[ "$(wc -l < "$T/tl.jsonl")" = 1 ] || die "lr-tune log"
# the profiled device run, as run.sh's train stage makes it and reads it
if [ "${LR_SAN:-}" = 1 ]; then E=$LR_ROOT/build/san/emu; else E=$LR_ROOT/build/rel/emu; fi
[ -x "$E/lr-tune" ] || die "no emulated-device lr-tune at $E"
LR_GPU_PROFILE=1 "$E/lr-tune" --device cuda --precision bf16 --model "$T/tiny" --out "$T/adp" --r 8 --alpha 16 --targets q,v \
    --dropout 0.05 --batch 2 --accum 2 --max-steps 2 --no-shuffle --no-pack --log "$T/tp.jsonl" "$T/ex2.lrs" 2> "$T/tp.err" ||
    die "profiled lr-tune: $(tail -n 2 "$T/tp.err")"
sed -n 's|^gpu_profile train: |gpu_profile train tiny: steps=2 batch=2 accum=2 |p' "$T/tp.err" > "$T/resp.txt"
[ "$(wc -l < "$T/resp.txt")" = 1 ] || die "no gpu_profile train line: $(tail -n 20 "$T/tp.err")"
# two steps of two accumulations: 4 calls and 2 updates
grep -q ' calls=6 ' "$T/resp.txt" || die "calls: $(cat "$T/resp.txt")"
python3 "$G/table.py" "$T/resp.txt" "$T/perf.md" "$T/perf5.md" --card X --date 2026-01-01 > "$T/tablep.md"
r=$(grep -F '| device time by kind, LoRA training `tiny`, 2 steps of batch 2 x accum 2 (profiled run: 6 calls,' "$T/tablep.md") ||
    die "profile row: $(cat "$T/tablep.md")"
for k in gemm gemm_bwd lora attention attention_bwd loss elementwise optimizer h2d d2h host; do
    [[ $r == *" $k "[0-9]*"%"* ]] || die "profile row lacks $k: $r"
done
[[ $r != *n/a* ]] || die "profile row: $r"
echo ok
