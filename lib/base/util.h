/* util: errors, exit codes, checked allocation and small I/O helpers.
 *
 * Error convention (house style): library functions return 0 on success or
 * one of the LR_E* exit codes on failure, after recording a one-line message
 * with lr_err(). Only a tool's main() turns that into stderr + exit, through
 * lr_fail(). Messages name the input, the record and the field, e.g.
 *   "input.lrs: record 1042: field \"ids\": expected int32 array".
 */
#ifndef LR_UTIL_H
#define LR_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LR_VERSION "0.1.0"

/* Documented exit codes, shared by every tool. */
enum {
    LR_OK = 0,
    LR_EUSAGE = 1,     /* bad command line */
    LR_EINPUT = 2,     /* bad input: corrupt, truncated, wrong schema, NaN */
    LR_EIO = 3,        /* I/O error: cannot open, read or write */
    LR_EGPU = 4,       /* GPU error */
    LR_EINTR = 130,    /* interrupted by a signal */
};

/* Records a printf-style message as the current error and returns code.
 * A later call replaces the message; lr_err_prefix() prepends context. */
int lr_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "prefix: " to the current message (adds the file or record name
 * when an inner function did not know it). Returns code. */
int lr_err_prefix(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *lr_errmsg(void);

/* The running tool's name, set once by main (used in messages). */
extern const char *lr_progname;

/* Prints "progname: message" for the current error and returns code, for
 * main(): `return lr_fail(rc);`. */
int lr_fail(int code);
/* Prints "progname: message" and exits with code (for main-level code only). */
void lr_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

/* Allocation that cannot fail: out of memory exits with LR_EIO and a message. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* Reads a whole file into a NUL-terminated buffer (for small files such as
 * config.json). Returns 0 or LR_EIO with the message set. */
int lr_read_file(const char *path, char **out, size_t *len);

/* 1 when the --progress flag was given or stderr is a terminal. */
int lr_progress_wanted(int flag);

/* Monotonic wall clock in seconds. */
double lr_now(void);

/* FNV-1a 64-bit, for content identities (not cryptographic). */
uint64_t lr_fnv1a64(uint64_t h, const void *data, size_t n);
#define LR_FNV_INIT 0xcbf29ce484222325ULL

#endif
