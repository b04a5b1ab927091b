/* test_safetensors: dtype conversions, writer -> reader round trip with
 * F32/F16/BF16/I32 tensors, st_read_f32 shape and dtype errors. The
 * malformed-file cases are in tests/cli/mkmodel.sh. */
#include "check.h"
#include "io/safetensors.h"
#include "base/util.h"

#include <string.h>

int main(void) {
    /* f16: exact known encodings, subnormals, inf */
    CHECK(st_f16_to_f32(0x3c00) == 1.0f);
    CHECK(st_f16_to_f32(0xc000) == -2.0f);
    CHECK(st_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(st_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    CHECK(st_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24));
    CHECK(st_f16_to_f32(0x3555) == 0.333251953125f);
    CHECK(isinf(st_f16_to_f32(0xfc00)) && st_f16_to_f32(0xfc00) < 0);
    CHECK(isnan(st_f16_to_f32(0x7e00)));
    /* bf16: round to nearest even */
    CHECK(st_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(st_f32_to_bf16(1.0f + ldexpf(1.0f, -8)) == 0x3f80);                        /* tie -> even */
    CHECK(st_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)) == 0x3f82);                    /* tie -> even (up) */
    CHECK(st_f32_to_bf16(1.0f + ldexpf(1.0f, -8) + ldexpf(1.0f, -12)) == 0x3f81);    /* above tie */
    CHECK(st_bf16_to_f32(0xc040) == -3.0f);
    CHECK(isnan(st_bf16_to_f32(st_f32_to_bf16(NAN))));
    for (int i = -1000; i <= 1000; i++) { /* bf16 values survive a round trip */
        float x = st_bf16_to_f32(st_f32_to_bf16(i * 0.37f));
        CHECK(st_bf16_to_f32(st_f32_to_bf16(x)) == x);
    }

    /* writer -> reader */
    const char *tmp = getenv("LR_TMP");
    char path[1024];
    snprintf(path, sizeof path, "%s/t.safetensors", tmp ? tmp : "/tmp");
    float a[6] = {1, -2, 3.5f, 0.25f, -0.125f, 100};
    uint16_t h[3] = {0x3c00, 0xc000, 0x3555}, b[2] = {0x3f80, 0xc040};
    int32_t ints[2] = {7, 9};
    st_wtensor w[] = {
        {"w.f32", ST_F32, 2, {2, 3}, a}, {"w.f16", ST_F16, 1, {3}, h},
        {"w.bf16", ST_BF16, 2, {1, 2}, b}, {"w.i32", ST_I32, 1, {2}, ints},
    };
    CHECK(st_write(path, w, 4) == 0);
    st_set s;
    int rc = st_open_file(&s, path);
    CHECKF(rc == 0, "%s", lr_errmsg());
    if (rc) CHECK_DONE();
    CHECK(s.ntensors == 4);
    CHECK(strcmp(s.tensors[0].name, s.tensors[1].name) < 0); /* sorted */
    CHECK(((uintptr_t)st_find(&s, "w.f32")->data & 7) == 0); /* header padded: data aligned */
    float out[6];
    CHECK(st_read_f32(&s, "w.f32", 2, (int64_t[]){2, 3}, out) == 0 && !memcmp(out, a, sizeof a));
    CHECK(st_read_f32(&s, "w.f16", 1, (int64_t[]){3}, out) == 0 && out[0] == 1 && out[1] == -2 && out[2] == 0.333251953125f);
    CHECK(st_read_f32(&s, "w.bf16", 2, (int64_t[]){1, 2}, out) == 0 && out[0] == 1 && out[1] == -3);
    CHECK(st_read_f32(&s, "w.f32", 2, (int64_t[]){3, 2}, out) == LR_EINPUT);
    CHECKF(strstr(lr_errmsg(), "t.safetensors: tensor w.f32: shape [2, 3], expected [3, 2]") != NULL, "%s", lr_errmsg());
    CHECK(st_read_f32(&s, "w.i32", 1, (int64_t[]){2}, out) == LR_EINPUT);
    CHECKF(strstr(lr_errmsg(), "dtype I32") != NULL, "%s", lr_errmsg());
    CHECK(st_read_f32(&s, "w.none", 1, (int64_t[]){2}, out) == LR_EINPUT);
    CHECKF(strstr(lr_errmsg(), "tensor w.none: missing") != NULL, "%s", lr_errmsg());
    CHECK(st_find(&s, "w.i32") && st_find(&s, "w.i32")->nbytes == 8);
    /* dropped pages are read again from the file: the same bytes */
    for (int i = 0; i < s.ntensors; i++) st_drop_pages(&s.tensors[i]);
    st_drop_pages(NULL);
    CHECK(st_read_f32(&s, "w.f32", 2, (int64_t[]){2, 3}, out) == 0 && !memcmp(out, a, sizeof a));
    CHECK(!memcmp(st_find(&s, "w.f16")->data, h, sizeof h) && !memcmp(st_find(&s, "w.i32")->data, ints, sizeof ints));
    st_close(&s);

    /* mutation check: flipped header bytes and truncations must give
     * either a valid file or LR_EINPUT, never a crash (ASan/UBSan run this
     * too). Seeded, deterministic. */
    char *orig;
    size_t olen;
    CHECK(lr_read_file(path, &orig, &olen) == 0);
    uint64_t seed = 12345, x = seed;
    CHECK_SEED(seed);
    char mpath[1100];
    snprintf(mpath, sizeof mpath, "%s.mut", path);
    int ok = 0, bad = 0, other = 0;
    for (int it = 0; it < 400; it++) {
        char *buf = xmalloc(olen);
        memcpy(buf, orig, olen);
        size_t len = olen;
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        if (it % 4 == 3) len = (size_t)(x >> 33) % olen; /* truncation */
        else
            for (int k = 0; k < 1 + it % 3; k++) { /* flip bytes in length + header */
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                size_t at = (size_t)(x >> 33) % (olen - 24);
                buf[at] = (char)(x >> 13);
            }
        FILE *f = fopen(mpath, "wb");
        fwrite(buf, 1, len, f);
        fclose(f);
        free(buf);
        int r = st_open_file(&s, mpath);
        if (r == 0) {
            ok++;
            for (int i = 0; i < s.ntensors; i++) /* every tensor readable within the map */
                if (s.tensors[i].dtype == ST_F32 || s.tensors[i].dtype == ST_F16 || s.tensors[i].dtype == ST_BF16) {
                    float *o = xmalloc((size_t)s.tensors[i].numel * sizeof(float) + 1);
                    CHECK(st_read_f32(&s, s.tensors[i].name, s.tensors[i].ndim, s.tensors[i].shape, o) == 0);
                    free(o);
                }
            st_close(&s);
        } else if (r == LR_EINPUT) bad++;
        else other++;
    }
    fprintf(stderr, "mutations: %d still valid, %d rejected, %d other\n", ok, bad, other);
    CHECK(other == 0 && bad > 300);
    free(orig);
    CHECK_DONE();
}
