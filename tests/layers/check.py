#!/usr/bin/env python3
"""The library's layering, checked: usage: check.py [ROOT]

Each folder of lib/ is a layer with a rank (LAYERS below, the module map of
the README). A file may include headers of its own folder or of a layer of
lower rank; two folders of the same rank never include each other. Modules
(a .c/.h pair, named by the file's base name) must not include each other,
directly or through others. cuda/ implements lib/infer/gpu.h and ranks as
infer. Prints one line per violation and exits 1 if there is any."""
import os
import re
import sys

LAYERS = {"base": 0, "io": 1, "model": 2, "nn": 3, "eval": 3, "infer": 4, "method": 4}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    bad = []
    edges = {}  # module -> set of modules it includes
    sources = []
    for layer in sorted(os.listdir(os.path.join(root, "lib"))):
        d = os.path.join(root, "lib", layer)
        if not os.path.isdir(d):
            continue
        if layer not in LAYERS:
            bad.append(f"lib/{layer}: a folder with no rank in tests/layers/check.py")
            continue
        for f in sorted(os.listdir(d)):
            if f.endswith((".c", ".h")):
                sources.append((layer, f"lib/{layer}/{f}"))
    cuda = os.path.join(root, "cuda")
    if os.path.isdir(cuda):
        for f in sorted(os.listdir(cuda)):
            if f.endswith((".cu", ".cuh", ".h", ".c", ".cc")):
                sources.append(("infer", f"cuda/{f}"))
    for layer, path in sources:
        text = open(os.path.join(root, path), encoding="utf-8").read()
        mod = path if path.startswith("cuda/") else os.path.splitext(path)[0]
        for inc in INCLUDE.findall(text):
            if "/" not in inc:
                if path.startswith("cuda/"):
                    continue  # cuda's own headers (kernels.h, common.cuh, emu.h)
                bad.append(f"{path}: #include \"{inc}\": name the layer (\"{layer}/{inc}\")")
                continue
            il, _ = inc.split("/", 1)
            if il not in LAYERS or not os.path.isfile(os.path.join(root, "lib", inc)):
                bad.append(f"{path}: #include \"{inc}\": no such library header")
                continue
            if il != layer and LAYERS[il] >= LAYERS[layer]:
                bad.append(f"{path}: #include \"{inc}\": layer {layer} (rank {LAYERS[layer]}) "
                           f"may not use {il} (rank {LAYERS[il]})")
            target = "lib/" + os.path.splitext(inc)[0]
            if target != mod:
                edges.setdefault(mod, set()).add(target)
    # cycles between modules (depth-first search, each cycle reported once)
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == 1:
                cyc = stack[stack.index(n):] + [n]
                bad.append("modules include each other: " + " -> ".join(cyc))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    for line in bad:
        print(line)
    if not sources:
        print("no library sources found under", root)
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
