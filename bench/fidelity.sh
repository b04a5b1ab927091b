#!/usr/bin/env bash
# Fidelity of lr-infer's compact distributions: lr-kl's KL from the
# compact lists vs the whole-vocabulary KL (eps 1e-12) from --full rows, per
# step, and the compact streams' bytes per step. Models: the demo's tiny
# expert/amateur pair with the final-norm weights scaled by 1, 4 and 8 (the
# larger the scale, the more peaked the distributions, as real LMs are).
# Goal: |exact - compact| <= 1e-3 nats on >= 99.9% of steps, < 2 KB/step.
# Env: N (40 problems), NEW (64 tokens).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(tests/ref/venv.sh)} B=bin T=build/bench/fidelity N=${N:-40} NEW=${NEW:-64}
DATA=data/gsm8k/train.jsonl
mkdir -p $T
[ -f $T/expert/config.json ] || $B/lr-mkmodel $T/expert --layers 2 --hidden 64 --seed 21 > /dev/null
[ -f $T/amateur/config.json ] || $B/lr-mkmodel $T/amateur --arch llama --layers 1 --hidden 32 --heads 2 --kv-heads 1 --inter 64 --seed 22 > /dev/null
scale() { "$PY" - "$1" "$2" "$3" <<'PYEOF'
import os, shutil, sys
from safetensors.numpy import load_file, save_file
src, dst, f = sys.argv[1], sys.argv[2], float(sys.argv[3])
shutil.copytree(src, dst, dirs_exist_ok=True)
t = load_file(os.path.join(src, "model.safetensors"))
t["model.norm.weight"] = t["model.norm.weight"] * f
save_file(t, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
PYEOF
}
kls() { $B/lr-kl -q --beta 0 "$1" "$2" | $B/lr-dump | sed '1d;$d' | jq -r '"\(.idx) \(.step) \(.kl)"'; }
strip() { $B/lr-dump "$1" | jq -c 'del(.full)' | $B/lr-dump --from-json > "$2"; }
printf '| logit scale | steps | within 1e-3 nats | max error | listed/step | bytes/step expert | amateur |\n|---|---|---|---|---|---|---|\n'
for f in 1 4 8; do
    scale $T/expert $T/e$f "$f"; scale $T/amateur $T/a$f "$f"
    rm -f $T/e$f.lrs $T/a$f.lrs
    $B/lr-infer --model $T/e$f --data "$DATA" --limit "$N" --max-new-tokens "$NEW" --full -o $T/e$f.lrs 2> /dev/null
    $B/lr-infer --model $T/a$f --follow $T/e$f.lrs --full -o $T/a$f.lrs 2> /dev/null
    strip $T/e$f.lrs $T/ec$f.lrs; strip $T/a$f.lrs $T/ac$f.lrs
    steps=$($B/lr-dump $T/ec$f.lrs | sed '1d;$d' | jq '.tokens|length' | paste -sd+ | bc)
    listed=$($B/lr-dump $T/ec$f.lrs | sed '1d;$d' | jq '.k|add' | paste -sd+ | bc)
    paste -d' ' <(kls $T/e$f.lrs $T/a$f.lrs) <(kls $T/ec$f.lrs $T/ac$f.lrs) | awk -v f="$f" -v l="$listed" -v s="$steps" \
        -v be="$(stat -c %s $T/ec$f.lrs)" -v ba="$(stat -c %s $T/ac$f.lrs)" \
        '{ d = $3 - $6; if (d < 0) d = -d; n++; if (d <= 1e-3) ok++; if (d > mx) mx = d }
         END { printf "| x%s | %d | %.2f%% | %.1e | %.0f | %d | %d |\n", f, n, 100 * ok / n, mx, l / s, be / s, ba / s }'
done
