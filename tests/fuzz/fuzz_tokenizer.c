/* libFuzzer target for tokenizer.json loading plus encoding and decoding
 * (lib/model/tokenizer.c). Input: a tokenizer.json, a NUL, then a text. A
 * loaded tokenizer encodes the text (and a fixed sample), the ids decode
 * back, and every id's token bytes are looked up. */
#include "fuzz_common.h"

#include "model/tokenizer.h"

#include <string.h>

static void exercise(const tok_t *t, const char *text, size_t len) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (tok_encode(t, text, len, &ids, &n) == 0) {
        char *back = NULL;
        size_t blen;
        if (tok_decode(t, ids, n, &back, &blen) == 0) free(back);
        for (size_t i = 0; i < n && i < 256; i++) {
            size_t k;
            (void)tok_token_bytes(t, ids[i], &k);
            (void)tok_is_special(t, ids[i]);
        }
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t jlen = nul ? (size_t)(nul - data) : size;
    const char *path = fuzz_file("tokenizer.json", data, jlen);
    if (!path) return 0;
    tok_t *t;
    if (tok_load(&t, path)) return 0;
    static const char sample[] = "Hello, world! 12 + 34 = 46.\n<|im_end|> caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87  x";
    exercise(t, sample, sizeof sample - 1);
    if (nul) exercise(t, (const char *)nul + 1, size - jlen - 1);
    int32_t odd[] = {-1, 0, 1, 255, 256, 100000, 2147483647};
    char *s = NULL;
    if (tok_decode(t, odd, sizeof odd / sizeof odd[0], &s, NULL) == 0) free(s);
    tok_free(t);
    return 0;
}
