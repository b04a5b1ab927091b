#!/usr/bin/env python3
"""Golden inputs and expected outputs for the lr-kl / lr-contrast CLI test.

Rerun:  $(tests/ref/venv.sh) tests/ref/kl_streams.py

Writes, under tests/golden/:
  kl_expert.jsonl, kl_amateur.jsonl   `dist` streams as lr-dump JSON lines
      (lr-dump --from-json turns them into streams): the expert's compact
      lists (its top tokens until 0.999 of the mass or 8 tokens, like
      lr-infer), the amateur in follow mode (ref_lp / ref_tail on the
      expert's listed ids); expert vocab 300, amateur 296 (padding rows), one
      shared tokenizer; problem 3 also carries full rows (exact KL).
  kl_expected.tsv     idx step kl   for every step t >= 1 (dist_ref.py maths)
  kl_examples.tsv     idx step target ids weights  for steps with KL >= 0.4,
                      targets contrast, expert and onehot at alpha 0.2
"""
import json
import os

import numpy as np

from dist_ref import F32, kl_compact, kl_full, logsoftmax32, mask_compact, targets

VE, VA, NTOK = 300, 296, 259


def top_list(lp, mass=0.999, kmax=8):
    order = np.lexsort((np.arange(len(lp)), -lp.astype(np.float64)))
    ids, acc = [], 0.0
    for i in order[:kmax]:
        ids.append(int(i))
        acc += float(np.exp(np.float64(lp[i])))
        if acc >= mass:
            break
    ids = np.array(ids, np.int32)
    tail = F32(max(0.0, 1.0 - np.exp(lp[ids].astype(np.float64)).sum()))
    return ids, tail


def jf(x):
    x = F32(x)
    return "-inf" if x == -np.inf else float(x)


def main():
    rng = np.random.default_rng(7)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    g = os.path.join(root, "golden")
    head = {"lrs": "lightreasoner-stream", "format_version": 1, "kind": "dist", "kind_version": 1,
            "tool": "lr-infer", "tool_version": "0.1.0", "argv": ["lr-infer"],
            "tokenizer": {"name": "toytok", "hash": "t0k3n", "vocab": NTOK},
            "params": {"preset": "lightreasoner"}}
    E = [dict(head, model={"name": "expert", "hash": "e1", "vocab": VE})]
    A = [dict(head, argv=["lr-infer", "--follow"], model={"name": "amateur", "hash": "a1", "vocab": VA})]
    exp_rows, ex_rows = [], []
    for p in range(12):
        T = int(rng.integers(1, 24)) if p != 3 else 4
        prompt = rng.integers(0, NTOK, int(rng.integers(1, 9))).tolist()
        er = {"id": f"toy/train:{p}", "idx": p, "prompt": prompt, "finish": "length", "question": f"Question {p}?"}
        ar = dict(er, finish="follow")
        del ar["question"]
        tokens, ks, tids, tlps, tails, aks, aids, alps, atails, rlps, rtails = ([] for _ in range(11))
        fe, fa = [], []
        for t in range(T):
            scale = rng.uniform(0.5, 6)
            gap = rng.uniform(0, 1)
            ze = rng.standard_normal(VE) * scale
            za = ze[:VA] * (1 - gap) + rng.standard_normal(VA) * scale * gap
            if t == 2 and p == 5:
                ze[299] = ze.max() + 3  # expert's argmax in a padding row the amateur lacks
            lpe, lpa = logsoftmax32(ze), logsoftmax32(za)
            ids, tail = top_list(lpe)
            la = np.array([lpa[i] if i < VA else -np.inf for i in ids], F32)
            rt = F32(max(0.0, 1.0 - np.exp(la.astype(np.float64)).sum()))
            own, otail = top_list(lpa)
            tokens.append(int(ids[0]))  # greedy
            ks.append(len(ids)); tids += ids.tolist(); tlps += [jf(x) for x in lpe[ids]]; tails.append(jf(tail))
            aks.append(len(own)); aids += own.tolist(); alps += [jf(x) for x in lpa[own]]; atails.append(jf(otail))
            rlps += [jf(x) for x in la]; rtails.append(jf(rt))
            if p == 3:
                fe += [jf(x) for x in lpe]; fa += [jf(x) for x in lpa]
            if t == 0:
                continue  # the reference skips step 0
            if p == 3:
                kl = kl_full(lpe, lpa)
            else:
                kl, _ = kl_compact(ids, lpe[ids], la, tail, rt, min(VE, VA))
            exp_rows.append(f"{p}\t{t}\t{kl!r}")
            if kl >= 0.4:
                sel = mask_compact(ids, lpe[ids], min(VE, VA), 0.2)
                c, e, oh = targets(ids[sel], lpe[ids][sel], la[sel])
                mids = ",".join(str(int(i)) for i in ids[sel])
                ex_rows.append(f"{p}\t{t}\tcontrast\t{mids}\t" + ",".join(repr(float(x)) for x in c))
                ex_rows.append(f"{p}\t{t}\texpert\t{mids}\t" + ",".join(repr(float(x)) for x in e))
                ex_rows.append(f"{p}\t{t}\tonehot\t{oh}\t1.0")
        er.update(tokens=tokens, k=ks, top_ids=tids, top_lp=tlps, tail=tails)
        ar.update(tokens=tokens, k=aks, top_ids=aids, top_lp=alps, tail=atails, ref_lp=rlps, ref_tail=rtails)
        if p == 3:
            er["full"], ar["full"] = fe, fa
        E.append(er)
        A.append(ar)
    E.append({"lrs_end": 12})
    A.append({"lrs_end": 12})
    for name, rows in (("kl_expert.jsonl", E), ("kl_amateur.jsonl", A)):
        with open(os.path.join(g, name), "w") as f:
            for r in rows:
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
    with open(os.path.join(g, "kl_expected.tsv"), "w") as f:
        f.write("\n".join(exp_rows) + "\n")
    with open(os.path.join(g, "kl_examples.tsv"), "w") as f:
        f.write("\n".join(ex_rows) + "\n")


if __name__ == "__main__":
    main()
