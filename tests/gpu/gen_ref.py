"""transformers' generation, the references of tests/gpu/run.sh's two
generation goals (runs on the GPU machine: PyTorch + transformers, no
internet; --device cpu for the dry run here).

  gen_ref.py generate --model DIR --batch B[,B2...] --prompt P --steps N [--device cuda]
      transformers' generate() at batch B, greedy, on B random prompts of P
      tokens, N new tokens each (min_new_tokens = N: no early stop), bf16,
      sdpa: the decode rate B (N - 1) / (time of N new tokens - time of 1),
      so that the prompt's prefill is left out as `bench_gpu decode` leaves
      it out. One warm-up call first. One line per batch.
  gen_ref.py authors --expert DIR --amateur DIR --data FILE [--n 64] [--max-new 128]
                     [--chunk 64] [--max-s 40] [--device cuda]
      the authors' sampling loop (docs/METHOD.md, stage 1, as their
      LightR_sampling.py runs it), timed: one problem at a time, the
      expert's chat-template prompt through generate() (greedy, its scores
      kept, softmax per step); for every step t >= 1 the prompt text plus the
      decoded prefix of t expert tokens re-tokenised, and those sequences
      through the amateur in right-padded chunks of --chunk (no KV cache),
      the softmax of each one's last row; per step the plausibility mask
      (alpha 0.2), the full-vocabulary KL (eps 1e-12), and for a kept step
      (beta 0.4) the contrastive weights, the ids and each id decoded, as
      theirs records them. Problems of FILE's "question" field in order,
      until --n or --max-s seconds (at least one); the per-problem time
      extrapolated to the paper's 1000 problems.
Prints key=value lines starting "hf_generate" and "hf_authors" (parsed by
tests/gpu/table.py)."""
import argparse, json, os, sys, time

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

VTOK = 151643  # ids above are special tokens / padding rows
SYSTEM = "Please reason step by step."
ALPHA, BETA, EPS = 0.2, 0.4, 1e-12


def log(msg):
    print(f"gen_ref: {msg}", file=sys.stderr, flush=True)


def sync(dev):
    if dev == "cuda":
        torch.cuda.synchronize()


def load(path, dev):
    t0 = time.perf_counter()
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, attn_implementation="sdpa").to(dev).eval()
    sync(dev)
    return m, time.perf_counter() - t0


def name(path):
    return os.path.basename(path.rstrip("/"))


def generate(a):
    dev = a.device
    m, load_s = load(a.model, dev)
    V = m.config.vocab_size
    g = torch.Generator().manual_seed(1)
    quiet = dict(do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=0)
    for B in map(int, a.batch.split(",")):
        ids = torch.randint(0, min(V, VTOK), (B, a.prompt), generator=g).to(dev)
        mask = torch.ones_like(ids)

        def gen(n):
            sync(dev)
            t0 = time.perf_counter()
            with torch.no_grad():
                out = m.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, **quiet)
            sync(dev)
            if out.shape[1] != a.prompt + n:
                sys.exit(f"gen_ref: generate made {out.shape[1] - a.prompt} tokens, asked {n}")
            return time.perf_counter() - t0

        gen(2)  # warm-up
        t1 = gen(1)
        tn = gen(a.steps)
        dec = max(tn - t1, 1e-9)
        print(f"hf_generate model={name(a.model)} dev={dev} torch={torch.__version__} batch={B} prompt={a.prompt} "
              f"steps={a.steps} load_s={load_s:.2f} prefill_s={t1:.4f} total_s={tn:.4f} decode_s={dec:.4f} "
              f"step_ms={1e3 * dec / (a.steps - 1):.3f} tok_s={B * (a.steps - 1) / dec:.0f}", flush=True)
    return 0


def authors(a):
    dev = a.device
    torch.set_float32_matmul_precision("high")  # as their script sets it (TF32)
    tok = AutoTokenizer.from_pretrained(a.expert)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    E, le = load(a.expert, dev)
    A, la = load(a.amateur, dev)
    questions = []
    with open(a.data) as f:
        for line in f:
            if line.strip() and len(questions) < a.n:
                questions.append(json.loads(line)["question"])
    t_run = time.perf_counter()
    done = steps = kept = 0
    for q in questions:
        msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        enc = tok([text], return_tensors="pt").to(dev)
        with torch.no_grad():
            out = E.generate(**enc, max_new_tokens=a.max_new, output_scores=True, return_dict_in_generate=True,
                             pad_token_id=pad)
        targets = out.sequences[0][enc.input_ids.shape[1]:].tolist()
        pe = [F.softmax(s[0], dim=-1) for s in out.scores]
        # every step's context re-tokenised from text: the prompt plus the decoded prefix
        ctx = [tok(text + tok.decode(targets[:t]), return_tensors="pt").input_ids[0] for t in range(1, len(targets))]
        pa = []
        with torch.no_grad():
            for i in range(0, len(ctx), a.chunk):
                part = ctx[i:i + a.chunk]
                ids = torch.nn.utils.rnn.pad_sequence(part, batch_first=True, padding_value=pad).to(dev)
                logits = A(ids, attention_mask=(ids != pad).long()).logits
                pa += [F.softmax(logits[j, len(c) - 1, :], dim=-1) for j, c in enumerate(part)]
        rec = []
        for t in range(1, len(targets)):
            n = min(pe[t].size(0), pa[t - 1].size(0))
            e, am = pe[t][:n], pa[t - 1][:n]
            mask = e >= ALPHA * e.max()
            if not mask.any():
                continue
            kl = F.kl_div((am + EPS).log(), e + EPS, reduction="sum").item()
            if kl < BETA:
                continue
            w = torch.softmax((torch.log(e + EPS) - torch.log(am + EPS))[mask], dim=-1)
            ids = torch.arange(n, device=e.device)[mask].tolist()
            rec.append({"step": t, "prefix": tok.decode(targets[:t]), "tokens": [tok.decode([i]) for i in ids],
                        "names": tok.convert_ids_to_tokens(ids), "token_ids": ids, "weights": w.tolist(), "kl": kl})
        done += 1
        steps += len(targets)
        kept += len(rec)
        if time.perf_counter() - t_run > a.max_s:
            break
    sync(dev)
    run_s = time.perf_counter() - t_run
    per = run_s / max(done, 1)
    print(f"hf_authors expert={name(a.expert)} amateur={name(a.amateur)} dev={dev} torch={torch.__version__} "
          f"problems={done} new={a.max_new} steps={steps} kept={kept} kept_pct={100 * kept / max(steps - done, 1):.2f} "
          f"load_s={le + la:.2f} run_s={run_s:.3f} "
          f"per_problem_s={per:.4f} ext_1000_s={1000 * per:.1f}", flush=True)
    return 0 if done else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--model", required=True)
    g.add_argument("--batch", required=True, help="one batch or several, comma-separated")
    g.add_argument("--prompt", type=int, default=128)
    g.add_argument("--steps", type=int, default=64)
    g.add_argument("--device", default="cuda")
    r = sub.add_parser("authors")
    r.add_argument("--expert", required=True)
    r.add_argument("--amateur", required=True)
    r.add_argument("--data", required=True)
    r.add_argument("--n", type=int, default=64)
    r.add_argument("--max-new", type=int, default=128)
    r.add_argument("--chunk", type=int, default=64)
    r.add_argument("--max-s", type=float, default=40)
    r.add_argument("--device", default="cuda")
    a = p.parse_args()
    if a.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    if a.cmd == "generate" and a.steps < 2:
        sys.exit("gen_ref: --steps must be at least 2")
    return generate(a) if a.cmd == "generate" else authors(a)


if __name__ == "__main__":
    sys.exit(main())
