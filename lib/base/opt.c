/* opt: see opt.h. */
#include "base/opt.h"

#include "base/util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

int opt_long(const char *flag, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = s && *s && !isspace((unsigned char)*s) ? strtol(s, &end, 10) : 0;
    if (!s || !*s || isspace((unsigned char)*s) || *end || errno || v < lo || v > hi)
        return lr_err(LR_EUSAGE, "%s: expected an integer in [%ld, %ld], got \"%s\"", flag, lo, hi, s ? s : "");
    *out = v;
    return 0;
}

int opt_int(const char *flag, const char *s, int lo, int hi, int *out) {
    long v;
    int rc = opt_long(flag, s, lo, hi, &v);
    if (!rc) *out = (int)v;
    return rc;
}

int opt_u64(const char *flag, const char *s, uint64_t *out) {
    int ok = s && *s;
    for (const char *p = s; ok && *p; p++) ok = *p >= '0' && *p <= '9';
    char *end = NULL;
    errno = 0;
    unsigned long long v = ok ? strtoull(s, &end, 10) : 0;
    if (!ok || errno || *end)
        return lr_err(LR_EUSAGE, "%s: expected an integer in [0, %llu], got \"%s\"", flag,
                      (unsigned long long)UINT64_MAX, s ? s : "");
    *out = (uint64_t)v;
    return 0;
}

int opt_double(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = s && *s && !isspace((unsigned char)*s) ? strtod(s, &end) : NAN;
    if (!s || !*s || isspace((unsigned char)*s) || *end || errno == ERANGE || !isfinite(v) || v < lo || v > hi)
        return lr_err(LR_EUSAGE, "%s: expected a number in [%g, %g], got \"%s\"", flag, lo, hi, s ? s : "");
    *out = v;
    return 0;
}
