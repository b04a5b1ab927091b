# lr-tune data parallel on the CPU, ranks as processes on localhost over
# the TCP communicator: 2 ranks x half of each micro-batch train what one
# process trains on the whole one (soft-KL packed, SFT, the reference's
# padded collate, 3 ranks from Slurm's variables, a partial last
# micro-batch): the losses and gradient norms rank 0 logs within 1e-6 of
# one process's, the same lr, examples and steps, adapters within 1e-4 per
# tensor (AdamW's first steps move each weight by about lr * sign(grad), so
# gradients near zero turn summation-order noise into weight differences:
# 6e-6 after one step here). Rank 0 alone writes; a data-parallel run stopped and
# resumed ends byte-identical to an uninterrupted one; world size 1 by flag
# or variable is byte-identical to no flag. Failures: a rank that leaves
# (either side), nobody listening, another rank's data, a world size that
# does not divide --batch, a rank out of range, ranks that differ in a
# setting, the --recompute switch, the --dp-backend or the precision; an
# NCCL asked of the cpu or an unknown backend: one stderr line naming
# the rank (and the field), the documented exit code, nothing under the
# final names. The
# emulated CUDA device trains data parallel through the host (every rank
# on one card: no NCCL, and auto says why; --dp-backend host the same bits,
# --dp-backend nccl refused by every rank) and agrees with its one-process run (losses to 1e-6, adapters to
# 1e-3, the tolerance of the device against the cpu), with --full too
# (the sum covers every base weight; models within 1e-3).
source "$LR_ROOT/tests/lib.sh"
T=$LR_TMP LT=$LR_BIN/lr-tune
if [ "${LR_SAN:-}" = 1 ]; then E=$LR_ROOT/build/san/emu; else E=$LR_ROOT/build/rel/emu; fi
"$LR_BIN/lr-mkmodel" "$T/m" --seed 3 > /dev/null
"$LR_BIN/lr-dump" --from-json "$LR_ROOT/tests/fixtures/examples_small.jsonl" > "$T/ex.lrs"
jq -c 'if .lrs then .tokenizer = {"name": "tiny", "hash": "", "vocab": 272} else . end' "$LR_ROOT/tests/fixtures/dist_small.jsonl" |
    "$LR_BIN/lr-dump" --from-json > "$T/d.lrs"
# drop LINES IN OUT: the stream IN without the records on JSON lines LINES (a sed address)
drop() {
    local n; n=$("$LR_BIN/lr-dump" "$2" | sed -n "$1p" | wc -l)
    "$LR_BIN/lr-dump" "$2" | sed "$1d" | jq -c "if has(\"lrs_end\") then .lrs_end -= $n else . end" |
        "$LR_BIN/lr-dump" --from-json > "$3"
}
drop 3 "$T/ex.lrs" "$T/ex_other.lrs" # one example fewer

# ports free right now, one per run of ranks (one python start for all)
mapfile -t PORTS < <(python3 -c 'import socket
ss = [socket.socket() for _ in range(24)]
for s in ss: s.bind(("127.0.0.1", 0))
for s in ss: print(s.getsockname()[1])')
NP=0 # port=${PORTS[NP++]}: the next one
# dp W CMD ARGS...: ranks 1..W-1 of CMD in the background, rank 0 here;
# rank k's stderr in $T/dp.k.err, its exit code in $T/dp.k.rc
dp() {
    local w=$1 cmd=$2 port k; shift 2
    port=${PORTS[NP++]}
    for k in $(seq 1 $((w - 1))); do
        (set +e; "$cmd" --rank "$k" --world "$w" --master "127.0.0.1:$port" "$@" 2> "$T/dp.$k.err"; echo $? > "$T/dp.$k.rc") &
    done
    (set +e; "$cmd" --rank 0 --world "$w" --master "127.0.0.1:$port" "$@" 2> "$T/dp.0.err"; echo $? > "$T/dp.0.rc")
    wait
}
rcs() { cat "$T"/dp.[0-9].rc | tr '\n' ' '; }
# same A B WHAT [TOL]: one process's run and the ranks' agree
same() {
    logs_close "$T/$2.jsonl" "$T/$1.jsonl" 1e-6 1e-6 lr examples || die "$3: logs differ: $(paste -d' ' "$T/$1.jsonl" "$T/$2.jsonl" | head -2)"
    local e
    e=$(st_close "$T/$2/adapter_model.safetensors" "$T/$1/adapter_model.safetensors" "${4:-1e-4}") || die "$3: adapters differ by $e"
    echo "$3: adapters within $e" >&2
}

# soft-KL, packed, all seven projections: 2 ranks x 2 of each micro-batch of 4
KL=(--model "$T/m" --lr 1e-2 --batch 4 --accum 2 --max-steps 6 --targets all --dropout 0 "$T/ex.lrs")
"$LT" --out "$T/k1" --log "$T/k1.jsonl" "${KL[@]}" 2> /dev/null
dp 2 "$LT" --out "$T/k2" --log "$T/k2.jsonl" "${KL[@]}"
[ "$(rcs)" = "0 0 " ] || die "2 ranks: exit codes $(rcs): $(cat "$T"/dp.*.err)"
grep -q "data parallel, 2 ranks (--rank/--world) .* each takes 2 of a micro-batch's 4; gradients summed over TCP" "$T/dp.0.err" ||
    die "rank 0's data-parallel line: $(cat "$T/dp.0.err")"
[ ! -s "$T/dp.1.err" ] || die "rank 1 printed: $(cat "$T/dp.1.err")"
same k1 k2 "soft-KL, 2 ranks"
cmp -s "$T/k1/adapter_config.json" "$T/k2/adapter_config.json" || die "adapter_config.json differs"

# rank 0 alone writes: rank 1 told another --out and --log leaves both alone
port=${PORTS[NP++]}
"$LT" --rank 1 --world 2 --master "127.0.0.1:$port" --out "$T/r1" --log "$T/r1.jsonl" "${KL[@]}" 2> /dev/null &
"$LT" --rank 0 --world 2 --master "127.0.0.1:$port" --out "$T/r0" "${KL[@]}" 2> /dev/null
wait $! || die "rank 1 failed"
[ ! -e "$T/r1" ] && [ ! -e "$T/r1.part" ] && [ ! -e "$T/r1.jsonl" ] || die "rank 1 wrote output"
cmp -s "$T/r0/adapter_model.safetensors" "$T/k2/adapter_model.safetensors" || die "data-parallel runs differ from one another"

# SFT, ranks from torchrun's variables
SFT=(--model "$T/m" --lr 1e-2 --batch 2 --accum 2 --max-steps 5 --dropout 0 "$T/d.lrs")
"$LT" --out "$T/s1" --log "$T/s1.jsonl" "${SFT[@]}" 2> /dev/null
port=${PORTS[NP++]}
RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$LT" --out "$T/s2" "${SFT[@]}" 2> /dev/null &
RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$LT" --out "$T/s2" --log "$T/s2.jsonl" "${SFT[@]}" 2> "$T/s2.err"
wait $! || die "SFT rank 1 failed"
grep -q "2 ranks (RANK/WORLD_SIZE)" "$T/s2.err" || die "the ranks' source: $(cat "$T/s2.err")"
same s1 s2 "SFT, 2 ranks from RANK/WORLD_SIZE"

# the reference's collate (micro-batches padded to their longest example),
# 3 ranks from Slurm's variables
Q=(--model "$T/m" --lr 1e-2 --batch 6 --accum 1 --max-steps 3 --dropout 0 --reference-quirks "$T/ex.lrs")
"$LT" --out "$T/q1" --log "$T/q1.jsonl" "${Q[@]}" 2> /dev/null
port=${PORTS[NP++]}
for k in 1 2; do SLURM_PROCID=$k SLURM_NTASKS=3 MASTER_PORT=$port "$LT" --out "$T/q3" "${Q[@]}" 2> /dev/null & done
SLURM_PROCID=0 SLURM_NTASKS=3 MASTER_PORT=$port "$LT" --out "$T/q3" --log "$T/q3.jsonl" "${Q[@]}" 2> /dev/null
wait || die "a Slurm rank failed"
same q1 q3 "reference quirks, 3 ranks from SLURM_PROCID/SLURM_NTASKS"

# a partial last micro-batch (10 examples, batch 4: rank 1 has none of the last)
drop 2,3 "$T/ex.lrs" "$T/ex10.lrs"
P=(--model "$T/m" --lr 1e-2 --batch 4 --accum 3 --epochs 2 --dropout 0 "$T/ex10.lrs")
"$LT" --out "$T/p1" --log "$T/p1.jsonl" "${P[@]}" 2> /dev/null
dp 2 "$LT" --out "$T/p2" --log "$T/p2.jsonl" "${P[@]}"
[ "$(rcs)" = "0 0 " ] || die "partial batch: exit codes $(rcs): $(cat "$T"/dp.*.err)"
same p1 p2 "10 examples in micro-batches of 4, 2 ranks"

# resume: stopped after step 5 (checkpoints 2 and 4), resumed, dropout on:
# byte-identical to the uninterrupted 2-rank run, each log line once
R=(--model "$T/m" --lr 1e-2 --batch 4 --accum 2 --max-steps 7 --save-every 2 --dropout 0.1 "$T/ex.lrs")
dp 2 "$LT" --out "$T/rf" "${R[@]}"
dp 2 "$LT" --out "$T/rr" --log "$T/rr.jsonl" --stop-after 5 "${R[@]}"
[ "$(rcs)" = "0 0 " ] && [ -d "$T/rr.part/checkpoint-4" ] && [ ! -e "$T/rr" ] || die "stopped run: $(rcs) $(ls "$T")"
# one process does not resume a 2-rank checkpoint (the dropout masks depend on the ranks)
expect_fail 1 "$LT" --out "$T/rr" --resume "${R[@]}"
[[ $LAST_ERR == *"--world"* ]] || die "one-process resume of 2 ranks' checkpoint: $LAST_ERR"
dp 2 "$LT" --out "$T/rr" --log "$T/rr.jsonl" --resume "${R[@]}"
[ "$(rcs)" = "0 0 " ] || die "resume: exit codes $(rcs): $(cat "$T"/dp.*.err)"
grep -q "resuming from .*checkpoint-4" "$T/dp.0.err" || die "no resume: $(cat "$T/dp.0.err")"
cmp -s "$T/rf/adapter_model.safetensors" "$T/rr/adapter_model.safetensors" || die "resumed data-parallel run differs"
jq -se '[.[].step] == [1, 2, 3, 4, 5, 6, 7]' "$T/rr.jsonl" > /dev/null || die "resumed log: $(jq -c .step "$T/rr.jsonl" | tr '\n' ' ')"

# world size 1 by flag or variable: byte-identical to no flag
"$LT" --out "$T/w0" "${R[@]}" 2> /dev/null
"$LT" --out "$T/w1" --rank 0 --world 1 "${R[@]}" 2> /dev/null
WORLD_SIZE=1 RANK=0 SLURM_NTASKS=1 "$LT" --out "$T/w2" "${R[@]}" 2> /dev/null
cmp -s "$T/w0/adapter_model.safetensors" "$T/w1/adapter_model.safetensors" &&
    cmp -s "$T/w0/adapter_model.safetensors" "$T/w2/adapter_model.safetensors" || die "world 1 differs from no flag"

# failures: one line naming the rank, the exit code, nothing under --out
nothing() { for f in "$@"; do [ ! -e "$T/$f" ] && [ ! -e "$T/$f.part" ] || die "$f written by a failed run"; done; }
# rank 1 leaves after step 2 (as a crash would): rank 0 exits 3 naming it
port=${PORTS[NP++]}
set +e
"$LT" --rank 1 --world 2 --master "127.0.0.1:$port" --out "$T/g1" --stop-after 2 "${KL[@]}" 2> /dev/null &
"$LT" --rank 0 --world 2 --master "127.0.0.1:$port" --out "$T/g1" "${KL[@]}" 2> "$T/g1.err"; rc=$?
set -e
wait
[ "$rc" = 3 ] || die "rank 0 after rank 1 left: exit $rc: $(cat "$T/g1.err")"
tail -1 "$T/g1.err" | grep -q "^lr-tune: rank 0 of 2: step 3: rank 1 is gone (connection closed) during the gradient all-reduce$" ||
    die "rank 0's message: $(tail -1 "$T/g1.err")"
nothing g1
# rank 0 leaves: rank 1 exits 3 naming it, in one line
port=${PORTS[NP++]}
set +e
"$LT" --rank 0 --world 2 --master "127.0.0.1:$port" --out "$T/g2" --stop-after 2 "${KL[@]}" 2> /dev/null &
"$LT" --rank 1 --world 2 --master "127.0.0.1:$port" --out "$T/g2" "${KL[@]}" 2> "$T/g2.err"; rc=$?
set -e
wait
[ "$rc" = 3 ] && [ "$(wc -l < "$T/g2.err")" = 1 ] && grep -q "^lr-tune: rank 1 of 2: step 3: rank 0 is gone (connection closed) during the gradient all-reduce$" "$T/g2.err" ||
    die "rank 1 after rank 0 left: exit $rc: $(cat "$T/g2.err")"
# nobody listening
port=${PORTS[NP++]}
expect_fail 3 "$LT" --rank 1 --world 2 --master "127.0.0.1:$port" --dp-timeout 0.5 --out "$T/n1" "${KL[@]}"
[[ $LAST_ERR == "lr-tune: rank 1 of 2: cannot reach rank 0 at 127.0.0.1:"*" within 0.5 s: Connection refused" ]] || die "refused: $LAST_ERR"
nothing n1
# a rank that never comes
port=${PORTS[NP++]}
expect_fail 3 "$LT" --rank 0 --world 4 --master "127.0.0.1:$port" --dp-timeout 0.5 --out "$T/n0" "${KL[@]}"
[[ $LAST_ERR == *"rank 0 of 4: waited 0.5 s on 127.0.0.1:"*" for 3 of the other 3 ranks (missing: 1,2,3)" ]] || die "lonely: $LAST_ERR"
nothing n0
# another rank's data: both refuse, exit 2
port=${PORTS[NP++]}
set +e
"$LT" --rank 1 --world 2 --master "127.0.0.1:$port" --out "$T/x" "${KL[@]/$T\/ex.lrs/$T/ex_other.lrs}" 2> "$T/x1.err" &
"$LT" --rank 0 --world 2 --master "127.0.0.1:$port" --out "$T/x" "${KL[@]}" 2> "$T/x0.err"; rc=$?
wait $!; rc1=$?
set -e
[ "$rc" = 2 ] && [ "$rc1" = 2 ] || die "mismatched data: exit $rc and $rc1"
grep -q "^lr-tune: rank 0 of 2: rank 1 has another inputs (content) (\[\"" "$T/x0.err" || die "rank 0: $(cat "$T/x0.err")"
grep -q "^lr-tune: rank 1 of 2: rank 0 refused the rendezvous: rank 1 has another inputs (content)" "$T/x1.err" || die "rank 1: $(cat "$T/x1.err")"
[ "$(wc -l < "$T/x0.err")" = 1 ] && [ "$(wc -l < "$T/x1.err")" = 1 ] || die "mismatched data: more than one line: $(cat "$T"/x?.err)"
nothing x
# mismatch A B FIELD WANT ARGS...: rank 1 with extra arguments A, rank 0
# with B: both exit 2, one error line each naming FIELD as WANT says,
# nothing written
mismatch() {
    local a=$1 b=$2 field=$3 want=$4 port=${PORTS[NP++]} rc rc1; shift 4
    set +e
    "$@" --rank 1 --world 2 --master "127.0.0.1:$port" --out "$T/y" $a 2> "$T/y1.err" &
    "$@" --rank 0 --world 2 --master "127.0.0.1:$port" --out "$T/y" $b 2> "$T/y0.err"; rc=$?
    wait $!; rc1=$?
    set -e
    [ "$rc" = 2 ] && [ "$rc1" = 2 ] || die "$field: exit $rc and $rc1: $(cat "$T"/y?.err)"
    # (rank 0's device line, on the device, comes first)
    [ "$(tail -1 "$T/y0.err")" = "lr-tune: rank 0 of 2: rank 1 has another $field ($want)" ] || die "$field: rank 0: $(cat "$T/y0.err")"
    [ "$(cat "$T/y1.err")" = "lr-tune: rank 1 of 2: rank 0 refused the rendezvous: rank 1 has another $field ($want)" ] ||
        die "$field: rank 1: $(cat "$T/y1.err")"
    nothing y
}
mismatch "--r 4" "--r 8" --r "4, rank 0's 8" "$LT" "${KL[@]}"
mismatch "--recompute never" "" --recompute "never, rank 0's auto" "$LT" "${KL[@]}"
mismatch "--dp-backend host" "" --dp-backend "host, rank 0's auto" "$LT" "${KL[@]}"
# --dp-backend: nccl is the device's; a value it does not know
expect_fail 1 "$LT" --rank 0 --world 2 --dp-backend nccl --out "$T/b" "${KL[@]}"
[[ $LAST_ERR == "lr-tune: --dp-backend nccl: NCCL sums device gradients (use --device cuda, or host)" ]] || die "cpu nccl: $LAST_ERR"
expect_fail 1 "$LT" --dp-backend mpi --out "$T/b" "${KL[@]}"
[[ $LAST_ERR == "lr-tune: --dp-backend mpi: expected auto, nccl or host" ]] || die "bad backend: $LAST_ERR"
# the world size must divide the batch; ranks inside the world
expect_fail 1 "$LT" --rank 1 --world 3 --out "$T/b" "${KL[@]}"
[[ $LAST_ERR == "lr-tune: rank 1 of 3: --batch 4 is not a multiple of the world size 3 (--rank/--world)" ]] || die "batch: $LAST_ERR"
expect_fail 1 env RANK=2 WORLD_SIZE=2 "$LT" --out "$T/b" "${KL[@]}"
[[ $LAST_ERR == "lr-tune: rank 2 is outside [0, 2): RANK/WORLD_SIZE" ]] || die "rank range: $LAST_ERR"
nothing b

# the emulated device: no NCCL there, the gradients go through the hosts
[ -x "$E/lr-tune" ] || die "no emulated-device lr-tune at $E"
# float32: the ranks must match one process to 1e-6, which bf16 rounding of
# their summation-order differences would not allow
G=(--device cuda --precision f32 --model "$T/m" --lr 1e-2 --batch 4 --accum 1 --max-steps 3 --targets q,v --dropout 0 "$T/ex.lrs")
"$E/lr-tune" --out "$T/e1" --log "$T/e1.jsonl" "${G[@]}" 2> /dev/null
dp 2 "$E/lr-tune" --out "$T/e2" --log "$T/e2.jsonl" "${G[@]}"
[ "$(rcs)" = "0 0 " ] || die "emulated device, 2 ranks: $(rcs): $(cat "$T"/dp.*.err)"
# every rank on the emulated device is on its one card: auto falls back
# to the hosts and says why
grep -q "gradients summed through the hosts over TCP (not NCCL: ranks 0 and 1 are on one card, and NCCL wants a card a rank)" "$T/dp.0.err" ||
    die "emu: $(cat "$T/dp.0.err")"
same e1 e2 "emulated CUDA device, 2 ranks" 1e-3 # as the device against the cpu (tune_gpu_emu.sh)
# --dp-backend host: the same sum, the same bits, and the line says so
dp 2 "$E/lr-tune" --out "$T/e3" --dp-backend host "${G[@]}"
[ "$(rcs)" = "0 0 " ] || die "--dp-backend host: $(rcs): $(cat "$T"/dp.*.err)"
grep -q "gradients summed through the hosts over TCP (--dp-backend host)" "$T/dp.0.err" || die "host: $(cat "$T/dp.0.err")"
cmp -s "$T/e2/adapter_model.safetensors" "$T/e3/adapter_model.safetensors" || die "--dp-backend host differs from auto's host sum"
# --dp-backend nccl where NCCL cannot run: every rank refuses alike, exit
# 1, one line each (after rank 0's device line), nothing written
dp 2 "$E/lr-tune" --out "$T/e4" --dp-backend nccl "${G[@]}"
[ "$(rcs)" = "1 1 " ] || die "--dp-backend nccl on one card: $(rcs): $(cat "$T"/dp.*.err)"
for k in 0 1; do
    [ "$(tail -1 "$T/dp.$k.err")" = "lr-tune: rank $k of 2: --dp-backend nccl: ranks 0 and 1 are on one card, and NCCL wants a card a rank" ] ||
        die "--dp-backend nccl, rank $k: $(cat "$T/dp.$k.err")"
done
[ "$(wc -l < "$T/dp.1.err")" = 1 ] || die "--dp-backend nccl: rank 1 printed more: $(cat "$T/dp.1.err")"
nothing e4
# ranks in other precisions (not a setting: a resume may change it) refused
mismatch "--precision bf16" "" --precision "bf16, rank 0's f32" "$E/lr-tune" "${G[@]}"
# --full on the device: the sum covers every base weight's gradient
# (--eps 1e-6 as tune_gpu_emu.sh's --full runs)
F=(--device cuda --full --model "$T/m" --lr 1e-3 --eps 1e-6 --batch 4 --accum 1 --max-steps 3 "$T/ex.lrs")
"$E/lr-tune" --out "$T/f1" --log "$T/f1.jsonl" "${F[@]}" 2> /dev/null
dp 2 "$E/lr-tune" --out "$T/f2" --log "$T/f2.jsonl" "${F[@]}"
[ "$(rcs)" = "0 0 " ] || die "emulated device --full, 2 ranks: $(rcs): $(cat "$T"/dp.*.err)"
logs_close "$T/f2.jsonl" "$T/f1.jsonl" 1e-6 1e-6 lr examples || die "--full, 2 ranks: logs differ: $(paste -d' ' "$T/f1.jsonl" "$T/f2.jsonl" | head -2)"
e=$(st_close "$T/f2/model.safetensors" "$T/f1/model.safetensors" 1e-3) || die "--full, 2 ranks: models differ by $e"
echo "emulated CUDA device --full, 2 ranks: models within $e" >&2
