#!/usr/bin/env python3
"""NumPy transcription of METHOD.md stage 1, steps 5-7 (+ the KL of step 6),
and the generator of the golden cases tests/unit/test_dist.c checks.

Rerun:  $(tests/ref/venv.sh) tests/ref/dist_ref.py   (writes tests/golden/dist_cases.txt)

The transcription follows METHOD.md and the reference sampling script
(HKUDS/LightReasoner LightR_sampling.py) in float32 probability space for the
mask and float64 for sums, exactly as documented in lib/method/dist.c:
  p32  = float32(exp(float64(lp)))                 (the softmax output)
  mask = p32 >= float32(alpha) * max(p32)          (float32 product, >=)
  KL   = sum_{a<V} (pE+eps) * log((pE+eps)/(pA+eps)),  eps = 1e-12, V = min(VE, VA)
  v_C  = softmax_{mask}(log(pE+eps) - log(pA+eps))
  expert target = pE[mask] / sum pE[mask];  onehot = argmax lpE[mask] (lowest id on ties)
The compact form (k listed tokens + tails) is transcribed from the formula
documented in dist.c; the script asserts on every full case that
  compact <= full KL <= compact + err.

File format (text, one block per case; floats in shortest round-trip form):
  case NAME VE VA ALPHA full|compact
  full:    lpe VE floats / lpa VA floats
  compact: k K tails TE TA / ids K ints / lpe K floats / lpa K floats
  kl KL err ERR
  mask N ids...          (ascending ids)
  contrast N weights...  expert N weights...  onehot ID
  end
then one selection block:
  select NSTEPS K V
  NSTEPS lines: ids.. lpe.. lpa.. TE TA KL
  count BETA N   (several lines: steps with KL >= BETA)
  end
"""
import os
import sys

import numpy as np

EPS = 1e-12
F32 = np.float32


def p32(lp):
    return np.exp(np.asarray(lp, dtype=np.float64)).astype(F32)


# ---------------- METHOD.md on full distributions ----------------
def kl_full(lpe, lpa):
    V = min(len(lpe), len(lpa))
    pe = np.exp(lpe[:V].astype(np.float64)) + EPS
    pa = np.exp(lpa[:V].astype(np.float64)) + EPS
    return float(np.sum(pe * (np.log(pe) - np.log(pa))))


def mask_full(lpe, V, alpha):
    p = p32(lpe[:V])
    thr = F32(alpha) * p.max()  # float32 * float32 -> float32
    return np.nonzero(p >= thr)[0]


def targets(ids, lpe_m, lpa_m):
    """ids ascending; lpe_m, lpa_m the two log-probs on them (float32)."""
    pe = np.exp(lpe_m.astype(np.float64))
    pa = np.exp(lpa_m.astype(np.float64))
    sc = np.log(pe + EPS) - np.log(pa + EPS)
    sc = sc - sc.max()
    contrast = np.exp(sc) / np.exp(sc).sum()
    expert = pe / pe.sum()
    best = np.flatnonzero(lpe_m == lpe_m.max())  # ascending ids -> first is lowest
    return contrast, expert, int(ids[best[0]])


# ---------------- the compact form (dist.c's documented formula) ----------------
def compact_from_full(lpe, lpa, k):
    """Expert's top-k (most probable first; ties: lower id first), tails as
    lr-infer computes them (mass outside the listed ids over each model's
    whole vocabulary); amateur log-probs on the listed ids (-inf where the
    amateur has no such row)."""
    order = np.lexsort((np.arange(len(lpe)), -lpe.astype(np.float64)))
    ids = order[:k].astype(np.int32)
    le = lpe[ids]
    la = np.array([lpa[i] if i < len(lpa) else -np.inf for i in ids], dtype=F32)
    re = np.ones(len(lpe), bool)
    re[ids] = False
    ra = np.ones(len(lpa), bool)
    ra[ids[ids < len(lpa)]] = False
    te = F32(np.exp(lpe[re].astype(np.float64)).sum())
    ta = F32(np.exp(lpa[ra].astype(np.float64)).sum())
    return ids, le, la, te, ta


def kl_compact(ids, le, la, te, ta, V):
    keep = ids < V
    pe = np.exp(le.astype(np.float64))
    pa = np.exp(la.astype(np.float64))
    pmin = pe.min()
    a, b = pe[keep] + EPS, pa[keep] + EPS
    kl = float(np.sum(a * (np.log(a) - np.log(b))))
    U = V - int(keep.sum())
    te = min(max(float(te), 0.0), 1.0)
    ta = min(max(float(ta), 0.0), 1.0)
    L = up = 0.0
    if U > 0:
        A, B = te + U * EPS, ta + U * EPS
        L = A * (np.log(A) - np.log(B))
        m = min(te, pmin)
        up = A * (np.log(m + EPS) - np.log(EPS))
    return float(kl + L), float(max(up - L, 0.0))


def mask_compact(ids, le, V, alpha):
    keep = ids < V
    p = p32(le)
    thr = F32(alpha) * p[keep].max()
    sel = np.nonzero(keep & (p >= thr))[0]
    return sel[np.argsort(ids[sel], kind="stable")]


# ---------------- case generation ----------------
def fmt(x):
    """Shortest decimal that round-trips the float32 value."""
    x = F32(x)
    if x == -np.inf:
        return "-inf"
    return str(x)


def logsoftmax32(z):
    z = z.astype(np.float64)
    z = z - z.max()
    return (z - np.log(np.exp(z).sum())).astype(F32)


def lp_for_p32(target):
    """A float32 log-prob whose p32 equals target exactly, or None (the map
    lp -> p32 skips some float32 values)."""
    x = F32(np.log(np.float64(target)))
    for _ in range(8):
        x = np.nextafter(x, F32(-np.inf))
    for _ in range(17):
        if p32(x) == target:
            return x
        x = np.nextafter(x, F32(np.inf))
    return None


def write_case(out, name, lpe, lpa, alpha, k=None):
    VE, VA = len(lpe), len(lpa)
    V = min(VE, VA)
    if k is None:
        kl, err = kl_full(lpe, lpa), 0.0
        sel = mask_full(lpe, V, alpha)
        ids_m = sel.astype(np.int32)
        le_m, la_m = lpe[sel], lpa[sel]
        out.append(f"case {name} {VE} {VA} {alpha!r} full")
        out.append("lpe " + " ".join(fmt(x) for x in lpe))
        out.append("lpa " + " ".join(fmt(x) for x in lpa))
    else:
        ids, le, la, te, ta = compact_from_full(lpe, lpa, k)
        kl, err = kl_compact(ids, le, la, te, ta, V)
        if VE == VA:  # the documented bound, checked on every same-vocabulary case
            full = kl_full(lpe, lpa)
            assert kl - 1e-9 <= full <= kl + err + 1e-9, (name, kl, full, err)
        sel = mask_compact(ids, le, V, alpha)
        ids_m, le_m, la_m = ids[sel], le[sel], la[sel]
        out.append(f"case {name} {VE} {VA} {alpha!r} compact")
        out.append(f"k {k} tails {fmt(te)} {fmt(ta)}")
        out.append("ids " + " ".join(str(int(i)) for i in ids))
        out.append("lpe " + " ".join(fmt(x) for x in le))
        out.append("lpa " + " ".join(fmt(x) for x in la))
    c, e, oh = targets(ids_m, le_m, la_m)
    out.append(f"kl {kl!r} err {err!r}")
    out.append(f"mask {len(ids_m)} " + " ".join(str(int(i)) for i in ids_m))
    out.append(f"contrast {len(c)} " + " ".join(repr(float(x)) for x in c))
    out.append(f"expert {len(e)} " + " ".join(repr(float(x)) for x in e))
    out.append(f"onehot {oh}")
    out.append("end")


def pair(rng, V, scale, gap, VA=None):
    """Expert and amateur log-probs over V (and VA) entries: the amateur's
    logits are the expert's, shrunk by gap towards independent noise."""
    VA = VA or V
    ze = rng.standard_normal(V) * scale
    za = rng.standard_normal(VA) * scale * gap
    n = min(V, VA)
    za[:n] += ze[:n] * (1 - gap)
    return logsoftmax32(ze), logsoftmax32(za)


def main():
    rng = np.random.default_rng(20251007)
    out = []
    # random full and compact cases
    for i in range(24):
        V = int(rng.choice([8, 37, 100, 256]))
        scale = float(rng.choice([0.3, 1.0, 3.0, 8.0]))
        gap = float(rng.choice([0.05, 0.3, 1.0]))
        lpe, lpa = pair(rng, V, scale, gap)
        write_case(out, f"random{i}_full", lpe, lpa, 0.2)
        for k in (1, 4, 16):
            if k < V:
                write_case(out, f"random{i}_k{k}", lpe, lpa, 0.2, k)
    # other alphas
    lpe, lpa = pair(rng, 300, 2.0, 0.5)
    for a in (0.0, 0.05, 0.5, 1.0):
        write_case(out, f"alpha{a}", lpe, lpa, a)
        write_case(out, f"alpha{a}_k8", lpe, lpa, a, 8)

    # ties at the alpha threshold: tokens whose p32 equals the threshold
    # exactly, and the nearest float32 log-probs just below and above it
    for t in range(6):
        V = 64
        lpe, lpa = pair(rng, V, 2.0, 0.4)
        top = int(np.argmax(lpe))
        # nudge the max until some log-prob hits 0.2 * max exactly. In odd
        # cases also require that the exact product 0.2 * max is above the
        # float32 threshold: a comparison in double would drop the tied token,
        # the float32 reference keeps it.
        lt = None
        while lt is None:
            lpe[top] = np.nextafter(lpe[top], F32(-np.inf))
            pm = p32(lpe).max()
            thr = F32(0.2) * pm
            if t % 2 and not 0.2 * np.float64(pm) > np.float64(thr):
                continue
            lt = lp_for_p32(thr)
        others = [i for i in range(V) if i != top]
        a, b, c = rng.choice(others, 3, replace=False)
        lpe[a] = lt
        below = lt
        while p32(below) >= thr:
            below = np.nextafter(below, F32(-np.inf))
        above = lt
        while p32(above) <= thr:
            above = np.nextafter(above, F32(np.inf))
        lpe[b], lpe[c] = below, above
        assert p32(lpe).max() == p32(lpe[top])
        write_case(out, f"tie{t}_full", lpe, lpa, 0.2)
        write_case(out, f"tie{t}_k8", lpe, lpa, 0.2, 8)

    # zero probabilities: -inf log-probs on both sides, including on a mask token
    lpe, lpa = pair(rng, 50, 1.0, 0.5)
    lpe[rng.choice(50, 10, replace=False)] = -np.inf
    m = mask_full(lpe, 50, 0.2)
    lpa[m[0]] = -np.inf
    lpa[rng.choice(50, 5, replace=False)] = -np.inf
    write_case(out, "zeros_full", lpe, lpa, 0.2)
    write_case(out, "zeros_k5", lpe, lpa, 0.2, 5)
    # the expert certain: one token with p = 1 exactly, the rest 0
    lpe = np.full(40, -np.inf, F32)
    lpe[7] = 0.0
    _, lpa = pair(rng, 40, 1.0, 1.0)
    write_case(out, "certain_full", lpe, lpa, 0.2)
    write_case(out, "certain_k1", lpe, lpa, 0.2, 1)
    lpa2 = lpa.copy()
    lpa2[7] = -np.inf  # the amateur gives the expert's token 0
    write_case(out, "certain_amateur0_full", lpe, lpa2, 0.2)
    write_case(out, "certain_amateur0_k3", lpe, lpa2, 0.2, 3)
    # identical distributions: KL 0 up to eps terms
    lpe, _ = pair(rng, 128, 2.0, 0.0)
    write_case(out, "identical_full", lpe, lpe.copy(), 0.2)
    write_case(out, "identical_k4", lpe, lpe.copy(), 0.2, 4)
    # very peaked (one-token mask, tiny tail) and very flat (everything in the mask)
    for V in (30, 400):
        ze = rng.standard_normal(V) * 0.01
        ze[3] = 60.0
        lpe = logsoftmax32(ze)
        lpa = logsoftmax32(rng.standard_normal(V) * 3)
        write_case(out, f"peaked{V}_full", lpe, lpa, 0.2)
        write_case(out, f"peaked{V}_k2", lpe, lpa, 0.2, 2)
        flat = np.full(V, F32(-np.log(V)), F32)
        write_case(out, f"flat{V}_full", flat, lpa, 0.2)
        write_case(out, f"flat{V}_k10", flat, lpa, 0.2, 10)
        write_case(out, f"flat{V}_amateurflat_full", flat, flat.copy(), 0.2)
    # near-flat: every probability within a few ulps of the others
    lpe = F32(-np.log(200)) + (rng.integers(-3, 4, 200) * F32(2 ** -22)).astype(F32)
    write_case(out, "nearflat_full", lpe.astype(F32), pair(rng, 200, 1.0, 1.0)[1], 0.2)
    # different vocabulary sizes (padding rows), both directions; in one the
    # expert's argmax sits in the rows the amateur lacks
    lpe, lpa = pair(rng, 1000, 2.0, 0.3, VA=936)
    write_case(out, "vocab1000_936_full", lpe, lpa, 0.2)
    write_case(out, "vocab1000_936_k8", lpe, lpa, 0.2, 8)
    ze = rng.standard_normal(1000) * 2
    ze[950] = 12.0
    ze[17] = 11.0
    lpe = logsoftmax32(ze)
    write_case(out, "vocab_argmax_padding_full", lpe, lpa, 0.2)
    write_case(out, "vocab_argmax_padding_k4", lpe, lpa, 0.2, 4)
    lpe, lpa = pair(rng, 936, 2.0, 0.3, VA=1000)
    write_case(out, "vocab936_1000_full", lpe, lpa, 0.2)
    write_case(out, "vocab936_1000_k8", lpe, lpa, 0.2, 8)

    # selection: many steps whose KL straddles beta
    n, k, V = 1000, 4, 5000
    out.append(f"select {n} {k} {V}")
    kls = []
    for s in range(n):
        gap = rng.uniform(0, 1.2)
        lpe, lpa = pair(rng, 64, rng.uniform(0.5, 4), min(gap, 1.0))
        ids, le, la, te, ta = compact_from_full(lpe, lpa, k)
        ids = (ids * 71 + s) % V  # spread the ids over a larger vocabulary
        kl, _ = kl_compact(ids, le, la, te, ta, V)
        kls.append(kl)
        out.append(" ".join([str(int(i)) for i in ids] + [fmt(x) for x in le] + [fmt(x) for x in la]
                            + [fmt(te), fmt(ta), repr(kl)]))
    kls = np.array(kls)
    for beta in (0.0, 0.1, 0.4, 1.0):
        out.append(f"count {beta!r} {int((kls >= beta).sum())}")
    out.append("end")

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "golden", "dist_cases.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {path} ({sum(1 for l in out if l.startswith('case '))} cases)", file=sys.stderr)


if __name__ == "__main__":
    main()
