/* libFuzzer target for answer extraction, normalisation and equivalence
 * (lib/eval/answer.c, mathequal.c, mathexpr.c). Input bytes: first byte
 * picks the benchmark kind, the rest is split at the first NUL into model
 * output and gold. Build and run with tests/fuzz/run.sh (clang; not part of
 * `make`). */
#include "eval/answer.h"
#include "eval/judge.h"
#include "eval/mathequal.h"
#include "eval/mathexpr.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    ans_kind kind = (ans_kind)(data[0] % 3);
    char *buf = malloc(size + 1);
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;
    const char *text = buf, *gold = buf + strlen(buf);
    if ((size_t)(gold - buf) + 1 < size - 1) gold++; /* after the NUL, if any */
    ans_verdict v;
    ans_judge(kind, text, gold, &v);
    ans_verdict_free(&v);
    char *s = ans_strip(text, kind == ANS_NOUNIT);
    double x;
    mx_eval(s, &x);
    (void)meq_equal(s, gold);
    free(s);
    free(buf);
    return 0;
}
