/* launchlog: see launchlog.h. The real build's only: the emulated device
 * records its launches itself (cuda/emu.cc) and has no card to ask. */
#ifndef LR_CUDA_EMU
#include "launchlog.h"

#include <mutex>
#include <string>
#include <vector>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

namespace {
struct launch_rec {
    const char *name, *file; /* string literals of the LAUNCH sites */
    const void *fn;
    size_t count, smem;
    unsigned tmin, tmax;
};
std::mutex g_mu;
std::vector<launch_rec> g_recs;
const char *g_dir;
std::once_flag g_once;

/* At exit, while the runtime still stands: the handler is registered at
 * the first launch, after the runtime registered its own teardown at its
 * first call (exit runs them in reverse order; not yet seen on a card). The card's figures are asked for here rather than at
 * the launch, where a stream being captured into a graph forbids calls
 * that are not launches. */
void write_log() {
    std::lock_guard<std::mutex> lk(g_mu);
    if (g_recs.empty()) return;
    std::string path = std::string(g_dir) + "/card.XXXXXX", text;
    std::vector<char> tmpl(path.begin(), path.end());
    tmpl.push_back(0);
    int fd = mkstemp(tmpl.data()); /* unique even when a later process reuses this pid */
    if (fd < 0) {
        fprintf(stderr, "launchlog: LR_GPU_LAUNCH_DIR=%s: cannot create a file there\n", g_dir);
        return;
    }
    char line[640];
    int dev = -1;
    cudaDeviceProp p;
    if (cudaGetDevice(&dev) == cudaSuccess && cudaGetDeviceProperties(&p, dev) == cudaSuccess) {
        p.name[sizeof p.name - 1] = 0;
        for (char *c = p.name; *c; c++) /* one line, whatever the name holds */
            if ((unsigned char)*c < ' ') *c = ' ';
        snprintf(line, sizeof line, "#device %d.%d sms=%d regs_per_sm=%d smem_per_sm=%zu smem_optin=%zu %s\n", p.major,
                 p.minor, p.multiProcessorCount, p.regsPerMultiprocessor, p.sharedMemPerMultiprocessor,
                 p.sharedMemPerBlockOptin, p.name);
        text += line;
    } else {
        text += "#device unknown\n";
    }
    for (const launch_rec &r : g_recs) {
        cudaFuncAttributes a;
        int regs = -1, blocks = -1, maxt = -1;
        long long st = -1, loc = -1;
        if (cudaFuncGetAttributes(&a, r.fn) == cudaSuccess)
            regs = a.numRegs, st = (long long)a.sharedSizeBytes, loc = (long long)a.localSizeBytes,
            maxt = a.maxThreadsPerBlock;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, r.fn, (int)r.tmax, r.smem) != cudaSuccess)
            blocks = -1;
        cudaGetLastError(); /* a refusal above is this log's, not the program's */
        snprintf(line, sizeof line, "%s %s %zu %u %u %zu %d %lld %lld %d %d\n", r.file, r.name, r.count, r.tmin,
                 r.tmax, r.smem, regs, st, loc, maxt, blocks);
        text += line;
    }
    ssize_t w = write(fd, text.data(), text.size());
    if (w != (ssize_t)text.size()) fprintf(stderr, "launchlog: %s: short write\n", tmpl.data());
    close(fd);
}

void start() {
    const char *d = getenv("LR_GPU_LAUNCH_DIR");
    if (d && *d && atexit(write_log) == 0) g_dir = d;
}
} // namespace

void lr_launch_note(const char *name, const char *file, const void *fn, dim3 block, size_t smem) {
    std::call_once(g_once, start);
    if (!g_dir) return;
    unsigned t = block.x * block.y * block.z;
    std::lock_guard<std::mutex> lk(g_mu);
    for (launch_rec &r : g_recs) /* by the kernel's address: a few dozen compares, no string's */
        if (r.fn == fn) {
            r.count++;
            if (t < r.tmin) r.tmin = t;
            if (t > r.tmax) r.tmax = t;
            if (smem > r.smem) r.smem = smem;
            return;
        }
    g_recs.push_back(launch_rec{name, file, fn, 1, smem, t, t});
}
#endif
