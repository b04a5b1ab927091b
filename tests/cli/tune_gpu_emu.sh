# lr-tune --device cuda end to end on the emulated device (the same
# cuda/*.cu source built by g++ against cuda/emu.h) against the CPU run:
# soft-KL (packed, all seven projections, dropout on) and SFT; the JSON-lines
# logs agree step for step (loss 1e-4 relative, grad_norm 1e-3, lr, tokens
# and examples exactly), the adapters are close (max |gpu - cpu| / max |cpu|
# < 1e-3 per tensor) with the same adapter_config.json, the checkpoints hold
# the same counters; a run stopped on one backend resumes on the other and
# ends close to the uninterrupted run; --full and --reference-quirks are
# refused on cuda with one line; the build without a usable GPU refuses
# --device cuda (exit 4) and writes nothing.
source "$LR_ROOT/tests/lib.sh"
B=$LR_BIN T=$LR_TMP
if [ "${LR_SAN:-}" = 1 ]; then E=$LR_ROOT/build/san/emu; else E=$LR_ROOT/build/rel/emu; fi
[ -x "$E/lr-tune" ] || die "no emulated-device lr-tune at $E"
"$B/lr-mkmodel" "$T/m" --seed 3 > /dev/null
"$B/lr-dump" --from-json "$LR_ROOT/tests/fixtures/examples_small.jsonl" > "$T/ex.lrs"
jq -c 'if .lrs then .tokenizer = {"name": "tiny", "hash": "", "vocab": 272} else . end' "$LR_ROOT/tests/fixtures/dist_small.jsonl" |
    "$B/lr-dump" --from-json > "$T/d.lrs"

KL=(--model "$T/m" --lr 1e-2 --batch 4 --accum 2 --max-steps 6 --targets all --dropout 0.1 --save-every 2 "$T/ex.lrs")
"$B/lr-tune" --device cpu --out "$T/kc" --log "$T/kc.jsonl" "${KL[@]}" 2> /dev/null
"$E/lr-tune" --device cuda --out "$T/kg" --log "$T/kg.jsonl" "${KL[@]}" 2> "$T/kg.err"
grep -q "device cuda (emulated CUDA device" "$T/kg.err" || die "no device line: $(cat "$T/kg.err")"
logs_close "$T/kg.jsonl" "$T/kc.jsonl" 1e-4 1e-3 lr tokens examples || die "soft-KL logs differ: $(paste -d' ' "$T/kg.jsonl" "$T/kc.jsonl" | head -3)"
e=$(st_close "$T/kg/adapter_model.safetensors" "$T/kc/adapter_model.safetensors" 1e-3) || die "soft-KL adapters differ by $e"
cmp -s "$T/kg/adapter_config.json" "$T/kc/adapter_config.json" || die "adapter_config.json differs"
echo "soft-KL: adapters within $e" >&2

# SFT on dist records
SFT=(--model "$T/m" --lr 1e-2 --batch 2 --accum 1 --max-steps 5 --dropout 0.1 "$T/d.lrs")
"$B/lr-tune" --device cpu --out "$T/sc" --log "$T/sc.jsonl" "${SFT[@]}" 2> /dev/null
"$E/lr-tune" --device cuda --out "$T/sg" --log "$T/sg.jsonl" "${SFT[@]}" 2> /dev/null
logs_close "$T/sg.jsonl" "$T/sc.jsonl" 1e-4 1e-3 lr tokens examples || die "SFT logs differ: $(paste -d' ' "$T/sg.jsonl" "$T/sc.jsonl" | head -3)"
e=$(st_close "$T/sg/adapter_model.safetensors" "$T/sc/adapter_model.safetensors" 1e-3) || die "SFT adapters differ by $e"
echo "SFT: adapters within $e" >&2

# checkpoints: the same counters and settings from either backend, close weights
"$B/lr-tune" --device cpu --out "$T/rc" --stop-after 3 "${KL[@]}" 2> /dev/null
"$E/lr-tune" --device cuda --out "$T/rg" --stop-after 3 "${KL[@]}" 2> /dev/null
for f in trainer_state.json adapter_config.json; do
    cmp -s "$T/rc.part/checkpoint-2/$f" "$T/rg.part/checkpoint-2/$f" || die "checkpoint-2/$f differs between backends"
done
e=$(st_close "$T/rg.part/checkpoint-2/optimizer.safetensors" "$T/rc.part/checkpoint-2/optimizer.safetensors" 1e-3) ||
    die "checkpoint-2 optimizer state differs by $e"
# resume across backends: cpu checkpoint on the device, device checkpoint on the cpu
"$E/lr-tune" --device cuda --out "$T/rc" --resume --log "$T/rc.jsonl" "${KL[@]}" 2> "$T/rc.err"
grep -q "resuming from .*checkpoint-2" "$T/rc.err" || die "cuda did not resume the cpu checkpoint: $(cat "$T/rc.err")"
"$B/lr-tune" --device cpu --out "$T/rg" --resume --log "$T/rg.jsonl" "${KL[@]}" 2> "$T/rg.err"
grep -q "resuming from .*checkpoint-2" "$T/rg.err" || die "cpu did not resume the cuda checkpoint: $(cat "$T/rg.err")"
for r in rc rg; do
    e=$(st_close "$T/$r/adapter_model.safetensors" "$T/kc/adapter_model.safetensors" 1e-3) ||
        die "$r: resumed across backends, the adapter differs from the uninterrupted run by $e"
    echo "$r resumed across backends: adapter within $e of the uninterrupted cpu run" >&2
done
[ "$(wc -l < "$T/rc.jsonl")" = 4 ] && jq -se '.[0].step == 3' "$T/rc.jsonl" > /dev/null || die "resumed log: steps 3..6"

# refused on cuda, one line, nothing written
expect_fail 1 "$E/lr-tune" --device cuda --full --out "$T/f" "${KL[@]}"
[[ $LAST_ERR == *"--full trains on the cpu only"* ]] || die "--full message: $LAST_ERR"
expect_fail 1 "$E/lr-tune" --device cuda --reference-quirks --out "$T/q" "${KL[@]}"
[[ $LAST_ERR == *"--reference-quirks trains on the cpu only"* ]] || die "--reference-quirks message: $LAST_ERR"
[ ! -e "$T/f" ] && [ ! -e "$T/f.part" ] && [ ! -e "$T/q" ] || die "a refused run wrote output"
# the build without a usable GPU (here: no GPU, or no backend under SAN)
if ! { command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L > /dev/null 2>&1; }; then
    expect_fail 4 "$B/lr-tune" --device cuda --out "$T/n" "${KL[@]}"
    [[ $LAST_ERR == *"no usable CUDA device"* ]] || die "no-GPU message: $LAST_ERR"
    [ ! -e "$T/n" ] && [ ! -e "$T/n.part" ] || die "the refused run wrote output"
fi
