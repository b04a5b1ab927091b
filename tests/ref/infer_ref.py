#!/usr/bin/env python3
"""Reference for lr-infer: transformers' greedy generate and teacher forcing
on two tiny random models made by bin/lr-mkmodel (the expert: qwen2, the
amateur: llama; both carry lr-mkmodel's built-in tokenizer).

For the first 3 problems of data/gsm8k/train.jsonl it writes
tests/golden/infer_ref.json with, per problem:
  prompt       ids of the `lightreasoner` ChatML prompt (HF tokenizers)
  tokens       the expert's greedy continuation (model.generate, 12 tokens,
               stops at the config's eos)
  top_ids      per step, the expert's 5 most probable tokens
  top_lp       their expert log-probs
  ref_lp       the amateur's log-probs of those tokens, teacher-forced on
               prompt + tokens
  margin       per step, the expert's gap between its best and second logit
               (a tiny margin would make greedy fragile; printed)
Rerun: $(tests/ref/venv.sh) tests/ref/infer_ref.py
"""
import json, os, subprocess
import torch
from transformers import AutoModelForCausalLM
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MK = os.path.join(ROOT, "bin", "lr-mkmodel")
OUT = os.path.join(ROOT, "tests", "golden", "infer_ref.json")
EXPERT = ["--arch", "qwen2", "--layers", "2", "--hidden", "64", "--seed", "21"]
AMATEUR = ["--arch", "llama", "--layers", "1", "--hidden", "32", "--heads", "2", "--kv-heads", "1", "--inter", "64", "--seed", "22"]
SYSTEM = "Please reason step by step."
NEW = 12


def main():
    import tempfile
    tmp = tempfile.mkdtemp()
    dirs = {}
    for name, args in (("expert", EXPERT), ("amateur", AMATEUR)):
        d = os.path.join(tmp, name)
        subprocess.run([MK, d] + args, check=True, stdout=subprocess.DEVNULL)
        dirs[name] = d
    tok = Tokenizer.from_file(os.path.join(dirs["expert"], "tokenizer.json"))
    torch.manual_seed(0)
    exp = AutoModelForCausalLM.from_pretrained(dirs["expert"], torch_dtype=torch.float32, attn_implementation="eager").eval()
    ama = AutoModelForCausalLM.from_pretrained(dirs["amateur"], torch_dtype=torch.float32, attn_implementation="eager").eval()
    rows = []
    with open(os.path.join(ROOT, "data", "gsm8k", "train.jsonl")) as f:
        for i, line in zip(range(3), f):
            q = json.loads(line)["question"]
            text = (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n"
                    "<|im_start|>assistant\n")
            prompt = tok.encode(text).ids
            with torch.no_grad():
                out = exp.generate(torch.tensor([prompt]), max_new_tokens=NEW, do_sample=False,
                                   eos_token_id=exp.config.eos_token_id, pad_token_id=exp.config.eos_token_id)
                gen = out[0, len(prompt):].tolist()
                full = torch.tensor([prompt + gen])
                le = torch.log_softmax(exp(full).logits[0].double(), -1)
                la = torch.log_softmax(ama(full).logits[0].double(), -1)
            P = len(prompt)
            step = {"top_ids": [], "top_lp": [], "ref_lp": [], "margin": []}
            for t in range(len(gen)):
                row = le[P - 1 + t]
                v, ids = torch.topk(row, 5)
                step["top_ids"].append(ids.tolist())
                step["top_lp"].append(v.tolist())
                step["ref_lp"].append(la[P - 1 + t][ids].tolist())
                step["margin"].append(float(v[0] - v[1]))
                assert ids[0].item() == gen[t], "generate disagrees with its own argmax"
            rows.append({"id": f"gsm8k/train:{i}", "prompt": prompt, "tokens": gen, **step})
            print(f"problem {i}: {len(prompt)} prompt ids, {len(gen)} tokens, min greedy margin {min(step['margin']):.2e}")
    with open(OUT, "w") as f:
        json.dump({"expert": EXPERT, "amateur": AMATEUR, "new_tokens": NEW, "problems": rows}, f)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
