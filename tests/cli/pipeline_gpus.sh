# pipelines/lightreasoner.mk with GPUS=2 (pipelines/gpus.sh) against
# GPUS=1, on the cpu with two tiny random models: every lr-infer run in 2
# shards joined by lr-dump --cat gives the one-process run's streams byte
# for byte (their records; --batch 1 --threads 1, where sharding changes no bit: the
# expert's samples, the amateur's follow, the examples, the base model's
# evaluation), lr-tune as 2 data-parallel ranks gives its adapter within
# 1e-4 (the summation order of the ranks' gradients), no shard file is
# left, each shard and rank sees the card GPU_IDS gives it; a rerun of the
# complete run redoes nothing; a failing shard stops the stage naming
# itself, with nothing under the stage's name; a TUNE_BATCH the ranks do
# not divide is refused by lr-tune; the report's Makefiles (stage 1, the
# examples, a seed's training and evaluation through ablations.mk) alike;
# gpus.sh's own usage errors.
source "$LR_ROOT/tests/lib.sh"
T=$LR_TMP D=$LR_ROOT/tests/fixtures/arith-mini/gsm8k
"$LR_BIN/lr-mkmodel" "$T/expert" --layers 2 --hidden 64 --seed 21 > /dev/null
"$LR_BIN/lr-mkmodel" "$T/amateur" --arch llama --layers 1 --hidden 32 --heads 2 --kv-heads 1 --inter 64 --seed 22 > /dev/null
# BIN: the tools, lr-infer and lr-tune wrapped to record the card each
# process was given (CUDA_VISIBLE_DEVICES) and its shard or rank
mkdir -p "$T/bin"
for t in lr-dump lr-kl lr-contrast lr-merge lr-eval; do ln -s "$LR_BIN/$t" "$T/bin/$t"; done
for t in lr-infer lr-tune; do
    printf '#!/bin/sh\necho "%s ${CUDA_VISIBLE_DEVICES:-none} $*" >> "%s/cards.log"\nexec "%s" "$@"\n' "$t" "$T" "$LR_BIN/$t" > "$T/bin/$t"
    chmod +x "$T/bin/$t"
done
export OPENBLAS_NUM_THREADS=1
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run() { # OUT GPUS [VAR=value...]
    make --no-print-directory -C "$LR_ROOT" -f pipelines/lightreasoner.mk OUT="$T/$1" GPUS="$2" BIN="$T/bin" \
        EXPERT="$T/expert" AMATEUR="$T/amateur" DATA="$D/train.jsonl" EVAL_DATA="$D/test.jsonl" N=10 MAX_NEW=24 \
        EVAL_N=6 EVAL_MAX_NEW=32 DEVICE=cpu BATCH=1 INFER_FLAGS="--threads 1" STEPS=3 TUNE_BATCH=4 ACCUM=1 \
        BETA=0 TUNE_PORT="$port" TUNE_FLAGS="--lr 1e-3 --dropout 0" "${@:3}"
}
run one 1 > /dev/null 2> "$T/one.err" || { tail -n 20 "$T/one.err" >&2; die "GPUS=1 failed"; }
: > "$T/cards.log"
run two 2 GPU_IDS="3 5" > /dev/null 2> "$T/two.err" || { tail -n 20 "$T/two.err" >&2; die "GPUS=2 failed"; }
records() { "$LR_BIN/lr-dump" "$1" | sed 1d; } # every record and the end line, not the header (its argv differs)
for f in expert.lrs amateur.lrs examples.lrs eval-base-gsm8k.lrs; do
    cmp -s <(records "$T/one/$f") <(records "$T/two/$f") || die "GPUS=2: $f's records differ from GPUS=1's"
done
e=$(st_close "$T/two/adapter/adapter_model.safetensors" "$T/one/adapter/adapter_model.safetensors" 1e-4) ||
    die "GPUS=2: adapter differs by $e"
echo "GPUS=2: streams byte for byte, adapter within $e"
logs_close "$T/two/tune-log.jsonl" "$T/one/tune-log.jsonl" 1e-5 1e-4 lr examples || die "GPUS=2: training logs differ"
[ -s "$T/two/summary.md" ] && grep -q '^| tuned | ' "$T/two/summary.md" || die "GPUS=2: no summary"
[ -z "$(find "$T/two" -name '*.shard-*')" ] || die "shard files left: $(find "$T/two" -name '*.shard-*')"
[ -e "$T/two/tune.rank-1.log" ] || die "no rank 1 log"
grep -q "data parallel, 2 ranks (--rank/--world)" "$T/two.err" || die "lr-tune did not run 2 ranks: $(grep lr-tune "$T/two.err")"
# every lr-infer run: shard 0 on card 3, shard 1 on card 5; lr-tune: rank 0 on 3, rank 1 on 5
for k in 0 1; do
    c=$([ $k = 0 ] && echo 3 || echo 5)
    [ "$(grep -c "^lr-infer $c .*--shard $k/2 " "$T/cards.log")" = 4 ] || die "shard $k's card: $(cat "$T/cards.log")"
    [ "$(grep -c "^lr-tune $c .*--rank $k --world 2 " "$T/cards.log")" = 1 ] || die "rank $k's card: $(cat "$T/cards.log")"
done
[ "$(grep -c "^lr-infer" "$T/cards.log")" = 8 ] || die "lr-infer runs: $(cat "$T/cards.log")"

# complete: a rerun does nothing
run two 2 > /dev/null 2> "$T/again.err"
grep -q 'stage' "$T/again.err" && die "a complete GPUS=2 run redid a stage: $(cat "$T/again.err")"

# a shard that fails (no amateur) stops the stage, naming the shard
mkdir -p "$T/nomodel"
if run bad 2 AMATEUR="$T/nomodel" "$T/bad/amateur.lrs" > /dev/null 2> "$T/bad.err"; then die "a missing amateur was accepted"; fi
grep -q "^gpus.sh: shard 0 of 2 failed (exit [1-9]*); the end of its log" "$T/bad.err" || die "failing shard not named: $(cat "$T/bad.err")"
[ -s "$T/bad/expert.lrs" ] && [ ! -e "$T/bad/amateur.lrs" ] || die "failed stage: $(ls "$T/bad")"
# the ranks must divide the batch: lr-tune refuses, the stage fails
rm -rf "$T/bad"
cp -a "$T/two" "$T/odd" && rm -rf "$T/odd/adapter" "$T/odd/merged" "$T/odd/summary.md" "$T/odd/eval-tuned"*
if run odd 3 GPU_IDS="0 1 2" TUNE_BATCH=4 "$T/odd/adapter/adapter_config.json" > /dev/null 2> "$T/odd.err"; then
    die "TUNE_BATCH=4 over 3 ranks was accepted"
fi
grep -q "is not a multiple of the world size 3" "$T/odd.err" || die "odd batch: $(cat "$T/odd.err")"
[ ! -e "$T/odd/adapter/adapter_config.json" ] || die "odd batch: an adapter was written"

# the report's Makefiles (common.mk, ablations.mk) alike: stage 1 in
# shards, the method's examples, one seed's training as ranks and its
# evaluation in shards
rab() { # OUT GPUS: the method's seed-1 evaluation through ablations.mk
    make --no-print-directory -C "$LR_ROOT" -f pipelines/ablations.mk OUT="$T/$1" GPUS="$2" BIN="$T/bin" \
        EXPERT="$T/expert" AMATEUR="$T/amateur" DATA="$D/train.jsonl" EVAL_DATA="$D/test.jsonl" N=10 MAX_NEW=24 \
        EVAL_N=6 EVAL_MAX_NEW=32 DEVICE=cpu BATCH=1 THREADS=1 BETA=0 SEEDS=1 TUNE_PORT="$port" \
        TUNE_FLAGS="--lr 1e-3 --batch 4 --accum 1 --max-steps 3 --dropout 0" "$T/$1/lightreasoner/s1/eval/summary.json"
}
rab abl1 1 > /dev/null 2> "$T/abl1.err" || { tail -n 20 "$T/abl1.err" >&2; die "ablations.mk GPUS=1 failed"; }
rab abl2 2 > /dev/null 2> "$T/abl2.err" || { tail -n 20 "$T/abl2.err" >&2; die "ablations.mk GPUS=2 failed"; }
for f in stage1/expert.lrs stage1/amateur.lrs lightreasoner/examples.lrs; do
    [ -s "$T/abl2/$f" ] && cmp -s <(records "$T/abl1/$f") <(records "$T/abl2/$f") || die "ablations.mk GPUS=2: $f differs"
done
# (the tuned model's answers may differ where its adapter does in the last bits)
[ "$("$LR_BIN/lr-dump" --count "$T/abl2/lightreasoner/s1/eval.lrs")" = 6 ] || die "ablations.mk GPUS=2: the evaluation's stream"
grep -q "data parallel, 2 ranks" "$T/abl2/lightreasoner/s1/tune.log" || die "ablations.mk: lr-tune not over 2 ranks"
e=$(st_close "$T/abl2/lightreasoner/s1/adapter/adapter_model.safetensors" "$T/abl1/lightreasoner/s1/adapter/adapter_model.safetensors" 1e-4) ||
    die "ablations.mk GPUS=2: adapter differs by $e"
[ -z "$(find "$T/abl2" -name '*.shard-*')" ] || die "ablations.mk: shard files left"

# gpus.sh's usage
G=$LR_ROOT/pipelines/gpus.sh
expect_fail 1 "$G" infer 0 "$T/x.lrs" "$T/bin/lr-infer"
[[ $LAST_ERR == "gpus.sh: N must be a positive integer, not '0'" ]] || die "N=0: $LAST_ERR"
expect_fail 1 env GPU_IDS="0" "$G" infer 2 "$T/x.lrs" "$T/bin/lr-infer"
[[ $LAST_ERR == "gpus.sh: GPU_IDS lists 1 cards for 2 processes" ]] || die "GPU_IDS: $LAST_ERR"
expect_fail 1 "$G" tune 2 port "$T/bin/lr-tune"
[[ $LAST_ERR == "gpus.sh: PORT must be a number, not 'port'" ]] || die "port: $LAST_ERR"
echo ok
