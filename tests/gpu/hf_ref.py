"""transformers' side of tests/gpu/run.sh (runs on the GPU machine: PyTorch +
transformers, no internet; --device cpu for the dry run here).

  hf_ref.py build  --shape S --out DIR [--tokenizer TOKDIR] [--device cuda] [--seed 1]
                   [--lens 13,100,257]
      a random-weight Qwen2 model of shape S (see SHAPES), bf16, initialised on
      the device, saved as safetensors with the published config.json of the
      real model (plus the tokenizer files of TOKDIR), and TOKENS_FILE
      DIR/tokens.txt: a few random sequences for `bench_gpu logits`.
  hf_ref.py ref    --model DIR --ours LOGITS_FILE [--device cuda]
                   [--seqs 256 --len 400 --batch 32]
      transformers' logits of DIR/tokens.txt, in bf16 (sdpa) and in float32
      (the same bf16 weights upcast: the reference), against ours
      (`bench_gpu logits` output: "LRLOGIT1", int32 rows, int32 V, float32
      rows x V); per row max|x - ref| / max|ref|. Then times transformers'
      teacher forcing of seqs x len random tokens (bf16, sdpa, no_grad, batches
      of --batch sequences) followed by what bench_gpu teacher computes per row:
      log_softmax, topk(32), gather of 256 ids, results to the host;
      CUDA-synchronised, one warm-up batch first. --seqs 0: no timing.
      --attn: then times attention alone, as bench_gpu teacher's profiled pass
      computes it (one call: --batch sequences of --len tokens, causal, every
      layer), through torch's scaled_dot_product_attention on each backend
      it has: flash, cudnn (cuDNN's fused attention), efficient, math; bf16,
      K and V expanded to the query heads beforehand; CUDA events, best of 5
      (one "hf_attention" line a backend; skipped="..." where one refuses).
  hf_ref.py floor  --model DIR [--model DIR2 ...] [--device cuda]
      transformers' own bf16 error on each model DIR (any HF folder, e.g. one of
      lr-mkmodel's): a few seeded random sequences through the model in bf16
      and in float32 (the same weights upcast); per row ||bf16 - f32|| / ||f32||
      (bench_gpu check's measure), max over rows. bench_gpu check's bound for
      that model is then max(1e-2, 1.5 x this floor): bf16 itself cannot do
      better on random unit-gain weights, so a fixed 1e-2 would fail them.
Prints key=value lines starting "hf_logits", "hf_teacher", "hf_attention" and "bf16_floor"
(parsed by tests/gpu/table.py and run.sh); exit 5 when our logits are off
(see REL_BOUND)."""
import argparse, json, os, shutil, sys, time

import numpy as np
import torch
from transformers import AutoModelForCausalLM, Qwen2Config

# Published config.json values (huggingface.co/Qwen/<name>/blob/main/config.json).
# Qwen2.5-0.5B: checked against a copy of the published file. Qwen2.5-Math-1.5B:
# sizes as published for Qwen2.5-1.5B (1536/8960/28 layers/12 heads/2 kv heads);
# rope_theta 10000, a 4K context (max_position_embeddings 4096), tied
# embeddings and vocab 151936 as docs/METHOD.md lists them for
# Qwen2.5-Math-1.5B (not checked against the published config.json).
COMMON = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_act="silu", attention_dropout=0.0,
              bos_token_id=151643, eos_token_id=151643, initializer_range=0.02, rms_norm_eps=1e-06,
              use_cache=True, use_sliding_window=False, torch_dtype="bfloat16", vocab_size=151936)
SHAPES = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, max_position_embeddings=32768, max_window_layers=24,
                         sliding_window=32768, rope_theta=1000000.0, tie_word_embeddings=True),
    "qwen2.5-math-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                              num_key_value_heads=2, max_position_embeddings=4096, max_window_layers=28,
                              sliding_window=4096, rope_theta=10000.0, tie_word_embeddings=True),
    # Qwen2.5-Math-7B: sizes as docs/METHOD.md lists them (untied); rope_theta
    # and the 4K context as for the 1.5B (not checked against the published
    # config.json). For tests/gpu/run.sh's end-to-end timing. Its vocabulary
    # here is the amateur's 151,936 rows, not the real 152,064: random
    # weights would generate the 128 padding ids, which the 0.5B amateur
    # cannot read (a trained model never does); 0.08% of the lm_head.
    "qwen2.5-math-7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                            num_key_value_heads=4, max_position_embeddings=4096, max_window_layers=28,
                            sliding_window=4096, rope_theta=10000.0, tie_word_embeddings=False),
    # the dry run's stand-ins: the real vocabulary and head sizes (64, 128), few layers
    "tiny-0.5b": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, max_position_embeddings=4096, max_window_layers=2,
                      sliding_window=4096, rope_theta=1000000.0, tie_word_embeddings=True),
    "tiny-1.5b": dict(hidden_size=256, intermediate_size=384, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, max_position_embeddings=4096, max_window_layers=2,
                      sliding_window=4096, rope_theta=10000.0, tie_word_embeddings=False),
    # the 7B's stand-in: untied, head size 128, kv groups of 2
    "tiny-7b": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
                    num_key_value_heads=1, max_position_embeddings=4096, max_window_layers=2,
                    sliding_window=4096, rope_theta=10000.0, tie_word_embeddings=False),
}
VTOK = 151643                 # ids above are special tokens / padding rows
REL_BOUND = 1e-2              # the bf16 bound (docs/CUDA.md)


def log(msg):
    print(f"hf_ref: {msg}", file=sys.stderr, flush=True)


def sync(dev):
    if dev == "cuda":
        torch.cuda.synchronize()


def matmul_params(c):
    hd = c["hidden_size"] // c["num_attention_heads"]
    C, q, kv = c["hidden_size"], c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    return c["num_hidden_layers"] * (C * q + 2 * C * kv + q * C + 3 * C * c["intermediate_size"]) + c["vocab_size"] * C


def build(a):
    cfgd = dict(COMMON, **SHAPES[a.shape])
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    with torch.device(a.device):  # initialise where it is fast (normal_ on the GPU)
        model = AutoModelForCausalLM.from_config(Qwen2Config(**cfgd), dtype=torch.bfloat16)
    sync(a.device)
    t_init = time.perf_counter() - t0
    os.makedirs(a.out, exist_ok=True)
    model.save_pretrained(a.out, max_shard_size="50GB")
    # the real checkpoints carry the published (transformers 4.x style) config
    # file; save_pretrained of another version may write other field names
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(dict(cfgd, transformers_version="4.40.1"), f, indent=2)
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 151643, "eos_token_id": 151643}, f)
    if a.tokenizer:
        for n in ("tokenizer.json", "tokenizer_config.json"):
            if os.path.exists(os.path.join(a.tokenizer, n)):
                shutil.copy(os.path.join(a.tokenizer, n), a.out)
    rng = np.random.default_rng(a.seed)
    with open(os.path.join(a.out, "tokens.txt"), "w") as f:
        for n in map(int, a.lens.split(",")):
            f.write(" ".join(map(str, rng.integers(0, min(VTOK, cfgd["vocab_size"]), n))) + "\n")
    n = sum(p.numel() for p in model.parameters())
    log(f"{a.shape}: {n / 1e6:.1f}M parameters, init {t_init:.1f} s on {a.device}, "
        f"saved in {time.perf_counter() - t0:.1f} s -> {a.out}")


def read_ours(path):
    with open(path, "rb") as f:
        if f.read(8) != b"LRLOGIT1":
            sys.exit(f"hf_ref: {path}: not a bench_gpu logits file")
        rows, V = np.frombuffer(f.read(8), dtype="<i4")
        x = np.fromfile(f, dtype="<f4", count=int(rows) * int(V))
    if x.size != rows * V:
        sys.exit(f"hf_ref: {path}: truncated ({x.size} of {rows} x {V} floats)")
    return x.reshape(int(rows), int(V))


def rel_rows(x, ref):
    """per row max|x - ref| / max|ref| (torch, on the device)"""
    return ((x - ref).abs().amax(-1) / ref.abs().amax(-1).clamp_min(1e-30)).cpu().numpy()


def ref(a):
    dev = a.device
    cfgd = json.load(open(os.path.join(a.model, "config.json")))
    seqs = [list(map(int, l.split())) for l in open(os.path.join(a.model, "tokens.txt")) if l.strip()]
    t0 = time.perf_counter()
    m = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16, attn_implementation="sdpa").to(dev).eval()
    log(f"loaded {a.model} in {time.perf_counter() - t0:.1f} s")
    rc = 0
    if a.ours:
        ours = read_ours(a.ours)
        V = m.config.vocab_size
        if ours.shape != (sum(map(len, seqs)), V):
            sys.exit(f"hf_ref: {a.ours}: {ours.shape} logits, expected ({sum(map(len, seqs))}, {V})")
        with torch.no_grad():
            hb = [m(input_ids=torch.tensor([s], device=dev)).logits[0].float() for s in seqs]
            m.float()  # the reference: the same bf16 weights, float32 arithmetic
            hf = [m(input_ids=torch.tensor([s], device=dev)).logits[0].float() for s in seqs]
            m.to(torch.bfloat16)
        hb, hf = torch.cat(hb), torch.cat(hf)
        ou = torch.from_numpy(ours).to(dev)
        r_ours, r_hf, r_oh = rel_rows(ou, hf), rel_rows(hb, hf), rel_rows(ou, hb)
        top_ours = (ou.argmax(-1) == hf.argmax(-1)).float().mean().item()
        top_hf = (hb.argmax(-1) == hf.argmax(-1)).float().mean().item()
        bad = int((~torch.isfinite(ou)).any(-1).sum())
        ok = bad == 0 and r_ours.max() <= REL_BOUND
        # a random-weight model in bf16: transformers' own bf16 error is the yardstick
        as_torch = bad == 0 and r_ours.max() <= 1.5 * r_hf.max()
        result = "ok" if ok else "ok_as_torch_bf16" if as_torch else "FAIL"
        rc = 0 if ok or as_torch else 5
        print(f"hf_logits model={os.path.basename(a.model.rstrip('/'))} rows={len(r_ours)} "
              f"ours_rel_max={r_ours.max():.3g} ours_rel_med={np.median(r_ours):.3g} "
              f"torch_bf16_rel_max={r_hf.max():.3g} torch_bf16_rel_med={np.median(r_hf):.3g} "
              f"ours_vs_torch_bf16_max={r_oh.max():.3g} top1_ours={100 * top_ours:.2f}% "
              f"top1_torch_bf16={100 * top_hf:.2f}% nan_rows={bad} result={result}", flush=True)
        del hb, hf, ou
    if a.seqs > 0:
        V = m.config.vocab_size
        g = torch.Generator(device=dev).manual_seed(1)
        B, T = a.batch, a.len
        gids = torch.randint(0, V, (B * T, 256), device=dev, generator=g)

        def step(nb):
            ids = torch.randint(0, min(V, VTOK), (nb, T), device=dev, generator=g)
            with torch.no_grad():
                lp = torch.log_softmax(m(input_ids=ids).logits.float(), -1).view(nb * T, V)
                top = lp.topk(32, -1)
                gat = lp.gather(1, gids[:nb * T])
            return top.values.cpu(), top.indices.cpu(), gat.cpu()

        step(B)  # warm-up
        sync(dev)
        t0, done = time.perf_counter(), 0
        while done < a.seqs:
            nb = min(B, a.seqs - done)
            step(nb)
            done += nb
        sync(dev)
        dt = time.perf_counter() - t0
        tok = a.seqs * T
        print(f"hf_teacher model={os.path.basename(a.model.rstrip('/'))} dev={dev} torch={torch.__version__} "
              f"seqs={a.seqs} len={T} batch={B} tokens={tok} run_s={dt:.3f} tok_s={tok / dt:.0f} "
              f"gemm_tflops={2 * matmul_params(cfgd) * tok / dt / 1e12:.2f}", flush=True)
    if a.attn:
        attention(cfgd, a.batch, a.len, dev, os.path.basename(a.model.rstrip('/')))
    return rc


def attention(cfgd, B, T, dev, model):
    """Attention of one teacher-forcing call, all layers, per SDPA backend.
    The question it answers: would cuDNN's fused attention (or torch's
    flash kernel) beat ours (`attention` in bench_gpu teacher's profile) on
    this card and shape."""
    import torch.nn.functional as F
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError as e:
        print(f'hf_attention model={model} backend=all skipped="torch {torch.__version__}: {e}"', flush=True)
        return
    H, KV, L = cfgd["num_attention_heads"], cfgd["num_key_value_heads"], cfgd["num_hidden_layers"]
    D = cfgd["hidden_size"] // H
    g = torch.Generator(device=dev).manual_seed(3)
    q = torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16, generator=g)
    k, v = (torch.randn(B, KV, T, D, device=dev, dtype=torch.bfloat16, generator=g).repeat_interleave(H // KV, 1)
            for _ in range(2))
    # causal: T (T + 1) / 2 scores a head, two products of D multiply-adds each
    flop = 2 * 2 * B * H * D * T * (T + 1) / 2 * L
    head = f"hf_attention model={model} batch={B} len={T} heads={H} kv_heads={KV} head_dim={D} layers={L}"
    for bname in ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION", "MATH"):
        be = getattr(SDPBackend, bname, None)
        label = bname.split("_")[0].lower()
        if be is None:
            print(f'{head} backend={label} skipped="not in torch {torch.__version__}"', flush=True)
            continue

        def layers():
            for _ in range(L):
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return o
        try:
            with sdpa_kernel(be), torch.no_grad():
                layers()  # warm-up (and the backend's refusal, if any)
                sync(dev)
                best = float("inf")
                for _ in range(5):
                    if dev == "cuda":
                        t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        t0.record()
                        layers()
                        t1.record()
                        t1.synchronize()
                        ms = t0.elapsed_time(t1)
                    else:
                        t0 = time.perf_counter()
                        layers()
                        ms = 1e3 * (time.perf_counter() - t0)
                    best = min(best, ms)
        except RuntimeError as e:
            why = " ".join(str(e).split())[:160].replace('"', "'")
            print(f'{head} backend={label} skipped="{why}"', flush=True)
            continue
        print(f"{head} backend={label} ms={best:.3f} tflops={flop / best / 1e9:.1f}", flush=True)
    del q, k, v


def floor(a):
    dev = a.device
    for path in a.model:
        m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, attn_implementation="sdpa").to(dev).eval()
        V = m.config.vocab_size
        g = torch.Generator().manual_seed(7)
        seqs = [torch.randint(0, min(V, VTOK), (1, n), generator=g).to(dev) for n in (5, 17, 64)]
        with torch.no_grad():
            hb = torch.cat([m(input_ids=s).logits[0].float() for s in seqs])
            m.float()
            hf = torch.cat([m(input_ids=s).logits[0].float() for s in seqs])
        rel = ((hb - hf).norm(dim=-1) / hf.norm(dim=-1).clamp_min(1e-30)).cpu().numpy()
        print(f"bf16_floor model={os.path.basename(path.rstrip('/'))} rows={len(rel)} rel_max={rel.max():.4g} "
              f"rel_med={np.median(rel):.4g} bound={max(REL_BOUND, 1.5 * float(rel.max())):.4g}", flush=True)
        del m, hb, hf
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--shape", required=True, choices=sorted(SHAPES))
    b.add_argument("--out", required=True)
    b.add_argument("--tokenizer")
    b.add_argument("--device", default="cuda")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--lens", default="13,100,257", help="lengths of the sequences of DIR/tokens.txt")
    r = sub.add_parser("ref")
    r.add_argument("--model", required=True)
    r.add_argument("--ours")
    r.add_argument("--device", default="cuda")
    r.add_argument("--seqs", type=int, default=256)
    r.add_argument("--len", type=int, default=400)
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--attn", action="store_true", help="time attention alone on each SDPA backend")
    fl = sub.add_parser("floor")
    fl.add_argument("--model", required=True, action="append")
    fl.add_argument("--device", default="cuda")
    a = p.parse_args()
    if a.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    if a.cmd == "build":
        build(a)
        return 0
    return floor(a) if a.cmd == "floor" else ref(a)


if __name__ == "__main__":
    sys.exit(main())
