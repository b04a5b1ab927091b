/* gen_common_prefix, lr-infer's shared-prompt-prefix rule, against a brute
 * force that tries every start of every prompt: of the runs that at least
 * ceil(n/2) prompts (and two) start with and continue past, the one sparing the
 * most rows (prompts x tokens, the longer on a tie). Random windows
 * over a three-token alphabet (so long common starts are frequent), up to
 * 64 prompts (RUN_PREFIX_WINDOW), then the cases the rule exists for: a
 * few-shot header behind an odd first prompt, a prompt that is exactly the
 * header, a token more that only half of them share, no common start, one
 * prompt. */
#include "check.h"

#include "base/rng.h"
#include "infer/generate.h"

#include <stdint.h>
#include <string.h>

#define MAXN 64
#define MAXL 24

static int starts_with(const int32_t *t, size_t n, const int32_t *p, size_t m) {
    return n > m && !memcmp(t, p, m * sizeof *t); /* strictly past it: its last token runs alone */
}

/* every start of every prompt continued by at least ceil(n/2) of them:
 * the most rows spared, count * length (on a tie the longer); *count */
static size_t brute(const int32_t *const *tok, const size_t *len, int n, int *count) {
    size_t best = 0;
    *count = 0;
    if (n < 2) return 0;
    for (int i = 0; i < n; i++)
        for (size_t m = 1; m < len[i]; m++) {
            int c = 0;
            for (int j = 0; j < n; j++) c += starts_with(tok[j], len[j], tok[i], m);
            if (c >= (n + 1) / 2 && c >= 2 && ((size_t)c * m > (size_t)*count * best || ((size_t)c * m == (size_t)*count * best && m > best)))
                best = m, *count = c;
        }
    return best;
}

static void check_one(const int32_t *const *tok, const size_t *len, int n, const char *what) {
    int anchor, count, wcount;
    size_t got = gen_common_prefix(tok, len, n, &anchor, &count), want = brute(tok, len, n, &wcount);
    CHECKF(got == want && count == wcount, "%s: %zu tokens by %d prompts, brute force %zu by %d", what, got, count,
           want, wcount);
    if (n < 2) {
        CHECKF(anchor == -1, "%s: anchor %d with one prompt", what, anchor);
        return;
    }
    CHECKF(anchor >= 0 && anchor < n, "%s: anchor %d of %d", what, anchor, n);
    if (anchor < 0 || anchor >= n || !got) return;
    int c = 0; /* the anchor holds it, and enough prompts continue it */
    for (int j = 0; j < n; j++) c += starts_with(tok[j], len[j], tok[anchor], got);
    CHECKF(c >= (n + 1) / 2 && len[anchor] > got, "%s: %d prompts continue the anchor's %zu", what, c, got);
}

int main(void) {
    static int32_t buf[MAXN][MAXL];
    const int32_t *tok[MAXN];
    size_t len[MAXN];
    for (int i = 0; i < MAXN; i++) tok[i] = buf[i];
    uint64_t seed = 20261202;
    CHECK_SEED(seed);
    uint64_t r = seed;
    for (int trial = 0; trial < 3000; trial++) {
        int n = 1 + (int)(rng_next(&r) % MAXN);
        if (trial % 3 == 0) n = 1 + (int)(rng_next(&r) % 6);
        /* prompts from a few stems, so that groups share long starts */
        for (int i = 0; i < n; i++) {
            len[i] = (size_t)(rng_next(&r) % MAXL); /* 0 .. MAXL-1 tokens */
            int stem = (int)(rng_next(&r) % 3);
            for (size_t t = 0; t < len[i]; t++)
                buf[i][t] = t < 12 && rng_next(&r) % 8 ? (int32_t)((stem * 7 + t) % 3) : (int32_t)(rng_next(&r) % 3);
        }
        char what[32];
        snprintf(what, sizeof what, "trial %d (n %d)", trial, n);
        check_one(tok, len, n, what);
    }
    /* a header of 10 tokens behind an odd first prompt: 5 of 6 share it */
    int n = 6;
    for (int i = 0; i < n; i++) {
        len[i] = 14;
        for (int t = 0; t < 14; t++) buf[i][t] = i == 0 ? 900 + t : t < 10 ? 100 + t : 200 + 10 * i + t;
    }
    int anchor;
    CHECK(gen_common_prefix(tok, len, n, &anchor, NULL) == 10 && anchor != 0);
    check_one(tok, len, n, "odd first prompt");
    /* one prompt is exactly the header: it cannot use it (its last token
     * runs alone), so 4 continue the 10 tokens and 5 the first 9, which
     * spare more rows */
    len[3] = 10;
    int count;
    CHECK(gen_common_prefix(tok, len, n, &anchor, &count) == 9 && count == 5 && anchor != 0);
    check_one(tok, len, n, "a prompt that is the header");
    /* only 2 of 6 continue the header: under half, so the rule takes what 3 share */
    len[1] = len[2] = len[4] = 10;
    check_one(tok, len, n, "under half");
    /* every prompt shares 10 tokens, half of them an 11th ("what is 1" in
     * problems 1 and 10 to 16): the 10 spare more rows */
    for (int i = 0; i < n; i++) {
        len[i] = 14;
        for (int t = 0; t < 14; t++) buf[i][t] = t < 10 ? 100 + t : t == 10 && i < 3 ? 777 : 300 + 10 * i + t;
    }
    CHECK(gen_common_prefix(tok, len, n, &anchor, &count) == 10 && count == 6);
    check_one(tok, len, n, "one more token for half");
    /* nothing in common */
    for (int i = 0; i < n; i++) len[i] = 14, buf[i][0] = 500 + i;
    CHECK(gen_common_prefix(tok, len, n, &anchor, NULL) == 0);
    check_one(tok, len, n, "no common start");
    CHECK(gen_common_prefix(tok, len, 1, &anchor, NULL) == 0 && anchor == -1);
    CHECK_DONE();
}
