/* CUDA graphs of the decode step (cuda/forward.cu) on the emulated device,
 * which records a captured stream's launches and replays them on
 * cudaGraphLaunch: greedy decode with graphs on must equal graphs off
 * (LR_GPU_GRAPHS=0) token for token, and the per-row lists bit for bit,
 * since a replay runs the very launches of the plain path. Tiny models,
 * batch sizes 1, 3 and 6, prompts of mixed lengths; slots finishing
 * (fewer rows: another shape, plain launches, then a capture of it);
 * sampled steps (the uniforms change every step, the graph stays); a
 * context growing past 512 keys, where split-KV attention changes its split
 * count (another shape again); calls of 8 rows a slot, which run the
 * tensor-core attention, in a graph too; graphs really replayed, counted
 * by the forward and by the emulator. */
#include "check.h"

#include "../../cuda/kernels.h"
#include "infer/engine.h"
#include "infer/gpu.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

size_t emu_graph_launches(void); /* cuda/emu.cc */
size_t emu_kernel_launches(const char *name);

static char tmpdir[] = "/tmp/lr-gpugraph-XXXXXX";

enum { KMAX = 8, MAXB = 6 };

typedef struct {
    int32_t k[MAXB], ids[MAXB * KMAX], argmax[MAXB], sampled[MAXB];
    float lps[MAXB * KMAX], tail[MAXB];
    unsigned char bad[MAXB];
} results;

/* One call on engine e: rows (tok, seq) with the last row of each slot
 * wanted (want NULL: all); sampled when uni. */
static int run(engine *e, int N, const int *tok, const int *seq, const unsigned char *want, const double *uni,
               results *r) {
    eng_req q = {.co = {.mass = 0.95, .kmax = KMAX, .kmin = 1}};
    if (uni) q.uniform = uni, q.smp = (smp_opts){.temperature = 0.9, .top_k = 0, .top_p = 0.95};
    eng_res res = {.k = r->k, .ids = r->ids, .lps = r->lps, .tail = r->tail, .argmax = r->argmax, .bad = r->bad,
                   .sampled = uni ? r->sampled : NULL};
    int rc = eng_run(e, N, tok, seq, want, &q, &res);
    CHECKF(rc == 0, "%s", lr_errmsg());
    return rc;
}

/* Both results of one call equal: tokens, and lists bit for bit. */
static int same(const results *a, const results *b, int G, int sampled) {
    int ok = 1;
    for (int g = 0; g < G; g++) {
        ok &= a->argmax[g] == b->argmax[g] && a->k[g] == b->k[g] && a->bad[g] == b->bad[g];
        ok &= !memcmp(&a->tail[g], &b->tail[g], sizeof(float));
        if (sampled) ok &= a->sampled[g] == b->sampled[g];
        if (a->k[g] == b->k[g] && a->k[g] > 0) {
            ok &= !memcmp(a->ids + g * KMAX, b->ids + g * KMAX, (size_t)a->k[g] * sizeof(int32_t));
            ok &= !memcmp(a->lps + g * KMAX, b->lps + g * KMAX, (size_t)a->k[g] * sizeof(float));
        }
    }
    return ok;
}

/* B slots with prompts of lens[b] tokens, then `steps` decode steps: all
 * slots for the first half, then slot B-1 finished (B-1 rows), sampled
 * steps from `sample_from` on. e[0] graphs on, e[1] off. Returns the steps
 * whose results differed. */
static int decode(engine e[2], int V, int B, const int *lens, int steps, int sample_from) {
    int P = 0;
    for (int b = 0; b < B; b++) P += lens[b];
    int *tok = malloc((size_t)P * sizeof *tok), *seq = malloc((size_t)P * sizeof *seq);
    unsigned char *want = calloc((size_t)P, 1);
    for (int b = 0, i = 0; b < B; b++)
        for (int t = 0; t < lens[b]; t++, i++) tok[i] = (13 * i + 7 * b + 1) % V, seq[i] = b, want[i] = t == lens[b] - 1;
    results r[2];
    int diff = 0;
    for (int x = 0; x < 2; x++) {
        eng_reset(&e[x], -1);
        run(&e[x], P, tok, seq, want, NULL, &r[x]);
    }
    diff += !same(&r[0], &r[1], B, 0);
    int cur[MAXB];
    for (int b = 0; b < B; b++) cur[b] = r[1].argmax[b];
    uint64_t u = 0x243f6a8885a308d3ULL;
    for (int s = 0; s < steps; s++) {
        int n = s < steps / 2 || B == 1 ? B : B - 1, sampled = s >= sample_from;
        int t[MAXB], q[MAXB];
        double uni[MAXB];
        for (int b = 0; b < n; b++) {
            t[b] = cur[b], q[b] = b;
            u ^= u << 13, u ^= u >> 7, u ^= u << 17;
            uni[b] = (double)(u >> 11) / 9007199254740992.0;
        }
        for (int x = 0; x < 2; x++) run(&e[x], n, t, q, NULL, sampled ? uni : NULL, &r[x]);
        int ok = same(&r[0], &r[1], n, sampled);
        CHECKF(ok, "B %d step %d: graphs on and off differ", B, s);
        diff += !ok;
        /* both fed from the plain run's tokens, so one difference does not hide later ones */
        for (int b = 0; b < n; b++) cur[b] = sampled && r[1].sampled[b] >= 0 ? r[1].sampled[b] : r[1].argmax[b];
    }
    free(tok), free(seq), free(want);
    return diff;
}

static void one_model(const char *name, const char *const *args, int nargs) {
    char dir[300];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    mk_opts o;
    CHECK(mk_parse_args(&o, nargs, (char **)args, NULL) == 0);
    CHECK(mk_write_model(dir, &o) == 0);
    model m;
    CHECK(model_open(&m, dir) == 0);
    int V = m.cfg.V;
    static const int lens[][MAXB] = {{9}, {1, 17, 5}, {3, 30, 8, 1, 12, 21}};
    static const int Bs[] = {1, 3, 6};
    for (int i = 0; i < 3; i++) {
        int B = Bs[i];
        engine e[2];
        unsetenv("LR_GPU_GRAPHS");
        CHECK(eng_init(&e[0], &m, ENG_CUDA, B, 64, 64, KMAX, 1) == 0);
        setenv("LR_GPU_GRAPHS", "0", 1);
        CHECK(eng_init(&e[1], &m, ENG_CUDA, B, 64, 64, KMAX, 1) == 0);
        unsetenv("LR_GPU_GRAPHS");
        size_t launches0 = emu_graph_launches();
        int diff = decode(e, V, B, lens[i], 12, 9);
        gpu_graph_stats on, off;
        gpu_fwd_graph_stats(e[0].gpu, &on);
        gpu_fwd_graph_stats(e[1].gpu, &off);
        fprintf(stderr, "%s B %d: %d differing calls; graphs: %ld replays, %ld captures, %ld failures\n", name, B,
                diff, on.replays, on.captures, on.failures);
        CHECK(diff == 0);
        CHECK(on.enabled && !off.enabled && off.replays == 0 && off.captures == 0);
        CHECK(on.failures == 0);
        /* each shape (all slots greedy; fewer slots greedy; sampled) is captured
         * on its second call and replayed after: with 12 steps at least 6 replays */
        CHECKF(on.captures >= (B > 1 ? 3 : 2) && on.replays >= 6, "%ld captures, %ld replays", on.captures,
               on.replays);
        CHECK(emu_graph_launches() - launches0 == (size_t)on.replays);
        eng_free(&e[0]), eng_free(&e[1]);
    }
    model_free(&m);
}

/* One slot's context grows from 505 to 521 keys: att_splits goes from 1 to
 * 2 at 512 on the emulated device's 132 multiprocessors, which changes the
 * attention launches; a graph of the old count must not be replayed. */
static void split_change(void) {
    char dir[300];
    snprintf(dir, sizeof dir, "%s/split", tmpdir);
    const char *args[] = {"--hidden", "64", "--heads", "4", "--kv-heads", "1", "--layers", "1", "--dtype", "bf16"};
    mk_opts o;
    CHECK(mk_parse_args(&o, 10, (char **)args, NULL) == 0);
    CHECK(mk_write_model(dir, &o) == 0);
    model m;
    CHECK(model_open(&m, dir) == 0);
    CHECK(att_splits(2, m.cfg.NKV, 505, 132) == 1 && att_splits(2, m.cfg.NKV, 521, 132) == 2);
    engine e[2];
    unsetenv("LR_GPU_GRAPHS");
    CHECK(eng_init(&e[0], &m, ENG_CUDA, 2, 600, 512, KMAX, 1) == 0);
    setenv("LR_GPU_GRAPHS", "0", 1);
    CHECK(eng_init(&e[1], &m, ENG_CUDA, 2, 600, 512, KMAX, 1) == 0);
    unsetenv("LR_GPU_GRAPHS");
    const int lens[2] = {505, 40};
    int diff = decode(e, m.cfg.V, 2, lens, 32, 1000);
    gpu_graph_stats on;
    gpu_fwd_graph_stats(e[0].gpu, &on);
    fprintf(stderr, "split change: %d differing calls; graphs: %ld replays, %ld captures\n", diff, on.replays,
            on.captures);
    CHECK(diff == 0);
    /* all slots before and after the split change, then one slot fewer */
    CHECKF(on.captures >= 3 && on.replays >= 20, "%ld captures, %ld replays", on.captures, on.replays);
    eng_free(&e[0]), eng_free(&e[1]);
    model_free(&m);
}

/* Calls of 8 new rows for each of two slots (a chunked prefill): under
 * ATT_TC_ROWS and with 16 query lanes a tile, so the tensor-core attention
 * runs, and with 16 rows <= B slots decode-shaped enough for a graph: the
 * same shape every call is captured and replayed, equal to graphs off. */
static void tc_chunks(void) {
    char dir[300];
    snprintf(dir, sizeof dir, "%s/tc", tmpdir);
    const char *args[] = {"--hidden", "64", "--heads", "4", "--kv-heads", "2", "--layers", "2", "--dtype", "bf16"};
    mk_opts o;
    CHECK(mk_parse_args(&o, 10, (char **)args, NULL) == 0);
    CHECK(mk_write_model(dir, &o) == 0);
    model m;
    CHECK(model_open(&m, dir) == 0);
    engine e[2];
    unsetenv("LR_GPU_GRAPHS");
    CHECK(eng_init(&e[0], &m, ENG_CUDA, 16, 128, 64, KMAX, 1) == 0);
    setenv("LR_GPU_GRAPHS", "0", 1);
    CHECK(eng_init(&e[1], &m, ENG_CUDA, 16, 128, 64, KMAX, 1) == 0);
    unsetenv("LR_GPU_GRAPHS");
    size_t tc0 = emu_kernel_launches("attention_tc_kernel");
    int diff = 0, tok[16], seq[16];
    unsigned char want[16];
    for (int c = 0; c < 8; c++) {
        for (int i = 0; i < 16; i++) tok[i] = (7 * i + 29 * c + 3) % m.cfg.V, seq[i] = i / 8, want[i] = i % 8 == 7;
        results r[2];
        for (int x = 0; x < 2; x++) run(&e[x], 16, tok, seq, want, NULL, &r[x]);
        diff += !same(&r[0], &r[1], 2, 0);
    }
    gpu_graph_stats on;
    gpu_fwd_graph_stats(e[0].gpu, &on);
    size_t tc = emu_kernel_launches("attention_tc_kernel") - tc0;
    fprintf(stderr, "tc chunks: %d differing calls; graphs: %ld replays, %ld captures; %zu tc launches\n", diff,
            on.replays, on.captures, tc);
    CHECK(diff == 0);
    CHECKF(on.captures >= 1 && on.replays >= 5, "%ld captures, %ld replays", on.captures, on.replays);
    CHECK(tc == 2 * 8 * 2); /* two engines, 8 calls, 2 layers: every call on tensor cores */
    eng_free(&e[0]), eng_free(&e[1]);
    model_free(&m);
}

int main(void) {
    CHECK(mkdtemp(tmpdir) != NULL);
    const char *a1[] = {"--layers", "2", "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--dtype", "bf16"};
    one_model("qwen-gqa", a1, 10);
    const char *a2[] = {"--arch", "llama", "--bias", "--heads", "4", "--kv-heads", "4", "--layers", "2", "--hidden", "32"};
    one_model("llama-bias", a2, 11);
    split_change();
    tc_chunks();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    CHECK(system(cmd) == 0);
    CHECK_DONE();
}
