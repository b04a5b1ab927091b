/* test_model: the CPU forward pass against transformers' logits
 * (tests/golden/model_ref.*, written by tests/ref/model_ref.py), on tiny
 * models regenerated here with the same generator lr-mkmodel uses; then
 * self-consistency: step-by-step decoding with the KV cache == full
 * recompute, batched sequences of different lengths == one at a time,
 * chunked prefill and kept activations == plain, sharded checkpoints ==
 * single file.
 * Error norm vs transformers: max|c - ref| / max|ref| over the kept rows of a
 * config, must be < 1e-4. Self-consistency: the same norm < 1e-5. */
#include "check.h"
#include "nn/forward.h"
#include "model/mkmodel.h"
#include "nn/ops_cpu.h"
#include "model/model.h"
#include "io/safetensors.h"
#include "base/util.h"

#include <cblas.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *tmpdir(void) {
    const char *t = getenv("LR_TMP");
    return t ? t : "/tmp";
}

static double rel_err(const float *a, const float *ref, size_t n) { return check_rel_err(a, ref, n); }

static uint64_t file_fnv(const char *path) {
    char *buf;
    size_t n;
    if (lr_read_file(path, &buf, &n)) return 0;
    uint64_t h = lr_fnv1a64(LR_FNV_INIT, buf, n);
    free(buf);
    return h;
}

typedef struct {
    int S;          /* sequences */
    int *lens;
    int **toks;
    int total;
} seqs_t;

/* Teacher-forcing logits of all sequences batched: (total, V). */
static float *teacher(const model *m, const seqs_t *s, int max_tokens, int keep) {
    fwd f;
    CHECK(fwd_init(&f, m, s->S, 64, max_tokens, keep, 0) == 0);
    float *lg = xmalloc((size_t)s->total * m->cfg.V * sizeof(float));
    int rc = fwd_teacher(&f, s->S, (const int *const *)s->toks, s->lens, lg);
    CHECKF(rc == 0, "%s", lr_errmsg());
    fwd_free(&f);
    return lg;
}

/* The same rows computed in other ways; all must agree with `full`. */
static void self_consistency(const char *name, const model *m, const seqs_t *s, const float *full) {
    int V = m->cfg.V;
    size_t off = 0;
    /* one sequence at a time; prefill 1 token then decode step by step */
    for (int q = 0; q < s->S; q++) {
        fwd f;
        CHECK(fwd_init(&f, m, 1, 64, 16, 0, 1) == 0);
        float *lg = xmalloc((size_t)V * sizeof(float));
        const int *t0 = s->toks[q];
        int one = 1;
        CHECK(fwd_prefill(&f, 1, &t0, &one, lg) == 0);
        double e = rel_err(lg, full + off * V, (size_t)V);
        for (int p = 1; p < s->lens[q]; p++) {
            CHECK(fwd_decode(&f, 1, &s->toks[q][p], lg) == 0);
            double e2 = rel_err(lg, full + (off + p) * V, (size_t)V);
            if (e2 > e) e = e2;
        }
        CHECKF(e < 1e-5, "%s: seq %d: decode vs batched teacher forcing: rel err %.3g", name, q, e);
        /* teacher forcing alone */
        float *alone = teacher(m, &(seqs_t){1, &s->lens[q], &s->toks[q], s->lens[q]}, 64, 0);
        double e3 = rel_err(alone, full + off * V, (size_t)s->lens[q] * V);
        CHECKF(e3 < 1e-5, "%s: seq %d: alone vs batched: rel err %.3g", name, q, e3);
        free(alone);
        free(lg);
        fwd_free(&f);
        off += (size_t)s->lens[q];
    }
    /* batched decode with ragged lengths: prefill 2 tokens of every
     * sequence, then rounds of one token for the sequences not done yet */
    fwd f;
    CHECK(fwd_init(&f, m, s->S, 64, 64, 0, 2) == 0);
    int two[8], *rowtok = xmalloc((size_t)s->S * sizeof(int)), *rowseq = xmalloc((size_t)s->S * sizeof(int));
    for (int q = 0; q < s->S; q++) two[q] = 2;
    float *lg = xmalloc((size_t)s->S * V * sizeof(float));
    CHECK(fwd_prefill(&f, s->S, (const int *const *)s->toks, two, lg) == 0);
    double e = 0;
    for (int p = 2;; p++) {
        int n = 0;
        for (int q = 0; q < s->S; q++)
            if (p < s->lens[q]) rowtok[n] = s->toks[q][p], rowseq[n++] = q;
        if (!n) break;
        CHECK(fwd_run(&f, n, rowtok, rowseq, NULL, lg) == 0);
        for (int r = 0; r < n; r++) {
            size_t o = 0;
            for (int q = 0; q < rowseq[r]; q++) o += (size_t)s->lens[q];
            double e2 = rel_err(lg + (size_t)r * V, full + (o + p) * V, (size_t)V);
            if (e2 > e) e = e2;
        }
    }
    CHECKF(e < 1e-5, "%s: ragged batched decode vs teacher forcing: rel err %.3g", name, e);
    free(rowtok);
    free(rowseq);
    free(lg);
    fwd_free(&f);
    /* chunks of 5 rows, and kept activations */
    float *ch = teacher(m, s, 5, 0), *kp = teacher(m, s, 64, 1);
    double ec = rel_err(ch, full, (size_t)s->total * V), ek = rel_err(kp, full, (size_t)s->total * V);
    CHECKF(ec < 1e-5, "%s: chunked prefill: rel err %.3g", name, ec);
    CHECKF(ek < 1e-5, "%s: kept activations: rel err %.3g", name, ek);
    free(ch);
    free(kp);
}

/* bf16 decode copies (model_make_bf16): refused for f32 checkpoints; for
 * bf16 ones, decode logits bit-identical to the float32 path. */
static void bf16_copies(const char *name, const char *dir, const model *m, const seqs_t *s) {
    model b;
    if (model_load(&b, dir)) { CHECKF(0, "%s", lr_errmsg()); return; }
    int rc = model_make_bf16(&b), V = m->cfg.V;
    const st_tensor *t = NULL;
    st_set st;
    char p[2048];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (st_open_file(&st, p) == 0) {
        t = st_find(&st, "model.norm.weight");
        CHECK(t != NULL);
        int is_bf16 = t && t->dtype == ST_BF16;
        CHECKF(rc == (is_bf16 ? 0 : LR_EINPUT), "%s: model_make_bf16 rc %d", name, rc);
        st_close(&st);
    }
    if (rc == 0) {
        fwd fa, fb;
        CHECK(fwd_init(&fa, m, s->S, 64, 64, 0, 0) == 0 && fwd_init(&fb, &b, s->S, 64, 64, 0, 0) == 0);
        float *la = xmalloc((size_t)s->S * V * sizeof(float)), *lb = xmalloc((size_t)s->S * V * sizeof(float));
        int one[8], next[8], same = 1;
        for (int q = 0; q < s->S; q++) one[q] = 1;
        CHECK(fwd_prefill(&fa, s->S, (const int *const *)s->toks, one, la) == 0);
        CHECK(fwd_prefill(&fb, s->S, (const int *const *)s->toks, one, lb) == 0);
        same &= !memcmp(la, lb, (size_t)s->S * V * sizeof(float));
        for (int p2 = 1; p2 < 6; p2++) { /* every sequence has >= 6 tokens */
            for (int q = 0; q < s->S; q++) next[q] = s->toks[q][p2];
            CHECK(fwd_decode(&fa, s->S, next, la) == 0 && fwd_decode(&fb, s->S, next, lb) == 0);
            same &= !memcmp(la, lb, (size_t)s->S * V * sizeof(float));
        }
        CHECKF(same, "%s: bf16 decode copies changed the logits", name);
        free(la);
        free(lb);
        fwd_free(&fa);
        fwd_free(&fb);
    }
    model_free(&b);
}

/* Rewrites dir's model.safetensors as two shards + index; returns 0 ok. */
static int shard(const char *dir, const char *out) {
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    st_set s;
    if (st_open_file(&s, p)) return 1;
    if (access(out, F_OK) && mkdir(out, 0777)) return 1;
    int n = s.ntensors, half = n / 2;
    st_wtensor *w = xcalloc((size_t)n, sizeof *w);
    json_t *wm = json_object();
    for (int i = 0; i < n; i++) {
        const st_tensor *t = &s.tensors[i];
        w[i] = (st_wtensor){t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(w[i].shape, t->shape, sizeof t->shape);
        json_object_set_new(wm, t->name, json_string(i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors"));
    }
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", out);
    int rc = st_write(p, w, half);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", out);
    rc |= st_write(p, w + half, n - half);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", out);
    json_t *idx = json_pack("{s:{}, s:o}", "metadata", "weight_map", wm);
    rc |= json_dump_file(idx, p, 0);
    json_decref(idx);
    const char *files[] = {"config.json", "generation_config.json"};
    for (int i = 0; i < 2; i++) {
        char *buf;
        size_t len;
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        rc |= lr_read_file(p, &buf, &len);
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        FILE *f = fopen(p, "wb");
        rc |= !f || fwrite(buf, 1, len, f) != len;
        if (f) fclose(f);
        free(buf);
    }
    free(w);
    st_close(&s);
    return rc;
}

/* Threaded paths (attention, streaming matmul for N <= 8) on a model big
 * enough to take them: results must not depend on their thread counts, and
 * a rerun must be bit-identical. (OpenBLAS sgemm itself may round
 * differently with another OPENBLAS_NUM_THREADS: kept fixed here.) */
static void thread_independence(void) {
    mk_opts o;
    char *args[] = {"--hidden", "256", "--heads", "4", "--kv-heads", "2", "--inter", "1024", "--vocab", "1100", "--seed", "3"};
    CHECK(mk_parse_args(&o, 12, args, NULL) == 0);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/threads", tmpdir());
    CHECKF(mk_write_model(dir, &o) == 0, "%s", lr_errmsg());
    model m;
    if (model_load(&m, dir)) { CHECKF(0, "%s", lr_errmsg()); return; }
    enum { T = 72, G = 3 };
    int toks[T], len = T - G, V = m.cfg.V;
    for (int t = 0; t < T; t++) toks[t] = (t * 131 + 7) % 272;
    const int *tp = toks;
    float *out[3];
    openblas_set_num_threads(2);
    for (int run = 0; run < 3; run++) { /* attention threads 1, 2, 2 */
        fwd f;
        CHECK(fwd_init(&f, &m, 1, T, T, 0, run ? 2 : 1) == 0);
        float *lg = out[run] = xmalloc((size_t)(len + G) * V * sizeof(float));
        CHECK(fwd_teacher(&f, 1, &tp, &len, lg) == 0); /* attention work 69*70/2*256 > 2^18: threaded */
        for (int g = 0; g < G; g++) CHECK(fwd_decode(&f, 1, &toks[len + g], lg + (size_t)(len + g) * V) == 0);
        fwd_free(&f);
    }
    CHECKF(!memcmp(out[0], out[1], (size_t)(len + G) * V * sizeof(float)), "attention on 1 vs 2 threads differs");
    CHECKF(!memcmp(out[1], out[2], (size_t)(len + G) * V * sizeof(float)), "rerun differs");
    /* streaming matmul (lm_head 1100 x 256 > 2^18: threaded) on 1 vs 2
     * threads and for N = 1 vs N = 5 rows: identical; vs sgemm: close */
    float x[5 * 256], *y[3];
    for (int i = 0; i < 5 * 256; i++) x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    for (int k = 0; k < 3; k++) y[k] = xmalloc((size_t)16 * V * sizeof(float));
    openblas_set_num_threads(1);
    matmul_forward(y[0], x, m.w.lm_head, 5, 256, V);
    openblas_set_num_threads(2);
    matmul_forward(y[1], x, m.w.lm_head, 5, 256, V);
    for (int n = 0; n < 5; n++) matmul_forward(y[2] + (size_t)n * V, x + n * 256, m.w.lm_head, 1, 256, V);
    CHECK(!memcmp(y[0], y[1], (size_t)5 * V * sizeof(float)));
    CHECK(!memcmp(y[0], y[2], (size_t)5 * V * sizeof(float)));
    float x16[16 * 256];
    for (int r = 0; r < 16; r++) memcpy(x16 + r * 256, x + (r % 5) * 256, sizeof(float) * 256);
    matmul_forward(y[2], x16, m.w.lm_head, 16, 256, V); /* sgemm */
    double e = rel_err(y[2], y[0], (size_t)5 * V);
    CHECKF(e < 1e-5, "streaming kernel vs sgemm: rel err %.3g", e);
    for (int k = 0; k < 3; k++) free(y[k]);
    for (int k = 0; k < 3; k++) free(out[k]);
    /* bf16 kernel with a row length that is not a multiple of 8 and more
     * than 8 rows: equal to the float32 kernel run on 8 + 3 rows */
    enum { OC = 37, IC = 21, NR = 11 };
    uint16_t w16[OC * IC];
    float w32[OC * IC], xin[NR * IC], o16[NR * OC], o32[NR * OC];
    for (int i = 0; i < OC * IC; i++) {
        w16[i] = st_f32_to_bf16((float)((i * 53) % 97) / 48.0f - 1.0f);
        w32[i] = st_bf16_to_f32(w16[i]);
    }
    for (int i = 0; i < NR * IC; i++) xin[i] = (float)((i * 29) % 31) / 15.0f - 1.0f;
    matmul_bf16_forward(o16, xin, w16, NR, IC, OC);
    matmul_forward(o32, xin, w32, 8, IC, OC);
    matmul_forward(o32 + 8 * OC, xin + 8 * IC, w32, NR - 8, IC, OC);
    CHECK(!memcmp(o16, o32, sizeof o16));
    model_free(&m);
}

int main(void) {
    thread_independence();
    const char *root = getenv("LR_ROOT");
    char path[2048];
    snprintf(path, sizeof path, "%s/tests/golden/model_ref.json", root ? root : ".");
    json_error_t jerr;
    json_t *g = json_load_file(path, 0, &jerr);
    CHECKF(g != NULL, "%s: %s", path, jerr.text);
    if (!g) CHECK_DONE();
    snprintf(path, sizeof path, "%s/tests/golden/model_ref.f32", root ? root : ".");
    char *ref;
    size_t reflen;
    CHECKF(lr_read_file(path, &ref, &reflen) == 0, "%s", lr_errmsg());

    json_t *js = json_object_get(g, "seqs");
    seqs_t s = {(int)json_array_size(js), NULL, NULL, 0};
    s.lens = xcalloc((size_t)s.S, sizeof(int));
    s.toks = xcalloc((size_t)s.S, sizeof(int *));
    for (int q = 0; q < s.S; q++) {
        json_t *a = json_array_get(js, (size_t)q);
        s.lens[q] = (int)json_array_size(a);
        s.toks[q] = xmalloc((size_t)s.lens[q] * sizeof(int));
        for (int t = 0; t < s.lens[q]; t++) s.toks[q][t] = (int)json_integer_value(json_array_get(a, (size_t)t));
        s.total += s.lens[q];
    }
    size_t refoff = 0;
    size_t ci;
    json_t *cfg;
    json_array_foreach(json_object_get(g, "configs"), ci, cfg) {
        const char *name = json_string_value(json_object_get(cfg, "name"));
        json_t *ja = json_object_get(cfg, "args");
        int na = (int)json_array_size(ja);
        char *args[64];
        for (int i = 0; i < na && i < 64; i++) args[i] = (char *)json_string_value(json_array_get(ja, (size_t)i));
        mk_opts o;
        CHECK(mk_parse_args(&o, na, args, NULL) == 0);
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", tmpdir(), name);
        CHECKF(mk_write_model(dir, &o) == 0, "%s", lr_errmsg());
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        char hx[17];
        snprintf(hx, sizeof hx, "%016llx", (unsigned long long)file_fnv(path));
        CHECKF(!strcmp(hx, json_string_value(json_object_get(cfg, "safetensors_fnv1a64"))),
               "%s: generator output changed (%s); rerun tests/ref/model_ref.py", name, hx);
        model m;
        int rc = model_load(&m, dir);
        CHECKF(rc == 0, "%s", lr_errmsg());
        if (rc) continue;
        int V = m.cfg.V;
        CHECK(V == json_integer_value(json_object_get(cfg, "vocab")));
        float *full = teacher(&m, &s, 64, 0);
        json_t *rows = json_object_get(cfg, "rows");
        size_t nr = json_array_size(rows);
        CHECK((refoff + nr * V) * 4 <= reflen);
        double md = 0, mr = 0;
        for (size_t r = 0; r < nr && (refoff + nr * V) * 4 <= reflen; r++) {
            int q = (int)json_integer_value(json_array_get(json_array_get(rows, r), 0));
            int p = (int)json_integer_value(json_array_get(json_array_get(rows, r), 1));
            size_t off = 0;
            for (int k = 0; k < q; k++) off += (size_t)s.lens[k];
            const float *a = full + (off + p) * V;
            float b[V];
            memcpy(b, ref + (refoff + r * V) * 4, sizeof b);
            for (int v = 0; v < V; v++) {
                double d = fabs((double)a[v] - b[v]);
                if (d > md || d != d) md = d != d ? INFINITY : d;
                if (fabs(b[v]) > mr) mr = fabs(b[v]);
            }
        }
        refoff += nr * V;
        double err = md / mr;
        fprintf(stderr, "%-34s vs transformers: max|c-ref| %.3g, max|ref| %.3g, rel %.3g\n", name, md, mr, err);
        CHECKF(err < 1e-4, "%s: rel err %.3g vs transformers", name, err);
        self_consistency(name, &m, &s, full);
        bf16_copies(name, dir, &m, &s);
        /* sharded copy: same logits, bit for bit (same weights, same code) */
        if (ci == 0) {
            char sd[1100];
            snprintf(sd, sizeof sd, "%s_sharded", dir);
            CHECK(shard(dir, sd) == 0);
            model m2;
            rc = model_load(&m2, sd);
            CHECKF(rc == 0, "%s", lr_errmsg());
            if (!rc) {
                float *f2 = teacher(&m2, &s, 64, 0);
                CHECK(memcmp(f2, full, (size_t)s.total * V * sizeof(float)) == 0);
                CHECK(m2.hash != m.hash); /* file names and sizes differ */
                free(f2);
                model_free(&m2);
            }
        }
        free(full);
        model_free(&m);
    }
    for (int q = 0; q < s.S; q++) free(s.toks[q]);
    free(s.toks);
    free(s.lens);
    free(ref);
    json_decref(g);
    CHECK_DONE();
}
