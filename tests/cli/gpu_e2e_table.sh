# The end-to-end rows of tests/gpu/run.sh without a GPU: e2e.py report on a
# hand-made stage folder (wall times, lr-infer's and lr-kl's stderr lines
# as the tools print them, a tuner log) extrapolates each part to 1000
# problems x 1000 steps as worked out here by hand; table.py turns the line
# into the part rows and the total against the goal; a part that never ran
# leaves the total INCOMPLETE; a skip line becomes a SKIPPED row; the stages
# LR_GPU_ONLY left out make one row.
source "$LR_ROOT/tests/lib.sh"
T=$LR_TMP G=$LR_ROOT/tests/gpu
d=$T/e2e
mkdir -p "$d"
printf '%s\n' "sample 12.00 0" "follow 5.00 0" "kl0 0.50 0" "kl 1.00 0" "contrast 0.50 0" "tune 30.00 0" "merge 8.00 0" \
    > "$d/times.txt"
echo "lr-infer: 250 problems written, 32000 tokens in 10.00 s (3200.0 tok/s), 129 forward passes" > "$d/sample.err"
printf '%s\n' "lr-infer: device cuda (X, cuda backend)" \
    "lr-infer: 250 problems written, 32000 tokens in 4.00 s (8000.0 tok/s), 4 forward passes" > "$d/follow.err"
echo "lr-kl: 250 problems, 31750 steps seen (t >= 1), 0 kept (0.00%, select kl, beta 0.4); KL p50 0.010 p90 0.020 p99 0.030 max 0.0400; 0 exact (full rows), 0 undecided by the compact tails" > "$d/kl0.err"
echo "lr-kl: 250 problems, 31750 steps seen (t >= 1), 3175 kept (10.00%, select kl, beta 0.02); KL p50 0.010 p90 0.020 p99 0.030 max 0.0400; 0 exact (full rows), 0 undecided by the compact tails" > "$d/kl.err"
for i in $(seq 1 10); do echo "{\"step\": $i, \"loss\": 1.5, \"step_s\": 2.5, \"tokens\": 100}"; done > "$d/tune.jsonl"
echo '{"step": 11, "loss": 1.' >> "$d/tune.jsonl" # cut by a time limit: not a step
out=$(python3 "$G/e2e.py" report --shape qm --amateur am --dir "$d" --n 250 --new 128 --steps 50 --paper-s 1800 \
    --goal-s 300 --build-s 20)
# factor 1000 / 250 = 4. sample: setup 12 - 10 = 2, 2 + 10 x 4 = 42; follow: 1 + 4 x 4 = 17;
# kl 1 x 4, contrast 0.5 x 4; tune: 10 steps of 2.5 s = 25, setup 5, 5 + 25 x 1000 / 10 = 2505;
# merge 8. Measured 12 + 5 + 1 + 0.5 + 30 + 8 = 56.5 (the first lr-kl pass not counted);
# extrapolated 42 + 17 + 4 + 2 + 2505 + 8 = 2578
for want in factor=4 sample_setup_s=2 sample_ext_s=42 follow_setup_s=1 follow_ext_s=17 kl_ext_s=4 contrast_ext_s=2 \
    steps=10 tune_steps_s=25 tune_setup_s=5 tune_factor=100 tune_ext_s=2505 merge_ext_s=8 total_s=56.5 \
    total_ext_s=2578 result=below_goal kl0_beta=0.4 kl0_kept_pct=0.00 kl_beta=0.02 kl_kept_pct=10.00 build_s=20; do
    [[ " $out " == *" $want "* ]] || die "report lacks $want: $out"
done
echo "$out" > "$T/res.txt"
# under the goal when the tuner is 20 x faster: tune 5 + 1.25 x 100 = 130, total 42 + 17 + 6 + 130 + 8 = 203
for i in $(seq 1 10); do echo "{\"step\": $i, \"loss\": 1.5, \"step_s\": 0.125}"; done > "$d/tune.jsonl"
sed -i 's/^tune 30.00 0/tune 6.25 0/' "$d/times.txt"
ok=$(python3 "$G/e2e.py" report --shape qm --dir "$d" --n 250 --steps 50 --goal-s 300)
[[ " $ok " == *" total_ext_s=203 "* && " $ok " == *" result=ok "* ]] || die "under the goal: $ok"
# no merge: the total is incomplete, never a pass
mkdir -p "$T/e2" && grep -v '^merge' "$d/times.txt" > "$T/e2/times.txt" && cp "$d"/*.err "$d/tune.jsonl" "$T/e2/"
inc=$(python3 "$G/e2e.py" report --shape q7 --dir "$T/e2" --n 250 --steps 20 --goal-s 600)
[[ " $inc " == *" result=INCOMPLETE "* && " $inc " == *" incomplete=merge "* && $inc != *total_ext_s* ]] ||
    die "incomplete: $inc"
echo "$inc" >> "$T/res.txt"
echo "e2e shape=q7b skipped=\"time budget: 100s left; LR_GPU_ONLY='build_|e2e' runs it alone\"" >> "$T/res.txt"
printf '%s\n' "stage name=teacher_x result=SKIPPED_ONLY" "stage name=kl result=SKIPPED_ONLY" >> "$T/res.txt"
printf '# p\n\n## GPU runs\n\n' > "$T/perf.md"
python3 "$G/table.py" "$T/res.txt" "$T/perf.md" "$T/perf2.md" --card X --date 2026-01-01 > "$T/table.md"
row() { grep -qF -- "$1" "$T/table.md" || die "no row '$1' in: $(cat "$T/table.md")"; }
h='| LightReasoner end to end `qm` (random weights): '
row "${h}building the shape on the card (not in the total) | 20 s measured | | | measured |"
row "${h}expert sampling, lr-infer generate, 250 of 1000 problems x 128 tokens | 12 s measured; 42 s for 1000 (setup 2 s once, the rest x 4) | | | extrapolated |"
row "${h}amateur follow \`am\`, lr-infer --follow | 5 s measured; 17 s for 1000 (setup 1 s once, the rest x 4) | | | extrapolated |"
row "${h}lr-kl beta 0.02 (kept 10.00% of 31750 steps; beta 0.4 kept 0.00% on random weights, so a second pass: 0.5 s for the first, not counted) + lr-contrast | 1.5 s measured; 6 s for 1000 (x 4) | | | extrapolated |"
row "${h}lr-tune --device cuda (r 8, q,v, batch 8 x accum 2), 10 of 50 steps measured | 30 s measured; 2505 s for 1000 steps (setup 5 s once, 25 s of steps x 100) | | | extrapolated |"
row "${h}lr-merge (once, whatever the run's size) | 8 s measured; 8 s at any size | | | measured |"
row "${h}total, 250 problems x 10 steps measured, extrapolated to 1000 x 1000 | 56.5 s measured; 2578 s extrapolated | paper 0.5 h (1800 s) | < 5 min (300 s) | below goal |"
row '| LightReasoner end to end `q7` (random weights): lr-merge (once, whatever the run'"'"'s size) | not run | | | n/a |'
row '| LightReasoner end to end `q7` (random weights): total, 250 problems x 10 steps measured, extrapolated to 1000 x 1000 | 24.8 s measured; n/a | | < 10 min (600 s) | INCOMPLETE (no merge) |'
row '| LightReasoner end to end `q7b` (random weights) | skipped: time budget: 100s left; LR_GPU_ONLY='"'build_\\|e2e'"' runs it alone | | | SKIPPED |'
row '| stages left out by LR_GPU_ONLY | `teacher_x`, `kl` | | | SKIPPED |'
grep -q "^### X, 2026-01-01" "$T/perf2.md" || die "PERF.md section"
echo ok
