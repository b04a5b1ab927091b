#!/usr/bin/env python3
"""Reference logits for tiny random models made by bin/lr-mkmodel.

For each config of a matrix (qwen2 with biases / llama without and with,
tied / untied, GQA ratio 1 / 2 / 4, rope_theta 1e4 / 1e6, f32 / bf16 weights)
it generates the model folder with lr-mkmodel, loads it with transformers
(float32, eager attention), runs fixed token sequences and writes
  tests/golden/model_ref.json   configs, sequences, which rows were kept,
                                FNV-1a 64 of model.safetensors (so a change
                                of the C generator is caught)
  tests/golden/model_ref.f32    the kept logits rows, float32 little endian,
                                config after config, (rows, V) each.
It also checks that HF `tokenizers` and transformers' AutoTokenizer load the
built-in tokenizer and round-trip text. Rerun after changing lr-mkmodel:
  $(tests/ref/venv.sh) tests/ref/model_ref.py
"""
import json, os, subprocess, sys, tempfile
import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MK = os.path.join(ROOT, "bin", "lr-mkmodel")

CONFIGS = [
    ("qwen2_untied_gqa2_t1e4_f32", ["--arch", "qwen2", "--heads", "4", "--kv-heads", "2", "--rope-theta", "10000", "--untied", "--dtype", "f32", "--seed", "11"]),
    ("qwen2_tied_mha_t1e6_bf16", ["--arch", "qwen2", "--heads", "4", "--kv-heads", "4", "--rope-theta", "1000000", "--tied", "--dtype", "bf16", "--seed", "12"]),
    ("llama_untied_mha_t1e4_bf16", ["--arch", "llama", "--heads", "4", "--kv-heads", "4", "--rope-theta", "10000", "--untied", "--dtype", "bf16", "--seed", "13"]),
    ("llama_tied_gqa4_t1e6_f32", ["--arch", "llama", "--heads", "8", "--kv-heads", "2", "--rope-theta", "1000000", "--tied", "--dtype", "f32", "--seed", "14"]),
    ("llama_bias_untied_gqa2_t1e4_f32", ["--arch", "llama", "--bias", "--heads", "4", "--kv-heads", "2", "--untied", "--dtype", "f32", "--seed", "15"]),
    ("qwen2_3layer_c96_gqa3_v320_bf16", ["--arch", "qwen2", "--layers", "3", "--hidden", "96", "--heads", "6", "--kv-heads", "2", "--inter", "160", "--vocab", "320", "--rope-theta", "1000000", "--untied", "--dtype", "bf16", "--seed", "16"]),
]

# Fixed sequences (ids < 272 = built-in tokenizer size; 269-271 are specials).
SEQS = [
    [270, 72, 101, 108, 108, 111],
    [269, 49, 50, 43, 51, 61, 63, 256, 257, 258, 259, 300 - 40],
    [(i * 37 + 11) % 271 for i in range(40)],
]


def keep_rows(seqs):
    """All positions of the short sequences, a few of the long one."""
    rows = []
    for s, seq in enumerate(seqs):
        pos = range(len(seq)) if len(seq) <= 16 else [0, 1, 17, len(seq) - 2, len(seq) - 1]
        rows += [[s, p] for p in pos]
    return rows


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def check_tokenizer(d):
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    text = "<|im_start|>user\nsay the answer = 12+34 in é 漢<|im_end|>"
    enc = tok.encode(text)
    assert tok.decode(enc.ids, skip_special_tokens=False) == text, "tokenizers round trip"
    assert enc.ids[0] == 270 and enc.ids[-1] == 271, enc.ids
    assert 266 in enc.ids, "merge 'Ġthe' not applied"  # " the" -> one merged token
    at = AutoTokenizer.from_pretrained(d)
    assert at.encode(text) == enc.ids, (at.encode(text), enc.ids)
    assert at.eos_token == "<|im_end|>"
    print("tokenizer ok:", enc.ids, file=sys.stderr)


def main():
    torch.set_num_threads(2)
    out_meta, blobs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in CONFIGS:
            d = os.path.join(tmp, name)
            subprocess.run([MK, d] + args, check=True)
            if name == CONFIGS[0][0]:
                check_tokenizer(d)
            m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
            m.eval()
            rows = keep_rows(SEQS)
            V = m.config.vocab_size
            logits = []
            with torch.no_grad():
                full = [m(input_ids=torch.tensor([s])).logits[0].float().numpy() for s in SEQS]
            for s, p in rows:
                logits.append(full[s][p])
            arr = np.asarray(logits, dtype="<f4")
            blobs.append(arr.tobytes())
            with open(os.path.join(d, "model.safetensors"), "rb") as f:
                h = fnv1a64(f.read())
            out_meta.append({"name": name, "args": args, "vocab": V, "rows": rows,
                             "safetensors_fnv1a64": "%016x" % h,
                             "max_abs_logit": float(np.abs(arr).max())})
            print(name, "V", V, "rows", len(rows), "max|logit| %.3f" % np.abs(arr).max(), file=sys.stderr)
    gd = os.path.join(ROOT, "tests", "golden")
    os.makedirs(gd, exist_ok=True)
    with open(os.path.join(gd, "model_ref.json"), "w") as f:
        json.dump({"generator": "tests/ref/model_ref.py", "transformers": __import__("transformers").__version__,
                   "torch": torch.__version__, "seqs": SEQS, "configs": out_meta}, f, indent=1)
        f.write("\n")
    with open(os.path.join(gd, "model_ref.f32"), "wb") as f:
        for b in blobs:
            f.write(b)


if __name__ == "__main__":
    main()
