/* gpu_train_prof: the names and the printout of the device trainer's
 * kernel time profile (gpu_train.h gtrn_prof), shared by every backend
 * build (the no-backend one never has a profile to print). */
#include "nn/gpu_train.h"

static const char *const kind_name[GTRN_PROF_KINDS] = {"gemm", "gemm_bwd", "lora", "attention", "attention_bwd", "loss",
                                                       "elementwise", "optimizer", "h2d", "d2h", "host"};

const char *gtrn_prof_kind(int kind) { return kind >= 0 && kind < GTRN_PROF_KINDS ? kind_name[kind] : "?"; }

static double pct(double ms, double total) { return total > 0 ? 100 * ms / total : 0; }

void gtrn_prof_print(FILE *f, const gtrn_prof *p) {
    double sum = 0;
    for (int k = 0; k < GTRN_PROF_KINDS; k++) sum += p->ms[k];
    fprintf(f, "cuda trainer profile: %ld calls, %ld events, %.3f ms from first to last event\n", p->calls, p->events,
            p->total_ms);
    fprintf(f, "  %-14s %12s %7s\n", "kind", "ms", "share");
    for (int k = 0; k < GTRN_PROF_KINDS; k++)
        fprintf(f, "  %-14s %12.3f %6.1f%%\n", kind_name[k], p->ms[k], pct(p->ms[k], p->total_ms));
    fprintf(f, "  %-14s %12.3f %6.1f%%\n", "sum", sum, pct(sum, p->total_ms));
    fprintf(f, "gpu_profile train: calls=%ld events=%ld total_ms=%.3f sum_ms=%.3f", p->calls, p->events, p->total_ms, sum);
    for (int k = 0; k < GTRN_PROF_KINDS; k++)
        fprintf(f, " %s_ms=%.3f %s_pct=%.1f", kind_name[k], p->ms[k], kind_name[k], pct(p->ms[k], p->total_ms));
    fprintf(f, "\n");
}
