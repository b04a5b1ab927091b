/* buf: see buf.h. */
#include "base/buf.h"

#include "base/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_reserve(lr_buf *b, size_t more) {
    if (b->p && b->n + more + 1 <= b->cap) return;
    size_t need = b->n + more + 1, cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
    b->p[b->n] = 0;
}

void buf_put(lr_buf *b, const void *s, size_t n) {
    buf_reserve(b, n);
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void buf_puts(lr_buf *b, const char *s) { buf_put(b, s, strlen(s)); }

void buf_putc(lr_buf *b, char c) { buf_put(b, &c, 1); }

void buf_printf(lr_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k <= 0) return;
    buf_reserve(b, (size_t)k);
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

char *buf_take(lr_buf *b) {
    char *s = b->p ? b->p : xstrdup("");
    b->p = NULL;
    b->n = b->cap = 0;
    return s;
}

void buf_clear(lr_buf *b) {
    b->n = 0;
    if (b->p) b->p[0] = 0;
}

void buf_free(lr_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}
