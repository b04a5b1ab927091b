"""The one table of tests/gpu/run.sh, from the key=value lines its stages
printed (RESULTS), and docs/PERF.md updated with it.

  table.py RESULTS PERF_IN PERF_OUT --card NAME --date YYYY-MM-DD [--note TEXT]

Prints the markdown table. In PERF_OUT (a copy of PERF_IN) the table goes
under "### NAME, DATE" inside the "## GPU runs" section, replacing an earlier
table of the same card (any date) and keeping the others."""
import argparse, re, shlex, sys


def parse(path):
    rows = []
    for line in open(path, errors="replace"):
        parts = line.split(None, 1)
        if len(parts) < 2:
            continue
        kind, rest = parts
        kv = {}
        for tok in shlex.split(rest, posix=True) if '"' in rest else rest.split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                kv[k] = v
            elif "what" not in kv:
                kv["what"] = tok.rstrip(":")
        # "check DIR: ..." / "teacher DIR: ..." name the model first
        m = re.match(r"(\S+?):? ", rest)
        if m and "=" not in m.group(1):
            kv["what"] = m.group(1).rstrip(":")
        kv["_rest"] = rest
        rows.append((kind, kv))
    return rows


def f(x, fmt="{:.3g}"):
    try:
        return fmt.format(float(x))
    except (TypeError, ValueError):
        return "n/a"


def name(path):
    return path.rstrip("/").split("/")[-1] if path else "?"


def why_row(out, item, kv, results):
    """A row of its reason alone, for a line whose result is one of results
    (nothing measured); True when it was one."""
    if kv.get("result") not in results:
        return False
    out.append(f"| {item} | {kv.get('why', '?')} | | | {kv['result']} |")
    return True


def build_table(rows):
    out = ["| item | ours | reference | goal | result |", "| --- | --- | --- | --- | --- |"]
    stages = {kv.get("name"): kv for k, kv in rows if k == "stage"}
    floors = {kv.get("model"): kv for k, kv in rows if k == "bf16_floor"}
    for k, kv in rows:
        if k == "probe":
            out.append(f"| GPU probe | no usable GPU: {kv.get('why', '?')} | | a usable CUDA device | FAIL |")
        elif k == "check":
            if kv.get("result") == "ERROR":
                out.append(f"| cpu vs {kv.get('dev', '?')}, tiny `{name(kv.get('what'))}` | error | | | ERROR |")
                continue
            out.append(f"| cpu vs {kv.get('dev', '?')}, tiny `{name(kv.get('what'))}`: logits rel err max (median), "
                       f"top-1, list overlap | {f(kv.get('rel_err_max'))} ({f(kv.get('rel_err_med'))}), "
                       f"{kv.get('top1', '?')}, {kv.get('list_overlap', '?')} | cpu float32; transformers bf16 "
                       f"{f(floors.get(name(kv.get('what')), {}).get('rel_max'))} | <= {f(kv.get('bound', 1e-2))} | "
                       f"{kv.get('result', '?')} |")
        elif k == "check_negative":
            out.append(f"| check catches a 5% logits error (--inject-error) | exit {kv.get('rc', '?')} | | exit 5 | "
                       f"{kv.get('result', '?')} |")
        elif k == "nccl":
            item = "NCCL all-reduce of the device trainer's LoRA gradient, one rank (`bench_gpu nccl`)"
            if why_row(out, item, kv, ("UNAVAILABLE", "ERROR")):
                continue
            out.append(f"| {item} | {kv.get('floats', '?')} floats: {kv.get('differ_scale1', '?')} differ after "
                       f"the sum, {kv.get('differ_scale05', '?')} after the sum scaled by 0.5; joined in "
                       f"{kv.get('join_s', '?')} s | the gradient put there | 0 and 0 (bit for bit) | "
                       f"{kv.get('result', '?')} |")
        elif k == "dp":
            out.append(f"| lr-tune data parallel, 2 ranks on one card (tiny model, {kv.get('steps', '?')} steps, f32): "
                       f"`--dp-backend host` loss vs one process; `--dp-backend nccl` refused (the card shared) | "
                       f"exit {kv.get('host_rc', '?')}, loss rel diff max {kv.get('loss_rel_max', '?')}; nccl exit "
                       f"{kv.get('nccl_rc', '?')}, refused {kv.get('refused', '?')} | one process | <= 1e-4; exit 1/1 "
                       f"with the one-card line | {kv.get('result', '?')} |")
        elif k == "kl_agree":
            out.append(f"| lr-kl selection, amateur cpu vs device ({kv.get('steps', '?')} steps, beta = median "
                       f"{f(kv.get('beta'))}) | {kv.get('agree_pct', '?')}% agree, max KL diff "
                       f"{f(kv.get('kl_diff_max'))} | cpu | >= 99% | {kv.get('result', '?')} |")
        elif k == "hf_logits":
            out.append(f"| logits vs transformers float32, `{kv.get('model')}` ({kv.get('rows')} rows): rel err max "
                       f"(median) | {f(kv.get('ours_rel_max'))} ({f(kv.get('ours_rel_med'))}) | transformers bf16: "
                       f"{f(kv.get('torch_bf16_rel_max'))} ({f(kv.get('torch_bf16_rel_med'))}) | <= 1e-2 | "
                       f"{kv.get('result', '?')} |")
    teach = {name(kv.get("what")): kv for k, kv in rows if k == "teacher"}
    hft = {kv.get("model"): kv for k, kv in rows if k == "hf_teacher"}
    for model in list(dict.fromkeys(list(teach) + list(hft))):
        o, h = teach.get(model, {}), hft.get(model, {})
        try:
            ratio = float(o["tok_s"]) / float(h["tok_s"])
            r = f"{ratio:.2f}x" + (" ok" if ratio >= 3 else " ok at 1.5x, below 3x" if ratio >= 1.5 else " below goal")
        except (KeyError, ValueError, ZeroDivisionError):
            r = "n/a"
        seqs = o.get("seqs") or h.get("seqs", "?")
        ln = o.get("len") or h.get("len", "?")
        out.append(f"| teacher forcing `{model}`, {seqs} x {ln} tokens, tok/s | {f(o.get('tok_s'), '{:.0f}')} | "
                   f"transformers {f(h.get('tok_s'), '{:.0f}')} (SDPA) | >= 1.5x, and 3x | {r} |")
        pct = o.get("peak_pct")
        good = "n/a" if not o or float(o.get("peak_tflops", 0) or 0) == 0 else (
            "ok" if float(pct) > 50 else "below goal")
        out.append(f"| GEMM TFLOP/s `{model}` (2 x matmul params x tokens / time) | {f(o.get('gemm_tflops'), '{:.1f}')}"
                   f" ({f(pct, '{:.1f}')}% of {f(o.get('peak_tflops'), '{:.0f}')}) | transformers "
                   f"{f(h.get('gemm_tflops'), '{:.1f}')} | > 50% of peak | {good} |")
    for k, kv in rows:
        if k == "decode":
            b = kv.get("batch", "?")
            pct = kv.get("roofline_pct")
            good = "n/a" if float(kv.get("bw_peak", 0) or 0) == 0 else (
                ("ok" if float(pct) >= 60 else "below goal") if b == "1" else "")
            how = (f"sampled decode (temperature {kv['temperature']}, top-p {kv.get('top_p', '1')})"
                   if "temperature" in kv else "greedy decode")
            if kv.get("ahead") == "on":
                how += " queued one step ahead"
            out.append(f"| {how} `{name(kv.get('what'))}`, batch {b}, prompt {kv.get('prompt', '?')}: tok/s, "
                       f"step ms, % of memory-bandwidth roofline | {f(kv.get('tok_s'), '{:.0f}')}, "
                       f"{f(kv.get('step_ms'))} ms, {f(pct, '{:.1f}')}% of {f(kv.get('bw_peak'), '{:.0f}')} GB/s | | "
                       f"{'>= 60% (batch 1)' if b == '1' else ''} | {good} |")
    # batched generation: ours (greedy decode, compact lists) vs transformers' generate at equal batch
    ours_dec = {(name(kv.get("what")), kv.get("batch")): kv for k, kv in rows
                if k == "decode" and "temperature" not in kv and kv.get("ahead") != "on"}
    for k, kv in rows:
        if k != "hf_generate":
            continue
        o = ours_dec.get((kv.get("model"), kv.get("batch")), {})
        try:
            ratio = float(o["tok_s"]) / float(kv["tok_s"])
            r = f"{ratio:.2f}x " + ("ok" if ratio >= 5 else "below goal")
        except (KeyError, ValueError, ZeroDivisionError):
            r = "n/a"
        out.append(f"| batched generation `{kv.get('model', '?')}`, batch {kv.get('batch', '?')}, prompt "
                   f"{kv.get('prompt', '?')}, {kv.get('steps', '?')} steps: decode tok/s, ours (a compact list a "
                   f"step) vs transformers' generate (greedy, prefill left out) | {f(o.get('tok_s'), '{:.0f}')} | "
                   f"{f(kv.get('tok_s'), '{:.0f}')} ({f(kv.get('step_ms'))} ms a step) | >= 5x | {r} |")
    kinds = ("gemm", "attention", "compact", "sample", "elementwise", "h2d", "d2h", "host")
    tkinds = ("gemm", "gemm_bwd", "lora", "attention", "attention_bwd", "loss", "elementwise", "optimizer", "h2d",
              "d2h", "host")
    for k, kv in rows:
        if k != "gpu_profile":
            continue
        if kv.get("what") == "train":  # lr-tune's: "gpu_profile train MODEL: steps=..."
            model = next((t.rstrip(":") for t in kv.get("_rest", "").split()[1:2]), "?")
            shares = ", ".join(f"{n} {f(kv.get(n + '_pct'), '{:.1f}')}%" for n in tkinds)
            out.append(f"| device time by kind, LoRA training `{model}`, {kv.get('steps', '?')} steps of batch "
                       f"{kv.get('batch', '?')} x accum {kv.get('accum', '?')} (profiled run: {kv.get('calls', '?')} "
                       f"calls, {f(kv.get('total_ms'), '{:.1f}')} ms, the first step's warm-up in it) | {shares} | | | |")
            continue
        mode = {"teacher": "teacher forcing", "decode": "greedy decode",
                "decode-sampled": "sampled decode"}.get(kv.get("what"), kv.get("what", "?"))
        # the model is the line's first DIR: "gpu_profile MODE DIR: ..."
        model = next((t.rstrip(":") for t in kv.get("_rest", "").split()[1:2]), "?")
        shares = ", ".join(f"{n} {f(kv.get(n + '_pct'), '{:.1f}')}%" for n in kinds)
        try:
            cover = f"{100 * float(kv['total_ms']) / float(kv['wall_ms']):.1f}% of the wall time"
        except (KeyError, ValueError, ZeroDivisionError):
            cover = "n/a"
        out.append(f"| device time by kind, {mode} `{name(model)}`, batch {kv.get('batch', '?')} (profiled pass: "
                   f"{kv.get('calls', '?')} calls, {f(kv.get('total_ms'), '{:.1f}')} ms) | {shares} | events span "
                   f"{cover} | | |")
    # attention alone at the teacher shape: ours (the profiled pass's
    # attention kind, tensor-core kernel and LR_GPU_TCATT=0's FMA one)
    # against torch's SDPA backends on the same card, cuDNN's among them
    prof = {name(next((t.rstrip(":") for t in kv.get("_rest", "").split()[1:2]), "?")): kv
            for k, kv in rows if k == "gpu_profile" and kv.get("what") == "teacher"}
    hfa = {}
    for k, kv in rows:
        if k == "hf_attention":
            hfa.setdefault(kv.get("model"), []).append(kv)
    for model, lines in hfa.items():
        o, o0 = prof.get(model, {}), prof.get(model + "-tcatt0", {})
        ref = {kv.get("backend"): kv for kv in lines}
        times = {b: float(kv["ms"]) for b, kv in ref.items() if "ms" in kv}
        refs = ", ".join(f"{b} {f(kv.get('ms'))} ms ({f(kv.get('tflops'), '{:.0f}')} TFLOP/s)" if "ms" in kv
                         else f"{b} skipped ({kv.get('skipped', '?')})" for b, kv in ref.items())
        try:
            ours = float(o["attention_ms"])
            best = min(times, key=times.get)
            r = ("ok: ours fastest" if ours <= times[best] else
                 f"{best} {ours / times[best]:.2f}x faster" + (": worth wiring in" if best == "cudnn" else ""))
        except (KeyError, ValueError, ZeroDivisionError):
            r = "n/a"
        h = lines[0]
        out.append(f"| attention alone, teacher forcing `{model}` (one call: batch {h.get('batch', '?')} x "
                   f"{h.get('len', '?')} tokens, {h.get('layers', '?')} layers, {h.get('heads', '?')}/"
                   f"{h.get('kv_heads', '?')} heads of {h.get('head_dim', '?')}): ms | tensor cores "
                   f"{f(o.get('attention_ms'))} ms, FMA (LR_GPU_TCATT=0) {f(o0.get('attention_ms'))} ms | torch SDPA: "
                   f"{refs} | faster than every backend | {r} |")
    for k, kv in rows:
        if k != "train":
            continue
        prec = kv.get("precision", "f32")
        what = (f"LoRA training 1.5B shape (r 8, q,v, batch {kv.get('batch', '8')} x accum {kv.get('accum', '2')}, "
                f"{prec}{' but lr-tune ran ' + kv['precision_ours'] if 'precision_ours' in kv else ''})")
        if "skipped" in kv:
            out.append(f"| {what} | skipped: {kv['skipped']} | | | SKIPPED |")
            continue
        model, asked = kv.get("model", "?"), kv.get("steps_asked", "?")
        steps = f"{kv.get('steps_ours', '?')} / {kv.get('steps_ref', '?')} of {asked} steps"
        try:
            ratio = float(kv["ratio"])
            r = f"{ratio:.2f}x" + (" ok" if ratio >= 2 else " below goal")
        except (KeyError, ValueError):
            r = "n/a"
        out.append(f"| {what} `{model}`: lr-tune cuda steps/s, PEFT steps/s, ratio ({steps}) | "
                   f"{f(kv.get('ours_steps_s'))} steps/s, {f(kv.get('ours_tok_s'), '{:.0f}')} tok/s | "
                   f"PEFT + transformers {prec} {f(kv.get('ref_steps_s'))} steps/s | >= 2x | {r} |")
        mfu = kv.get("mfu_pct")
        good = "n/a" if mfu is None else ("ok" if float(mfu) >= 35 else "below goal")
        out.append(f"| LoRA training MFU `{model}` (6 x {f(kv.get('params_through'))} layer params x tok/s / peak) | "
                   + (f"{f(mfu, '{:.1f}')}% of {f(kv.get('peak_tflops'), '{:.0f}')} TFLOP/s (dense bf16 peak)" if mfu is not None
                      else "n/a (no peak known for this card)") + f" | | >= 35% | {good} |")
        if "tcatt0_steps_s" in kv:
            out.append(f"| LoRA training `{model}` with LR_GPU_TCATT=0 (the float32 FMA attention; 3 steps) | "
                       f"{f(kv.get('tcatt0_steps_s'))} steps/s | tensor-core attention {f(kv.get('ours_steps_s'))} steps/s | | "
                       f"{f(kv.get('tcatt_speedup'))}x |")
        out.append(f"| LoRA training first-step loss `{model}`: lr-tune cuda vs PEFT (rel diff) | "
                   f"{kv.get('loss1_ours', 'n/a')} | {kv.get('loss1_ref', 'n/a')} | rel diff <= {kv.get('loss1_tol', '1e-3')} | "
                   f"{f(kv.get('loss1_rel_diff'))} {kv.get('loss1_result', 'n/a')} |")
    for k, kv in rows:
        if k != "train_recompute":
            continue
        try:
            r = f"{float(kv['ratio']):.2f}x of kept"
        except (KeyError, ValueError):
            r = "n/a"
        mem = (f"keeping every activation takes {f(kv.get('kept_keep_mib'), '{:.0f}')} MiB of "
               f"{f(kv.get('kept_free_mib'), '{:.0f}')} MiB free")
        out.append(f"| LoRA training `{kv.get('model', '?')}`, `--recompute always` vs kept: steps/s "
                   f"({kv.get('steps_recomp', '?')} / {kv.get('steps_kept', '?')} steps), device activations "
                   f"({mem}) | {f(kv.get('recomp_steps_s'))} steps/s, {f(kv.get('recomp_act_mib'), '{:.0f}')} MiB | "
                   f"kept {f(kv.get('kept_steps_s'))} steps/s, {f(kv.get('kept_act_mib'), '{:.0f}')} MiB "
                   f"(weights {f(kv.get('kept_weights_mib'), '{:.0f}')} MiB) | one more forward a layer | {r} |")
    for k, kv in rows:
        if k == "e2e":
            out += e2e_rows(kv)
    e2e = {kv.get("shape"): kv for k, kv in rows if k == "e2e"}
    for k, kv in rows:
        if k == "hf_authors":
            out.append(sampling_row(kv, e2e.get(kv.get("expert"), {})))
    for k, kv in rows:
        if k != "eval_gen":
            continue
        item = (f"evaluation's generation, `{kv.get('model', '?')}` on MATH500's toolkit prompts: "
                f"{kv.get('problems', '?')} problems x {kv.get('new', '?')} new tokens in one lr-infer call "
                f"(random weights: every answer runs to the end)")
        res = kv.get("result", "?")
        if res == "ok":
            ours = f"{f(kv.get('tok_s'), '{:.0f}')} tok/s ({kv.get('tokens', '?')} tokens in {kv.get('s', '?')} s)"
            ref = f"all seven benchmarks ({kv.get('all_seven', '?')} problems) at 2048 tokens each: " \
                  f"{f(kv.get('all_seven_s'), '{:.0f}')} s, an upper bound"
        elif res == "CUT":
            ours = f"cut at {kv.get('lim_s', '?')} s: under {kv.get('tok_s_below', '?')} tok/s"
            ref = f"all seven ({kv.get('all_seven', '?')} problems) at 2048: over {kv.get('all_seven_s_above', '?')} s"
        else:
            ours, ref = kv.get("why", "?"), ""
        out.append(f"| {item} | {ours} | {ref} | measured | {res} |")
    what = {"check": "`bench_gpu check` on the tiny GQA model",
            "decode": "sampled decode queued one step ahead (batch 4)",
            "tune": "2 LoRA training steps (head dim 64, tensor-core attention)"}
    for k, kv in rows:
        if k != "sanitize":
            continue
        item = f"compute-sanitizer `{kv.get('tool', '?')}`: {what.get(kv.get('what'), kv.get('what', '?'))}"
        res = kv.get("result", "?")
        ours = (f"{kv.get('errors', '?')} errors" + (f" ({kv['why']})" if kv.get("why") else "")) if res in (
            "ok", "FAIL") else kv.get("why", "?")
        out.append(f"| {item} | {ours} | | 0 errors | {res} |")
    for k, kv in rows:
        if k != "occupancy":
            continue
        item = ("blocks / SM on the card (cudaOccupancyMaxActiveBlocksPerMultiprocessor) for each kernel the run "
                "launched, and its registers, vs ptxas's report and NVIDIA's calculator (`cuda/resources`)")
        if why_row(out, item, kv, ("DRY", "ERROR")):
            continue
        out.append(f"| {item} | {kv.get('agree', '?')} of {kv.get('kernels', '?')} kernels agree; differ "
                   f"(calculator/card): {kv.get('differ', '?')}; relied on: {kv.get('relied', '?')}; registers or static "
                   f"shared memory not ptxas's: {kv.get('other_binary', '?')} "
                   f"(`occupancy.md` in the run's output) | calculator, sm_90 limits | all agree, relied-on >= 2 | "
                   f"{kv.get('result', '?')} |")
    only = [n for n, kv in stages.items() if kv.get("result") == "SKIPPED_ONLY"]
    if only:
        out.append(f"| stages left out by LR_GPU_ONLY | {', '.join(f'`{n}`' for n in only)} | | | SKIPPED |")
    for n, kv in stages.items():
        if kv.get("result") == "SKIPPED_BUDGET" or kv.get("rc") not in (None, "0"):
            why = "skipped: time budget spent" if kv.get("result") == "SKIPPED_BUDGET" else (
                "timed out" if kv.get("rc") in ("124", "137") else f"exit {kv.get('rc')}")
            out.append(f"| stage `{n}` | {why} | | | {'FAIL' if 'exit' in why or 'timed' in why else 'SKIPPED'} |")
    return "\n".join(out)


def sampling_row(a, e):
    """the sampling goal: ours (e2e's generate + follow + lr-kl + lr-contrast, extrapolated to 1000 problems,
    model loads left out) vs the authors' loop (gen_ref.py authors, its per-problem time x 1000, loads left out)"""
    try:
        ours = (float(e["sample_ext_s"]) - float(e["sample_setup_s"]) + float(e["follow_ext_s"]) -
                float(e["follow_setup_s"]) + float(e["kl_ext_s"]) + float(e["contrast_ext_s"]))
        loads = float(e["sample_setup_s"]) + float(e["follow_setup_s"])
        ratio = float(a["ext_1000_s"]) / ours
        r = f"{ratio:.1f}x, " + ("ok" if ratio >= 50 and ours < 10 else "below goal")
        o = f"{ours:.1f} s (+ {loads:.1f} s loading both models)"
    except (KeyError, ValueError, ZeroDivisionError):
        r, o = "n/a", "n/a (no e2e line for this shape)"
    return (f"| sampling stage, `{a.get('expert', '?')}` + follow `{a.get('amateur', '?')}`, 1000 GSM8K problems x "
            f"{a.get('new', '?')} tokens (extrapolated; ours from the e2e row's {e.get('n', '?')} problems, theirs "
            f"from {a.get('problems', '?')}): ours (generate, follow, lr-kl, lr-contrast) vs the authors' loop "
            f"(generate, then the amateur on every step's re-tokenised prefix) | {o} | "
            f"{f(a.get('ext_1000_s'), '{:.0f}')} s (+ {f(a.get('load_s'))} s loading; kept {a.get('kept_pct', '?')}% "
            f"of steps at beta 0.4) | >= 50x and < 10 s | {r} |")


def e2e_rows(kv):
    """the rows of one `e2e` line (tests/gpu/e2e.py): each part measured and
    extrapolated to the paper's 1000 problems x 1000 steps, then the total
    beside the paper's time and the goal"""
    s = kv.get("shape", "?")
    head = f"LightReasoner end to end `{s}` (random weights)"
    if "skipped" in kv:
        why = kv["skipped"].replace("|", "\\|")  # a pipe in a cell would split it
        return [f"| {head} | skipped: {why} | | | SKIPPED |"]
    n, nf, fac = kv.get("n", "?"), kv.get("n_full", "1000"), kv.get("factor", "?")
    sf = kv.get("steps_full", "1000")
    rows = []

    def sec(x):  # whole seconds from 100 s on, 3 digits below
        if x is None:
            return "n/a"
        return f"{f(x, '{:.0f}' if abs(float(x)) >= 100 else '{:.3g}')} s"

    def part(what, p, how):
        wall = kv.get(p + "_s")
        if wall is None:
            rows.append(f"| {head}: {what} | not run | | | n/a |")
            return
        rc = kv.get(p + "_rc")
        got = sec(wall) + " measured" + (f" (exit {rc}{': timed out' if rc in ('124', '137') else ''})" if rc else "")
        ext = kv.get(p + "_ext_s")
        rows.append(f"| {head}: {what} | {got}; " + (f"{sec(ext)} {how}" if ext is not None else "no extrapolation")
                    + f" | | | {'measured' if p == 'merge' else 'extrapolated'} |")

    if "build_s" in kv:
        rows.append(f"| {head}: building the shape on the card (not in the total) | "
                    f"{sec(kv['build_s'])} measured | | | measured |")
    part(f"expert sampling, lr-infer generate, {n} of {nf} problems x {kv.get('new', '?')} tokens", "sample",
         f"for {nf} (setup {sec(kv.get('sample_setup_s'))} once, the rest x {fac})")
    part(f"amateur follow `{kv.get('amateur', '?')}`, lr-infer --follow", "follow",
         f"for {nf} (setup {sec(kv.get('follow_setup_s'))} once, the rest x {fac})")
    sel = f"lr-kl beta {kv.get('kl_beta', '?')} (kept {kv.get('kl_kept_pct', '?')}% of {kv.get('kl_steps_seen', '?')} steps"
    if "kl0_beta" in kv:
        sel += (f"; beta {kv['kl0_beta']} kept {kv.get('kl0_kept_pct', '?')}% on random weights, "
                f"so a second pass: {sec(kv.get('kl0_s'))} for the first, not counted")
    sel += ") + lr-contrast"
    if "kl_s" in kv and "contrast_s" in kv:
        kv["klc_s"] = "%.4g" % (float(kv["kl_s"]) + float(kv["contrast_s"]))
        kv["klc_rc"] = kv.get("kl_rc") or kv.get("contrast_rc")
        if "kl_ext_s" in kv and "contrast_ext_s" in kv:
            kv["klc_ext_s"] = "%.4g" % (float(kv["kl_ext_s"]) + float(kv["contrast_ext_s"]))
    elif "kl_s" in kv:
        kv["klc_s"], kv["klc_rc"] = kv["kl_s"], kv.get("kl_rc")
    if kv.get("klc_rc") is None:
        kv.pop("klc_rc", None)
    part(sel, "klc", f"for {nf} (x {fac})")
    part(f"lr-tune --device cuda (r 8, q,v, batch {kv.get('batch', '?')} x accum {kv.get('accum', '?')}), "
         f"{kv.get('steps', 0)} of {kv.get('steps_asked', '?')} steps measured", "tune",
         f"for {sf} steps (setup {sec(kv.get('tune_setup_s'))} once, {sec(kv.get('tune_steps_s'))} of steps "
         f"x {kv.get('tune_factor', '?')})")
    part("lr-merge (once, whatever the run's size)", "merge", "at any size")
    paper = kv.get("paper_s")
    ref = f"paper {float(paper) / 3600:.2g} h ({f(paper, '{:.0f}')} s)" if paper else ""
    goal = kv.get("goal_s")
    g = f"< {float(goal) / 60:.3g} min ({f(goal, '{:.0f}')} s)" if goal else ""
    if kv.get("result") == "INCOMPLETE":
        res = f"INCOMPLETE (no {kv.get('incomplete', '?')})"
        ext = "n/a"
    else:
        res = {"ok": "ok", "below_goal": "below goal"}.get(kv.get("result"), "n/a")
        ext = f"{sec(kv.get('total_ext_s'))} extrapolated"
    rows.append(f"| {head}: total, {n} problems x {kv.get('steps', 0)} steps measured, extrapolated to {nf} x {sf} | "
                f"{sec(kv.get('total_s'))} measured; {ext} |{f' {ref} ' if ref else ' '}|{f' {g} ' if g else ' '}| {res} |")
    return rows


def update_perf(text, heading, body, card):
    lines = text.split("\n")
    try:
        start = next(i for i, l in enumerate(lines) if re.match(r"## GPU( runs)?\s*$", l))
    except StopIteration:
        lines += ["", "## GPU runs", ""]
        start = len(lines) - 2
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    sec = lines[start + 1:end]
    # drop an earlier table of this card: from its heading to the next ### or the section end
    keep, skipping = [], False
    if not card.startswith("dry run"):  # the first real table ends "no GPU number yet"
        sec = [l for l in sec if not l.startswith("No GPU has run it yet")]
    for l in sec:
        if l.startswith("### "):
            skipping = l.startswith(f"### {card},")
        if not skipping:
            keep.append(l)
    while keep and keep[-1] == "":
        keep.pop()
    new = keep + ["", heading, "", body, ""]
    return "\n".join(lines[:start + 1] + new + lines[end:])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("results")
    p.add_argument("perf_in")
    p.add_argument("perf_out")
    p.add_argument("--card", required=True)
    p.add_argument("--date", required=True)
    p.add_argument("--note", default="")
    a = p.parse_args()
    table = build_table(parse(a.results))
    body = (a.note + "\n\n" if a.note else "") + table
    print(table)
    text = open(a.perf_in).read()
    with open(a.perf_out, "w") as fo:
        fo.write(update_perf(text, f"### {a.card}, {a.date}", body, a.card))
    return 0


if __name__ == "__main__":
    sys.exit(main())
