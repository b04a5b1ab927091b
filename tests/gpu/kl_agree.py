"""Agreement of lr-kl's step selection between two amateur streams that
should be the same (cpu vs cuda), for tests/gpu/run.sh.

  kl_agree.py LR_BIN EXPERT.lrs AMA_REF.lrs AMA_DEV.lrs WORKDIR

Runs `lr-kl --beta 0` on both pairs to get every step's KL, sets beta to the
median KL of the reference pair (the threshold where the most steps sit near
it, so the hardest place to agree), runs `lr-kl --beta BETA` on both pairs
and compares the selected (problem, step) sets: agreement = steps selected by
both or by neither / all steps. Prints one "kl_agree" key=value line; exit 5
when agreement < 99%."""
import json, os, statistics, subprocess, sys


def kl_records(lr_bin, expert, ama, beta, out):
    with open(out, "wb") as f:
        subprocess.run([os.path.join(lr_bin, "lr-kl"), "-q", "--beta", repr(beta), expert, ama], stdout=f, check=True)
    dump = subprocess.run([os.path.join(lr_bin, "lr-dump"), out], stdout=subprocess.PIPE, check=True, text=True)
    recs = {}
    for line in dump.stdout.splitlines():
        r = json.loads(line)
        if "kl" in r and "step" in r:
            recs[(r["idx"], r["step"])] = r["kl"]
    return recs


def main():
    lr_bin, expert, ref, dev, work = sys.argv[1:6]
    all_ref = kl_records(lr_bin, expert, ref, 0, os.path.join(work, "kl_ref_all.lrs"))
    all_dev = kl_records(lr_bin, expert, dev, 0, os.path.join(work, "kl_dev_all.lrs"))
    if not all_ref or set(all_ref) != set(all_dev):
        print(f"kl_agree steps_ref={len(all_ref)} steps_dev={len(all_dev)} result=FAIL (different steps)")
        return 5
    beta = statistics.median(all_ref.values())
    sel_ref = set(kl_records(lr_bin, expert, ref, beta, os.path.join(work, "kl_ref.lrs")))
    sel_dev = set(kl_records(lr_bin, expert, dev, beta, os.path.join(work, "kl_dev.lrs")))
    n = len(all_ref)
    agree = 1 - len(sel_ref ^ sel_dev) / n
    # for information: at the method's default beta (random tiny models often
    # have every step above it, which makes this one easy)
    d04 = sum((all_ref[k] >= 0.4) != (all_dev[k] >= 0.4) for k in all_ref)
    dmax = max(abs(all_ref[k] - all_dev[k]) for k in all_ref)
    ok = agree >= 0.99 and len(sel_ref) > 0
    print(f"kl_agree steps={n} beta={beta:.4g} selected_ref={len(sel_ref)} selected_dev={len(sel_dev)} "
          f"agree_pct={100 * agree:.2f} agree_beta0.4_pct={100 * (1 - d04 / n):.2f} kl_diff_max={dmax:.3g} result={'ok' if ok else 'FAIL'}", flush=True)
    return 0 if ok else 5


if __name__ == "__main__":
    sys.exit(main())
