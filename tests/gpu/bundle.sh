#!/usr/bin/env bash
# tests/gpu/bundle.sh (or `make gpu-bundle`): run on the build machine, before
# copying the tree to a GPU machine. Packs what tests/gpu/run.sh needs there,
# where nvcc, the CUDA libraries and python3 with torch/transformers exist
# but not our Debian -dev libraries (msgpack-c, zstd, jansson, pcre2,
# utf8proc, openblas) nor the zstd tool:
#
#   build/gpu-bundle/bin/        lr-mkmodel lr-infer lr-kl lr-contrast lr-dump lr-tune
#                                lr-merge bench_gpu
#                                (bin/ and build/rel/bench: the real CUDA backend
#                                when nvcc and cuda/*.cu existed at build time)
#   build/gpu-bundle/bin-emu/    bench_gpu lr-infer lr-tune on the emulated device, when
#                                built (for run.sh --dry only)
#   build/gpu-bundle/bin/occupancy  NVIDIA's occupancy calculator on sm_90's limits
#                                (tests/occupancy.cc) and build/gpu-bundle/ptxas/,
#                                ptxas's report of every kernel, for the card's
#                                occupancy row (tests/cuda_resources.py --card)
#   build/gpu-bundle/obj/        liblr.a and the mains' objects, so run.sh
#                                can relink against the machine's own CUDA if
#                                the prebuilt binaries cannot start there
#   build/gpu-bundle/lib.tar.gz  the non-glibc shared libraries the binaries
#                                need per ldd (not libc/libm/libstdc++/libgcc/
#                                ld-linux, not CUDA's: those exist there)
#   build/gpu-bundle/tokenizer.tar.gz  the Qwen tokenizer (build/tokenizers/qwen)
#   build/gpu-bundle/MANIFEST    commit, date, backend, sizes
# Compressed to keep the bundle small enough to copy with the tree (< 64 MiB).
# Usage: tests/gpu/bundle.sh [--allow-no-cuda]   (builds with make first)
set -euo pipefail
cd "$(dirname "$0")/../.."
ALLOW_NONE=0
[ "${1:-}" = --allow-no-cuda ] && ALLOW_NONE=1
TOK=build/tokenizers/qwen
# only what the bundle holds (make all also builds every unit test)
targets="$TOK/tokenizer.json $TOK/tokenizer_config.json bin/lr-mkmodel bin/lr-infer bin/lr-kl bin/lr-contrast bin/lr-dump bin/lr-tune bin/lr-merge build/rel/bench/bench_gpu build/rel/cuda/none.o"
[ -f cuda/emu.cc ] && targets="$targets build/rel/emu/bench_gpu build/rel/emu/lr-infer build/rel/emu/lr-tune"
# the calculator and ptxas's reports come with the real backend (make's NVCC)
{ command -v nvcc || ls /usr/local/cuda/bin/nvcc; } > /dev/null 2>&1 && targets="$targets build/cuda/occupancy"
make -s -j"$(nproc)" $targets >&2
OUT=build/gpu-bundle
rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/bin-emu" "$OUT/obj" "$OUT/lib"
TOOLS="lr-mkmodel lr-infer lr-kl lr-contrast lr-dump lr-tune lr-merge"
for t in $TOOLS; do cp bin/$t "$OUT/bin/"; cp build/rel/tools/$t.o "$OUT/obj/"; done
cp build/rel/bench/bench_gpu "$OUT/bin/"
cp build/rel/bench/bench_gpu.o build/rel/liblr.a build/rel/cuda/none.o "$OUT/obj/"
for t in bench_gpu lr-infer lr-tune; do [ -x build/rel/emu/$t ] && cp build/rel/emu/$t "$OUT/bin-emu/"; done
if [ -x build/cuda/occupancy ] && ls build/cuda/cuda/*.ptxas > /dev/null 2>&1; then
    cp build/cuda/occupancy "$OUT/bin/"
    mkdir -p "$OUT/ptxas" && cp build/cuda/cuda/*.ptxas "$OUT/ptxas/"
fi
strip -g "$OUT"/bin/* "$OUT"/obj/*.o "$OUT"/obj/*.a $(ls "$OUT"/bin-emu/* 2> /dev/null) 2> /dev/null || true

# which backend did bench_gpu get? (the skip line names it without a GPU)
backend=$("$OUT/bin/bench_gpu" 2>&1 | sed -n 's/.*backend \([a-z]*\)).*/\1/p')
[ -n "$backend" ] || backend=cuda  # a GPU here: it did not skip
if [ "$backend" != cuda ] && [ "$ALLOW_NONE" = 0 ]; then
    echo "bundle.sh: bin/bench_gpu has backend '$backend', not cuda (no nvcc or no cuda/*.cu at build time);" \
        "rerun with --allow-no-cuda for a dry-run bundle" >&2
    exit 1
fi

# shared libraries: everything ldd resolves outside the C/C++ runtime and CUDA
skip='^(linux-vdso|libc\.so|libm\.so|libstdc\+\+|libgcc_s|ld-linux|libpthread|libdl\.so|librt\.so|libcublas|libcublasLt|libcudart|libcuda\.so|libnvrtc)'
for b in "$OUT"/bin/* "$OUT"/bin-emu/*; do
    [ -f "$b" ] || continue
    ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }'
done | sort -u | while read -r name path; do
    [[ $name =~ $skip ]] && continue
    cp -L "$path" "$OUT/lib/$name"
done
# the binaries' RUNPATH (CUDA's lib64 here; run.sh adds the machine's own)
runpath=$(readelf -d "$OUT/bin/bench_gpu" | sed -n 's/.*R\(UN\)\{0,1\}PATH.*\[\(.*\)\]/\2/p')
tar czf "$OUT/lib.tar.gz" -C "$OUT/lib" . && rm -rf "$OUT/lib"
[ -f "$TOK/tokenizer.json" ] || { echo "bundle.sh: $TOK/tokenizer.json missing" >&2; exit 1; }
tar czf "$OUT/tokenizer.tar.gz" -C "$TOK" tokenizer.json $(cd "$TOK" && ls tokenizer_config.json 2> /dev/null)

{
    echo "commit $(git rev-parse HEAD)$(git diff --quiet HEAD -- . ':!build' || echo ' (with uncommitted changes)')"
    echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "backend $backend"
    echo "runpath ${runpath:-none}"
    echo "libs $(tar tzf "$OUT/lib.tar.gz" | grep -v '/$' | sed 's|^\./||' | tr '\n' ' ')"
    echo "size_bytes $(du -sb "$OUT" | cut -f1)"
} > "$OUT/MANIFEST"
cat "$OUT/MANIFEST" >&2
size=$(du -sb "$OUT" | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb 2> /dev/null | tail -1 | cut -f1)
echo "bundle.sh: $OUT is $((size / 1024 / 1024)) MiB; with the tracked tree $(((size + tree) / 1024 / 1024)) MiB (kept under 60 MiB so both copy to the GPU machine together)" >&2
[ $((size + tree)) -lt $((60 * 1024 * 1024)) ] || { echo "bundle.sh: bundle and tree over 60 MiB" >&2; exit 1; }
