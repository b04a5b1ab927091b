/* libFuzzer target for the safetensors header parser (lib/io/safetensors.c):
 * any bytes as a .safetensors file; on success every tensor is looked up,
 * checked against its own shape and converted to float32. */
#include "fuzz_common.h"

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("model.safetensors", data, size);
    if (!path) return 0;
    st_set s = {0};
    if (st_open_file(&s, path) == 0) {
        for (int i = 0; i < s.ntensors && i < 64; i++) {
            const st_tensor *t = &s.tensors[i];
            if (st_find(&s, t->name) != t) abort(); /* the lookup must find what was listed */
            if (t->numel > (1 << 20)) continue;
            float *out = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
            (void)st_read_f32(&s, t->name, t->ndim, t->shape, out);
            free(out);
        }
    }
    st_close(&s);
    return 0;
}
