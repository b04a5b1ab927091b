/* The device trainer's kernel time profile (nn/gpu_train.h gtrn_prof) on
 * the emulated device, where events read the wall clock and so time the
 * host's emulation of each kernel: this checks the plumbing, not speeds.
 * lr-mkmodel's tiny Qwen2, LoRA on all seven projections with dropout,
 * soft-KL, in both precisions:
 *   - off (LR_GPU_PROFILE unset): accumulations and updates record no
 *     event, and gpu_trn_profile says off;
 *   - on (LR_GPU_PROFILE=1 at init): the same steps give the same bits
 *     (losses, norms, parameters), every kind gets time, the kinds add up
 *     to the first-to-last-event total, which lies within the wall time
 *     measured around the steps, every event the emulator saw is one the
 *     profile counted, and each update and accumulation's call is one
 *     profiled call;
 *   - the printout: a table and one "gpu_profile train:" line with every
 *     kind's key. */
#include "check.h"

#include "method/tune.h"
#include "model/lora.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "nn/gpu_train.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

#include "tune_batches.h"

size_t emu_events_recorded(void); /* cuda/emu.cc */

enum { STEPS = 2 };

typedef struct {
    double loss[STEPS], norm[STEPS];
    double wall_s;
    size_t events;
    gtrn_prof p;
    int prof_rc;
    float *params;
} run_out;

/* STEPS optimizer steps of one accumulation each on a fresh device tuner */
static void run(model *m, const lora *lo0, const batch *b, int prec, int profile, run_out *o) {
    tuner tu;
    lora lo;
    if (profile) setenv("LR_GPU_PROFILE", "1", 1);
    else unsetenv("LR_GPU_PROFILE");
    int rc = open_tuner(&tu, &lo, lo0, m, TUNE_SOFTKL, prec, 1, 32);
    unsetenv("LR_GPU_PROFILE");
    if (rc) {
        CHECKF(0, "%s", lr_errmsg());
        return;
    }
    size_t ev0 = emu_events_recorded();
    o->wall_s = 0;
    for (int s = 0; s < STEPS; s++) {
        double t0 = lr_now();
        o->loss[s] = 0;
        CHECKF(tuner_zero_grad(&tu) == 0, "%s", lr_errmsg());
        CHECKF(tuner_accumulate(&tu, b->ex, b->n, 1.0 / b->n, &o->loss[s]) == 0, "%s", lr_errmsg());
        CHECKF(tuner_update(&tu, 2e-3f, &o->norm[s]) == 0, "%s", lr_errmsg());
        o->wall_s += lr_now() - t0;
    }
    o->events = emu_events_recorded() - ev0;
    o->prof_rc = gpu_trn_profile(tu.gpu, &o->p);
    CHECK(tuner_download(&tu) == 0);
    o->params = xmalloc(tu.n * sizeof(float));
    memcpy(o->params, lo.mem, tu.n * sizeof(float));
    tuner_free(&tu); /* profiled: prints the table */
    lora_free(&lo);
}

static void check_prec(model *m, const lora *lo0, const batch *b, int prec) {
    const char *pn = prec == GTRN_BF16 ? "bf16" : "f32";
    run_out off, on;
    run(m, lo0, b, prec, 0, &off);
    run(m, lo0, b, prec, 1, &on);
    if (!off.params || !on.params) return;
    /* off: nothing recorded */
    CHECKF(off.events == 0, "%s: %zu events with the profile off", pn, off.events);
    CHECK(off.prof_rc == 1 && off.p.calls == 0);
    /* on: the same arithmetic */
    CHECK(on.prof_rc == 0);
    for (int s = 0; s < STEPS; s++) {
        CHECKF(memcmp(&on.loss[s], &off.loss[s], sizeof(double)) == 0, "%s: step %d loss %.9g profiled, %.9g not", pn, s,
               on.loss[s], off.loss[s]);
        CHECK(memcmp(&on.norm[s], &off.norm[s], sizeof(double)) == 0);
    }
    CHECK(memcmp(on.params, off.params, lo0->n * sizeof(float)) == 0);
    /* one call per accumulation (these examples fit one) and per update */
    CHECKF(on.p.calls == 2 * STEPS, "%s: %ld calls profiled", pn, on.p.calls);
    CHECKF(on.p.events == (long)on.events, "%s: profile counted %ld events, the device saw %zu", pn, on.p.events,
           on.events);
    double sum = 0;
    for (int k = 0; k < GTRN_PROF_KINDS; k++) {
        CHECKF(on.p.ms[k] > 0, "%s: kind %s: %g ms", pn, gtrn_prof_kind(k), on.p.ms[k]);
        sum += on.p.ms[k];
    }
    CHECK_CLOSE(sum, on.p.total_ms, 1e-3, 1e-4);
    double wall_ms = on.wall_s * 1e3;
    /* the spans leave out the host's work before each call's first event
     * (the tuner packing the batch) and after its last */
    CHECKF(on.p.total_ms <= wall_ms * 1.001 + 0.01 && on.p.total_ms >= 0.5 * wall_ms,
           "%s: profiled %.3f ms of %.3f ms wall time", pn, on.p.total_ms, wall_ms);
    fprintf(stderr, "%s: profiled %.3f ms of %.3f ms around the steps (%ld events)\n", pn, on.p.total_ms, wall_ms,
            on.p.events);
    /* the printout */
    FILE *f = tmpfile();
    CHECK(f != NULL);
    if (f) {
        gtrn_prof_print(f, &on.p);
        rewind(f);
        char line[4096];
        int seen = 0;
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "gpu_profile train: calls=", 25)) {
                seen++;
                for (int k = 0; k < GTRN_PROF_KINDS; k++) {
                    char key[64];
                    snprintf(key, sizeof key, " %s_ms=", gtrn_prof_kind(k));
                    CHECKF(strstr(line, key) != NULL, "no %s in: %s", key, line);
                }
            }
        CHECK(seen == 1);
        fclose(f);
    }
    free(off.params), free(on.params);
}

int main(void) {
    const char *tmp = getenv("LR_TMP") ? getenv("LR_TMP") : "/tmp";
    CHECK_SEED(rng);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/gpu_train_profile_model", tmp);
    mk_opts o;
    mk_defaults(&o);
    CHECKF(mk_write_model(dir, &o) == 0, "%s", lr_errmsg());
    model m;
    if (model_load(&m, dir)) {
        CHECKF(0, "%s", lr_errmsg());
        CHECK_DONE();
    }
    lora lo0;
    lora_all_seven(&lo0, &m.cfg);
    batch kl = make_softkl(m.cfg.V, 3);
    (void)make_sft; /* tune_batches.h's SFT examples: not needed here */
    check_prec(&m, &lo0, &kl, GTRN_F32);
    check_prec(&m, &lo0, &kl, GTRN_BF16);
    CHECK(strcmp(gtrn_prof_kind(GTRN_PROF_KINDS), "?") == 0 && strcmp(gtrn_prof_kind(GTRN_PROF_LORA), "lora") == 0);
    free_batch(&kl);
    lora_free(&lo0);
    model_free(&m);
    CHECK_DONE();
}
