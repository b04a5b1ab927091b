/* opt: checked values of command-line options, one rule for every tool:
 * the whole argument must parse, numbers must be finite and inside the
 * option's range. On failure each returns LR_EUSAGE with the message
 *   --seed: expected an integer in [0, 18446744073709551615], got "abc"
 * so `--seed abc`, `--seed -1`, `--clip nan` or `--lr 1e30` never become a
 * silent 0, 2^64-1, NaN or a huge step. */
#ifndef LR_OPT_H
#define LR_OPT_H

#include <stdint.h>

int opt_long(const char *flag, const char *s, long lo, long hi, long *out);
int opt_int(const char *flag, const char *s, int lo, int hi, int *out);
/* Unsigned 64-bit (seeds): decimal digits only, no sign. */
int opt_u64(const char *flag, const char *s, uint64_t *out);
/* A finite double in [lo, hi]. */
int opt_double(const char *flag, const char *s, double lo, double hi, double *out);

#endif
