#!/usr/bin/env python3
"""The authors' training loss on a padded batch, for lr-tune --reference-quirks.

A transcription of HKUDS/LightReasoner LightR_finetuning.py's data path and
loss on a tiny bin/lr-mkmodel model: each example's input ids truncated to
max_length = 512 (the tokenizer's truncation=True, right side), labels a
dense vector over tokenizer.vocab_size entries (ids past it dropped), the
collate right-padding input_ids with tokenizer.pad_token_id and
attention_mask with 0 (pad_sequence), and

    logits = model(input_ids, attention_mask).logits[:, -1, :vocab_size]
    loss = kl_div(log_softmax(logits), labels, reduction="batchmean")

so every example shorter than the longest of the micro-batch is supervised
at a trailing pad position. One micro-batch of 4 examples (one longer than
512 tokens), PEFT LoRA r 8 / alpha 16 on q_proj and v_proj with dropout 0
and seeded random A and B (B = 0 would leave A without gradient).

Writes tests/golden/quirks_ref.json (model arguments and content hash, the
examples as an `example` stream in lr-dump JSON, loss, gradient norm),
tests/golden/quirks_grads.safetensors (the LoRA gradients, "grad." + PEFT names) and
tests/golden/quirks_init/ (the adapter, PEFT's save_pretrained). Rerun
with a venv holding torch, transformers and peft:
  build/venv/bin/python tests/ref/quirks_ref.py
"""
import json, os, shutil, subprocess, sys, tempfile
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import LoraConfig, get_peft_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MK = os.path.join(ROOT, "bin", "lr-mkmodel")
GD = os.path.join(ROOT, "tests", "golden")
ARGS = ["--arch", "qwen2", "--heads", "4", "--kv-heads", "2", "--untied", "--dtype", "f32", "--seed", "31"]
MAX_LENGTH = 512

# contexts of 6, 11, 530 (cut to 512) and 9 tokens; targets include ids past
# the tokenizer's 269 regular tokens (dropped, as their labels do)
EXAMPLES = [
    {"idx": 0, "step": 1, "context": [270, 72, 101, 108, 108, 111], "target_ids": [49, 50, 271], "weights": [0.5, 0.3, 0.2]},
    {"idx": 1, "step": 3, "context": [270, 87, 104, 97, 116, 32, 105, 115, 32, 50, 43], "target_ids": [51, 52],
     "weights": [0.7, 0.3]},
    {"idx": 2, "step": 2, "context": [(i * 37 + 11) % 269 for i in range(530)], "target_ids": [7, 8, 9],
     "weights": [0.6, 0.25, 0.15]},
    {"idx": 3, "step": 5, "context": [270, 49, 50, 51, 52, 53, 54, 55, 61], "target_ids": [56, 269], "weights": [0.9, 0.1]},
]


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def peft_name(n):
    return n.replace(".default", "")


def main():
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "model")
        subprocess.run([MK, d] + ARGS, check=True)
        with open(os.path.join(d, "model.safetensors"), "rb") as f:
            fnv = "%016x" % fnv1a64(f.read())
        tok = AutoTokenizer.from_pretrained(d)
        vocab_size, pad_id = tok.vocab_size, tok.pad_token_id
        m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
        pm = get_peft_model(m, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                          bias="none", task_type="CAUSAL_LM"))
        g = torch.Generator().manual_seed(4321)
        named = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
        with torch.no_grad():
            for n, p in named:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        init_dir = os.path.join(GD, "quirks_init")
        shutil.rmtree(init_dir, ignore_errors=True)
        pm.save_pretrained(init_dir)
        os.remove(os.path.join(init_dir, "README.md"))
        with open(os.path.join(init_dir, "adapter_config.json")) as f:
            ac = json.load(f)
        ac["base_model_name_or_path"] = "model"  # not the temp path: reruns give the same file
        ac["target_modules"] = sorted(ac["target_modules"])
        with open(os.path.join(init_dir, "adapter_config.json"), "w") as f:
            json.dump(ac, f, indent=2, sort_keys=True)

        # their Dataset.__getitem__ (token ids instead of text: the tokenizer's truncation)
        items = []
        for ex in EXAMPLES:
            ids = torch.tensor(ex["context"][:MAX_LENGTH])
            labels = torch.zeros(vocab_size, dtype=torch.float)
            for tid, w in zip(ex["target_ids"], ex["weights"]):
                if tid < vocab_size:
                    labels[tid] = w
            items.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
        # their collate_fn
        batch = {
            "input_ids": torch.nn.utils.rnn.pad_sequence([x["input_ids"] for x in items], batch_first=True,
                                                         padding_value=pad_id),
            "attention_mask": torch.nn.utils.rnn.pad_sequence([x["attention_mask"] for x in items], batch_first=True,
                                                              padding_value=0),
            "labels": torch.stack([x["labels"] for x in items]),
        }
        # their SoftLabelKLTrainer.compute_loss
        pm.train()
        logits = pm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        vs = batch["labels"].size(-1)
        logits = logits[:, -1, :vs]
        loss = F.kl_div(F.log_softmax(logits, dim=-1), batch["labels"], reduction="batchmean")
        loss.backward()
        grads = {"grad." + peft_name(n): p.grad.detach().clone().contiguous() for n, p in named}
        norm = torch.sqrt(sum((v.double() ** 2).sum() for v in grads.values())).item()
        save_file(grads, os.path.join(GD, "quirks_grads.safetensors"))
        # the same batch without padding (each example alone): the quirk must matter
        with torch.no_grad():
            alone = sum(F.kl_div(F.log_softmax(pm(input_ids=x["input_ids"][None]).logits[:, -1, :vs], dim=-1),
                                 x["labels"][None], reduction="batchmean") for x in items).item() / len(items)
        print("quirks: loss %.9g (unpadded %.9g), grad norm %.9g, vocab_size %d, pad %d" % (loss.item(), alone, norm,
              vocab_size, pad_id), file=sys.stderr)
        assert abs(alone - loss.item()) > 1e-3
        header = {"lrs": "lightreasoner-stream", "format_version": 1, "kind": "example", "kind_version": 1,
                  "tool": "quirks_ref.py", "tool_version": "0", "argv": ["quirks_ref.py"],
                  "model": {"name": "model", "hash": "", "vocab": 300},
                  "tokenizer": {"name": "model", "hash": "", "vocab": 272}, "params": {}}
        stream = [header] + [dict(id="q:%d" % e["idx"], prompt_len=1, kl=1.0, **e) for e in EXAMPLES] + \
                 [{"lrs_end": len(EXAMPLES)}]
    with open(os.path.join(GD, "quirks_ref.json"), "w") as f:
        json.dump({"generator": "tests/ref/quirks_ref.py", "transformers": __import__("transformers").__version__,
                   "peft": __import__("peft").__version__, "torch": torch.__version__, "args": ARGS,
                   "safetensors_fnv1a64": fnv, "vocab_size": vocab_size, "pad_token_id": pad_id, "max_length": MAX_LENGTH,
                   "loss": loss.item(), "loss_unpadded": alone, "grad_norm": norm, "stream": stream}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
