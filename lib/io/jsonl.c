/* jsonl: see jsonl.h. */
#include "io/jsonl.h"

#include "base/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

int jsonl_open(jsonl *r, const char *path) {
    memset(r, 0, sizeof *r);
    if (!strcmp(path, "-")) {
        jsonl_from(r, stdin, "stdin");
        return 0;
    }
    r->f = fopen(path, "rb");
    if (!r->f) return lr_err(LR_EIO, "%s: cannot open: %s", path, strerror(errno));
    r->name = path;
    r->own = 1;
    return 0;
}

void jsonl_from(jsonl *r, FILE *f, const char *name) {
    memset(r, 0, sizeof *r);
    r->f = f;
    r->name = name;
}

int jsonl_line(jsonl *r) {
    for (;;) {
        errno = 0;
        ssize_t n = getline(&r->line, &r->cap, r->f);
        if (n < 0) {
            if (ferror(r->f)) return lr_err(LR_EIO, "%s: read error: %s", r->name, strerror(errno ? errno : EIO));
            r->len = 0;
            return -1;
        }
        r->lineno++;
        r->len = (size_t)n;
        for (ssize_t i = 0; i < n; i++)
            if (r->line[i] != ' ' && r->line[i] != '\t' && r->line[i] != '\r' && r->line[i] != '\n') return 0;
    }
}

int jsonl_next(jsonl *r, int flags, json_t **out) {
    *out = NULL;
    int rc = jsonl_line(r);
    if (rc) return rc;
    json_error_t e;
    json_t *v = json_loadb(r->line, r->len, (flags & JSONL_ANY) ? JSON_DECODE_ANY | JSON_ALLOW_NUL : 0, &e);
    if (!v) return lr_err(LR_EINPUT, "%s: line %zu: not JSON: %s", r->name, r->lineno, e.text);
    if ((flags & JSONL_OBJECT) && !json_is_object(v)) {
        json_decref(v);
        return lr_err(LR_EINPUT, "%s: line %zu: not a JSON object", r->name, r->lineno);
    }
    *out = v;
    return 0;
}

void jsonl_close(jsonl *r) {
    if (r->own && r->f) fclose(r->f);
    free(r->line);
    memset(r, 0, sizeof *r);
}
