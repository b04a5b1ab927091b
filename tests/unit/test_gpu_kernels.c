/* The CUDA backend's kernels against their CPU twins, run on the emulated
 * device (this test links the g++ build of the .cu files, where device memory
 * is host memory, so plain malloc'd buffers can be passed to the
 * launchers). Inputs that the device holds in bf16 are rounded to bf16 for
 * the CPU side too, so the comparisons measure the kernels, not the
 * storage format; tolerances are a few bf16 ulps where outputs are bf16. */
#include "check.h"

#include "../../cuda/devmem.h"
#include "../../cuda/kernels.h"
#include "infer/compact.h"
#include "nn/ops_cpu.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* cuda/emu.cc: this test hands host buffers to the launchers directly */
void emu_allow_host_pointers(int on);

static uint64_t rng = 12345;
static double urand(void) { /* [-1, 1) */
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng >> 11) / 4503599627370496.0 - 1.0;
}
static float bfr(float x) { return st_bf16_to_f32(st_f32_to_bf16(x)); }
static float *frand(size_t n, double scale) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)(scale * urand());
    return p;
}
static uint16_t *to_bf16(const float *x, size_t n) {
    uint16_t *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = st_f32_to_bf16(x[i]);
    return p;
}
/* max |a - b| over max |b| */
static double relerr_bf(const uint16_t *a, const float *b, size_t n) {
    double d = 0, m = 1e-30;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs(st_bf16_to_f32(a[i]) - b[i]));
        m = fmax(m, fabs(b[i]));
    }
    return d / m;
}

static void test_embedding_rmsnorm_swiglu(void) {
    int N = 7, C = 96, V = 50, I = 40;
    float *wte = frand((size_t)V * C, 1);
    for (int i = 0; i < V * C; i++) wte[i] = bfr(wte[i]);
    uint16_t *wte16 = to_bf16(wte, (size_t)V * C);
    int tok[7] = {3, 0, 49, 3, 17, 8, 22};
    float *x = malloc((size_t)N * C * 4), *xr = malloc((size_t)N * C * 4);
    k_embedding(x, tok, wte16, N, C, NULL);
    embedding_forward(xr, tok, wte, N, C);
    CHECK(!memcmp(x, xr, (size_t)N * C * 4));

    /* the previous call's picks fed to this call's rows (decode one step
     * ahead): rows 1, 2, 4 and 6 take picks 2, 0, 3 and 1 (pick 1, a NaN
     * row's -1, and pick 3, past V, become 0); rows 0, 3 and 5 keep theirs */
    int feed[7] = {-1, 2, 0, -1, 3, -1, 1}, src[4] = {11, -1, 42, 50};
    int ft[7], fr[7];
    memcpy(ft, tok, sizeof tok), memcpy(fr, tok, sizeof tok);
    k_feed(ft, feed, src, N, V, NULL);
    feed_tokens(fr, feed, src, N, V);
    int want_ft[7] = {3, 42, 11, 3, 0, 8, 0};
    CHECK(!memcmp(ft, fr, sizeof ft) && !memcmp(fr, want_ft, sizeof ft));

    float *w = frand(C, 1), *ref = malloc((size_t)N * C * 4);
    uint16_t *out = malloc((size_t)N * C * 2);
    k_rmsnorm(out, x, w, NULL, N, C, 1e-6f, NULL);
    rmsnorm_forward(ref, NULL, x, w, N, C, 1e-6f);
    CHECKF(relerr_bf(out, ref, (size_t)N * C) < 8e-3, "rmsnorm %g", relerr_bf(out, ref, (size_t)N * C));
    /* gathered rows: out row j is x row rows[j] */
    int rows[3] = {6, 0, 4};
    k_rmsnorm(out, x, w, rows, 3, C, 1e-6f, NULL);
    for (int j = 0; j < 3; j++)
        CHECK(relerr_bf(out + (size_t)j * C, ref + (size_t)rows[j] * C, (size_t)C) < 8e-3);

    float *gu = frand((size_t)N * 2 * I, 3), *g = malloc((size_t)N * I * 4), *u = malloc((size_t)N * I * 4);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < I; i++) g[n * I + i] = gu[n * 2 * I + i], u[n * I + i] = gu[n * 2 * I + I + i];
    float *h = malloc((size_t)N * I * 4);
    uint16_t *h16 = malloc((size_t)N * I * 2);
    swiglu_forward(h, g, u, (long)N * I);
    k_swiglu(h16, gu, N, I, NULL);
    CHECK(relerr_bf(h16, h, (size_t)N * I) < 8e-3);
    /* from bf16 gate/up (LR_GPU_GU16): against the CPU on the same rounded
     * inputs, so only the output's rounding is left, at most half a bf16
     * ulp, 2^-8 of the largest output (measured 2.0e-3) */
    uint16_t *gu16 = to_bf16(gu, (size_t)N * 2 * I);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < I; i++) g[n * I + i] = bfr(g[n * I + i]), u[n * I + i] = bfr(u[n * I + i]);
    swiglu_forward(h, g, u, (long)N * I);
    k_swiglu_bf16(h16, gu16, N, I, NULL);
    CHECKF(relerr_bf(h16, h, (size_t)N * I) < 3.9e-3, "swiglu from bf16 %g", relerr_bf(h16, h, (size_t)N * I));
    free(gu16);
    free(wte), free(wte16), free(x), free(xr), free(w), free(ref), free(out), free(gu), free(g), free(u), free(h), free(h16);
}

/* qkv + bias -> RoPE'd q and the bf16 cache; then attention over tiles,
 * both against ops_cpu.c. seq/pos mix a teacher-forced slot longer than a
 * tile, a second slot, and a decode row appended to a slot with history. */
static void test_qkv_attention(int NH, int NKV, int HD) {
    int B = 3, Tmax = 80, QD = NH * HD, KD = NKV * HD, W = QD + 2 * KD;
    const kv_pages flat = {NULL, Tmax, 1};
    /* slot 0: positions 0..44 (two tiles and a half); slot 2: 0..9; slot 1:
     * positions 0..5 then 6 alone later in the rows */
    int N = 45 + 10 + 6 + 1;
    int *seq = malloc(N * sizeof *seq), *pos = malloc(N * sizeof *pos), r = 0;
    for (int t = 0; t < 45; t++) seq[r] = 0, pos[r++] = t;
    for (int t = 0; t < 6; t++) seq[r] = 1, pos[r++] = t;
    for (int t = 0; t < 10; t++) seq[r] = 2, pos[r++] = t;
    seq[r] = 1, pos[r++] = 6;
    float *qkv = frand((size_t)N * W, 1), *bias = frand(W, 0.3);
    float inv[128];
    rope_inv_freq(inv, HD, 10000.0f);
    float *q = malloc((size_t)N * QD * 4);
    size_t csz = (size_t)B * NKV * Tmax * HD;
    uint16_t *kc = calloc(csz, 2), *vc = calloc(csz, 2);
    k_qkv_rope(q, kc, vc, qkv, bias, inv, seq, pos, N, NH, NKV, HD, flat, NULL);

    /* CPU: split, bias, rope, store in a float32 cache */
    float *qr = malloc((size_t)N * QD * 4), *kr = malloc((size_t)N * KD * 4), *vr = malloc((size_t)N * KD * 4);
    for (int n = 0; n < N; n++)
        for (int j = 0; j < W; j++) {
            float v = qkv[(size_t)n * W + j] + bias[j];
            if (j < QD) qr[(size_t)n * QD + j] = v;
            else if (j < QD + KD) kr[(size_t)n * KD + j - QD] = v;
            else vr[(size_t)n * KD + j - QD - KD] = v;
        }
    rope_forward(qr, qr, pos, N, NH, HD, 10000.0f);
    rope_forward(kr, kr, pos, N, NKV, HD, 10000.0f);
    double dq = 0;
    for (size_t i = 0; i < (size_t)N * QD; i++) dq = fmax(dq, fabs(q[i] - qr[i]));
    CHECKF(dq < 1e-5, "q after rope: %g", dq);
    float *kcf = calloc(csz, 4), *vcf = calloc(csz, 4);
    int bad_cache = 0;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < NKV; h++)
            for (int d = 0; d < HD; d++) {
                size_t at = (((size_t)seq[n] * NKV + h) * Tmax + pos[n]) * HD + d;
                kcf[at] = st_bf16_to_f32(kc[at]), vcf[at] = st_bf16_to_f32(vc[at]);
                bad_cache += fabsf(kcf[at] - kr[(size_t)n * KD + h * HD + d]) > 8e-3f * (1 + fabsf(kr[(size_t)n * KD + h * HD + d]));
                bad_cache += vcf[at] != bfr(vr[(size_t)n * KD + h * HD + d]);
            }
    CHECKF(bad_cache == 0, "%d cache entries wrong", bad_cache);

    att_tile *tiles = malloc(N * sizeof *tiles);
    int rows = ATT_ROWS(NH, NKV), nt = att_tiles(tiles, seq, pos, N, rows);
    /* 45 rows of slot 0, then 6, 10 and 1 of the others, at most `rows` a tile */
    int want_nt = (45 + rows - 1) / rows + (6 + rows - 1) / rows + (10 + rows - 1) / rows + 1;
    CHECKF(nt == want_nt, "tiles %d, expected %d", nt, want_nt);
    uint16_t *out = malloc((size_t)N * QD * 2);
    float *ref = malloc((size_t)N * QD * 4);
    k_attention(out, q, kc, vc, tiles, nt, NH, NKV, HD, flat, NULL);
    attention_forward(ref, q, kcf, vcf, seq, pos, N, NH, NKV, HD, Tmax, 1);
    double e = relerr_bf(out, ref, (size_t)N * QD);
    CHECKF(e < 1e-2, "attention NH %d NKV %d HD %d: rel err %g", NH, NKV, HD, e);
    free(seq), free(pos), free(qkv), free(bias), free(q), free(kc), free(vc), free(qr), free(kr), free(vr);
    free(kcf), free(vcf), free(tiles), free(out), free(ref);
}

/* Split-KV attention (flash-decoding) on decode-like calls: one row of a
 * long context, a run of rows deep in another slot, one short row (whose
 * later key ranges are empty), GQA 6:1, HD 128; against the CPU attention
 * on the same bf16 cache and against the one-pass kernel, for split counts
 * that do and do not divide the context, up to the most att_splits picks. */
static void test_attention_split(void) {
    const int NH = 12, NKV = 2, HD = 128, Tmax = 3000, B = 3, QD = NH * HD;
    const kv_pages flat = {NULL, Tmax, 1};
    int seq[] = {0, 1, 1, 1, 2}, pos[] = {2999, 1000, 1001, 1002, 10}, N = 5;
    size_t csz = (size_t)B * NKV * Tmax * HD;
    float *kcf = frand(csz, 1), *vcf = frand(csz, 1), *q = frand((size_t)N * QD, 1);
    for (size_t i = 0; i < csz; i++) kcf[i] = bfr(kcf[i]), vcf[i] = bfr(vcf[i]);
    uint16_t *kc = to_bf16(kcf, csz), *vc = to_bf16(vcf, csz);
    att_tile tiles[5];
    int nt = att_tiles(tiles, seq, pos, N, ATT_ROWS(NH, NKV));
    CHECK(nt == 3);
    float *ref = malloc((size_t)N * QD * 4);
    attention_forward(ref, q, kcf, vcf, seq, pos, N, NH, NKV, HD, Tmax, 1);
    uint16_t *one = malloc((size_t)N * QD * 2), *out = malloc((size_t)N * QD * 2);
    k_attention(one, q, kc, vc, tiles, nt, NH, NKV, HD, flat, NULL);
    double e1 = relerr_bf(one, ref, (size_t)N * QD);
    CHECKF(e1 < 1e-2, "one-pass attention: rel err %g", e1);
    const int splits[] = {2, 7, att_splits(nt, NKV, 3000, 132), ATT_SPLIT_MAX};
    for (int si = 0; si < 4; si++) {
        float *part = malloc(att_part_floats(nt, NKV, HD, splits[si]) * sizeof *part);
        memset(out, 0xff, (size_t)N * QD * 2);
        k_attention_split(out, q, kc, vc, tiles, nt, NH, NKV, HD, flat, splits[si], part, NULL);
        double e = relerr_bf(out, ref, (size_t)N * QD), d = 0;
        int far = 0;
        for (size_t i = 0; i < (size_t)N * QD; i++) { /* against the one-pass kernel: an ulp or two of bf16 */
            float a = st_bf16_to_f32(out[i]), b = st_bf16_to_f32(one[i]);
            d = fmax(d, fabs(a - b));
            far += !(fabsf(a - b) <= 1.6e-2f * fabsf(b) + 1e-4f);
        }
        fprintf(stderr, "split-KV %d: rel err %.2e vs cpu (one-pass %.2e), max |diff| %.2e vs one-pass\n", splits[si],
                e, e1, d);
        CHECKF(e < 1e-2 && far == 0, "split %d: rel err %g vs cpu, %d values off the one-pass kernel (max %g)",
               splits[si], e, far, d);
        free(part);
    }
    /* the policy: a lone decode row of a long context splits; a full batch,
     * a short context or one split's worth of keys does not */
    CHECK(att_splits(1, 2, 3000, 132) == 3000 / ATT_SPLIT_MIN_KEYS);
    CHECK(att_splits(3, 2, 100000, 132) == 44);
    CHECK(att_splits(1, 2, 1 << 20, 132) == ATT_SPLIT_MAX);
    CHECK(att_splits(256, 2, 3000, 132) == 1);
    CHECK(att_splits(1, 2, 300, 132) == 1);
    free(kcf), free(vcf), free(q), free(kc), free(vc), free(ref), free(one), free(out);
}

/* Tensor-core attention (k_attention_tc) against the CPU attention on the
 * same bf16 cache, element by element within a bound derived from the two
 * roundings the kernel adds (see docs/CUDA.md):
 *   Q in bf16: each score moves by at most D = max_j scale |sum_d (bf(q_d) -
 *     q_d) k_jd| (computed here from the data), which moves the softmax
 *     weights by factors within exp(+-2D): |dO| <= vmax (exp(2D) - 1);
 *   P in bf16 (relative u = 2^-9, normalised by the sum of rounded
 *     weights): |dO| <= vmax 2u / (1 - u);
 * plus float rounding (1e-5 vmax) and the output's bf16 rounding (2^-8
 * |o|); vmax = max |v| over the keys the row sees. The calls mix: a tile
 * of a slot with keys from an earlier chunk (positions 150..), a prompt
 * of 37 rows from position 0 (no multiple of 16), a short run deep in a
 * third slot, and a decode-like single row. The FMA kernel's error on the
 * same data is reported next to it. */
static void test_attention_tc(int NH, int NKV, int HD) {
    const int B = 4, Tmax = 260, QD = NH * HD, G = NH / NKV;
    const kv_pages flat = {NULL, Tmax, 1};
    CHECK(att_tc_serves(NH, NKV, HD));
    enum { NSEG = 4 };
    const int sseg[NSEG] = {0, 1, 2, 3}, p0[NSEG] = {150, 0, 70, 200}, len[NSEG] = {107, 37, 5, 1};
    int N = 0;
    for (int i = 0; i < NSEG; i++) N += len[i];
    int *seq = malloc(N * sizeof *seq), *pos = malloc(N * sizeof *pos), r = 0;
    for (int i = 0; i < NSEG; i++)
        for (int t = 0; t < len[i]; t++) seq[r] = sseg[i], pos[r++] = p0[i] + t;
    size_t csz = (size_t)B * NKV * Tmax * HD;
    float *kcf = frand(csz, 1), *vcf = frand(csz, 1), *q = frand((size_t)N * QD, 2.5);
    for (size_t i = 0; i < csz; i++) kcf[i] = bfr(kcf[i]), vcf[i] = bfr(vcf[i]);
    uint16_t *kc = to_bf16(kcf, csz), *vc = to_bf16(vcf, csz);
    /* keys past each slot's last position are garbage the kernel must not touch (NaN) */
    for (int i = 0; i < NSEG; i++)
        for (int h = 0; h < NKV; h++)
            for (int t = p0[i] + len[i]; t < Tmax; t++)
                for (int d = 0; d < HD; d++) {
                    size_t at = (((size_t)sseg[i] * NKV + h) * Tmax + t) * HD + d;
                    kc[at] = vc[at] = 0x7fc0;
                }
    att_tile *tiles = malloc(N * sizeof *tiles);
    int rows = ATT_TC_ROWS(NH, NKV), nt = att_tiles(tiles, seq, pos, N, rows);
    uint16_t *out = malloc((size_t)N * QD * 2), *fma = malloc((size_t)N * QD * 2);
    float *ref = malloc((size_t)N * QD * 4);
    memset(out, 0xff, (size_t)N * QD * 2);
    k_attention_tc(out, q, kc, vc, tiles, nt, NH, NKV, HD, flat, NULL);
    attention_forward(ref, q, kcf, vcf, seq, pos, N, NH, NKV, HD, Tmax, 1);
    att_tile *ft = malloc(N * sizeof *ft);
    int fnt = att_tiles(ft, seq, pos, N, ATT_ROWS(NH, NKV));
    k_attention(fma, q, kc, vc, ft, fnt, NH, NKV, HD, flat, NULL);
    const double u = 1.0 / 512, scale = 1.0 / sqrt((double)HD);
    double worst = 0, etc = 0, efma = 0; /* worst: error over bound */
    int over = 0;
    for (int n = 0; n < N; n++)
        for (int hq = 0; hq < NH; hq++) {
            const float *qv = q + (size_t)n * QD + hq * HD;
            size_t kb = ((size_t)seq[n] * NKV + hq / G) * Tmax * HD;
            double D = 0, vmax = 0;
            for (int j = 0; j <= pos[n]; j++) {
                double ds = 0, sa = 0;
                for (int d = 0; d < HD; d++) {
                    double k = kcf[kb + (size_t)j * HD + d];
                    ds += ((double)bfr(qv[d]) - qv[d]) * k, sa += fabs(qv[d] * k);
                    vmax = fmax(vmax, fabs(vcf[kb + (size_t)j * HD + d]));
                }
                D = fmax(D, scale * (fabs(ds) + 2 * HD * sa * 6e-8));
            }
            double a = expm1(2 * D), b = 2 * u / (1 - u), wb = vmax * (a + b + a * b + 1e-5);
            for (int d = 0; d < HD; d++) {
                size_t i = (size_t)n * QD + hq * HD + d;
                double o = st_bf16_to_f32(out[i]), e = fabs(o - ref[i]), bound = wb + 2 * u * fabs(ref[i]);
                over += !(e <= bound);
                worst = fmax(worst, e / bound);
                etc = fmax(etc, e), efma = fmax(efma, fabs(st_bf16_to_f32(fma[i]) - ref[i]));
            }
        }
    fprintf(stderr, "tc attention NH %d NKV %d HD %d: %d tiles, max |err| %.2e (FMA kernel %.2e), worst err/bound %.2f\n",
            NH, NKV, HD, nt, etc, efma, worst);
    CHECKF(over == 0, "tc attention NH %d NKV %d HD %d: %d outputs over the bound (worst %.2f x)", NH, NKV, HD, over,
           worst);
    free(seq), free(pos), free(kcf), free(vcf), free(q), free(kc), free(vc), free(tiles), free(out), free(fma);
    free(ref), free(ft);
}

/* Row kinds for k_compact, each a case of its selection. */
enum {
    ROW_SOFT, ROW_SHARP, ROW_PEAKED, /* uniform in +-1, +-8, +-30: near-flat to peaked */
    ROW_TIES,     /* every other logit equal to the first: ties across the selection boundary */
    ROW_FLAT,     /* all equal: the K-th key's ties are everything (the ordered tie collect) */
    ROW_ONE_BIN,  /* 8.5 + 0.49 u: one 11-bit bin holds the whole row (every lane collides) */
    ROW_MANY_TIES,/* a few above, two thirds of the row at one value below them: too many ties to keep */
    ROW_LM,       /* a sum of uniforms with a few peaks, like a language model's logits */
    ROW_NARROW,   /* 8.5 + 1e-4 u: all 32 bits needed, ~700 ties at each value, few enough to keep */
    ROW_KINDS
};
static void fill_row(float *row, int V, int kind) {
    switch (kind) {
    case ROW_SOFT: case ROW_SHARP: case ROW_PEAKED: {
        double sharp = kind == ROW_SOFT ? 1 : kind == ROW_SHARP ? 8 : 30;
        for (int i = 0; i < V; i++) row[i] = (float)(sharp * urand());
        break;
    }
    case ROW_TIES:
        for (int i = 0; i < V; i++) row[i] = (float)(8 * urand());
        for (int i = 0; i < V; i += 2) row[i] = row[0];
        break;
    case ROW_FLAT:
        for (int i = 0; i < V; i++) row[i] = 0.25f;
        break;
    case ROW_ONE_BIN:
        for (int i = 0; i < V; i++) row[i] = (float)(8.5 + 0.49 * urand());
        break;
    case ROW_MANY_TIES:
        for (int i = 0; i < V; i++) {
            double u = urand();
            row[i] = u > 0.999 ? (float)(5 + urand()) : u > 0.33 ? 2.0f : (float)(1 + urand());
        }
        break;
    case ROW_NARROW:
        for (int i = 0; i < V; i++) row[i] = (float)(8.5 + 1e-4 * urand());
        break;
    default:
        for (int i = 0; i < V; i++) row[i] = (float)(2 * (urand() + urand() + urand()));
        for (int j = 0; j < 5; j++) row[(j * 7919 + 13) % V] = (float)(14 + 3 * urand());
    }
}

/* k_compact against cd_select / cd_gather / argmax on G rows of kinds
 * kind0, kind0 + 1, ..., split into `slices`; row badrow (if in range)
 * gets a non-finite logit (NaN, or +inf when badinf). */
static void test_compact(int V, int G, int kmax, double mass, int slices, int kind0, int badrow, int badinf) {
    float *x = malloc((size_t)G * V * 4);
    for (int g = 0; g < G; g++) fill_row(x + (size_t)g * V, V, (kind0 + g) % ROW_KINDS);
    if (badrow >= 0 && badrow < G) x[(size_t)badrow * V + V / 2] = badinf ? INFINITY : NAN;
    int32_t *k = malloc(G * 4), *ids = malloc((size_t)G * kmax * 4), *am = malloc(G * 4);
    float *lps = malloc((size_t)G * kmax * 4), *tail = malloc(G * 4), *gtail = malloc(G * 4);
    unsigned char *bad = malloc(G);
    int per = 7;
    int64_t *goff = malloc((G + 1) * sizeof *goff);
    int32_t *gids = malloc((size_t)G * per * 4);
    float *glps = malloc((size_t)G * per * 4);
    for (int g = 0; g <= G; g++) goff[g] = (int64_t)g * per;
    for (int j = 0; j < G * per; j++) gids[j] = j % per == 0 ? V + 5 : (int32_t)((j * 7919) % V);
    size_t wsn = k_compact_ws_bytes(G, V, slices);
    void *ws; /* device memory: fresh, it holds 0xFF bytes (the emulator's), read before written fails */
    CHECK(dev_alloc(&ws, wsn) == 0);
    compact_args a = {.kmax = kmax, .kmin = 1, .mass = mass, .gids = gids, .goff = goff, .k = k, .ids = ids,
                      .argmax = am, .lps = lps, .tail = tail, .glps = glps, .gtail = gtail, .bad = bad,
                      .slices = slices, .ws = ws};
    k_compact(x, G, V, &a, NULL);
    cd_opts co = {.mass = mass, .kmax = kmax, .kmin = 1};
    int32_t *rids = malloc(kmax * 4), *heap = malloc(kmax * 4);
    float *rlps = malloc(kmax * 4), rtail, rg[7], rgt;
    int wrong_ids = 0, wrong_k = 0, wrong_am = 0, wrong_bad = 0;
    double dlp = 0, dtail = 0, dg = 0;
    for (int g = 0; g < G; g++) {
        const float *row = x + (size_t)g * V;
        int isbad = 0;
        for (int i = 0; i < V; i++) isbad |= !isfinite(row[i]);
        wrong_bad += bad[g] != isbad;
        if (isbad) continue;
        int rk = cd_select(row, V, &co, rids, rlps, &rtail, heap);
        int best = 0;
        for (int i = 1; i < V; i++)
            if (row[i] > row[best]) best = i;
        wrong_am += am[g] != best;
        if (k[g] != rk) {
            /* allowed only where the cumulative mass meets `mass` within
             * rounding of the log-sum-exp (float exp on the device, double
             * here): the cut is then a tie either way */
            int kk = k[g] < rk ? k[g] : rk;
            double cum = 0;
            for (int j = 0; j < kk; j++) cum += exp((double)rlps[j]);
            wrong_k += fabs(cum - mass) > 1e-6;
        }
        for (int j = 0; j < (k[g] < rk ? k[g] : rk); j++) {
            wrong_ids += ids[(size_t)g * kmax + j] != rids[j];
            dlp = fmax(dlp, fabs(lps[(size_t)g * kmax + j] - rlps[j]));
        }
        dtail = fmax(dtail, fabs(tail[g] - rtail));
        cd_gather(row, V, gids + goff[g], per, rg, &rgt);
        for (int j = 0; j < per; j++) {
            if (isinf(rg[j])) CHECK(isinf(glps[goff[g] + j]) && glps[goff[g] + j] < 0);
            else dg = fmax(dg, fabs(glps[goff[g] + j] - rg[j]));
        }
        dg = fmax(dg, fabs(gtail[g] - rgt));
    }
    CHECKF(wrong_bad == 0 && wrong_am == 0, "V %d G %d slices %d: %d bad flags, %d argmax differ", V, G, slices,
           wrong_bad, wrong_am);
    CHECKF(wrong_k == 0 && wrong_ids == 0, "V %d G %d kmax %d slices %d kinds %d..: %d rows with another k, %d ids differ",
           V, G, kmax, slices, kind0, wrong_k, wrong_ids);
    CHECKF(dlp < 1e-5 && dtail < 1e-5 && dg < 1e-5, "V %d kmax %d slices %d: lp %g tail %g gather %g", V, kmax, slices,
           dlp, dtail, dg);
    free(x), free(k), free(ids), free(am), free(lps), free(tail), free(gtail), free(bad), free(goff), free(gids);
    free(glps), free(rids), free(heap), free(rlps), dev_free(ws);
}

/* att_tc_tiles: runs of two rows or more on tensor cores in tiles of at
 * most tc_rows, lone rows after them, one tile each; a run's tiles are the
 * same whatever rows share its call (the property continuous batching
 * needs: a joining prompt attends as it would among prompts). */
static void test_att_tc_tiles(void) {
    /* rows: slot 3 decode; slot 0 positions 0..11 (a prompt); slot 5
     * decode; slot 1 positions 7..8 (a run of 2); slot 2 decode */
    int seq[17], pos[17], n = 0;
    seq[n] = 3, pos[n++] = 40;
    for (int p = 0; p < 12; p++) seq[n] = 0, pos[n++] = p;
    seq[n] = 5, pos[n++] = 9;
    seq[n] = 1, pos[n++] = 7;
    seq[n] = 1, pos[n++] = 8;
    seq[n] = 2, pos[n++] = 100;
    att_tile t[17];
    int ntc = -1, nt = att_tc_tiles(t, seq, pos, n, 5, &ntc);
    CHECKF(nt == 7 && ntc == 4, "%d tiles, %d on tensor cores", nt, ntc);
    const att_tile want[7] = {{1, 5, 0, 0}, {6, 5, 0, 5}, {11, 2, 0, 10}, {14, 2, 1, 7},
                              {0, 1, 3, 40}, {13, 1, 5, 9}, {16, 1, 2, 100}};
    for (int i = 0; i < 7 && i < nt; i++)
        CHECKF(t[i].row0 == want[i].row0 && t[i].n == want[i].n && t[i].slot == want[i].slot &&
                   t[i].pos0 == want[i].pos0,
               "tile %d: rows %d+%d slot %d pos %d", i, t[i].row0, t[i].n, t[i].slot, t[i].pos0);
    /* the prompt alone: the same three tiles, rows shifted by one */
    nt = att_tc_tiles(t, seq + 1, pos + 1, 12, 5, &ntc);
    CHECK(nt == 3 && ntc == 3 && t[0].row0 == 0 && t[2].n == 2 && t[2].pos0 == 10);
    /* decode only: nothing on tensor cores */
    int s2[3] = {0, 1, 2}, p2[3] = {4, 4, 4};
    nt = att_tc_tiles(t, s2, p2, 3, 5, &ntc);
    CHECK(nt == 3 && ntc == 0);
    CHECK(att_tc_tiles(t, s2, p2, 0, 5, &ntc) == 0 && ntc == 0);
}

int main(void) {
    emu_allow_host_pointers(1);
    CHECK_SEED(rng);
    test_embedding_rmsnorm_swiglu();
    test_qkv_attention(4, 2, 16);
    test_qkv_attention(2, 1, 128);
    test_qkv_attention(6, 6, 12);
    test_qkv_attention(14, 2, 64); /* Qwen2.5-0.5B's grouping: 7 query heads per KV head */
    test_qkv_attention(32, 1, 8);  /* a whole tile of one row's heads */
    test_attention_split();
    test_attention_tc(4, 4, 64);    /* one query head per KV head */
    test_attention_tc(4, 4, 16);    /* the tiny test models' head dim */
    test_attention_tc(4, 2, 128);   /* 2 */
    test_attention_tc(12, 2, 128);  /* 6: Qwen2.5-Math-1.5B's shape */
    test_attention_tc(14, 2, 64);   /* 7: Qwen2.5-0.5B's grouping (9 rows a tile, one lane idle) */
    /* shapes the tensor-core kernel leaves to k_attention */
    CHECK(!att_tc_serves(6, 6, 12) && !att_tc_serves(2, 1, 144) && !att_tc_serves(4, 2, 8) && !att_tc_serves(130, 2, 64));
    CHECK(att_tc_serves(32, 1, 16) && att_tc_serves(2, 1, 80));
    test_att_tc_tiles();
    /* many rows, one slice each (what a full batch gets), every kind, a NaN row */
    test_compact(1000, 24, 32, 0.99999, k_compact_slices(24, 1000, 132), 0, 2, 0);
    test_compact(1000, 300, 32, 0.99999, k_compact_slices(300, 1000, 132), 3, 7, 1);
    test_compact(1000, 8, 1024, 1.0, 1, 0, 2, 0);
    test_compact(300, 4, 1, 0.5, 1, 0, 2, 0);
    /* small V split in slices (slices shorter than SLICE_MIN, forced) */
    test_compact(1000, 16, 32, 0.99999, 5, 0, 2, 0);
    test_compact(1000, 8, 1024, 1.0, 7, 0, 3, 1);
    test_compact(4099, 8, 300, 0.99999, 3, 0, -1, 0);
    /* Qwen's vocabulary: 1, 2, 3 rows split as a decode step splits them */
    const int VQ = 151936;
    test_compact(VQ, 1, 256, 0.99999, k_compact_slices(1, VQ, 132), ROW_LM, -1, 0);
    test_compact(VQ, 1, 256, 0.99999, k_compact_slices(1, VQ, 132), ROW_MANY_TIES, -1, 0);
    test_compact(VQ, 1, 256, 0.99999, k_compact_slices(1, VQ, 132), ROW_NARROW, -1, 0);
    test_compact(VQ, 1, 1024, 1.0, k_compact_slices(1, VQ, 132), ROW_FLAT, -1, 0);
    test_compact(VQ, 2, 256, 0.99999, k_compact_slices(2, VQ, 132), ROW_ONE_BIN, -1, 0);
    test_compact(VQ, 2, 256, 0.99999, k_compact_slices(2, VQ, 132), ROW_SOFT, 1, 0);
    test_compact(VQ, 3, 256, 0.99999, k_compact_slices(3, VQ, 132), ROW_SHARP, 2, 0);
    test_compact(VQ, 3, 32, 0.99999, 1, ROW_TIES, -1, 0);
    CHECK_DONE();
}
