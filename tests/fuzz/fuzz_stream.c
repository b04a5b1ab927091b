/* libFuzzer target for the record stream reader (lib/io/stream.c). The
 * first byte picks the input's form: odd, the rest is the decompressed
 * msgpack (compressed here into one checksummed zstd frame, so mutations
 * reach the msgpack walker and the schemas instead of dying at the zstd
 * checksum); even, the rest is the .lrs file's bytes as they are (zstd
 * framing, truncation, concatenation). The header is parsed, every record
 * read and validated against its kind's schema, and every field decoded
 * with the typed getters the tools use. Errors are the expected outcome;
 * crashes, sanitizer reports and unbounded allocations are the findings. */
#include "fuzz_common.h"

#include "io/stream.h"

#include <string.h>
#include <zstd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *path;
    if (data[0] & 1) {
        size_t cap = ZSTD_compressBound(size - 1);
        void *z = malloc(cap);
        ZSTD_CCtx *c = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
        size_t zn = ZSTD_compress2(c, z, cap, data + 1, size - 1);
        ZSTD_freeCCtx(c);
        path = ZSTD_isError(zn) ? NULL : fuzz_file("in.lrs", z, zn);
        free(z);
    } else {
        path = fuzz_file("in.lrs", data + 1, size - 1);
    }
    if (!path) return 0;
    lrs_reader *r;
    if (lrs_open_read(&r, path, NULL)) return 0;
    const msgpack_object *rec;
    float *fb = NULL;
    int32_t *ib = NULL;
    size_t fcap = 0, icap = 0, n;
    int rc, nrec = 0;
    while ((rc = lrs_next(r, &rec)) == 1 && nrec++ < 10000) {
        for (uint32_t i = 0; i < rec->via.map.size; i++) {
            const msgpack_object *k = &rec->via.map.ptr[i].key, *v = &rec->via.map.ptr[i].val;
            if (k->type != MSGPACK_OBJECT_STR) continue;
            char key[64];
            size_t kl = k->via.str.size < sizeof key - 1 ? k->via.str.size : sizeof key - 1;
            memcpy(key, k->via.str.ptr, kl);
            key[kl] = 0;
            int64_t iv;
            double dv;
            const char *s;
            (void)lrs_obj_f32s(v, &fb, &fcap, &n);
            (void)lrs_obj_i32s(v, &ib, &icap, &n);
            (void)lrs_get_int(r, rec, key, &iv);
            (void)lrs_get_f64(r, rec, key, &dv);
            (void)lrs_get_str(r, rec, key, &s, &n);
        }
    }
    free(fb);
    free(ib);
    lrs_close_read(r);
    return 0;
}
