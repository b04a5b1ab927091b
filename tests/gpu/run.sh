#!/usr/bin/env bash
# tests/gpu/run.sh: the one script to run on a machine with an NVIDIA GPU.
# Within one 10-minute call it:
#   1. probes the card (nvidia-smi, bench_gpu; relinks with the machine's nvcc
#      when the prebuilt binaries cannot use it); no usable GPU gives a
#      "no usable GPU" row in the table and exit 4, never a silent pass;
#   2. for random-weight models of the real Qwen2.5-Math-1.5B (the expert,
#      first) and Qwen2.5-0.5B shapes built there with transformers
#      (hf_ref.py build): our logits vs transformers' (float32 reference),
#      then teacher forcing of 256 x 400 tokens, ours (`bench_gpu teacher`,
#      attention on tensor cores; the expert once more with LR_GPU_TCATT=0,
#      the row MODEL-tcatt0, and with LR_GPU_GU16=1, MODEL-gu16, also in
#      the largest batch's decode) vs transformers (hf_ref.py ref); if
#      transformers cannot build a shape,
#      lr-mkmodel makes it for our timing alone (LR_GPU_NO_TORCH=1 takes that
#      path on purpose);
#   3. `bench_gpu check`: cuda against cpu on tiny models (GQA, head dims 64
#      and 128, qwen2 biases / llama without, tied / untied, the real Qwen
#      vocabulary): logits relative error within each model's bound, which is
#      max(1e-2, 1.5 x transformers' own bf16 error on that model) (hf_ref.py
#      floor), compact lists and gathered log-probs; then once with
#      --inject-error 0.05, which must fail (the check can fail); the NCCL
#      gradient sum of lr-tune's data parallelism on a world of one rank
#      (`bench_gpu nccl`: libnccl.so.2 from the system or torch's wheels);
#      and greedy decode at batch 1, 64 and 256: tok/s and the share of the
#      memory-bandwidth roofline (`bench_gpu decode`); the expert's batch 1
#      once more queued one step ahead (--ahead), the row MODEL-ahead; and
#      transformers' generate() on the expert at batch 64 and 256, the same
#      prompt and steps (gen_ref.py generate: the batched-generation goal);
#   4. lr-kl agreement: expert stream generated on cpu, amateur follow on cpu
#      and on cuda, lr-kl selects the same steps on >= 99% of them; then,
#      a timing only and so after every check, sampled decode (temperature
#      0.8, top-p 0.95: the device sampler) at batch 64 for each shape;
#      before that, LoRA training on a random model of the 1.5B shape:
#      `lr-tune --device cuda` (r 8, alpha 16, q,v, dropout 0.05, batch 8 x
#      accum 2, contexts of ~300 tokens, 50 steps or as many as its time
#      share allows) against PEFT + transformers on the same card, model
#      and examples (tune_ref.py): steps/s, tokens/s, MFU and the two
#      first-step losses, and the same lr-tune run with --recompute always:
#      its steps/s beside the kept run's, and both device lines' memory
#      figures (weights, activations allocated, what keeping every
#      activation takes of the free memory); skipped with a reason when lr-tune, peft or the
#      time is missing; lr-tune data parallel with two ranks on the one
#      card (--dp-backend host against one process; --dp-backend nccl
#      refused by both, the card shared); then the LightReasoner method end to end on the
#      1.5B shape, and last, when time and disk are left, on the
#      Qwen2.5-Math-7B shape built there: lr-infer generate (expert) ->
#      lr-infer --follow (the 0.5B amateur) -> lr-kl -> lr-contrast ->
#      lr-tune --device cuda -> lr-merge on 256 GSM8K problems and 50 (7B:
#      20) optimizer steps, each part timed and extrapolated to the paper's
#      1000 problems x 1000 steps (tests/gpu/e2e.py), beside the paper's
#      0.5 h (1.5B) and 0.75 h (7B); after the 1.5B chain, the authors'
#      sampling loop on the same models and problems for 35 s (gen_ref.py
#      authors), extrapolated to 1000 problems beside our sampling, follow,
#      lr-kl and lr-contrast (the sampling goal: 50x, under 10 s);
#      then, before the 7B shape, compute-sanitizer's memcheck and
#      racecheck on a tiny model's check, sampled decode queued ahead and
#      2 LoRA training steps (races between a block's threads, which the
#      emulator cannot show; "UNAVAILABLE" where the runtime refuses the
#      tool); then evaluation's generation: the 1.5B shape on 256 MATH500
#      toolkit prompts x 2048 new tokens in one lr-infer call, and from its
#      rate all seven benchmarks' worst case;
#   5. at the end, however the script ends after the probe, the blocks an SM
#      the card gives each kernel the run launched (every process leaves
#      them under LR_GPU_LAUNCH_DIR: cuda/launchlog.h) beside NVIDIA's
#      calculator on ptxas's report, what cuda/resources checks without a
#      card (tests/cuda_resources.py --card; per kernel in
#      $OUT/occupancy.md);
#   6. ONE markdown table, rewritten after every stage and by a trap on any
#      exit (so a call cut short still leaves what it measured), into
#      docs/PERF.md under "### <card>, <date>" (replacing that card's earlier
#      table), copied with the log and the raw results to $OUT.
# Each stage has its own time limit, cut to what is left of the whole budget
# (LR_GPU_BUDGET, default 450 s) so one hang cannot eat the whole run.
#
# HOW TO RUN IT on a GPU machine that has nvcc, CUDA, python3 + torch +
# transformers but not the Debian -dev libraries the build needs:
#   on the build machine:  make gpu-bundle   (tests/gpu/bundle.sh: builds and
#                          packs build/gpu-bundle, prints its size, < 64 MiB)
#                          tests/gpu/run.sh --dry   (this script on the CPU)
#   copy the repository with build/gpu-bundle to the GPU machine, there:
#                          OUT=some/folder bash tests/gpu/run.sh
#   then commit docs/PERF.md from $OUT/PERF.md ($OUT/run.log has everything
#   the stages printed, $OUT/results.txt the raw key=value lines).
#
# --dry: runs here, on the CPU, every line of the above: the bundle (binaries
# and libraries unpacked, LD_LIBRARY_PATH), bench_gpu/lr-infer of the emulated
# device (bin-emu/, when built) or else --device cpu stand-ins, CPU torch from
# the reference venv, tiny stand-ins for the 0.5B/1.5B shapes, a short
# teacher run, 3 training steps of batch 2 x accum 2 on 40-token contexts and
# the end-to-end chain on 4 problems x 8 tokens (a 7B stand-in included). It writes PERF.md to $OUT (default: the work dir), never into
# docs/. Options: --relink (relink the bundled objects with this machine's nvcc
# and CUDA first, as done automatically when the prebuilt binaries cannot run).
# LR_GPU_ONLY=REGEX runs only the stages whose name matches (one table row
# lists the others), e.g. LR_GPU_ONLY='build_|e2e' for the end-to-end timing
# of both shapes (the 7B one only when the 1.5B chain leaves it 300 s), or
# LR_GPU_ONLY='build_qwen2.5-0.5b|qwen2.5-math-7b' for the 7B shape alone
# (its amateur built too), a call of its own.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
DRY=0 RELINK=0
for a in "$@"; do
    case $a in
        --dry) DRY=1 ;;
        --relink) RELINK=1 ;;
        -h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown option $a" >&2; exit 1 ;;
    esac
done
BUDGET=${LR_GPU_BUDGET:-450}
RESERVE=15 # for the table at the end
T0=$(date +%s)
BUNDLE=${LR_GPU_BUNDLE:-$ROOT/build/gpu-bundle}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lr-gpu.XXXXXX")
OUTDIR=${OUT:-$WORK/out}
mkdir -p "$OUTDIR"
RES=$WORK/results.txt
: > "$RES"
exec > >(tee "$OUTDIR/run.log") 2>&1
echo "run.sh: $( ((DRY)) && echo DRY RUN, ) work dir $WORK, budget ${BUDGET}s, commit $(git rev-parse --short HEAD 2> /dev/null || echo ?)"

left() { echo $((BUDGET - ($(date +%s) - T0))); }
# fit LIMIT: LIMIT, or less when the budget has less left, so that a stage's
# own time limit inside stage()'s cap ends it first (a cut, not a kill)
fit() { local l=$(($(left) - RESERVE - 10)); echo $(($1 < l ? $1 : (l > 1 ? l : 1))); }
CARD="(not probed yet)"
PY=python3 PROBED=0
# the table from what the stages printed so far (cheap: rewritten after
# every stage, and by the EXIT trap however the script ends)
write_table() {
    local date note
    date=$(date -u +%Y-%m-%d)
    note="\`tests/gpu/run.sh\` at commit $(git rev-parse --short HEAD 2> /dev/null || echo ?), $(date -u +%H:%M) UTC; $(sed -n 's/^backend /bench_gpu backend /p' "$BUNDLE/MANIFEST" 2> /dev/null); $(timeout 30 "$PY" -c 'import torch, transformers; print("torch", torch.__version__ + ", transformers", transformers.__version__)' 2> /dev/null)."
    cp "$RES" "$OUTDIR/results.txt"
    timeout 30 python3 "$ROOT/tests/gpu/table.py" "$RES" "$ROOT/docs/PERF.md" "$OUTDIR/PERF.md" --card "$CARD" \
        --date "$date" --note "$note" > "$OUTDIR/table.md" 2> "$OUTDIR/table.err" || cat "$OUTDIR/table.err"
}
# blocks an SM as the card gives them beside the calculator's
# (tests/cuda_resources.py --card, over what every process of the run
# left in $WORK/launches: cuda/launchlog.h), once, before the last table
occupancy_check() {
    ((PROBED)) && [ -d "$WORK/launches" ] && [ ! -e "$WORK/occupancy.done" ] || return 0
    touch "$WORK/occupancy.done"
    if [ -x "$BUNDLE/bin/occupancy" ] && [ -d "$PTXAS" ]; then
        timeout -k 5 30 python3 "$ROOT/tests/cuda_resources.py" --card "$BUNDLE/bin/occupancy" "$PTXAS" "$WORK/launches" \
            "$OUTDIR/occupancy.md" > "$WORK/occupancy.line" 2> "$OUTDIR/occupancy.err"
        echo "-- occupancy: exit $? ($(wc -l < "$OUTDIR/occupancy.err") problem line(s) in $OUTDIR/occupancy.err)"
        cat "$OUTDIR/occupancy.err"
        grep '^occupancy ' "$WORK/occupancy.line" >> "$RES" ||
            echo "occupancy result=ERROR why=\"tests/cuda_resources.py --card wrote no line\"" >> "$RES"
    else
        echo "occupancy result=ERROR why=\"the bundle has no occupancy calculator or ptxas reports (make gpu-bundle)\"" >> "$RES"
    fi
}
finish() {
    local rc=$?
    trap - EXIT
    occupancy_check
    write_table
    echo "== table ($CARD)"
    cat "$OUTDIR/table.md" 2> /dev/null
    # docs/PERF.md itself only from a real card that answered; otherwise
    # $OUT/PERF.md alone says what happened
    ((DRY || !PROBED)) || cp "$OUTDIR/PERF.md" "$ROOT/docs/PERF.md" 2> /dev/null
    rm -rf "$WORK/hf" "$WORK/models" "$WORK/kl" "$WORK/e2e" "$WORK/relink" "$WORK/lib" "$WORK/tok" # GBs of model folders
    echo "run.sh: done in $(($(date +%s) - T0))s (exit $rc); $OUTDIR/PERF.md, $OUTDIR/run.log, $OUTDIR/results.txt"
    exit $rc
}
trap finish EXIT
# stage NAME LIMIT CMD...: runs CMD with min(LIMIT, what is left) seconds,
# prints its stdout and the end of its stderr, keeps its result lines.
stage() {
    local name=$1 lim=$2 rc t
    shift 2
    local l=$(($(left) - RESERVE))
    # LR_GPU_ONLY=REGEX: only the stages whose name matches (a row lists the others)
    if [ -n "${LR_GPU_ONLY:-}" ] && ! [[ $name =~ $LR_GPU_ONLY ]]; then
        echo "== $name: left out (LR_GPU_ONLY=$LR_GPU_ONLY)"
        echo "stage name=$name result=SKIPPED_ONLY" >> "$RES"
        return 98
    fi
    if [ "$l" -lt 5 ]; then
        echo "== $name: skipped, the time budget is spent"
        echo "stage name=$name result=SKIPPED_BUDGET" >> "$RES"
        return 99
    fi
    [ "$lim" -gt "$l" ] && lim=$l
    echo "== $name (limit ${lim}s, $(left)s left)"
    t=$(date +%s)
    if declare -F "$1" > /dev/null; then # a function: timeout needs a program
        timeout -k 5 "$lim" bash -c "$(declare -f "$1"); \"\$@\"" _ "$@" > "$WORK/$name.out" 2> "$WORK/$name.err"
    else
        timeout -k 5 "$lim" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err"
    fi
    rc=$?
    cat "$WORK/$name.out"
    [ -s "$WORK/$name.err" ] && { echo "-- stderr (last 15 lines):"; tr '\r' '\n' < "$WORK/$name.err" | grep -v '^ *$' | tail -n 15; }
    grep -E '^(check|check_negative|nccl|dp|teacher|decode|gpu_profile|hf_logits|hf_teacher|hf_attention|kl_agree|bf16_floor|train|train_recompute|eval_gen|hf_generate|hf_authors) ' "$WORK/$name.out" >> "$RES"
    echo "stage name=$name rc=$rc s=$(($(date +%s) - t))" >> "$RES"
    echo "-- $name: exit $rc in $(($(date +%s) - t))s"
    write_table
    return $rc
}

# ---- the bundle ----
[ -f "$BUNDLE/MANIFEST" ] || { echo "run.sh: $BUNDLE/MANIFEST missing: run 'make gpu-bundle' first (and copy build/gpu-bundle with the tree)"; exit 1; }
cat "$BUNDLE/MANIFEST"
mkdir -p "$WORK/lib" "$WORK/tok"
tar xzf "$BUNDLE/lib.tar.gz" -C "$WORK/lib" && tar xzf "$BUNDLE/tokenizer.tar.gz" -C "$WORK/tok" || { echo "run.sh: cannot unpack the bundle"; exit 1; }
BIN=$BUNDLE/bin
PTXAS=$BUNDLE/ptxas # ptxas's report of the bundled kernels (relink: of its own)
# CUDA's libraries: the RUNPATH (this build machine's CUDA prefix) may not
# exist there; add the first folder that has libcublas.so.13
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2> /dev/null || true)
CUDA_LIB= NCCL_LIB=
# (the NVIDIA wheels torch brings: nvidia/cublas/lib, nvidia/nccl/lib, ...)
NVWHEELS=$(timeout 30 python3 -c 'import nvidia, os; [print(os.path.join(p, s, "lib")) for p in nvidia.__path__ for s in os.listdir(p)]' 2> /dev/null)
for d in ${NVCC:+$(dirname "$(dirname "$NVCC")")/lib64} /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib $NVWHEELS; do
    ls "$d"/libcublas.so.* > /dev/null 2>&1 && { CUDA_LIB=$d; break; }
done
# libnccl.so.2, which lr-tune and `bench_gpu nccl` open at run time: the
# system's when the loader finds one, else the first such folder that has it
if ! ldconfig -p 2> /dev/null | grep -q 'libnccl\.so\.2 '; then
    for d in "$CUDA_LIB" $NVWHEELS; do
        [ -e "$d/libnccl.so.2" ] && { NCCL_LIB=$d; break; }
    done
fi
export LD_LIBRARY_PATH=$WORK/lib${CUDA_LIB:+:$CUDA_LIB}${NCCL_LIB:+:$NCCL_LIB}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

# relink the bundled objects with this machine's nvcc/CUDA (the sources travel)
relink() {
    local nv=${NVCC:-nvcc} ch r=$WORK/relink gl
    ch=$(dirname "$(dirname "$nv")")
    mkdir -p "$r/bin"
    echo "relinking against $ch (nvcc $($nv --version 2> /dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p'))"
    if ls cuda/*.cu > /dev/null 2>&1; then
        local pids=() p
        mkdir -p "$r/ptxas"
        for s in cuda/*.cu; do
            # ptxas's report (--resource-usage) for occupancy_check, errors to the log
            { timeout -k 5 240 "$nv" -O3 -std=c++17 -arch=sm_90 -lineinfo -Ilib -Icuda -D_GNU_SOURCE --resource-usage \
                -c "$s" -o "$r/$(basename "$s" .cu).o" 2> "$r/ptxas/$(basename "$s" .cu).ptxas" ||
                { grep -v '^ptxas info\|^    [0-9]* bytes stack' "$r/ptxas/$(basename "$s" .cu).ptxas" >&2; false; }; } &
            pids+=($!)
        done
        for p in "${pids[@]}"; do wait "$p" || return 1; done
        PTXAS=$r/ptxas
        ar rcs "$r/libgpu_cuda.a" "$r"/*.o || return 1
        gl="$r/libgpu_cuda.a -L$ch/lib64 -Wl,-rpath,$ch/lib64 -lcublas -lcudart_static -ldl -lrt -lstdc++"
    else
        echo "relink: no cuda/*.cu in this tree: the no-backend stub"
        gl=$BUNDLE/obj/none.o
    fi
    for t in bench_gpu lr-mkmodel lr-infer lr-kl lr-contrast lr-dump lr-tune lr-merge; do
        # shellcheck disable=SC2086
        timeout -k 5 60 gcc -pthread "$BUNDLE/obj/$t.o" -Wl,--start-group "$BUNDLE/obj/liblr.a" $gl -Wl,--end-group \
            "$WORK"/lib/*.so.* -lm -Wl,-rpath-link,"$WORK/lib" -o "$r/bin/$t" || return 1
    done
    BIN=$r/bin
}
probe() { timeout -k 5 60 "$BIN/bench_gpu" 2>&1; }
usable() { out=$(probe) && { ((DRY)) || [[ $out != *skipped* ]]; }; }
if ((RELINK)); then
    relink || { echo "run.sh: relink failed"; exit 1; }
elif ! usable; then
    echo "the prebuilt bench_gpu cannot use the GPU here: $out"
    [ -n "$NVCC" ] && relink || echo "run.sh: no way to relink (no nvcc); going on"
fi
if ! usable; then
    CARD=$(timeout 20 nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -n 1)
    CARD=${CARD:-no usable GPU}
    why=$(tr '\n"' '  ' <<< "${out:-bench_gpu did not answer}")
    echo "probe result=NO_GPU why=\"$why\"" >> "$RES"
    echo "run.sh: no usable GPU: $why"
    exit 4
fi
PROBED=1
echo "bench_gpu: $out"
# every process from here on leaves its kernels' launches there (the real
# build: with the card's registers and blocks an SM; the emulator: the
# launches alone), for occupancy_check at the end
mkdir -p "$WORK/launches"
export LR_GPU_LAUNCH_DIR=$WORK/launches LR_EMU_LAUNCH_DIR=$WORK/launches

# which device is under test: cuda; in the dry run the emulated one, or the
# cpu engine standing in (then 'cuda' lines compare cpu with cpu)
GBIN=$BIN DEV=cuda
if ((DRY)); then
    PY=${LR_PY:-$ROOT/build/venv/bin/python}
    [ -x "$PY" ] || PY=$("$ROOT/tests/ref/venv.sh")
    HFDEV=cpu
    SHAPES="tiny-1.5b tiny-0.5b" TEACH="--seqs 8 --len 64 --batch 4" KLN=8 KLT=24 LENS=13,100,257
    # the training stage at a size that runs its plumbing in seconds here
    TRAIN_SHAPE_NAME=tiny-1.5b TRAIN_LEN=40 TRAIN_BATCH=2 TRAIN_STEPS=3 TRAIN_LIM_MAX=150
    DECODE_B="1 4" DECODE="--prompt 16 --steps 8" SAMPLE_B=4
    if [ -x "$BUNDLE/bin-emu/bench_gpu" ] && ! "$BUNDLE/bin-emu/bench_gpu" | grep -q skipped; then
        GBIN=$BUNDLE/bin-emu
        CARD="dry run (emulated device)"
        # kernels emulated on the CPU are slow: fewer rows of the 151936-wide vocabulary
        TEACH="--seqs 2 --len 32 --batch 2" LENS=5,17,40 DECODE_B="1 4" DECODE="--prompt 8 --steps 4"
    else
        DEV=cpu
        CARD="dry run (cpu stand-in)"
    fi
else
    PY=python3 HFDEV=cuda
    SHAPES="qwen2.5-math-1.5b qwen2.5-0.5b" TEACH="--seqs 256 --len 400 --batch 32"
    TRAIN_SHAPE_NAME=qwen2.5-math-1.5b TRAIN_LEN=300 TRAIN_BATCH=8 TRAIN_STEPS=${LR_GPU_TRAIN_STEPS:-50} TRAIN_LIM_MAX=240
    DECODE_B="1 64 256" DECODE="--prompt 128 --steps 64" SAMPLE_B=64 KLN=32 KLT=48 LENS=13,100,257
    CARD=$(timeout 20 nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -n 1)
    [ -n "$CARD" ] || CARD=$("$BIN/bench_gpu" 2>&1 | sed -n 's/.*(\(.*\); backend.*/\1/p')
fi
echo "== card: $CARD"
((DRY)) || timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | head -n 3
echo "device under test: $DEV via $GBIN; python: $PY ($(timeout 60 "$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available())' 2>&1 | tail -n 1))"

GINFER=$GBIN/lr-infer
[ -x "$GINFER" ] || GINFER=$BIN/lr-infer
M=$WORK/models
export ROOT WORK BIN GBIN GINFER DEV M KLN KLT # for the stages that are functions

mkdir -p "$M"
# ---- 2. real shapes vs transformers, the expert first ----
# the same shapes by lr-mkmodel, for our timing when transformers cannot build them
declare -A MKSHAPE=(
    [qwen2.5-0.5b]="--hidden 896 --inter 4864 --layers 24 --heads 14 --kv-heads 2 --tied --rope-theta 1e6"
    [qwen2.5-math-1.5b]="--hidden 1536 --inter 8960 --layers 28 --heads 12 --kv-heads 2 --tied --rope-theta 1e4"
    [tiny-0.5b]="--hidden 128 --inter 256 --layers 2 --heads 2 --kv-heads 1 --tied --rope-theta 1e6"
    [tiny-1.5b]="--hidden 256 --inter 384 --layers 2 --heads 2 --kv-heads 1 --untied --rope-theta 1e4")
TRAIN_SHAPE=${MKSHAPE[$TRAIN_SHAPE_NAME]}
# greedy decode at batch 1, 64 and 256 (generate mode's compact list per
# step): tok/s and % of the memory-bandwidth roofline; for the expert, the
# smallest batch once more queued one step ahead (--ahead: each step's
# tokens the last one's picks on the device, as lr-infer runs), the row
# MODEL-ahead, once more with LR_GPU_GEMV=0 (the unfused layer instead of
# cuda/gemv.cu's fused projections), the row MODEL-gemv0, and the largest
# once more with LR_GPU_GU16=1 (bf16 gate/up GEMM outputs), the row
# MODEL-gu16
decode_stages() {
    local b
    for b in $DECODE_B; do
        # shellcheck disable=SC2086
        stage "decode_${2}_b$b" 60 "$GBIN/bench_gpu" decode --device "$DEV" --profile "$1" --batch "$b" $DECODE
    done
    [ "$2" = "${SHAPES%% *}" ] || return 0
    b=${DECODE_B%% *}
    ln -sfn "$1" "$1-ahead"
    # shellcheck disable=SC2086
    stage "decode_${2}_ahead_b$b" 60 "$GBIN/bench_gpu" decode --device "$DEV" --ahead "$1-ahead" --batch "$b" $DECODE
    ln -sfn "$1" "$1-gemv0"
    # shellcheck disable=SC2086
    stage "decode_${2}_gemv0_b$b" 60 env LR_GPU_GEMV=0 "$GBIN/bench_gpu" decode --device "$DEV" --profile "$1-gemv0" --batch "$b" $DECODE
    b=${DECODE_B##* }
    ln -sfn "$1" "$1-gu16"
    # shellcheck disable=SC2086
    stage "decode_${2}_gu16_b$b" 60 env LR_GPU_GU16=1 "$GBIN/bench_gpu" decode --device "$DEV" --profile "$1-gu16" --batch "$b" $DECODE
}
# teacher forcing (prefill-shaped calls: attention on tensor cores), and for
# the expert (the first shape) once more with LR_GPU_TCATT=0 (the FMA
# attention kernel) and once with LR_GPU_GU16=1 (bf16 gate/up outputs),
# through links named MODEL-tcatt0 and MODEL-gu16 so that the table shows
# each as a row of its own beside the first
teacher_stages() {
    # shellcheck disable=SC2086
    stage "teacher_$2" 120 "$GBIN/bench_gpu" teacher --device "$DEV" --profile "$1" $TEACH
    [ "$2" = "${SHAPES%% *}" ] || return 0
    ln -sfn "$1" "$1-tcatt0"
    # shellcheck disable=SC2086
    stage "teacher_${2}_tcatt0" 120 env LR_GPU_TCATT=0 "$GBIN/bench_gpu" teacher --device "$DEV" --profile "$1-tcatt0" $TEACH
    ln -sfn "$1" "$1-gu16"
    # shellcheck disable=SC2086
    stage "teacher_${2}_gu16" 120 env LR_GPU_GU16=1 "$GBIN/bench_gpu" teacher --device "$DEV" --profile "$1-gu16" $TEACH
}
for s in $SHAPES; do
    d=$WORK/hf/$s
    # LR_GPU_NO_TORCH=1: take the fallback (to try it in a dry run)
    if [ -z "${LR_GPU_NO_TORCH:-}" ] &&
        stage "build_$s" 150 "$PY" "$ROOT/tests/gpu/hf_ref.py" build --shape "$s" --out "$d" --device "$HFDEV" --tokenizer "$WORK/tok" --lens "$LENS"; then
        stage "logits_$s" 90 "$GBIN/bench_gpu" logits --device "$DEV" "$d" "$d/tokens.txt" "$WORK/ours_$s.bin"
    else
        echo "run.sh: no transformers model of shape $s: lr-mkmodel makes one for our timing alone"
        rm -rf "$d"
        # shellcheck disable=SC2086
        stage "mkmodel_$s" 60 "$BIN/lr-mkmodel" "$d" ${MKSHAPE[$s]} --vocab 151936 --dtype bf16 --tokenizer "$WORK/tok/tokenizer.json" || continue
        teacher_stages "$d" "$s"
        decode_stages "$d" "$s"
        continue
    fi
    teacher_stages "$d" "$s"
    decode_stages "$d" "$s"
    # transformers' generate() at the decode stages' batches above 1, the
    # same prompt and steps: the batched-generation goal's reference (the expert)
    hb=$(tr ' ' '\n' <<< "$DECODE_B" | awk '$1 > 1' | paste -sd, -)
    # shellcheck disable=SC2086
    [ "$s" = "${SHAPES%% *}" ] && [ -n "$hb" ] &&
        stage "hfgen_$s" 120 "$PY" "$ROOT/tests/gpu/gen_ref.py" generate --model "$d" --batch "$hb" $DECODE --device "$HFDEV"
    ours=()
    [ -s "$WORK/ours_$s.bin" ] && ours=(--ours "$WORK/ours_$s.bin")
    # the expert's attention alone on torch's SDPA backends (cuDNN's fused
    # attention among them) beside the teacher profile's attention kind
    [ "$s" = "${SHAPES%% *}" ] && ours+=(--attn)
    # shellcheck disable=SC2086
    stage "torch_$s" 150 "$PY" "$ROOT/tests/gpu/hf_ref.py" ref --model "$d" "${ours[@]}" --device "$HFDEV" $TEACH
    rm -f "$WORK/ours_$s.bin"
done

# ---- 3. tiny models: cuda vs cpu, each within its bf16 bound ----
mkdir -p "$M"
mk() { "$BIN/lr-mkmodel" "$M/$1" --dtype bf16 "${@:2}" > /dev/null; }
mk gqa64 --hidden 256 --heads 4 --kv-heads 1 --inter 512 --layers 2 --seed 1 &&
    mk mha128-tied --hidden 256 --heads 2 --kv-heads 2 --tied --layers 2 --seed 2 &&
    mk llama-nobias --arch llama --hidden 128 --heads 4 --kv-heads 2 --layers 3 --seed 3 &&
    mk qwenvocab --hidden 128 --heads 2 --kv-heads 1 --tied --layers 2 --seed 4 --tokenizer "$WORK/tok/tokenizer.json" ||
    echo "run.sh: lr-mkmodel failed"
TINY="gqa64 mha128-tied llama-nobias qwenvocab"
# transformers' own bf16 error on each (one python start for all four)
# shellcheck disable=SC2046
stage floors 90 "$PY" "$ROOT/tests/gpu/hf_ref.py" floor $(printf -- "--model $M/%s " $TINY) --device "$HFDEV"
for m in $TINY; do
    b=$(sed -n "s/^bf16_floor model=$m .* bound=\([0-9.e+-]*\).*/\1/p" "$WORK/floors.out" 2> /dev/null)
    stage "check_$m" 60 "$GBIN/bench_gpu" check --device "$DEV" --bound "${b:-0.01}" "$M/$m"
done
# the same check with the device's logits scaled by 1.05 must fail (exit 5)
neg_check() {
    "$GBIN/bench_gpu" check --device "$DEV" --inject-error 0.05 "$M/gqa64" >&2
    local rc=$?
    echo "check_negative rc=$rc result=$([ $rc = 5 ] && echo ok || echo FAIL)"
    [ $rc = 5 ]
}
stage check_negative 30 neg_check
# the data-parallel gradient sum over NCCL (what lr-tune's ranks make) on a
# world of one rank, the most one card can hold: loaded, joined, the
# trainer's gradient summed in place bit for bit and scaled
stage nccl 30 "$GBIN/bench_gpu" nccl --device "$DEV" "$M/gqa64"

# ---- 4. lr-kl agreement ----
kl_stage() {
    local d=$WORK/kl
    mkdir -p "$d"
    "$BIN/lr-mkmodel" "$d/exp" --seed 11 --layers 2 --hidden 128 --heads 2 --kv-heads 1 --dtype bf16 > /dev/null &&
        "$BIN/lr-mkmodel" "$d/ama" --seed 11 --layers 1 --hidden 128 --heads 2 --kv-heads 1 --dtype bf16 > /dev/null || return 1
    python3 -c "
for i in range($KLN): print('{\"id\": \"q%d\", \"question\": \"A shop has %d boxes of %d pens and sells %d. How many pens are left?\"}' % (i, i + 3, 2 * i + 5, i + 1))" > "$d/q.jsonl"
    # the expert on cpu; the amateur follows on cpu and on the device
    "$BIN/lr-infer" --model "$d/exp" --data "$d/q.jsonl" --field question --preset raw --max-new-tokens "$KLT" \
        --temperature 1 --seed 3 --device cpu -o "$d/e.lrs" &&
        "$BIN/lr-infer" --model "$d/ama" --follow "$d/e.lrs" --device cpu -o "$d/a_cpu.lrs" &&
        "$GINFER" --model "$d/ama" --follow "$d/e.lrs" --device "$DEV" -o "$d/a_dev.lrs" || return 1
    python3 "$ROOT/tests/gpu/kl_agree.py" "$BIN" "$d/e.lrs" "$d/a_cpu.lrs" "$d/a_dev.lrs" "$d"
}
stage kl 90 kl_stage

# ---- the LightReasoner method end to end on the paper's shapes, a timing
# on random weights: pipelines/lightreasoner.mk's chain with the project's
# tools on the device, on the first E2E_N GSM8K training problems
# (data/gsm8k/train.jsonl) and E2E_STEPS optimizer steps: lr-infer generate
# (the expert, E2E_NEW tokens, greedy) -> lr-infer --follow (the amateur,
# the 0.5B shape) -> lr-kl -> lr-contrast -> lr-tune --device cuda (the
# paper's LoRA, batch 8 x accum 2, a checkpoint every fifth of the run as
# the pipeline's 200 of 1000) -> lr-merge. Each part's wall time, and
# (tests/gpu/e2e.py) each extrapolated to the paper's 1000 problems x 1000
# steps, beside the paper's time. 256 problems are one full generation batch
# on cuda, so 1000 are about four of them. The 1.5B shape after the
# training stage, which leaves it E2E_LIM s; the 7B shape last, built
# there, only when its time and disk are left (LR_GPU_ONLY='build_|e2e'
# runs these stages alone, LR_GPU_ONLY='build_qwen2.5-0.5b|qwen2.5-math-7b'
# the 7B one with its amateur; LR_GPU_E2E_LIM and LR_GPU_E2E7_LIM set the two
# stages' limits, LR_GPU_E2E_N, LR_GPU_E2E_STEPS and LR_GPU_E2E7_STEPS
# their sizes). ----
if ((DRY)); then
    E2E_EXP15=tiny-1.5b E2E_AMA=tiny-0.5b E2E_EXP7=tiny-7b E2E_N=4 E2E_NEW=8 E2E_BATCH=2
    E2E_STEPS=3 E2E_LIM=${LR_GPU_E2E_LIM:-60} E2E7_STEPS=2 E2E7_LIM=${LR_GPU_E2E7_LIM:-90} E2E7_MIN=120 E2E7_DISK=1
    E2E_MERGE_S=20 E2E7_MERGE_S=20
else
    E2E_EXP15=qwen2.5-math-1.5b E2E_AMA=qwen2.5-0.5b E2E_EXP7=qwen2.5-math-7b E2E_NEW=128 E2E_BATCH=8
    E2E_N=${LR_GPU_E2E_N:-256} E2E_STEPS=${LR_GPU_E2E_STEPS:-50} E2E_LIM=${LR_GPU_E2E_LIM:-150}
    # the 7B: bf16 weights of 15.2 GB, once more for the merge; building
    # them (transformers on the card, then safetensors to disk) is timed
    # apart, not in the method's total
    E2E7_STEPS=${LR_GPU_E2E7_STEPS:-20} E2E7_LIM=${LR_GPU_E2E7_LIM:-300} E2E7_MIN=300 E2E7_DISK=34 E2E_MERGE_S=30 E2E7_MERGE_S=80
fi
MKSHAPE[qwen2.5-math-7b]="--hidden 3584 --inter 18944 --layers 28 --heads 28 --kv-heads 4 --untied --rope-theta 1e4"
MKSHAPE[tiny-7b]="--hidden 256 --inter 512 --layers 2 --heads 2 --kv-heads 1 --untied --rope-theta 1e4"
# e2e_stage SHAPE EXPERT AMATEUR N STEPS LIMIT MERGE_S: the chain in
# $WORK/e2e/SHAPE; times.txt there gets "PART WALL_S EXIT" per tool run
e2e_stage() {
    local s=$1 ex=$2 am=$3 n=$4 steps=$5 lim=$6 ms=$7 d=$WORK/e2e/$1 t0=$SECONDS ad pct rc
    rm -rf "$d" && mkdir -p "$d" || return 1
    # part NAME SECONDS CMD...: CMD under SECONDS, at most what is left of
    # the stage; its stderr in NAME.err
    part() {
        local p=$1 l=$2 t rc
        shift 2
        [ "$l" -gt $((lim - (SECONDS - t0) - 3)) ] && l=$((lim - (SECONDS - t0) - 3))
        [ "$l" -ge 2 ] || { echo "e2e $s: no time left for $p" >&2; return 1; }
        t=$(date +%s.%N)
        timeout -k 5 "$l" "$@" 2> "$d/$p.err"
        rc=$?
        echo "$p $(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') $rc" >> "$d/times.txt"
        tr '\r' '\n' < "$d/$p.err" | grep -vE '^(step [0-9]|$)' | tail -n 3 >&2
        [ $rc = 0 ] || echo "e2e $s: $p exit $rc$([ $rc = 124 ] && echo ": stopped at its time share (${l}s)")" >&2
        return $rc
    }
    part sample $((lim * 30 / 100)) "$GINFER" --model "$ex" --data "$ROOT/data/gsm8k/train.jsonl" --limit "$n" \
        --max-new-tokens "$E2E_NEW" --device "$DEV" -o "$d/expert.lrs" || return 1
    part follow $((lim * 15 / 100)) "$GINFER" --model "$am" --follow "$d/expert.lrs" --device "$DEV" -o "$d/amateur.lrs" ||
        return 1
    part kl $((lim * 10 / 100)) "$BIN/lr-kl" --beta 0.4 -o "$d/kl.lrs" "$d/expert.lrs" "$d/amateur.lrs" || return 1
    # random weights give nearly flat distributions whose KL stays under
    # the paper's beta almost everywhere (transformers' initialisation: KL
    # about 0.002), and the tuner needs examples: when 0.4 keeps under 5%
    # (real pairs: about 16%, 20,000 of 1000 x 128 steps) lr-kl runs again
    # at beta 0, keeping every step (more work for lr-contrast than the
    # paper's, none more for training's fixed steps); the table names both
    # passes, the second one counted
    pct=$(sed -n 's/.* kept (\([0-9.]*\)%.*/\1/p' "$d/kl.err")
    if awk -v p="${pct:-0}" 'BEGIN { exit !(p < 5) }'; then
        mv "$d/kl.err" "$d/kl0.err" && sed -i 's/^kl /kl0 /' "$d/times.txt"
        part kl $((lim * 10 / 100)) "$BIN/lr-kl" --beta 0 -o "$d/kl.lrs" "$d/expert.lrs" "$d/amateur.lrs" || return 1
    fi
    part contrast $((lim * 10 / 100)) "$BIN/lr-contrast" --alpha 0.2 -o "$d/examples.lrs" "$d/kl.lrs" || return 1
    rm -f "$d/kl.lrs"
    part tune $((lim - (SECONDS - t0) - ms)) "$GTUNE" --device "$DEV" --model "$ex" --objective soft-kl --out "$d/adapter" \
        --force --max-steps "$steps" --batch "$E2E_BATCH" --accum 2 --save-every $((steps >= 5 ? steps / 5 : 1)) \
        --log "$d/tune.jsonl" "$d/examples.lrs"
    ad=$d/adapter
    if [ ! -f "$ad/adapter_config.json" ]; then
        # stopped at its time share: the newest checkpoint is merged
        ad=$(ls -d "$d"/adapter.part/checkpoint-* 2> /dev/null | sort -V | tail -n 1)
        [ -n "$ad" ] || { echo "e2e $s: no adapter and no checkpoint to merge" >&2; return 1; }
        echo "e2e $s: merging $(basename "$ad"), the tuner stopped before the end" >&2
    fi
    part merge "$ms" "$BIN/lr-merge" --force "$ex" "$ad" "$d/merged"
    rc=$?
    rm -rf "${d:?}/merged"
    return $rc
}
# e2e SHAPE STEPS LIMIT MERGE_S PAPER_S GOAL_S: the stage, then its `e2e`
# line (also from a stage cut short: e2e.py reports what it measured)
e2e() {
    local s=$1 lim=$3 bs
    if [ ! -f "$WORK/hf/$s/config.json" ] || [ ! -f "$WORK/hf/$E2E_AMA/config.json" ]; then
        echo "e2e shape=$s skipped=\"no model of the $s or $E2E_AMA shape (built earlier: see its build stage)\"" |
            tee -a "$RES"
        return 1
    fi
    [ "$lim" -gt $(($(left) - RESERVE)) ] && lim=$(($(left) - RESERVE))
    stage "e2e_$s" "$lim" e2e_stage "$s" "$WORK/hf/$s" "$WORK/hf/$E2E_AMA" "$E2E_N" "$2" "$lim" "$4"
    [ $? = 98 ] && return 1 # left out by LR_GPU_ONLY
    bs=$(sed -En "s/^stage name=(build|mkmodel)_$s rc=0 s=([0-9]+)$/\2/p" "$RES" | tail -n 1)
    python3 "$ROOT/tests/gpu/e2e.py" report --shape "$s" --amateur "$E2E_AMA" --dir "$WORK/e2e/$s" --n "$E2E_N" \
        --new "$E2E_NEW" --batch "$E2E_BATCH" --steps "$2" --paper-s "$5" --goal-s "$6" ${bs:+--build-s "$bs"} | tee -a "$RES"
    rm -rf "$WORK/e2e/$s/merged"
    write_table
}
export E2E_NEW E2E_BATCH RES

# ---- 5. LoRA training on the 1.5B shape: lr-tune on the device vs PEFT +
# transformers on the same card, model and examples (tests/gpu/tune_ref.py):
# the paper's LoRA (r 8, alpha 16, q,v, dropout 0.05), batch 8 x accum 2,
# contexts of about 300 tokens, the examples in file order, both in bf16 on
# the device (lr-tune --precision bf16; PEFT on bf16 base weights with
# float32 LoRA weights; float32 both where the cpu stands in); steps/s after
# the first step, tokens/s, MFU = 6 x (layer parameters) x tokens/s / peak,
# and the first step's loss of both (LoRA B starts at 0: the base model's
# loss on the same 16 examples). Then lr-tune again with --recompute
# always (on the device only): its rate against the kept run's, and the
# device lines' memory figures; and lr-tune once more with LR_GPU_TCATT=0
# (the float32 FMA attention, forward and backward, instead of the
# tensor-core one) for 3 steps: tcatt0_steps_s and tcatt_speedup in the
# train row. Shares of the stage's time: the kept run and PEFT 5/16 each,
# the recomputing run 1/4, the LR_GPU_TCATT=0 run 1/8; each run stops at
# its share, and its rate is then measured on the steps it ran (the table
# says how many of the 50). A timing, so after every check. ----
train_stage() {
    local d=$WORK/train rc
    mkdir -p "$d"
    # shellcheck disable=SC2086
    "$BIN/lr-mkmodel" "$d/$TRAIN_SHAPE_NAME" $TRAIN_SHAPE --vocab 151936 --dtype bf16 --seed 5 > /dev/null &&
        python3 "$ROOT/tests/gpu/tune_ref.py" data --n 64 --len "$TRAIN_LEN" > "$d/ex.jsonl" &&
        "$BIN/lr-dump" --from-json "$d/ex.jsonl" > "$d/ex.lrs" || return 1
    # the runs' shares of what is left after making the model (20 s for the
    # report): lr-tune kept and PEFT 5/16 each, lr-tune recomputing 3/16,
    # the LR_GPU_TCATT=0 run 1/8, the profiled run 1/16
    local rest=$((TRAIN_LIM - ($(date +%s) - TRAIN_T0) - 20))
    local half=$((rest * 5 / 16)) recomp_s=$((rest * 3 / 16)) eighth=$((rest / 8)) sixteenth=$((rest / 16))
    [ "$half" -ge 10 ] || { echo "train: no time left after making the model" >&2; return 1; }
    local how lim
    for how in ours recomp; do
        lim=$half
        [ $how = recomp ] && lim=$recomp_s
        # shellcheck disable=SC2086
        timeout -k 5 "$lim" "$GTUNE" --device "$DEV" --precision "$TRAIN_PREC" --model "$d/$TRAIN_SHAPE_NAME" --out "$d/adapter_$how" --force --r 8 --alpha 16 \
            --targets q,v --dropout 0.05 --batch $TRAIN_BATCH --accum 2 --max-steps "$TRAIN_STEPS" --no-shuffle --no-pack \
            $([ $how = recomp ] && [ "$DEV" = cuda ] && echo --recompute always) --log "$d/$how.jsonl" "$d/ex.lrs" 2> "$d/$how.err"
        rc=$?
        grep -E '^(lr-tune|step 1/)' "$d/$how.err" | head -n 3 >&2
        [ $rc = 0 ] || { echo "lr-tune ($how) exit $rc$([ $rc = 124 ] && echo ': stopped at its time share')" >&2; tail -n 2 "$d/$how.err" >&2; }
        # the cpu stand-in keeps every activation: no second run to compare
        [ "$DEV" = cuda ] || break
    done
    # kernel time by kind over 2 steps (LR_GPU_PROFILE=1 puts events around
    # every group of launches of one kind: a run of its own, apart from the
    # timed ones); its "gpu_profile train:" line goes to the results
    if [ "$DEV" = cuda ]; then
        # shellcheck disable=SC2086
        timeout -k 5 "$((sixteenth > 5 ? sixteenth : 5))" env LR_GPU_PROFILE=1 "$GTUNE" --device cuda --precision "$TRAIN_PREC" \
            --model "$d/$TRAIN_SHAPE_NAME" --out "$d/adapter-prof" --force --r 8 --alpha 16 --targets q,v --dropout 0.05 \
            --batch $TRAIN_BATCH --accum 2 --max-steps 2 --no-shuffle --no-pack --log "$d/prof.jsonl" "$d/ex.lrs" 2> "$d/prof.err" ||
            echo "lr-tune (LR_GPU_PROFILE=1) exit $?" >&2
        sed -n "s|^gpu_profile train: |gpu_profile train $TRAIN_SHAPE_NAME: steps=2 batch=$TRAIN_BATCH accum=2 |p" "$d/prof.err"
    fi
    # shellcheck disable=SC2086
    timeout -k 5 "$eighth" env LR_GPU_TCATT=0 "$GTUNE" --device "$DEV" --precision "$TRAIN_PREC" --model "$d/$TRAIN_SHAPE_NAME" \
        --out "$d/adapter-tcatt0" --force --r 8 --alpha 16 --targets q,v --dropout 0.05 --batch $TRAIN_BATCH --accum 2 \
        --max-steps 3 --no-shuffle --no-pack --log "$d/tcatt0.jsonl" "$d/ex.lrs" 2> "$d/tcatt0.err" ||
        echo "lr-tune (LR_GPU_TCATT=0) exit $?" >&2
    if timeout 60 "$PY" -c 'import peft' 2> /dev/null; then
        # shellcheck disable=SC2086
        timeout -k 5 "$half" "$PY" "$ROOT/tests/gpu/tune_ref.py" peft --model "$d/$TRAIN_SHAPE_NAME" --examples "$d/ex.jsonl" \
            --batch $TRAIN_BATCH --accum 2 --steps "$TRAIN_STEPS" --device "$HFDEV" --precision "$TRAIN_PREC" --max-s $((half > 60 ? half - 30 : half / 2)) \
            --log "$d/ref.jsonl" 2> "$d/ref.err" || { echo "PEFT reference exit $?" >&2; tail -n 3 "$d/ref.err" >&2; }
    else
        echo "train: no peft in $PY: no reference" >&2
    fi
    # shellcheck disable=SC2046
    python3 "$ROOT/tests/gpu/tune_ref.py" report --model "$d/$TRAIN_SHAPE_NAME" --ours "$d/ours.jsonl" --ref "$d/ref.jsonl" \
        --ours-tcatt0 "$d/tcatt0.jsonl" --steps "$TRAIN_STEPS" --batch "$TRAIN_BATCH" --accum 2 --peak "${TRAIN_PEAK:-0}" --precision "$TRAIN_PREC" \
        $([ "$DEV" = cuda ] && echo --ours-err "$d/ours.err" --recomp "$d/recomp.jsonl" --recomp-err "$d/recomp.err")
    rm -rf "${d:?}/$TRAIN_SHAPE_NAME"
    [ -s "$d/ours.jsonl" ]
}
GTUNE=$GBIN/lr-tune
[ -x "$GTUNE" ] || GTUNE=$BIN/lr-tune
# MFU against the card's dense bf16 peak, as bench_gpu teacher reports it
TRAIN_PEAK=$(sed -n 's/^teacher .*peak_tflops=\([0-9.]*\).*/\1/p' "$RES" | head -n 1)
# the device trains in bf16 (lr-tune's default there); the cpu has float32 only
TRAIN_PREC=$([ "$DEV" = cuda ] && echo bf16 || echo f32)
# (leaving the end-to-end 1.5B stage its E2E_LIM)
TRAIN_LIM=$((TRAIN_LIM_MAX < $(left) - RESERVE - E2E_LIM ? TRAIN_LIM_MAX : $(left) - RESERVE - E2E_LIM)) TRAIN_T0=$(date +%s)
export GTUNE TRAIN_SHAPE_NAME TRAIN_SHAPE TRAIN_LEN TRAIN_BATCH TRAIN_STEPS TRAIN_PEAK TRAIN_PREC TRAIN_LIM TRAIN_T0 PY HFDEV
if [ ! -x "$GTUNE" ]; then
    echo "train skipped=\"no lr-tune in the bundle (rebuild it: make gpu-bundle)\"" | tee -a "$RES"
elif [ "$TRAIN_LIM" -lt 60 ]; then
    echo "train skipped=\"time budget: ${TRAIN_LIM}s left, the stage needs 60 s or more\"" | tee -a "$RES"
else
    stage train "$TRAIN_LIM" train_stage
fi

# lr-tune data parallel with both ranks on this one card: --dp-backend host
# (the device trainer's gradients summed through the hosts) against one
# process, step by step; --dp-backend nccl, which must be refused by both
# ranks because they share the card (found by its UUID), before NCCL
# itself would fail on it
dp_stage() {
    local d=$WORK/dp b port rc0 rc1
    mkdir -p "$d"
    "$BIN/lr-mkmodel" "$d/m" --seed 3 > /dev/null &&
        "$BIN/lr-dump" --from-json "$ROOT/tests/fixtures/examples_small.jsonl" > "$d/ex.lrs" || return 1
    local A=(--device "$DEV" --precision f32 --model "$d/m" --lr 1e-2 --batch 4 --accum 1 --max-steps 3 --targets q,v
        --dropout 0 "$d/ex.lrs")
    "$GTUNE" --out "$d/one" --log "$d/one.jsonl" "${A[@]}" 2> "$d/one.err" || { tail -n 2 "$d/one.err" >&2; return 1; }
    for b in host nccl; do
        [ "$b" = nccl ] && [ "$DEV" != cuda ] && continue # the cpu stand-in refuses nccl at its flags
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        "$GTUNE" --rank 1 --world 2 --master "127.0.0.1:$port" --dp-timeout 30 --dp-backend $b --out "$d/$b" "${A[@]}" \
            2> "$d/$b.1.err" &
        "$GTUNE" --rank 0 --world 2 --master "127.0.0.1:$port" --dp-timeout 30 --dp-backend $b --out "$d/$b" \
            --log "$d/$b.jsonl" "${A[@]}" 2> "$d/$b.0.err"
        rc0=$?
        wait $!
        rc1=$?
        echo "$b $rc0 $rc1" >> "$d/rcs"
        grep -h "^lr-tune: data parallel\|^lr-tune: rank" "$d/$b".?.err >&2
    done
    python3 - "$d" "$DEV" << 'PY'
import json, sys
d, dev = sys.argv[1], sys.argv[2]
rcs = {b: (r0, r1) for b, r0, r1 in (l.split() for l in open(f"{d}/rcs"))}
def log(n):
    try:
        return [json.loads(l) for l in open(f"{d}/{n}.jsonl") if l.strip()]
    except OSError:
        return []
one, host = log("one"), log("host")
rel = max((abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(one, host)), default=float("nan"))
ok = rcs.get("host") == ("0", "0") and len(host) == len(one) > 0 and rel <= 1e-4
want = "--dp-backend nccl: ranks 0 and 1 are on one card, and NCCL wants a card a rank"
if "nccl" in rcs:
    lines = [open(f"{d}/nccl.{k}.err").read().strip().splitlines()[-1:] for k in (0, 1)]
    refused = rcs["nccl"] == ("1", "1") and all(l and l[0] == f"lr-tune: rank {k} of 2: {want}" for k, l in enumerate(lines))
    nccl = f"nccl_rc={'/'.join(rcs['nccl'])} refused={'ok' if refused else 'FAIL'}"
    ok = ok and refused
else:
    nccl = "nccl_rc=none refused=n/a"
print(f"dp ranks=2 card=one dev={dev} steps={len(one)} host_rc={'/'.join(rcs.get('host', ('?', '?')))} "
      f"host_steps={len(host)} loss_rel_max={rel:.3g} {nccl} result={'ok' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
}
[ -x "$GTUNE" ] && stage dp 60 dp_stage

# the method end to end on the 1.5B shape (see above); paper 0.5 h, goal 5 min
e2e "$E2E_EXP15" "$E2E_STEPS" "$E2E_LIM" "$E2E_MERGE_S" 1800 300
# the sampling goal's reference: the authors' loop (transformers' generate,
# then the amateur on every step's re-tokenised prefix; gen_ref.py authors)
# on the same models and GSM8K problems, for AUTH_S seconds, extrapolated to
# 1000 problems beside the e2e stage's sampling + follow + lr-kl + lr-contrast
AUTH_S=$( ((DRY)) && echo 10 || echo "${LR_GPU_AUTH_S:-35}")
if [ -f "$WORK/hf/$E2E_EXP15/config.json" ] && [ -f "$WORK/hf/$E2E_AMA/config.json" ]; then
    # 40 s of the stage for loading both models and the problem in progress
    a=$(($(fit $((AUTH_S + 40))) - 40))
    [ "$a" -ge 5 ] || a=5
    stage authors $((a + 40)) "$PY" "$ROOT/tests/gpu/gen_ref.py" authors --expert "$WORK/hf/$E2E_EXP15" \
        --amateur "$WORK/hf/$E2E_AMA" --data "$ROOT/data/gsm8k/train.jsonl" --n 64 --max-new "$E2E_NEW" \
        --max-s "$a" --device "$HFDEV"
fi

# ---- 6. sampled decode: the greedy decode's steps drawn on the device, its
# cost next to greedy's; a timing only, so it comes after every check ----
for s in $SHAPES; do
    [ -f "$WORK/hf/$s/config.json" ] || continue
    # shellcheck disable=SC2086
    stage "decode_${s}_b${SAMPLE_B}_t0.8" 60 "$GBIN/bench_gpu" decode --device "$DEV" "$WORK/hf/$s" --batch "$SAMPLE_B" \
        $DECODE --temperature 0.8 --top-p 0.95
done

# ---- 7. compute-sanitizer: memcheck (out-of-bounds, misaligned and
# uninitialised-address accesses) and racecheck (shared-memory hazards
# between a block's threads: the emulator runs a block's threads one at a
# time between barriers, so it cannot show them) on the tiny GQA model's
# check, on sampled decode queued one step ahead (the device sampler, the
# fed tokens, graphs) and on 2 LoRA training steps of a tiny model with
# head dim 64 (the trainer's tensor-core attention, forward and backward).
# Some runtimes refuse the tool ("Device not supported" on gVisor): the row
# says so. --dry runs the commands alone on the emulated device. ----
SANI=$(command -v compute-sanitizer 2> /dev/null ||
    ls ${NVCC:+"$(dirname "$NVCC")/compute-sanitizer"} /usr/local/cuda/bin/compute-sanitizer 2> /dev/null | head -n 1)
# san TOOL WHAT CMD...: CMD under compute-sanitizer --tool TOOL (its own
# limit SAN_LIM, inside the stage's); one "sanitize" line in the results
SAN_MAX=40 SAN_LIM=40
export DRY SANI SAN_LIM
san() {
    local tool=$1 what=$2 log=$WORK/san/$1_$2.log rc n why res; shift 2
    rm -f "$log" "$log.err"
    if ((DRY)); then
        "$@" > /dev/null 2> "$log.err"; rc=$?
        echo "sanitize tool=$tool what=$what rc=$rc result=DRY why=\"dry run: the command alone (exit $rc), no card to sanitize\"" >> "$RES"
        return $rc
    fi
    if [ -z "$SANI" ]; then
        echo "sanitize tool=$tool what=$what result=UNAVAILABLE why=\"no compute-sanitizer on this machine\"" >> "$RES"
        return 0
    fi
    timeout -k 5 "$SAN_LIM" "$SANI" --tool "$tool" --error-exitcode 9 --print-limit 20 --log-file "$log" "$@" \
        > /dev/null 2> "$log.err"; rc=$?
    n=$(sed -nE 's/.*ERROR SUMMARY: ([0-9]+) error.*/\1/p' "$log" 2> /dev/null | tail -n 1)
    [ -n "$n" ] || n=$(sed -nE 's/.*RACECHECK SUMMARY: [0-9]+ hazards? displayed \(([0-9]+) errors?.*/\1/p' "$log" 2> /dev/null | tail -n 1)
    why=$(grep -m 1 -E '^========= +(Invalid|Error|Race|Warning|Program hit|Device not|.*not supported)' "$log" 2> /dev/null |
        sed 's/^========= *//' | tr '"' "'" | cut -c 1-160)
    if grep -qiE 'device not supported|not supported on this' "$log" "$log.err" 2> /dev/null; then
        res=UNAVAILABLE why="compute-sanitizer refuses the device here: ${why:-$(head -c 160 "$log.err" | tr '\n"' " '")}"
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        res=TIMEOUT why="over ${SAN_LIM}s under the tool${n:+ ($n errors by then)}"
    elif [ -z "$n" ]; then
        res=ERROR why="no summary from compute-sanitizer (exit $rc): $(tail -n 2 "$log.err" 2> /dev/null | tr '\n"' " '" | cut -c 1-160)"
    elif [ "$n" != 0 ]; then
        res=FAIL why="$why"
    elif [ "$rc" != 0 ]; then
        res=FAIL why="no error found, but the program exited $rc: $(tail -n 1 "$log.err" | tr '"' "'" | cut -c 1-160)"
    else
        res=ok why=
    fi
    echo "sanitize tool=$tool what=$what errors=${n:-?} rc=$rc result=$res why=\"$why\"" | tee -a "$RES"
    [ "$res" != FAIL ] && [ "$res" != ERROR ]
}
mkdir -p "$WORK/san"
if "$BIN/lr-mkmodel" "$WORK/san/m" --seed 3 --hidden 256 --heads 4 --kv-heads 2 --layers 2 > /dev/null &&
    "$BIN/lr-dump" --from-json "$ROOT/tests/fixtures/examples_small.jsonl" > "$WORK/san/ex.lrs"; then
    for tool in memcheck racecheck; do
        SAN_LIM=$(fit $SAN_MAX)
        [ -d "$M/gqa64" ] && stage "san_${tool}_check" $((SAN_LIM + 10)) san "$tool" check \
            "$GBIN/bench_gpu" check --device "$DEV" --bound 0.05 "$M/gqa64"
        SAN_LIM=$(fit $SAN_MAX)
        [ -d "$M/gqa64" ] && stage "san_${tool}_decode" $((SAN_LIM + 10)) san "$tool" decode "$GBIN/bench_gpu" decode \
            --device "$DEV" "$M/gqa64" --batch 4 --prompt 16 --steps 8 --temperature 0.8 --top-p 0.95 --ahead
        SAN_LIM=$(fit $SAN_MAX)
        stage "san_${tool}_tune" $((SAN_LIM + 10)) san "$tool" tune "$GTUNE" --device "$DEV" --model "$WORK/san/m" \
            --out "$WORK/san/o_$tool" --max-steps 2 --batch 2 --accum 1 --dropout 0.1 --targets all "$WORK/san/ex.lrs"
    done
else
    echo "sanitize result=ERROR why=\"lr-mkmodel or lr-dump failed for the tiny training model\"" >> "$RES"
fi

# ---- evaluation's generation on the device: the 1.5B shape on MATH500's
# toolkit prompts (pipelines/lightreasoner.mk's EVAL_INFER: greedy, the
# toolkit's stops, 2048 new tokens), EVAL_N problems in one lr-infer call
# at batch EVAL_N. Random weights run every answer to 2048 tokens, so the
# rate, and all seven benchmarks' problems at 2048 tokens each from it, are
# the evaluation's worst case on this card (a trained model stops earlier).
# Cut at EVAL_LIM s, the row gives the rate it stayed under. ----
if ((DRY)); then EVAL_N=4 EVAL_NEW=8 EVAL_LIM=60; else EVAL_N=${LR_GPU_EVAL_N:-256} EVAL_NEW=2048 EVAL_LIM=${LR_GPU_EVAL_LIM:-90}; fi
EVAL_ALL=0
for s in gsm8k math500 svamp asdiv minerva_math olympiadbench mmlu_stem; do
    EVAL_ALL=$((EVAL_ALL + $(wc -l < "$ROOT/data/$s/test.jsonl")))
done
export EVAL_N EVAL_NEW EVAL_LIM EVAL_ALL E2E_EXP15
eval_stage() {
    local m=$WORK/hf/$E2E_EXP15 d=$WORK/eval rc t0 line
    mkdir -p "$d"
    t0=$(date +%s.%N)
    timeout -k 5 "$EVAL_LIM" "$GINFER" --model "$m" --data "$ROOT/data/math500/test.jsonl" --preset toolkit \
        --temperature 0 --top-p 1 --max-new-tokens "$EVAL_NEW" --max-context 4096 --eos '<|im_end|>' \
        --eos '<|endoftext|>' --stop '</s>' --limit "$EVAL_N" --batch "$EVAL_N" --device "$DEV" -o "$d/e.lrs" 2> "$d/err"
    rc=$?
    line=$(grep "problems written" "$d/err" | tail -n 1)
    python3 - "$rc" "$t0" "$line" << 'PY'
import os, re, sys, time
rc, t0, line = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
n, new, lim, total = (int(os.environ[k]) for k in ("EVAL_N", "EVAL_NEW", "EVAL_LIM", "EVAL_ALL"))
head = f"eval_gen model={os.environ['E2E_EXP15']} problems={n} new={new} batch={n} all_seven={total}"
m = re.search(r"(\d+) problems written, (\d+) tokens in ([\d.]+) s \(([\d.]+) tok/s\), (\d+) forward passes", line)
if rc in (124, 137):
    print(f"{head} result=CUT lim_s={lim} tok_s_below={n * new / lim:.0f} all_seven_s_above={total * 2048 / (n * new / lim):.0f}")
elif rc != 0 or not m:
    print(f'{head} result=ERROR why="lr-infer exit {rc}"')
    sys.exit(1)
else:
    probs, toks, s, tps, passes = int(m[1]), int(m[2]), float(m[3]), float(m[4]), int(m[5])
    print(f"{head} result=ok written={probs} tokens={toks} s={s:.2f} tok_s={tps:.0f} passes={passes} "
          f"wall_s={time.time() - t0:.2f} all_seven_s={total * 2048 / tps:.0f}")
PY
}
if [ -f "$WORK/hf/$E2E_EXP15/config.json" ]; then
    EVAL_LIM=$(fit "$EVAL_LIM")
    stage eval_gen $((EVAL_LIM + 15)) eval_stage
else
    echo "eval_gen model=$E2E_EXP15 problems=$EVAL_N new=$EVAL_NEW result=SKIPPED why=\"no model of the $E2E_EXP15 shape (built earlier: see its build stage)\"" >> "$RES"
fi

# ---- the 7B shape end to end (see above): last, when time and disk allow ----
e2e7() {
    local s=$E2E_EXP7 d=$WORK/hf/$E2E_EXP7 avail why=
    avail=$(df -Pk "$WORK" | awk 'NR == 2 { printf "%d", $4 / 1048576 }')
    if [ "$(left)" -lt $((E2E7_MIN + RESERVE)) ]; then
        why="time budget: $(left)s left, the 7B shape needs ${E2E7_MIN}s (build, chain, merge); LR_GPU_ONLY='build_${E2E_AMA}|${E2E_EXP7}' runs it alone"
    elif [ "${avail:-0}" -lt "$E2E7_DISK" ]; then
        why="disk: ${avail:-?} GB free under $WORK, the 7B shape and its merge need $E2E7_DISK GB"
    fi
    if [ -n "$why" ]; then
        echo "e2e shape=$s skipped=\"$why\"" | tee -a "$RES"
        return 0
    fi
    if [ -n "${LR_GPU_NO_TORCH:-}" ] ||
        ! stage "build_$s" 150 "$PY" "$ROOT/tests/gpu/hf_ref.py" build --shape "$s" --out "$d" --device "$HFDEV" \
            --tokenizer "$WORK/tok" --lens 13; then
        rm -rf "$d"
        # shellcheck disable=SC2086
        stage "mkmodel_$s" 150 "$BIN/lr-mkmodel" "$d" ${MKSHAPE[$s]} --vocab 151936 --dtype bf16 \
            --tokenizer "$WORK/tok/tokenizer.json"
    fi
    e2e "$s" "$E2E7_STEPS" "$E2E7_LIM" "$E2E7_MERGE_S" 2700 600
    rm -rf "$d"
}
e2e7

# ---- 8. the table: written by the EXIT trap (finish) ----
fails=$(grep -cE 'result=(FAIL|ERROR|NO_GPU)|^stage .* rc=[1-9]' "$RES")
echo "run.sh: $fails failing lines in the results"
[ "$fails" = 0 ]
