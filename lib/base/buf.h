/* buf: one growable byte buffer, always NUL-terminated (so it doubles as a
 * string builder). Growth is geometric; out of memory exits (xrealloc). */
#ifndef LR_BUF_H
#define LR_BUF_H

#include <stddef.h>

typedef struct {
    char *p;       /* NULL until the first byte; then p[n] == 0 */
    size_t n, cap;
} lr_buf;

/* Room for at least `more` further bytes (plus the NUL). */
void buf_reserve(lr_buf *b, size_t more);
void buf_put(lr_buf *b, const void *s, size_t n);
void buf_puts(lr_buf *b, const char *s);
void buf_putc(lr_buf *b, char c);
void buf_printf(lr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The contents as a heap string ("" when empty) owned by the caller; b is
 * left empty. */
char *buf_take(lr_buf *b);
void buf_clear(lr_buf *b); /* n = 0, memory kept */
void buf_free(lr_buf *b);

#endif
