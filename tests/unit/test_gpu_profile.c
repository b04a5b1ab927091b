/* The CUDA forward's kernel time profile (gpu.h gpu_prof) on the emulated
 * device, where events read the wall clock and so time the host's
 * emulation of each kernel: this checks the plumbing, not speeds. Off (the
 * default), a call records no event at all; on, every kind the calls use
 * gets time (sampling only from the calls that sample), the kinds add up
 * to the first-to-last-event total, that total to the wall time measured
 * around the calls, and every event the emulator saw is one the profile
 * counted; LR_GPU_PROFILE=1 turns it on at init. */
#include "check.h"

#include "infer/engine.h"
#include "infer/gpu.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

size_t emu_events_recorded(void); /* cuda/emu.cc */

static char tmpdir[] = "/tmp/lr-gpuprof-XXXXXX";

enum { B = 3, P = 20, KMAX = 8, NG = 3 };

typedef struct {
    int32_t k[64], ids[64 * KMAX], argmax[64], sampled[64];
    float lps[64 * KMAX], tail[64], glps[64 * NG], gtail[64];
    unsigned char bad[64];
} results;

/* One call of N rows (rows of slot seq[i]), every row wanted; with
 * sampling when sample, with a gather list, with the logits rows when
 * logits (copied inside the chunk loop). Returns its wall time. */
static double call(engine *e, int N, const int *tok, const int *seq, int sample, float *logits, results *r) {
    double u[64];
    int32_t gids[64 * NG];
    size_t goff[65];
    for (int g = 0; g < N; g++) {
        u[g] = (g + 0.5) / N, goff[g] = (size_t)g * NG;
        for (int j = 0; j < NG; j++) gids[g * NG + j] = j;
    }
    goff[N] = (size_t)N * NG;
    eng_req q = {.co = {.mass = 0.9, .kmax = KMAX, .kmin = 1}, .gids = gids, .goff = goff, .logits = logits != NULL};
    if (sample) q.uniform = u, q.smp = (smp_opts){.temperature = 0.8, .top_k = 0, .top_p = 1};
    eng_res res = {.k = r->k, .ids = r->ids, .lps = r->lps, .tail = r->tail, .glps = r->glps, .gtail = r->gtail,
                   .argmax = r->argmax, .bad = r->bad, .sampled = sample ? r->sampled : NULL, .logits = logits};
    double t0 = lr_now();
    int rc = eng_run(e, N, tok, seq, NULL, &q, &res);
    double dt = lr_now() - t0;
    CHECKF(rc == 0, "%s", lr_errmsg());
    return dt;
}

/* A prefill of B prompts packed (P rows each), then decode steps. */
static double workload(engine *e, int steps, int sample, float *logits, results *r) {
    int tok[B * P], seq[B * P];
    for (int i = 0; i < B * P; i++) tok[i] = (7 * i + 3) % 200, seq[i] = i / P;
    eng_reset(e, -1);
    double wall = call(e, B * P, tok, seq, sample, NULL, r);
    for (int s = 0; s < steps; s++) {
        for (int b = 0; b < B; b++) tok[b] = r->argmax[b], seq[b] = b;
        wall += call(e, B, tok, seq, sample, s == 0 ? logits : NULL, r);
    }
    return wall;
}

int main(void) {
    CHECK(mkdtemp(tmpdir) != NULL);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/m", tmpdir);
    const char *args[] = {"--layers", "2", "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--dtype", "bf16", "--vocab", "300"};
    mk_opts o;
    CHECK(mk_parse_args(&o, 12, (char **)args, NULL) == 0);
    CHECK(mk_write_model(dir, &o) == 0);
    model m;
    CHECK(model_open(&m, dir) == 0);
    float *logits = malloc((size_t)B * m.cfg.V * sizeof *logits);
    results r;
    unsetenv("LR_GPU_PROFILE");
    engine e;
    /* max_tokens 16: the prefill runs in chunks, each with its own host and copy groups */
    CHECK(eng_init(&e, &m, ENG_CUDA, B, 64, 16, KMAX, 1) == 0);
    gpu_prof p;

    /* off: no event, no totals */
    size_t ev0 = emu_events_recorded();
    workload(&e, 3, 1, logits, &r);
    CHECKF(emu_events_recorded() == ev0, "%zu events with the profile off", emu_events_recorded() - ev0);
    CHECK(gpu_fwd_profile(e.gpu, &p) == 1 && p.calls == 0);

    /* on: greedy calls first (no sampling: no sample time), then sampled ones */
    CHECK(gpu_fwd_set_profile(e.gpu, 1) == 0);
    ev0 = emu_events_recorded();
    double wall = workload(&e, 4, 0, logits, &r);
    CHECK(gpu_fwd_profile(e.gpu, &p) == 0);
    CHECKF(p.ms[GPU_PROF_SAMPLE] == 0, "sample time %g ms without sampling", p.ms[GPU_PROF_SAMPLE]);
    wall += workload(&e, 4, 1, logits, &r);
    CHECK(gpu_fwd_profile(e.gpu, &p) == 0);
    CHECKF(p.calls == 10, "%ld calls profiled", p.calls);
    CHECKF(p.events == (long)(emu_events_recorded() - ev0), "profile counted %ld events, the device saw %zu", p.events,
           emu_events_recorded() - ev0);
    double sum = 0;
    for (int k = 0; k < GPU_PROF_KINDS; k++) {
        CHECKF(p.ms[k] > 0, "kind %s: %g ms", gpu_prof_kind(k), p.ms[k]);
        sum += p.ms[k];
    }
    /* the segments tile each call's first-to-last-event span (float ms per segment) */
    CHECK_CLOSE(sum, p.total_ms, 1e-3, 1e-4);
    /* the span covers the call but for its argument checks before the first
     * event and the copies to the caller's arrays after the last */
    double wall_ms = wall * 1e3;
    CHECKF(p.total_ms <= wall_ms * 1.001 + 0.01 && p.total_ms >= 0.9 * wall_ms - 1,
           "profiled %.3f ms of %.3f ms wall time", p.total_ms, wall_ms);
    fprintf(stderr, "profiled %.3f ms of %.3f ms measured around the calls (%ld events)\n", p.total_ms, wall_ms,
            p.events);
    gpu_prof_print(stderr, &p);

    /* off again: nothing recorded */
    CHECK(gpu_fwd_set_profile(e.gpu, 0) == 0);
    ev0 = emu_events_recorded();
    workload(&e, 2, 1, NULL, &r);
    CHECK(emu_events_recorded() == ev0);
    eng_free(&e);

    /* the environment switch */
    setenv("LR_GPU_PROFILE", "1", 1);
    CHECK(eng_init(&e, &m, ENG_CUDA, B, 64, 64, KMAX, 1) == 0);
    unsetenv("LR_GPU_PROFILE");
    workload(&e, 1, 0, NULL, &r);
    CHECK(gpu_fwd_profile(e.gpu, &p) == 0 && p.calls == 2 && p.ms[GPU_PROF_GEMM] > 0);
    eng_free(&e); /* prints the table */
    setenv("LR_GPU_PROFILE", "0", 1);
    CHECK(eng_init(&e, &m, ENG_CUDA, B, 64, 64, KMAX, 1) == 0);
    unsetenv("LR_GPU_PROFILE");
    CHECK(gpu_fwd_profile(e.gpu, &p) == 1);
    eng_free(&e);

    model_free(&m);
    free(logits);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    CHECK(system(cmd) == 0);
    CHECK_DONE();
}
