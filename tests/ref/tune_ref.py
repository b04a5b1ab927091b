#!/usr/bin/env python3
"""Reference LoRA training steps with PEFT + transformers for lr-tune.

For each config it generates a tiny model with bin/lr-mkmodel, wraps it in
PEFT LoRA (dropout 0 so the step is deterministic), sets A and B to seeded
random values (B = 0 at PEFT's init would leave A without gradient), saves
that adapter with PEFT's save_pretrained (so the C test also reads PEFT's own
files), then runs 3 optimizer steps on one fixed batch exactly as the
Hugging Face Trainer does: loss -> backward -> clip_grad_norm_(1.0) ->
torch AdamW (betas 0.9/0.999, eps 1e-8, wd 0) -> linear schedule to 0.

Objectives: soft-KL = kl_div(log_softmax(z[:vlim]), v, "batchmean") at each
example's last context position (vlim < V exercises the reference's
vocabulary quirk, METHOD.md), SFT = token cross-entropy on the response
span, mean over response tokens.

Then the other direction: bin/lr-tune trains an adapter on
tests/fixtures/examples_small.jsonl (all seven modules), PEFT loads it with
PeftModel.from_pretrained and the logits of fixed sequences are kept
(tests/golden/tune_ref_ours_adapter/, tune_ref_ours_logits.f32), for the C
test to compare with its own forward through the same adapter; and
transformers loads bin/lr-merge's folders (f32 and bf16) of that adapter,
giving PEFT's logits (asserted here: 1e-5 and 5e-2 relative).

Writes tests/golden/tune_ref.json (configs, batch, per-step losses and
gradient norms), tests/golden/tune_ref_<name>.safetensors (step-1 gradients
"grad.<PEFT name>", parameters after 3 steps "final.<PEFT name>") and
tests/golden/tune_ref_<name>_init/ (the PEFT adapter). Rerun:
  $(tests/ref/venv.sh) tests/ref/tune_ref.py
"""
import json, os, shutil, subprocess, sys, tempfile
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, get_linear_schedule_with_warmup
from peft import LoraConfig, get_peft_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MK = os.path.join(ROOT, "bin", "lr-mkmodel")
GD = os.path.join(ROOT, "tests", "golden")
LR, STEPS = 1e-3, 3

# soft-KL batch: problems 1 and 2; problem 1's two steps share a prefix
# (what packing exploits). Target ids >= 272 fall outside vlim and are dropped.
KL_BATCH = [
    {"problem": 1, "step": 0, "tokens": [270, 72, 101, 108, 108, 111, 32, 61], "ids": [49, 50, 51], "w": [0.5, 0.3, 0.2]},
    {"problem": 2, "step": 0, "tokens": [270, 87, 104, 97, 116], "ids": [63, 285], "w": [0.9, 0.1]},
    {"problem": 1, "step": 1, "tokens": [270, 72, 101, 108, 108, 111, 32, 61, 49, 50, 43], "ids": [51, 52, 53, 54],
     "w": [0.4, 0.3, 0.2, 0.1]},
    {"problem": 3, "step": 0, "tokens": [(i * 37 + 11) % 269 for i in range(21)], "ids": [7], "w": [1.0]},
]
SFT_BATCH = [
    {"problem": 1, "tokens": [270, 72, 101, 108, 108, 111, 271, 49, 50, 51, 52, 269], "nprompt": 7},
    {"problem": 2, "tokens": [270, 87, 104, 97, 116, 63, 271, 256, 257, 258, 269], "nprompt": 7},
]

CONFIGS = [
    {"name": "qwen2_qv_softkl", "objective": "soft-kl", "vlim": 272, "r": 8, "alpha": 16,
     "targets": ["q_proj", "v_proj"], "batch": KL_BATCH,
     "args": ["--arch", "qwen2", "--heads", "4", "--kv-heads", "2", "--untied", "--dtype", "f32", "--seed", "21"]},
    {"name": "llama_all_sft", "objective": "sft", "vlim": 0, "r": 4, "alpha": 8,
     "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "batch": SFT_BATCH,
     "args": ["--arch", "llama", "--heads", "8", "--kv-heads", "2", "--tied", "--dtype", "bf16", "--seed", "22"]},
]


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def batch_loss(pm, cfg):
    if cfg["objective"] == "soft-kl":
        total = 0.0
        for ex in cfg["batch"]:
            z = pm(input_ids=torch.tensor([ex["tokens"]])).logits[0, -1].float()
            vlim = cfg["vlim"] or z.shape[0]
            logp = F.log_softmax(z[:vlim], dim=-1)
            v = torch.zeros(vlim)
            for i, w in zip(ex["ids"], ex["w"]):
                if i < vlim:
                    v[i] = w
            total = total + F.kl_div(logp[None], v[None], reduction="batchmean")
        return total / len(cfg["batch"])
    tot, ntok = 0.0, 0
    for ex in cfg["batch"]:
        t = torch.tensor([ex["tokens"]])
        z = pm(input_ids=t).logits[0].float()
        p = ex["nprompt"]
        tot = tot + F.cross_entropy(z[p - 1:-1], t[0, p:], reduction="sum")
        ntok += len(ex["tokens"]) - p
    return tot / ntok


def main():
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    meta = []
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in CONFIGS:
            name = cfg["name"]
            d = os.path.join(tmp, name)
            subprocess.run([MK, d] + cfg["args"], check=True)
            with open(os.path.join(d, "model.safetensors"), "rb") as f:
                fnv = "%016x" % fnv1a64(f.read())
            m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
            lc = LoraConfig(r=cfg["r"], lora_alpha=cfg["alpha"], lora_dropout=0.0, target_modules=cfg["targets"],
                            bias="none", task_type="CAUSAL_LM")
            pm = get_peft_model(m, lc)
            g = torch.Generator().manual_seed(1234)
            named = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
            with torch.no_grad():
                for n, p in named:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            init_dir = os.path.join(GD, "tune_ref_%s_init" % name)
            shutil.rmtree(init_dir, ignore_errors=True)
            pm.save_pretrained(init_dir)
            os.remove(os.path.join(init_dir, "README.md"))
            with open(os.path.join(init_dir, "adapter_config.json")) as f:
                ac = json.load(f)
            ac["base_model_name_or_path"] = name  # not the temp path: reruns give the same file
            ac["target_modules"] = sorted(ac["target_modules"])  # a set in PEFT: random order
            with open(os.path.join(init_dir, "adapter_config.json"), "w") as f:
                json.dump(ac, f, indent=2, sort_keys=True)
            pm.train()
            params = [p for _, p in named]
            opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
            sched = get_linear_schedule_with_warmup(opt, 0, STEPS)
            losses, norms, lrs, tensors = [], [], [], {}
            for step in range(STEPS):
                opt.zero_grad()
                loss = batch_loss(pm, cfg)
                loss.backward()
                if step == 0:
                    for n, p in named:
                        tensors["grad." + peft_name(n)] = p.grad.detach().clone()
                norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
                lrs.append(sched.get_last_lr()[0])
                opt.step()
                sched.step()
                losses.append(loss.item())
                norms.append(norm.item())
            for n, p in named:
                tensors["final." + peft_name(n)] = p.detach().clone()
            save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(GD, "tune_ref_%s.safetensors" % name))
            meta.append(dict(cfg, safetensors_fnv1a64=fnv, losses=losses, grad_norms=norms, lrs=lrs))
            print(name, "losses", losses, "norms", norms, file=sys.stderr)
        ours = peft_loads_ours(tmp)
    with open(os.path.join(GD, "tune_ref.json"), "w") as f:
        json.dump({"generator": "tests/ref/tune_ref.py", "transformers": __import__("transformers").__version__,
                   "peft": __import__("peft").__version__, "torch": torch.__version__, "lr": LR, "steps": STEPS,
                   "configs": meta, "ours": ours}, f, indent=1)
        f.write("\n")


OURS_ARGS = ["--arch", "qwen2", "--heads", "4", "--kv-heads", "2", "--untied", "--dtype", "f32", "--seed", "23"]
OURS_SEQS = [[270, 72, 101, 108, 108, 111, 32, 61], [(i * 41 + 7) % 269 for i in range(19)]]


def peft_loads_ours(tmp):
    from peft import PeftModel
    import numpy as np
    d = os.path.join(tmp, "ours_model")
    subprocess.run([MK, d] + OURS_ARGS, check=True)
    with open(os.path.join(d, "model.safetensors"), "rb") as f:
        fnv = "%016x" % fnv1a64(f.read())
    ex = os.path.join(tmp, "ex.lrs")
    with open(ex, "wb") as f:
        subprocess.run([os.path.join(ROOT, "bin", "lr-dump"), "--from-json",
                        os.path.join(ROOT, "tests", "fixtures", "examples_small.jsonl")], stdout=f, check=True)
    ad = os.path.join(GD, "tune_ref_ours_adapter")
    shutil.rmtree(ad, ignore_errors=True)
    subprocess.run([os.path.join(ROOT, "bin", "lr-tune"), "--model", d, "--out", ad, "--targets", "all", "--lr", "1e-2",
                    "--batch", "12", "--accum", "1", "--max-steps", "5", ex], check=True)
    with open(os.path.join(ad, "adapter_config.json")) as f:
        ac = json.load(f)
    ac["base_model_name_or_path"] = "ours_model"
    with open(os.path.join(ad, "adapter_config.json"), "w") as f:
        json.dump(ac, f, indent=2, sort_keys=True)
    base = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    pm = PeftModel.from_pretrained(base, ad)
    pm.eval()
    with torch.no_grad():
        rows = [pm(input_ids=torch.tensor([s])).logits[0].float().numpy() for s in OURS_SEQS]
        plain = base.get_base_model() if hasattr(base, "get_base_model") else base
    arr = np.concatenate(rows).astype("<f4")
    with open(os.path.join(GD, "tune_ref_ours_logits.f32"), "wb") as f:
        f.write(arr.tobytes())
    # the adapter must matter: compare with the base model alone
    with pm.disable_adapter(), torch.no_grad():
        base_rows = np.concatenate([pm(input_ids=torch.tensor([s])).logits[0].float().numpy() for s in OURS_SEQS])
    diff = float(np.abs(base_rows - arr).max())
    print("ours: PEFT loaded lr-tune's adapter; max |logit change| vs base %.4f" % diff, file=sys.stderr)
    assert diff > 1e-3
    # transformers loads lr-merge's output and gives PEFT's logits
    merged = {}
    for dt, tol in (("f32", 1e-5), ("bf16", 5e-2)):
        md = os.path.join(tmp, "merged_" + dt)
        subprocess.run([os.path.join(ROOT, "bin", "lr-merge"), "--dtype", dt, d, ad, md], check=True)
        mm = AutoModelForCausalLM.from_pretrained(md, attn_implementation="eager")
        assert mm.dtype == (torch.float32 if dt == "f32" else torch.bfloat16), mm.dtype
        mm = mm.float()
        with torch.no_grad():
            got = np.concatenate([mm(input_ids=torch.tensor([s])).logits[0].float().numpy() for s in OURS_SEQS])
        rel = float(np.abs(got - arr).max() / np.abs(arr).max())
        print("lr-merge --dtype %s loaded by transformers: logits max rel err vs PEFT %.2e" % (dt, rel), file=sys.stderr)
        assert rel < tol, rel
        merged[dt] = rel
    return {"args": OURS_ARGS, "safetensors_fnv1a64": fnv, "seqs": OURS_SEQS, "vocab": int(arr.shape[1]),
            "merged_rel_err": merged}


def peft_name(n):
    """named_parameters() name -> the name save_pretrained writes (no adapter name)."""
    return n.replace(".default.weight", ".weight")


if __name__ == "__main__":
    main()
