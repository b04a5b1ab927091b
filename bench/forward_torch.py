"""PyTorch side of bench/forward.sh: same folder, same prompts, same greedy
loop (manual, with the KV cache; logits only for the last position), float32.
  python forward_torch.py MODEL_DIR BATCH PROMPT_LEN GEN_TOKENS THREADS"""
import sys, time
import torch
from transformers import AutoModelForCausalLM

d, B, P, G, TH = sys.argv[1], *map(int, sys.argv[2:6])
torch.set_num_threads(TH)
m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
m.eval()
V = m.config.vocab_size
ids = torch.tensor([[(t * 7919 + 13 + b * 101) % min(V, 151000) for t in range(P)] for b in range(B)])
with torch.inference_mode():
    m(input_ids=ids, logits_to_keep=1)  # warm-up
    best = 1e30
    for _ in range(3):
        t0 = time.perf_counter()
        out = m(input_ids=ids, use_cache=True, logits_to_keep=1)
        best = min(best, time.perf_counter() - t0)
    past, lg = out.past_key_values, out.logits[:, -1]
    gen = []
    t0 = time.perf_counter()
    for g in range(G):
        nxt = lg.argmax(-1)
        gen.append(int(nxt[0]))
        if g + 1 < G:
            out = m(input_ids=nxt[:, None], past_key_values=past, use_cache=True)
            past, lg = out.past_key_values, out.logits[:, -1]
    dec = time.perf_counter() - t0
blas = "MKL" if torch.backends.mkl.is_available() else "?"
print('torch %s blas="%s (torch.backends.mkl=%s)" threads=%d prefill_tok_s=%.1f decode_tok_s=%.2f tokens=%s' % (
    torch.__version__, blas, torch.backends.mkl.is_available(), torch.get_num_threads(), B * P / best,
    B * (G - 1) / dec if G > 1 else 0.0, ",".join(map(str, gen))))
