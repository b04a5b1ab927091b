#!/usr/bin/env python3
"""The LoRA training stage of tests/gpu/run.sh: its input, its PEFT +
transformers reference, and its result line.

  tune_ref.py data --n N --len T --vocab V > EXAMPLES.jsonl
      N `example` records (JSON lines for `lr-dump --from-json`) with
      random contexts of T-20..T+20 tokens, two soft-KL targets each.
  tune_ref.py peft --model DIR --examples EXAMPLES.jsonl --batch B --accum A
                   --steps S [--device cuda] [--precision bf16|f32] [--max-s SECONDS]
                   --log FILE
      the paper's LoRA (r 8, alpha 16, q,v, dropout 0.05) trained with
      PEFT on the method's soft-KL objective, as bench/tune_peft.py does in
      its "last" mode (left padding, logits at the loss rows only, the
      like-for-like arithmetic of lr-tune), the examples in file order
      (lr-tune --no-shuffle). --precision as lr-tune's: bf16 [default]
      loads the base weights as bf16 (the usual PEFT recipe, and the
      nearest to lr-tune's bf16 path: bf16 weights and GEMM operands,
      float32 accumulation, float32 LoRA weights and AdamW; transformers
      keeps its activations and residual stream in bf16 where lr-tune keeps
      float32, which autocast over float32 weights would match more closely
      but at twice the weight memory and a cast of every weight each step,
      not how PEFT users train); f32: float32 throughout, no TF32. One JSON
      line per optimizer step: loss, step_s. Stops early after --max-s.
  tune_ref.py report --model DIR --ours LOG --ref LOG --steps S [--batch B --accum A]
                     [--peak TFLOPS] [--precision bf16|f32] [--ours-tcatt0 LOG]
                     [--ours-err ERR --recomp LOG --recomp-err ERR]
      prints one `train` key=value line for the table (run.sh, table.py):
      the precision both ran in, rates, MFU against the card's dense bf16
      peak, and the first-step losses against the precision's tolerance;
      with --ours-tcatt0, the rate of lr-tune's run with LR_GPU_TCATT=0
      and ours over it (tcatt_speedup). With --recomp (the same lr-tune run
      with --recompute always) also a `train_recompute` line: both runs'
      steps/s and their ratio, and the memory figures of both device lines
      (ERR: each run's stderr).

Needs torch/transformers/peft for `peft` only; the rest is the standard
library, so run.sh can call it with any python3."""
import argparse, json, random, re, sys, time


def cmd_data(a):
    rng = random.Random(1)
    print(json.dumps({"lrs": "lightreasoner-stream", "format_version": 1, "kind": "example", "kind_version": 1,
                      "tool": "bench", "tool_version": "0", "argv": [],
                      "model": {"name": "", "hash": "", "vocab": 0},
                      "tokenizer": {"name": "", "hash": "", "vocab": 0}, "params": {}}))
    for i in range(a.n):
        T = a.len - 20 + rng.randrange(41)
        ctx = [3 + rng.randrange(a.vocab - 3) for _ in range(T)]
        t1, t2 = rng.sample(range(3, a.vocab), 2)
        print(json.dumps({"id": "g:%d" % i, "idx": i, "step": T, "prompt_len": T // 4, "context": ctx,
                          "target_ids": [t1, t2], "weights": [0.7, 0.3], "kl": 1.0}))
    print(json.dumps({"lrs_end": a.n}))


def cmd_peft(a):
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM
    from peft import LoraConfig, get_peft_model
    dev = torch.device(a.device)
    # float32 GEMMs as lr-tune's f32 device trainer: no TF32 shortcut
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    exs = [json.loads(l) for l in open(a.examples)][1:-1]
    dtype = torch.bfloat16 if a.precision == "bf16" else torch.float32
    m = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype,
                                             attn_implementation="sdpa" if dev.type == "cuda" else "eager").to(dev)
    pm = get_peft_model(m, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                                      task_type="CAUSAL_LM"))
    pm.train()
    params = [p for p in pm.parameters() if p.requires_grad]
    # float32 LoRA master weights over bf16 base weights (what recent PEFT's
    # autocast_adapter_dtype does already; older versions keep the base's dtype)
    for p in params:
        p.data = p.data.float()
    opt = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.0)
    V = m.config.vocab_size
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    log = open(a.log, "w")
    t_start, k = time.time(), 0
    for step in range(a.steps):
        sync()
        t0 = time.time()
        total = 0.0
        for _ in range(a.accum):
            b = [exs[(k + i) % len(exs)] for i in range(a.batch)]
            k += a.batch
            T = max(len(e["context"]) for e in b)
            ids = torch.zeros(a.batch, T, dtype=torch.long)
            mask = torch.zeros(a.batch, T, dtype=torch.long)
            v = torch.zeros(a.batch, V)
            for i, e in enumerate(b):
                ids[i, T - len(e["context"]):] = torch.tensor(e["context"])
                mask[i, T - len(e["context"]):] = 1
                for t, w in zip(e["target_ids"], e["weights"]):
                    v[i, t] = w
            ids, mask, v = ids.to(dev), mask.to(dev), v.to(dev)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            last = pm(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits[:, -1].float()
            # the mean over the step's examples, as lr-tune's logged loss
            loss = F.kl_div(F.log_softmax(last, -1), v, reduction="batchmean") / a.accum
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        sync()
        log.write(json.dumps({"step": step + 1, "loss": total, "step_s": time.time() - t0}) + "\n")
        log.flush()
        if a.max_s and time.time() - t_start > a.max_s:
            break


def read_log(path):
    try:
        return [json.loads(l) for l in open(path) if l.strip()]
    except (OSError, ValueError):
        return []


def rate(log):
    """steps/s over the steps after the first (the warm-up: uploads,
    allocations, cuBLAS plans)."""
    timed = log[1:]
    s = sum(r["step_s"] for r in timed)
    return (len(timed) / s if timed and s > 0 else None), timed


def cmd_report(a):
    c = json.load(open(a.model + "/config.json"))
    C, L, I = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"]
    HD = c.get("head_dim") or C // c["num_attention_heads"]
    qd, kvd = c["num_attention_heads"] * HD, c["num_key_value_heads"] * HD
    # the parameters every token's forward and backward pass through: the
    # layers' projections (the embedding is a lookup; lm_head runs on the
    # loss rows only, 16 of ~4800 rows a step)
    n = L * (C * qd + 2 * C * kvd + qd * C + 3 * C * I)
    ours, ref = read_log(a.ours), read_log(a.ref)
    kv = {"model": a.model.rstrip("/").split("/")[-1], "precision": a.precision, "batch": a.batch, "accum": a.accum,
          "steps_asked": a.steps, "steps_ours": len(ours), "steps_ref": len(ref), "params_through": "%.4g" % n}
    # lr-tune's log says what it ran in (logs from before it did: float32)
    said = ours[0].get("precision", "f32") if ours else a.precision
    if said != a.precision:
        kv["precision_ours"] = said
    r_ours, timed = rate(ours)
    r_ref, _ = rate(ref)
    if r_ours:
        tok_s = sum(r["tokens"] for r in timed) / sum(r["step_s"] for r in timed)
        kv["ours_steps_s"] = "%.4g" % r_ours
        kv["ours_tok_s"] = "%.0f" % tok_s
        kv["ours_50_steps_s"] = "%.1f" % (50 / r_ours)
        # MFU = 6 * N * tokens / time / peak: the usual training estimate
        # (forward 2N, backward 4N per token), though with the base frozen
        # the backward needs only the input gradients (about 2N): so this is
        # the convention's number, against the card's dense bf16 peak
        if a.peak > 0:
            kv["mfu_pct"] = "%.2f" % (100 * 6 * n * tok_s / (a.peak * 1e12))
            kv["peak_tflops"] = "%.0f" % a.peak
    # the same training with LR_GPU_TCATT=0 (the float32 FMA attention)
    r_tc0, _ = rate(read_log(a.ours_tcatt0)) if a.ours_tcatt0 else (None, None)
    if r_tc0:
        kv["tcatt0_steps_s"] = "%.4g" % r_tc0
        if r_ours:
            kv["tcatt_speedup"] = "%.3g" % (r_ours / r_tc0)
    if r_ref:
        kv["ref_steps_s"] = "%.4g" % r_ref
    if r_ours and r_ref:
        kv["ratio"] = "%.3g" % (r_ours / r_ref)
    if ours and ref:
        lo, lr = ours[0]["loss"], ref[0]["loss"]
        # LoRA B = 0 at step 1: both give the base model's loss on the same
        # examples. f32: the same float32 arithmetic, only summation order
        # differs (a bound for bf16 weights read as f32). bf16: the same bf16
        # weights, but transformers rounds the residual stream to bf16 after
        # each of the 2 L additions (u = 2^-9 each, a random walk of
        # sqrt(2 L) u ~ 2e-2 relative in the hidden states for L = 28),
        # which moves a ~12-nat loss by a few 1e-3: bound 1e-2
        tol = 1e-2 if a.precision == "bf16" else 1e-3
        kv["loss1_ours"], kv["loss1_ref"] = "%.7g" % lo, "%.7g" % lr
        kv["loss1_rel_diff"] = "%.3g" % (abs(lo - lr) / max(abs(lr), 1e-30))
        kv["loss1_tol"] = "1e-2" if a.precision == "bf16" else "1e-3"
        kv["loss1_result"] = "ok" if abs(lo - lr) <= tol * max(abs(lr), 1e-30) else "DIFFERS"
    print("train " + " ".join("%s=%s" % kv_ for kv_ in kv.items()))
    if a.recomp:
        print("train_recompute " + " ".join("%s=%s" % kv_ for kv_ in recompute_kv(a, kv["model"], ours).items()))
    return 0


# lr-tune's device line: "recompute on (always: keeping every activation
# takes X MiB of Y MiB free), weights W MiB, activations A MiB"
DEVICE_LINE = re.compile(r"recompute (on|off) \((\w+): keeping every activation takes ([\d.]+) MiB of ([\d.]+) MiB "
                         r"(?:free|allowed[^)]*\))\), weights ([\d.]+) MiB, activations ([\d.]+) MiB")


def device_line(path, prefix, kv):
    try:
        m = next((m for m in map(DEVICE_LINE.search, open(path)) if m), None)
    except OSError:
        m = None
    if m:
        kv[prefix + "recompute"], kv[prefix + "keep_mib"], kv[prefix + "free_mib"] = m.group(1), m.group(3), m.group(4)
        kv[prefix + "weights_mib"], kv[prefix + "act_mib"] = m.group(5), m.group(6)


def recompute_kv(a, model, kept):
    rec = read_log(a.recomp)
    kv = {"model": model, "steps_kept": len(kept), "steps_recomp": len(rec)}
    r_kept, _ = rate(kept)
    r_rec, _ = rate(rec)
    if r_kept:
        kv["kept_steps_s"] = "%.4g" % r_kept
    if r_rec:
        kv["recomp_steps_s"] = "%.4g" % r_rec
    if r_kept and r_rec:
        kv["ratio"] = "%.3g" % (r_rec / r_kept)
    if a.ours_err:
        device_line(a.ours_err, "kept_", kv)
    if a.recomp_err:
        device_line(a.recomp_err, "recomp_", kv)
    return kv


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data")
    d.add_argument("--n", type=int, default=64)
    d.add_argument("--len", type=int, default=300)
    d.add_argument("--vocab", type=int, default=151936)
    f = sub.add_parser("peft")
    f.add_argument("--model", required=True)
    f.add_argument("--examples", required=True)
    f.add_argument("--batch", type=int, default=8)
    f.add_argument("--accum", type=int, default=2)
    f.add_argument("--steps", type=int, default=50)
    f.add_argument("--device", default="cuda")
    f.add_argument("--max-s", type=float, default=0)
    f.add_argument("--precision", choices=["bf16", "f32"], default="bf16")
    f.add_argument("--log", required=True)
    r = sub.add_parser("report")
    r.add_argument("--model", required=True)
    r.add_argument("--ours", required=True)
    r.add_argument("--ref", required=True)
    r.add_argument("--ours-tcatt0", default="")
    r.add_argument("--steps", type=int, default=50)
    r.add_argument("--batch", type=int, default=8)
    r.add_argument("--accum", type=int, default=2)
    r.add_argument("--peak", type=float, default=0)
    r.add_argument("--precision", choices=["bf16", "f32"], default="f32")
    r.add_argument("--ours-err")
    r.add_argument("--recomp")
    r.add_argument("--recomp-err")
    a = p.parse_args()
    return {"data": cmd_data, "peft": cmd_peft, "report": cmd_report}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())
