/* gpu_prof: the names and the table of the CUDA forward's kernel time
 * profile (gpu.h), shared by every backend build (the no-backend one has
 * no profile to print, but bench_gpu names the kinds either way). */
#include "infer/gpu.h"

static const char *const kind_name[GPU_PROF_KINDS] = {"gemm", "attention", "compact", "sample",
                                                      "elementwise", "h2d", "d2h", "host"};

const char *gpu_prof_kind(int kind) { return kind >= 0 && kind < GPU_PROF_KINDS ? kind_name[kind] : "?"; }

void gpu_prof_print(FILE *f, const gpu_prof *p) {
    double sum = 0;
    for (int k = 0; k < GPU_PROF_KINDS; k++) sum += p->ms[k];
    fprintf(f, "cuda profile: %ld calls, %ld events, %.3f ms from first to last event\n", p->calls, p->events,
            p->total_ms);
    fprintf(f, "  %-12s %12s %7s\n", "kind", "ms", "share");
    for (int k = 0; k < GPU_PROF_KINDS; k++)
        fprintf(f, "  %-12s %12.3f %6.1f%%\n", kind_name[k], p->ms[k], p->total_ms > 0 ? 100 * p->ms[k] / p->total_ms : 0);
    fprintf(f, "  %-12s %12.3f %6.1f%%\n", "sum", sum, p->total_ms > 0 ? 100 * sum / p->total_ms : 0);
}
