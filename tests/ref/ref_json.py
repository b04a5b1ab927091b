#!/usr/bin/env python3
"""Golden files for lr-contrast --from-ref: samples in the reference
implementation's JSON lines format and the token ids its training script
(HKUDS/LightReasoner LightR_finetuning.py) would feed the model for each.

Rerun:  $(tests/ref/venv.sh) tests/ref/ref_json.py [TOKENIZER_DIR]
(default build/tokenizers/qwen, unpacked by `make`)

Writes tests/golden/ref_samples.jsonl (input) and tests/golden/ref_expected.jsonl:
one line per sample, {"context": ids, "prompt_len": n}, where
  formatted = tokenizer.apply_chat_template([system "Please reason step by step.",
              user question], tokenize=False, add_generation_prompt=True)
  context   = tokenizer(formatted + prefix).input_ids      (as the reference trains)
  prompt_len = length of the common prefix of tokenizer(formatted) and context
"""
import json
import os
import sys

from transformers import AutoTokenizer

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "..", "build", "tokenizers", "qwen")  # root = tests/
tok = AutoTokenizer.from_pretrained(tdir)

samples = [
    ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
     "How many clips did Natalia sell altogether in April and May?",
     [(3, "To find", [1477, 8253, 11047], [0.7, 0.2, 0.1], 0.52),
      (17, "To find the total number of clips Natalia sold in April and May, we need to", [1156], [1.0], 1.3),
      # unsorted ids (a hand-made file): sorted on import with their weights
      (40, "\n\nStep 1: 48 / 2 = 24 clips in May.\n", [220, 16, 17], [0.25, 0.5, 0.25], 0.9)]),
    ("Wéng earns $12 an hour for babysitting — 50 minutes: ¿how much? 日本語 ∑ \\frac{1}{2}",
     [(1, "We", [1184, 11], [0.6, 0.4], 0.41),
      (9, "Weng earns $12 per hour. Since 50 minutes is \\(\\frac{5", [15], [1.0], 2.5)]),
]
lines, expect = [], []
for q, steps in samples:
    formatted = tok.apply_chat_template([{"role": "system", "content": "Please reason step by step."},
                                         {"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
    pids = tok(formatted).input_ids
    for step, prefix, ids, w, kl in steps:
        toks = [tok.decode([i]) for i in ids]
        lines.append(json.dumps({"prompt_id": q, "step": step, "prefix": prefix, "tokens": toks,
                                 "token_ids": ids, "weights": w, "kl_divergence": kl}))
        ctx = tok(formatted + prefix).input_ids
        pl = 0
        while pl < min(len(pids), len(ctx)) and pids[pl] == ctx[pl]:
            pl += 1
        expect.append(json.dumps({"context": ctx, "prompt_len": pl}))
g = os.path.join(root, "golden")
with open(os.path.join(g, "ref_samples.jsonl"), "w") as f:
    f.write("\n".join(lines) + "\n")
with open(os.path.join(g, "ref_expected.jsonl"), "w") as f:
    f.write("\n".join(expect) + "\n")
