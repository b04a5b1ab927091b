#!/usr/bin/env python3
"""What a card would make of every kernel launch of the test suite.

The emulated device runs the kernels' code, but not the card's limits on
what a block may hold: registers (ptxas decides how many a thread gets),
static shared memory (ptxas again) and the dynamic shared memory a
launcher asks for. A launch over those limits fails on the card only
("too many resources requested for launch"), and one under them can still
fit fewer blocks on a multiprocessor than a launcher's arithmetic assumes
(att_splits and k_compact_slices size their grids for two blocks an SM).

This joins two records:
  - ptxas's report of each kernel on sm_90 (`nvcc --resource-usage`, kept
    by the Makefile beside each object of the real build as
    build/cuda/cuda/NAME.ptxas): registers a thread, static shared memory,
    stack and spills;
  - the largest block and dynamic shared memory any launch of the test
    suite asked for, kernel by kernel (the emulator writes them under
    LR_EMU_LAUNCH_DIR; tests/run.sh sets it for the whole suite),
and checks, with the limits of an H100/H200 multiprocessor (sm_90), by
NVIDIA's occupancy calculator (tests/occupancy.cc over cuda_occupancy.h):
  - every launched kernel was compiled by nvcc (else this check is blind to
    it), and every compiled kernel was launched by some test, or is listed
    in NOT_LAUNCHED with the reason;
  - no kernel spills registers to local memory (or more than SPILLS says);
  - every launch fits a block: threads x registers, static + dynamic
    shared memory; and within the 48 KiB a block gets without an opt-in
    unless the kernel opts in (`smem_optin(KERNEL, ...)` in cuda/*.cu);
  - the blocks an SM holds reach what the code assumes (MIN_BLOCKS).

Usage: tests/cuda_resources.py OCCUPANCY_BIN PTXAS_DIR LAUNCH_DIR [--table] [--src DIR]
  (--src: where the .cu files that opt in are, cuda/ beside this script
  by default)
  exit 0: all checks pass; 1: a check failed (one line each on stderr);
  2: bad input. --table prints the per-kernel table (markdown) on stdout.

On a card (tests/gpu/run.sh), what the card itself says is set beside it:
  tests/cuda_resources.py --card OCCUPANCY_BIN PTXAS_DIR LAUNCH_DIR TABLE_OUT
reads the card.* files the real build leaves under LR_GPU_LAUNCH_DIR
(cuda/launchlog.h: per kernel its largest launch, the registers and static
shared memory the runtime reports, and cudaOccupancyMaxActiveBlocksPer-
Multiprocessor's blocks) and checks, kernel by kernel, that the card runs
ptxas's registers and static shared memory, that its blocks an SM are the
calculator's for the same launch, and MIN_BLOCKS; writes the per-kernel
table to TABLE_OUT (markdown) and one `occupancy ...` line for run.sh's
table on stdout. Without card files (run.sh --dry: only the emulator's
launches.*) the line says so, result=DRY, exit 0.
"""
import glob
import os
import re
import subprocess
import sys

# Blocks per multiprocessor the code relies on, and where.
MIN_BLOCKS = {
    ("attention", "attention_kernel<true>"): (2, "att_splits: two blocks an SM hide each other's loads"),
    ("compact", "scan_kernel"): (2, "k_compact_slices: slices for two blocks an SM"),
    ("compact", "pass_kernel"): (2, "k_compact_slices: slices for two blocks an SM"),
    ("attention_tc_train", "att_tc_f32_kernel"): (2, "docs/CUDA.md: the trainer's tensor-core forward, two blocks an SM"),
    ("gemv", "gemv_qkv_kernel"): (2, "forward.cu: the fused qkv grid is capped at two blocks an SM"),
    ("gemv", "gemv_swiglu_kernel"): (2, "forward.cu: the fused gate/up grid is capped at two blocks an SM"),
    ("gemv", "gemv_add_kernel"): (4, "gemv.cu: GV_ADD_MIN_BLOCKS, the launch bounds' four blocks an SM"),
}

# Compiled kernels no test launches where the emulator can record it.
BAD = "undefined on a card: run only in a child the emulator aborts (emu_selftest_bad_*)"
NOT_LAUNCHED = {
    ("dpnccl", "scale_kernel"): "the NCCL gradient sum's scaling; the emulated device refuses NCCL",
    ("emu_selftest", "divergent_barrier_kernel"): BAD,
    ("emu_selftest", "early_return_kernel"): BAD,
    ("emu_selftest", "partial_mask_kernel"): BAD,
    ("emu_selftest", "warp_exited_kernel"): BAD,
    ("emu_selftest", "warp_vs_barrier_kernel"): BAD,
    ("emu_selftest", "wmma_bad_kernel"): BAD,
}

# Spills ptxas makes, at most these bytes (stores, loads), and why they
# are left. sample_kernel: 40 registers of the 128 its 512 threads allow,
# no local array and no call in its PTX; ptxas's own choice, in a kernel
# that runs once per sampled row.
SPILLS = {
    ("sample", "sample_kernel"): (28, 28),
}


def die(msg):
    print("cuda_resources: " + msg, file=sys.stderr)
    sys.exit(2)


def demangle(names):
    if not names:
        return {}
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names) + "\n", capture_output=True, text=True,
                             check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError) as e:
        die("c++filt: %s" % e)
    if len(out) != len(names):
        die("c++filt returned %d names for %d" % (len(out), len(names)))
    return dict(zip(names, out))


def short_name(d):
    """'void (anonymous namespace)::foo<__nv_bfloat16>(int*, ...)' -> 'foo<bf16>', as LAUNCH spells it."""
    d = d.replace("(anonymous namespace)::", "")
    if d.startswith("void "):
        d = d[5:]
    i = d.find("(")
    if i >= 0:
        d = d[:i]
    return d.replace("__nv_bfloat16", "bf16").strip()


def read_ptxas(folder):
    """{(file, kernel): {regs, smem, stack, spill_st, spill_ld}} from every NAME.ptxas."""
    files = sorted(glob.glob(os.path.join(folder, "*.ptxas")))
    if not files:
        die("%s: no .ptxas files (the real CUDA build writes them: make all with nvcc)" % folder)
    raw = {}
    props = {}
    for path in files:
        src = os.path.basename(path)[:-len(".ptxas")]
        cur = None
        with open(path) as f:
            lines = f.read().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"ptxas info\s*: Compiling entry function '([^']+)' for 'sm_(\d+)'", line)
            if m:
                cur = (src, m.group(1))
                raw[cur] = {"regs": None, "smem": 0, "arch": m.group(2)}
                continue
            m = re.match(r"ptxas info\s*: Function properties for (\S+)", line)
            if m and i + 1 < len(lines):
                p = re.match(r"\s*(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                             lines[i + 1])
                if not p:
                    die("%s:%d: no stack/spill line after the function properties" % (path, i + 2))
                props[(src, m.group(1))] = tuple(int(x) for x in p.groups())
                continue
            m = re.match(r"ptxas info\s*: Used (\d+) registers", line)
            if m:
                if cur is None:
                    die("%s:%d: a register count before any entry function" % (path, i + 1))
                raw[cur]["regs"] = int(m.group(1))
                s = re.search(r"(\d+) bytes smem", line)
                raw[cur]["smem"] = int(s.group(1)) if s else 0
                cur = None
    names = demangle(sorted({k[1] for k in raw}))
    out = {}
    for (src, mangled), r in raw.items():
        if r["regs"] is None:
            die("%s.ptxas: %s: no register count" % (src, mangled))
        st, ss, sl = props.get((src, mangled), (0, 0, 0))
        key = (src, short_name(names[mangled]))
        if key in out:
            die("%s.ptxas: two kernels named %s" % (src, key[1]))
        out[key] = dict(r, stack=st, spill_st=ss, spill_ld=sl)
    return out


def records(path, nfields):
    """(source file stem, kernel, [the integer fields]) per line of a launch record file, '#' lines skipped."""
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    for n, line in enumerate(lines, 1):
        if line.startswith("#"):
            continue
        p = line.split()
        if len(p) != nfields:
            die("%s:%d: want %d fields, got %d" % (path, n, nfields, len(p)))
        try:
            v = [int(x) for x in p[2:]]
        except ValueError:
            die("%s:%d: a count or size that is not an integer" % (path, n))
        src = os.path.basename(p[0])
        yield (src[:-3] if src.endswith(".cu") else src), p[1], v


# Shared memory a block gets, static and dynamic together, unless its
# kernel raised cudaFuncAttributeMaxDynamicSharedMemorySize (static
# shared memory alone cannot pass it: nvcc refuses such a kernel).
NO_OPTIN_SMEM = 48 * 1024


def read_optins(src):
    """{(file, kernel)} of every smem_optin(KERNEL, ...) and cudaFuncSetAttribute(KERNEL,
    cudaFuncAttributeMaxDynamicSharedMemorySize, ...) in src/*.cu."""
    out = set()
    for path in glob.glob(os.path.join(src, "*.cu")):
        with open(path) as f:
            for m in re.finditer(r"\b(?:smem_optin\(\s*(\w+)|cudaFuncSetAttribute\(\s*(\w+)\s*,\s*"
                                 r"cudaFuncAttributeMaxDynamicSharedMemorySize)", f.read()):
                out.add((os.path.basename(path)[:-len(".cu")], m.group(1) or m.group(2)))
    return out


def read_launches(folder):
    """{(file, kernel): {count, tmin, tmax, smem}} over every launches.* file."""
    files = glob.glob(os.path.join(folder, "launches.*"))
    if not files:
        die("%s: no launch records (the emulated tests write them under LR_EMU_LAUNCH_DIR)" % folder)
    out = {}
    for path in files:
        for src, name, v in records(path, 6):
            key = (src, name)
            count, tmin, tmax, smem = v
            r = out.setdefault(key, {"count": 0, "tmin": tmin, "tmax": 0, "smem": 0})
            r["count"] += count
            r["tmin"] = min(r["tmin"], tmin)
            r["tmax"] = max(r["tmax"], tmax)
            r["smem"] = max(r["smem"], smem)
    return out


LIMITS = ("registers", "shared memory", "threads", "blocks")


def occupancy(occ_bin, launches):
    """[(blocks an SM holds, what limits it)] per (threads, regs, static, dynamic), by tests/occupancy.cc:
    NVIDIA's occupancy calculator (cuda_occupancy.h) on sm_90's limits."""
    text = "".join("%d %d %d %d\n" % q for q in launches)
    try:
        out = subprocess.run([occ_bin], input=text, capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError) as e:
        die("%s: %s %s" % (occ_bin, e, getattr(e, "stderr", "") or ""))
    res = []
    for line in out[:len(launches)]:
        v = [int(x) for x in line.split()]
        if len(v) != 5:
            die("%s: bad output line %r" % (occ_bin, line))
        least = min(v[1:])
        res.append((v[0], " and ".join(LIMITS[i] for i in range(4) if v[1 + i] == least)))
    if len(res) != len(launches):
        die("%s: %d lines for %d launches" % (occ_bin, len(res), len(launches)))
    return res


def read_card(folder):
    """(device line, [(file, kernel, rec)]) from every card.* file (cuda/launchlog.h)."""
    device, out = None, []
    for path in sorted(glob.glob(os.path.join(folder, "card.*"))):
        with open(path, errors="replace") as f:
            first = f.readline()
        if first.startswith("#device "):
            device = device or first[len("#device "):].strip()
        for src, name, v in records(path, 11):
            out.append((src, name, dict(zip(("count", "tmin", "tmax", "smem", "regs", "static", "local", "maxt",
                                             "blocks"), v))))
    return device, out


def card_main(args):
    if len(args) != 4:
        die("usage: tests/cuda_resources.py --card OCCUPANCY_BIN PTXAS_DIR LAUNCH_DIR TABLE_OUT")
    occ_bin, ptx_dir, dir_, table_out = args
    device, recs = read_card(dir_)
    if not recs:
        emu = glob.glob(os.path.join(dir_, "launches.*"))
        print('occupancy result=DRY kernels=%d why="no card records (%s): nothing to set beside the calculator"' %
              (len(read_launches(dir_)) if emu else 0, "the emulated device's launches only" if emu else "no launch"))
        return 0
    ptx = read_ptxas(ptx_dir)
    known = [r for r in recs if (r[0], r[1]) in ptx]
    calc = occupancy(occ_bin, [(r[2]["tmax"], ptx[(r[0], r[1])]["regs"], ptx[(r[0], r[1])]["smem"], r[2]["smem"])
                               for r in known]) if known else []
    # every process's record against the calculator at that record's own
    # launch; the table shows per kernel the record with the fewest blocks
    worst, mismatch = {}, {}
    errs = []
    for (src, name, r), (cb, lim) in zip(known, calc):
        key = (src, name)
        if key not in worst or r["blocks"] < worst[key][0]["blocks"]:
            worst[key] = (r, cb, lim)
        if r["blocks"] != cb and key not in mismatch:
            mismatch[key] = (r, cb)
    for src, name, r in recs:
        if (src, name) not in ptx:
            errs.append("%s.cu: %s: launched on the card but not in ptxas's report" % (src, name))
    rows, differ, relied, other = [], [], [], []
    for key in sorted(worst):
        r, cb, lim = worst[key]
        p = ptx[key]
        src, name = key
        note = []
        if r["regs"] != p["regs"] or r["static"] != p["smem"]:
            errs.append("%s.cu: %s: the card runs %d registers and %d bytes of static shared memory, ptxas "
                        "reported %d and %d (another binary: JIT from PTX?)" % (src, name, r["regs"], r["static"],
                                                                               p["regs"], p["smem"]))
            note.append("not ptxas's binary")
            other.append(name)
        if r["blocks"] < 1:
            errs.append("%s.cu: %s: the card gives 0 blocks an SM (or refused: %d) at %d threads and %d bytes of "
                        "dynamic shared memory" % (src, name, r["blocks"], r["tmax"], r["smem"]))
        if key in mismatch:
            m, mc = mismatch[key]
            errs.append("%s.cu: %s: %d block(s) an SM on the card, %d by the calculator (%d threads, %d bytes "
                        "dynamic)" % (src, name, m["blocks"], mc, m["tmax"], m["smem"]))
            differ.append("%s %d/%d" % (name, mc, m["blocks"]))
            note.append("differs")
        want = MIN_BLOCKS.get(key)
        if want:
            relied.append("%s %d" % (name, r["blocks"]))
            if r["blocks"] < want[0]:
                errs.append("%s.cu: %s: %d block(s) an SM on the card, but %s" % (src, name, r["blocks"], want[1]))
                note.append("below the %d relied on" % want[0])
        rows.append("| %s | `%s` | %d | %d | %d / %d | %d | %d | %d | %s | %s |" %
                    (src, name, r["tmax"], r["smem"], p["regs"], r["regs"], r["local"], cb, r["blocks"], lim,
                     ", ".join(note) or "ok"))
    with open(table_out, "w") as f:
        f.write("Device: %s\n\n" % (device or "unknown"))
        f.write("| file | kernel | threads (most) | dynamic smem (most) | registers ptxas / card | local bytes | "
                "blocks / SM calculator | card | calculator's limit | |\n|---|---|---|---|---|---|---|---|---|---|\n")
        f.write("\n".join(rows) + "\n")
    for e in errs:
        print("cuda_resources: " + e, file=sys.stderr)
    print('occupancy kernels=%d agree=%d differ="%s" relied="%s" other_binary="%s" device="%s" result=%s' %
          (len(worst), len(worst) - len(differ), ", ".join(differ) or "none", ", ".join(relied) or "none",
           ", ".join(other) or "none",
           (device or "unknown").replace('"', "'"), "FAIL" if errs else "ok"))
    return 1 if errs else 0


def main(argv):
    if argv[:1] == ["--card"]:
        return card_main(argv[1:])
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cuda")
    if "--src" in argv:
        i = argv.index("--src")
        if i + 1 >= len(argv):
            die("--src needs a folder")
        src = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    if not glob.glob(os.path.join(src, "*.cu")):
        die("%s: no .cu files (--src)" % src)
    args = [a for a in argv if a != "--table"]
    if len(args) != 3:
        die("usage: tests/cuda_resources.py OCCUPANCY_BIN PTXAS_DIR LAUNCH_DIR [--table]")
    ptx = read_ptxas(args[1])
    lau = read_launches(args[2])
    both = sorted(k for k in lau if k in ptx)
    occ = dict(zip(both, occupancy(args[0], [(lau[k]["tmax"], ptx[k]["regs"], ptx[k]["smem"], lau[k]["smem"])
                                               for k in both])))
    optin = read_optins(src)
    errs = []
    rows = []
    for key in sorted(set(ptx) | set(lau)):
        src, name = key
        p, l = ptx.get(key), lau.get(key)
        if p is None:
            errs.append("%s.cu: %s: launched by the tests but not in ptxas's report (compiled by nvcc?)" % key)
            continue
        if p["arch"] != "90":
            errs.append("%s.cu: %s: compiled for sm_%s; these limits are sm_90's" % (src, name, p["arch"]))
        most = SPILLS.get(key, (0, 0))
        if p["spill_st"] > most[0] or p["spill_ld"] > most[1]:
            errs.append("%s.cu: %s: %d bytes of spill stores, %d of spill loads (%d registers)" %
                        (src, name, p["spill_st"], p["spill_ld"], p["regs"]))
        if l is None:
            if key not in NOT_LAUNCHED:
                errs.append("%s.cu: %s: no test launched it, so nothing checks its launch against the card" % key)
            rows.append((src, name, "-", p, None, None, None, "not launched: " + NOT_LAUNCHED.get(key, "?")))
            continue
        if key in NOT_LAUNCHED:
            errs.append("%s.cu: %s: listed as not launched, but a test launched it" % key)
        t = l["tmax"]
        blocks, lim = occ[key]
        want = MIN_BLOCKS.get(key)
        if blocks < 1:
            errs.append("%s.cu: %s: a card refuses the launch: %d threads x %d registers, %d + %d bytes of shared "
                        "memory do not fit (%s)" % (src, name, t, p["regs"], p["smem"], l["smem"], lim))
        elif l["smem"] and (src, name.split("<")[0]) not in optin and p["smem"] + l["smem"] > NO_OPTIN_SMEM:
            errs.append("%s.cu: %s: a card refuses the launch: %d static + %d dynamic bytes of shared memory, past the "
                        "%d a block gets without smem_optin" % (src, name, p["smem"], l["smem"], NO_OPTIN_SMEM))
        elif want and blocks < want[0]:
            errs.append("%s.cu: %s: %d block(s) an SM (limited by %s), but %s" % (src, name, blocks, lim, want[1]))
        th = str(t) if l["tmin"] == t else "%d-%d" % (l["tmin"], t)
        need = "needs >= %d" % want[0] if want else ""
        rows.append((src, name, th, p, l, blocks, lim, need))
    srcs = {k[0] for k in ptx}  # the lists speak of these files only when they were compiled
    for k in SPILLS:
        if k[0] in srcs and (k not in ptx or not (ptx[k]["spill_st"] or ptx[k]["spill_ld"])):
            errs.append("%s.cu: %s: listed as spilling, but ptxas reports no spill: take it off SPILLS" % k)
    for k in NOT_LAUNCHED:
        if k[0] in srcs and k not in ptx:
            errs.append("%s.cu: %s: listed as not launched, but ptxas compiled no such kernel" % k)
    for e in errs:
        print("cuda_resources: " + e, file=sys.stderr)
    if "--table" in argv:
        print("| file | kernel | threads | registers | static smem | dynamic smem (most) | stack | blocks / SM | "
              "limited by | launches | |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for src, name, th, p, l, blocks, lim, note in rows:
            dyn = "-" if l is None else "%d" % l["smem"]
            print("| %s | `%s` | %s | %d | %d | %s | %d | %s | %s | %s | %s |" %
                  (src, name, th, p["regs"], p["smem"], dyn, p["stack"], "-" if blocks is None else blocks,
                   lim or "-", "-" if l is None else l["count"], note))
    print("cuda_resources: %d kernels compiled, %d launched by the tests, %d problem(s)" %
          (len(ptx), len(lau), len(errs)), file=sys.stderr)
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
