#!/usr/bin/env python3
"""The end-to-end stage of tests/gpu/run.sh: its result line.

  e2e.py report --shape S --dir DIR --n N --steps S [--amateur NAME]
                [--new 128] [--batch 8 --accum 2] [--n-full 1000]
                [--steps-full 1000] [--paper-s SECONDS] [--goal-s SECONDS]
                [--build-s SECONDS]
      reads what the stage left in DIR: times.txt (one "PART WALL_S RC" line
      per tool run: sample, follow, kl, contrast, tune, merge; kl0 for a
      first lr-kl pass that was redone at another beta), the tools' stderr
      (PART.err: lr-infer's "N problems written, T tokens in X s", lr-kl's
      summary) and the tuner's log (tune.jsonl: step_s per optimizer step),
      and prints one `e2e` key=value line for the table (tests/gpu/table.py).

The stage runs a fraction of the paper's work (N of 1000 problems, S of 1000
optimizer steps); each part is extrapolated linearly in its own unit, its
fixed cost counted once:
  sampling, follow   (wall - lr-infer's own run time) + run time x n_full / N
                     (the difference is loading the model and the stream)
  kl, contrast       wall x n_full / N (nothing to load)
  tune               (wall - sum of step_s) + sum of step_s x steps_full / steps
                     done (the steps the log holds: fewer than asked when the
                     tuner was stopped at its time share)
  merge              wall, once (one merge whatever the run's size)
A part that did not finish leaves the total "incomplete". Standard library
only, so run.sh can call it with any python3."""
import argparse, json, os, re, sys

PARTS = ("sample", "follow", "kl", "contrast", "tune", "merge")


def read_times(path):
    t = {}
    if os.path.exists(path):
        for line in open(path):
            f = line.split()
            if len(f) >= 3:
                t[f[0]] = (float(f[1]), int(f[2]))
    return t


def infer_run_s(path):
    """lr-infer's own run time (after loading) and its problem count"""
    try:
        text = open(path, errors="replace").read()
    except OSError:
        return None, None
    m = re.search(r"(\d+) problems written, \d+ tokens in ([0-9.]+) s", text)
    return (float(m.group(2)), int(m.group(1))) if m else (None, None)


def kl_summary(path):
    try:
        text = open(path, errors="replace").read()
    except OSError:
        return {}
    m = re.search(r"(\d+) steps seen \(t >= 1\), (\d+) kept \(([0-9.]+)%, select \S+, beta ([0-9.eE+-]+)\)", text)
    return {"steps_seen": m.group(1), "kept": m.group(2), "kept_pct": m.group(3), "beta": m.group(4)} if m else {}


def read_log(path):
    rows = []
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a line cut by the stage's time limit
    return rows


def g(x):
    return "%.4g" % x


def cmd_report(a):
    d = a.dir
    t = read_times(os.path.join(d, "times.txt"))
    kv = {"shape": a.shape, "amateur": a.amateur, "n": a.n, "new": a.new, "n_full": a.n_full, "batch": a.batch,
          "accum": a.accum, "steps_asked": a.steps, "steps_full": a.steps_full}
    if a.build_s is not None:
        kv["build_s"] = g(a.build_s)
    fn = a.n_full / a.n
    total, total_ext, missing = 0.0, 0.0, []
    for p in PARTS:
        if p not in t:
            missing.append(p)
            continue
        wall, rc = t[p]
        kv[p + "_s"] = g(wall)
        if rc != 0:
            kv[p + "_rc"] = rc
        total += wall
        if p in ("sample", "follow"):
            run, n = infer_run_s(os.path.join(d, p + ".err"))
            if rc == 0 and run is not None:
                kv[p + "_setup_s"] = g(max(wall - run, 0.0))
                ext = max(wall - run, 0.0) + run * fn
            else:
                ext = None
        elif p in ("kl", "contrast"):
            ext = wall * fn if rc == 0 else None
        elif p == "tune":
            log = read_log(os.path.join(d, "tune.jsonl"))
            done = len(log)
            kv["steps"] = done
            if done:
                steps_s = sum(float(r.get("step_s", 0)) for r in log)
                kv["tune_steps_s"] = g(steps_s)
                kv["tune_setup_s"] = g(max(wall - steps_s, 0.0))
                kv["tune_factor"] = g(a.steps_full / done)
                ext = max(wall - steps_s, 0.0) + steps_s * a.steps_full / done
            else:
                ext = None
        else:  # merge
            ext = wall if rc == 0 else None
        if ext is None:
            missing.append(p)
        else:
            kv[p + "_ext_s"] = g(ext)
            total_ext += ext
    if "kl0" in t:
        kv["kl0_s"] = g(t["kl0"][0])
        k0 = kl_summary(os.path.join(d, "kl0.err"))
        if k0:
            kv["kl0_beta"], kv["kl0_kept_pct"] = k0["beta"], k0["kept_pct"]
    k = kl_summary(os.path.join(d, "kl.err"))
    if k:
        kv.update({"kl_" + x: v for x, v in k.items()})
    kv["factor"] = g(fn)
    kv["total_s"] = g(total)
    if missing:
        kv["incomplete"] = ",".join(missing)
        kv["result"] = "INCOMPLETE"
    else:
        kv["total_ext_s"] = g(total_ext)
        if a.goal_s:
            kv["result"] = "ok" if total_ext < a.goal_s else "below_goal"
    if a.paper_s:
        kv["paper_s"] = g(a.paper_s)
    if a.goal_s:
        kv["goal_s"] = g(a.goal_s)
    print("e2e " + " ".join("%s=%s" % x for x in kv.items()))
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report")
    r.add_argument("--shape", required=True)
    r.add_argument("--dir", required=True)
    r.add_argument("--n", type=int, required=True)
    r.add_argument("--steps", type=int, required=True)
    r.add_argument("--amateur", default="?")
    r.add_argument("--new", type=int, default=128)
    r.add_argument("--batch", type=int, default=8)
    r.add_argument("--accum", type=int, default=2)
    r.add_argument("--n-full", type=int, default=1000)
    r.add_argument("--steps-full", type=int, default=1000)
    r.add_argument("--paper-s", type=float, default=0)
    r.add_argument("--goal-s", type=float, default=0)
    r.add_argument("--build-s", type=float)
    a = p.parse_args()
    if a.n <= 0 or a.steps <= 0:
        sys.exit("e2e.py: --n and --steps must be positive")
    return {"report": cmd_report}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())
