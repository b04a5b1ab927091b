#!/usr/bin/env python3
"""Baseline for bench/tune.sh: PEFT + transformers LoRA training steps with
the method's soft-KL objective, the way the Trainer runs them (right-padded
batches with an attention mask, logits at each example's last real token,
kl_div batchmean, clip 1.0, AdamW). Prints 'tokens_per_s X' (non-pad
tokens of the timed steps; the first step is warm-up).
MODE full: logits at every position, as the reference's training runs;
MODE last: left padding + logits_to_keep=1, only the loss rows' logits
(what lr-tune computes), for a like-for-like arithmetic comparison.
usage: tune_peft.py MODEL_DIR EXAMPLES.jsonl BATCH STEPS THREADS MODE"""
import json, sys, time
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM
from peft import LoraConfig, get_peft_model

model_dir, ex_path, batch, steps, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
mode = sys.argv[6]
torch.set_num_threads(threads)
exs = [json.loads(l) for l in open(ex_path)][1:-1]
m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
pm = get_peft_model(m, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                                  task_type="CAUSAL_LM"))
pm.train()
params = [p for p in pm.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=5e-5)
V = m.config.vocab_size
tok, t0 = 0, None
for step in range(steps + 1):
    if step == 1:
        t0 = time.time()
    b = [exs[(step * batch + i) % len(exs)] for i in range(batch)]
    T = max(len(e["context"]) for e in b)
    ids = torch.zeros(batch, T, dtype=torch.long)
    mask = torch.zeros(batch, T, dtype=torch.long)
    if mode == "full":
        for i, e in enumerate(b):
            ids[i, :len(e["context"])] = torch.tensor(e["context"])
            mask[i, :len(e["context"])] = 1
        logits = pm(input_ids=ids, attention_mask=mask).logits
        last = torch.stack([logits[i, len(e["context"]) - 1] for i, e in enumerate(b)]).float()
    else:
        for i, e in enumerate(b):
            ids[i, T - len(e["context"]):] = torch.tensor(e["context"])
            mask[i, T - len(e["context"]):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        last = pm(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits[:, -1].float()
    v = torch.zeros(batch, V)
    for i, e in enumerate(b):
        for t, w in zip(e["target_ids"], e["weights"]):
            v[i, t] = w
    loss = F.kl_div(F.log_softmax(last, -1), v, reduction="batchmean")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad()
    if step >= 1:
        tok += sum(len(e["context"]) for e in b)
print("tokens_per_s %.1f" % (tok / (time.time() - t0)))

