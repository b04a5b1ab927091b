#!/usr/bin/env python3
"""transformers baselines for bench/infer.sh, on the same model folder,
problems and threads as lr-infer:
  generate: model.generate (KV cache, greedy, left-padded batch)
  follow:   the reference implementation's loop, one full forward per step
            over the re-encoded prefix (we feed the same ids instead of
            re-encoding text, which only helps it)
Prints: gen_tok_s=... follow_tok_s=... gen_tokens=N follow_tokens=N
Usage: infer_torch.py MODEL_DIR EXPERT_STREAM_JSONL N_PROBLEMS NEW THREADS BATCH
"""
import json, sys, time
import torch
from transformers import AutoModelForCausalLM

model_dir, records, n, new, threads, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
torch.set_num_threads(threads)
m = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
recs = [json.loads(l) for l in open(records)][:n]
prompts = [r["prompt"] for r in recs]
pad = m.config.eos_token_id if isinstance(m.config.eos_token_id, int) else m.config.eos_token_id[0]
gen_tokens, t_gen = 0, 0.0
with torch.no_grad():
    for i in range(0, len(prompts), batch):
        chunk = prompts[i:i + batch]
        L = max(map(len, chunk))
        ids = torch.tensor([[pad] * (L - len(p)) + p for p in chunk])
        mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in chunk])
        t0 = time.perf_counter()
        out = m.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=False,
                         pad_token_id=pad, eos_token_id=m.config.eos_token_id)
        t_gen += time.perf_counter() - t0
        gen_tokens += int((out[:, L:] != pad).sum()) if out.shape[1] > L else 0
    follow_tokens, t_fol = 0, 0.0
    for r in recs:
        p, toks = r["prompt"], r["tokens"]
        t0 = time.perf_counter()
        for t in range(len(toks)):
            logits = m(torch.tensor([p + toks[:t]])).logits[0, -1]
            torch.log_softmax(logits.double(), -1)
        t_fol += time.perf_counter() - t0
        follow_tokens += len(toks)
print(f"gen_tok_s={gen_tokens / t_gen:.2f} follow_tok_s={follow_tokens / t_fol:.2f} gen_tokens={gen_tokens} follow_tokens={follow_tokens}")
