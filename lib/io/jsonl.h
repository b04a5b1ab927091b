/* jsonl: the one reader of JSON-lines files (benchmarks, lr-dump's JSON,
 * reference formats): a line at a time in memory bounded by the longest
 * line, blank lines skipped, every message naming the file and the 1-based
 * line number:
 *   "data/test.jsonl: line 12: not JSON: '[' or '{' expected near 'x'". */
#ifndef LR_JSONL_H
#define LR_JSONL_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
    FILE *f;
    const char *name; /* for messages: the path, or "stdin" */
    char *line;       /* the current line, NUL-terminated, len bytes (newline kept) */
    size_t cap, len;
    size_t lineno;    /* 1-based number of the current line */
    int own;          /* f was opened here */
} jsonl;

enum {
    JSONL_OBJECT = 1, /* each line must be a JSON object */
    JSONL_ANY = 2     /* any JSON value (strings, numbers) and NUL in strings */
};

/* Opens path ("-": stdin). Returns 0 or LR_EIO. */
int jsonl_open(jsonl *r, const char *path);
/* Reads from an open stream f, named name in messages (not closed). */
void jsonl_from(jsonl *r, FILE *f, const char *name);
/* The next non-blank line into r->line: 0, -1 at the end, or LR_EIO. */
int jsonl_line(jsonl *r);
/* The next non-blank line parsed (a new reference in *out): 0, -1 at the
 * end, LR_EIO, or LR_EINPUT naming the file and line. */
int jsonl_next(jsonl *r, int flags, json_t **out);
void jsonl_close(jsonl *r);

#endif
