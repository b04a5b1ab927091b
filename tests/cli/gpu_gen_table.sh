# The rows tests/gpu/run.sh adds beside the e2e and decode stages, without
# a GPU, from hand-made result lines: batched generation (our decode row of
# the same model and batch against gen_ref.py generate: the ratio and the
# 5x goal, sampled, ahead and other models' rows not taken), the sampling
# goal (the e2e row's sampling, follow, lr-kl and lr-contrast extrapolated,
# loads left out, against gen_ref.py authors: the ratio, 50x and 10 s), the
# evaluation row (ok and cut short), the compute-sanitizer rows, teacher
# forcing against the 1.5x and 3x goals, and attention alone against
# torch's SDPA backends (ours fastest; cuDNN faster; a backend skipped),
# the one-rank NCCL all-reduce (ok, failed, no NCCL there), and lr-tune's
# two ranks on one card.
source "$LR_ROOT/tests/lib.sh"
T=$LR_TMP G=$LR_ROOT/tests/gpu
cat > "$T/res.txt" << 'R'
decode /w/hf/qm: dev=cuda batch=64 prompt=128 steps=64 step_ms=10 tok_s=6400 roofline_pct=20 bw_peak=4800
decode /w/hf/qm: dev=cuda batch=64 prompt=128 steps=64 step_ms=12 tok_s=5000 temperature=0.8 top_p=0.95
decode /w/hf/qm-gu16: dev=cuda batch=64 prompt=128 steps=64 step_ms=9 tok_s=7000
decode /w/hf/qm: dev=cuda batch=256 prompt=128 steps=64 step_ms=20 tok_s=12800
hf_generate model=qm dev=cuda batch=64 prompt=128 steps=64 load_s=3 prefill_s=0.05 total_s=1.3 decode_s=1.26 step_ms=20 tok_s=1000
hf_generate model=qm dev=cuda batch=256 prompt=128 steps=64 load_s=3 prefill_s=0.1 total_s=1.4 decode_s=1.3 step_ms=20.6 tok_s=3200
e2e shape=qm amateur=qa n=256 new=128 sample_s=30 sample_setup_s=4 sample_ext_s=105.6 follow_s=6 follow_setup_s=2 follow_ext_s=17.6 kl_s=1 kl_ext_s=3.9 contrast_s=0.5 contrast_ext_s=2 total_s=60 total_ext_s=300
hf_authors expert=qm amateur=qa dev=cuda problems=12 new=128 steps=1536 kept=40 kept_pct=2.62 load_s=6 run_s=36 per_problem_s=3 ext_1000_s=3000
eval_gen model=qm problems=256 new=2048 batch=256 all_seven=8999 result=ok written=256 tokens=524288 s=30.1 tok_s=17418 passes=2049 wall_s=33 all_seven_s=1058
eval_gen model=qm problems=256 new=2048 batch=256 all_seven=8999 result=CUT lim_s=90 tok_s_below=5825 all_seven_s_above=3164
sanitize tool=racecheck what=tune errors=2 rc=9 result=FAIL why="Error: Race reported in attb_tc_dq_kernel"
sanitize tool=memcheck what=check result=UNAVAILABLE why="compute-sanitizer refuses the device here: Device not supported"
teacher /w/hf/qm: dev=cuda seqs=256 len=400 tok_s=200000 gemm_tflops=400 peak_tflops=989 peak_pct=40.4
hf_teacher model=qm dev=cuda seqs=256 len=400 tok_s=100000 gemm_tflops=200
teacher /w/hf/qa: dev=cuda seqs=256 len=400 tok_s=350000 gemm_tflops=300 peak_tflops=989 peak_pct=30.3
hf_teacher model=qa dev=cuda seqs=256 len=400 tok_s=100000 gemm_tflops=90
gpu_profile teacher /w/hf/qm: batch=32 calls=4 events=900 wall_ms=80 total_ms=70 sum_ms=70 gemm_ms=40 gemm_pct=57 attention_ms=20.000 attention_pct=28.6
gpu_profile teacher /w/hf/qm-tcatt0: batch=32 calls=4 events=900 wall_ms=120 total_ms=110 sum_ms=110 gemm_ms=40 gemm_pct=36 attention_ms=60.000 attention_pct=54.5
hf_attention model=qm batch=32 len=400 heads=12 kv_heads=2 head_dim=128 layers=28 backend=flash ms=25.000 tflops=103.9
hf_attention model=qm batch=32 len=400 heads=12 kv_heads=2 head_dim=128 layers=28 backend=cudnn ms=10.000 tflops=259.8
hf_attention model=qm batch=32 len=400 heads=12 kv_heads=2 head_dim=128 layers=28 backend=efficient skipped="No viable backend"
nccl world=1 floats=3584 join_s=0.412 differ_scale1=0 worst_scale1=0 differ_scale05=0 worst_scale05=0 result=ok
dp ranks=2 card=one dev=cuda steps=3 host_rc=0/0 host_steps=3 loss_rel_max=3.1e-07 nccl_rc=1/1 refused=ok result=ok
R
printf '# p\n\n## GPU runs\n\n' > "$T/perf.md"
# the table from $T/res.txt as it stands
retable() { python3 "$G/table.py" "$T/res.txt" "$T/perf.md" "$T/perf2.md" --card X --date 2026-01-01 > "$T/table.md"; }
retable
row() { grep -F -- "$1" "$T/table.md" || die "no row with '$1': $(cat "$T/table.md")"; }
r=$(row 'batched generation `qm`, batch 64,')
[[ $r == *"| 6400 | 1000 (20 ms a step) | >= 5x | 6.40x ok |" ]] || die "batch 64 generation row: $r"
r=$(row 'batched generation `qm`, batch 256,')
[[ $r == *"| 12800 | 3200 (20.6 ms a step) | >= 5x | 4.00x below goal |" ]] || die "batch 256 generation row: $r"
# teacher forcing: 2x meets the 1.5x goal, not the 3x one; 3.5x both
r=$(row 'teacher forcing `qm`, 256')
[[ $r == *"| 200000 | transformers 100000 (SDPA) | >= 1.5x, and 3x | 2.00x ok at 1.5x, below 3x |" ]] || die "teacher 2x row: $r"
r=$(row 'teacher forcing `qa`, 256')
[[ $r == *"| >= 1.5x, and 3x | 3.50x ok |" ]] || die "teacher 3.5x row: $r"
# ours: (105.6 - 4) + (17.6 - 2) + 3.9 + 2 = 123.1 s, theirs 3000 s: 24.4x, over 10 s
r=$(row 'sampling stage, `qm` + follow `qa`')
[[ $r == *"| 123.1 s (+ 6.0 s loading both models) | 3000 s (+ 6 s loading; kept 2.62% of steps at beta 0.4) | >= 50x and < 10 s | 24.4x, below goal |" ]] ||
    die "sampling row: $r"
[[ $r == *"ours from the e2e row's 256 problems, theirs from 12"* ]] || die "sampling row sizes: $r"
# met: ours 5 s of run against 3000 s
sed -i 's/sample_ext_s=105.6/sample_ext_s=7/; s/follow_ext_s=17.6/follow_ext_s=3/; s/kl_ext_s=3.9/kl_ext_s=0.5/; s/contrast_ext_s=2 /contrast_ext_s=0.5 /' "$T/res.txt"
retable
r=$(row 'sampling stage, `qm` + follow `qa`')
[[ $r == *"| 5.0 s (+ 6.0 s loading both models) | "*"| 600.0x, ok |" ]] || die "met sampling row: $r"
r=$(row "evaluation's generation")
[[ $r == *"| 17418 tok/s (524288 tokens in 30.1 s) | all seven benchmarks (8999 problems) at 2048 tokens each: 1058 s, an upper bound | measured | ok |"* ]] ||
    die "eval row: $r"
[[ $r == *"| cut at 90 s: under 5825 tok/s | all seven (8999 problems) at 2048: over 3164 s | measured | CUT |" ]] || die "cut eval row: $r"
r=$(row 'compute-sanitizer `racecheck`: 2 LoRA training steps')
[[ $r == *"| 2 errors (Error: Race reported in attb_tc_dq_kernel) | | 0 errors | FAIL |" ]] || die "racecheck row: $r"
r=$(row 'compute-sanitizer `memcheck`: `bench_gpu check`')
[[ $r == *"| compute-sanitizer refuses the device here: Device not supported | | 0 errors | UNAVAILABLE |" ]] || die "unavailable row: $r"
r=$(row 'attention alone, teacher forcing `qm`')
[[ $r == *"(one call: batch 32 x 400 tokens, 28 layers, 12/2 heads of 128): ms | tensor cores 20 ms, FMA (LR_GPU_TCATT=0) 60 ms | torch SDPA: flash 25 ms (104 TFLOP/s), cudnn 10 ms (260 TFLOP/s), efficient skipped (No viable backend) | faster than every backend | cudnn 2.00x faster: worth wiring in |" ]] ||
    die "attention row, cuDNN faster: $r"
sed -i '/backend=cudnn/d' "$T/res.txt"
retable
r=$(row 'attention alone, teacher forcing `qm`')
[[ $r == *"| ok: ours fastest |" ]] || die "attention row, ours fastest: $r"
r=$(row 'lr-tune data parallel, 2 ranks on one card')
[[ $r == *"(tiny model, 3 steps, f32): "*"| exit 0/0, loss rel diff max 3.1e-07; nccl exit 1/1, refused ok | one process | <= 1e-4; exit 1/1 with the one-card line | ok |" ]] ||
    die "dp row: $r"
r=$(row 'NCCL all-reduce of the device trainer')
[[ $r == *"| 3584 floats: 0 differ after the sum, 0 after the sum scaled by 0.5; joined in 0.412 s | the gradient put there | 0 and 0 (bit for bit) | ok |" ]] ||
    die "nccl row: $r"
sed -i 's/^nccl .*/nccl world=1 floats=3584 join_s=0.4 differ_scale1=0 worst_scale1=0 differ_scale05=1792 worst_scale05=2 result=FAIL/' "$T/res.txt"
retable
r=$(row 'NCCL all-reduce of the device trainer')
[[ $r == *"| 3584 floats: 0 differ after the sum, 1792 after the sum scaled by 0.5; "*"| FAIL |" ]] || die "failed nccl row: $r"
sed -i 's/^nccl .*/nccl result=UNAVAILABLE why="cannot load libnccl.so.2: libnccl.so.2: cannot open shared object file"/' "$T/res.txt"
retable
r=$(row 'NCCL all-reduce of the device trainer')
[[ $r == *"| cannot load libnccl.so.2: libnccl.so.2: cannot open shared object file | | | UNAVAILABLE |" ]] || die "unavailable nccl row: $r"
echo ok
