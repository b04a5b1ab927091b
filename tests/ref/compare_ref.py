#!/usr/bin/env python3
"""compare_ref.py OUT_DIR: writes the fixtures and expected numbers of
tests/cli/eval_compare.sh, computed independently of lr-eval compare.

Fixtures: lr-eval score output folders (summary.json + results.jsonl) for a
base, one single run and a group of three seeds, on two benchmarks.
Expected (expected.json, one entry per benchmark and row): accuracies and
their sample sd, the delta, McNemar's exact p from scipy.stats.binomtest
and from statsmodels' mcnemar(exact=True) (both must agree), and the 95%
percentile bootstrap interval of the paired per-problem differences from
scipy.stats.bootstrap (its own random stream, so lr-eval's interval can only
agree within Monte-Carlo error, which the test allows).

Needs numpy, scipy, statsmodels (a venv under build/)."""
import json, os, sys
import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

out = sys.argv[1]
rng = np.random.default_rng(20261201)
BENCH = {"gsm8k": 200, "svamp": 60}
# per-run probability of being right on each problem: base weaker than runs
RUNS = {"base": ("base", 0.0), "single": ("single", 0.10), "grp-s1": ("grp", 0.05), "grp-s2": ("grp", 0.05),
        "grp-s3": ("grp", 0.05)}
ease = {b: rng.uniform(0.1, 0.9, n) for b, n in BENCH.items()}
verdicts = {}
for run, (_, lift) in RUNS.items():
    verdicts[run] = {b: (rng.uniform(size=n) < np.clip(ease[b] + lift, 0, 1)) for b, n in BENCH.items()}
    d = os.path.join(out, run)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "results.jsonl"), "w") as f:
        for b, n in BENCH.items():
            # the run's lines in another order than the base's: pairing is by id
            idx = range(n) if run == "base" else rng.permutation(n)
            for i in idx:
                f.write(json.dumps({"id": f"{b}/test:{i}", "bench": b, "correct": bool(verdicts[run][b][i])}) + "\n")
    summ = {"label": run, "benchmarks": {b: {"file": f"{b}/test.jsonl", "total": n, "scored": n,
            "correct": int(verdicts[run][b].sum()), "acc": 100 * verdicts[run][b].mean()} for b, n in BENCH.items()}}
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump(summ, f, indent=2)

def mcnemar_p(base, run):
    b = int((base & ~run).sum())
    c = int((~base & run).sum())
    p1 = stats.binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    p2 = mcnemar([[0, b], [c, 0]], exact=True).pvalue
    assert abs(p1 - p2) <= 1e-12 * max(p1, 1e-300), (p1, p2)
    return p1, b, c

expected = []
for b, n in BENCH.items():
    base = verdicts["base"][b]
    expected.append({"bench": b, "label": "base", "runs": 1, "acc": 100 * base.mean()})
    for label, members in (("single", ["single"]), ("grp", ["grp-s1", "grp-s2", "grp-s3"])):
        accs = [100 * verdicts[m][b].mean() for m in members]
        score = np.mean([verdicts[m][b].astype(float) for m in members], axis=0)
        diff = score - base.astype(float)
        ci = stats.bootstrap((diff,), np.mean, n_resamples=10000, confidence_level=0.95, method="percentile",
                             random_state=np.random.default_rng(7)).confidence_interval
        ps = [mcnemar_p(base, verdicts[m][b]) for m in members]
        pv = sorted(p for p, _, _ in ps)
        expected.append({"bench": b, "label": label, "runs": len(members), "acc": float(np.mean(accs)),
                         "acc_sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
                         "delta": float(np.mean(accs) - 100 * base.mean()),
                         "ci_lo": 100 * float(ci.low), "ci_hi": 100 * float(ci.high),
                         "p": float(np.median(pv)), "p_min": pv[0], "p_max": pv[-1],
                         "base_only": float(np.mean([x for _, x, _ in ps])), "run_only": float(np.mean([y for _, _, y in ps]))})
with open(os.path.join(out, "expected.json"), "w") as f:
    for e in expected:
        f.write(json.dumps(e) + "\n")
