/* problems: see problems.h. */
#include "infer/problems.h"

#include "base/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int prob_open(prob_source *s, const char *path, const char *layout, const char *field, const char *id_field) {
    memset(s, 0, sizeof *s);
    s->path = path ? path : "-";
    s->field = field;
    s->id_field = id_field;
    if (field) {
        int rc = jsonl_open(&s->jl, s->path);
        if (rc) return rc;
        s->is_jl = 1;
        const char *b = strrchr(s->path, '/');
        s->stem = xstrdup(b ? b + 1 : s->path);
        char *dot = strrchr(s->stem, '.');
        if (dot) *dot = 0;
        return LR_OK;
    }
    if (!strcmp(s->path, "-") && !layout)
        return lr_err(LR_EUSAGE, "problems on stdin need --layout NAME or --field NAME");
    return bd_open(s->path, layout, &s->bd);
}

int prob_layout(const prob_source *s) { return s->bd ? (int)bd_reader_layout(s->bd) : -1; }

int prob_next(prob_source *s, char **id, char **question, long *idx, int *bad) {
    *bad = 0;
    *id = *question = NULL;
    if (s->bd) {
        bd_item it;
        int rc = bd_next(s->bd, &it);
        if (rc == -1) return 0;
        if (rc == LR_EINPUT) { *bad = 1; *idx = -1; return 1; }
        if (rc) return rc;
        *id = xstrdup(it.id);
        *question = xstrdup(it.question);
        *idx = (long)it.line;
        bd_item_free(&it);
        return 1;
    }
    json_t *v;
    int rc = jsonl_next(&s->jl, JSONL_OBJECT, &v);
    if (rc == -1) return 0;
    if (rc == LR_EIO) return rc;
    long ln = (long)s->jl.lineno - 1;
    *idx = ln;
    if (rc) { /* not JSON: the message names file and line */
        *bad = 1;
        return 1;
    }
    const json_t *q = json_object_get(v, s->field);
    if (!json_is_string(q))
        lr_err(LR_EINPUT, "%s: line %ld: field \"%s\": missing or not a string", s->path, ln + 1, s->field);
    else if (s->id_field && !json_is_string(json_object_get(v, s->id_field)))
        lr_err(LR_EINPUT, "%s: line %ld: field \"%s\": missing or not a string", s->path, ln + 1, s->id_field);
    else {
        char buf[600];
        snprintf(buf, sizeof buf, "%s:%ld", s->stem, ln);
        *id = xstrdup(s->id_field ? json_string_value(json_object_get(v, s->id_field)) : buf);
        *question = xstrdup(json_string_value(q));
    }
    *bad = !*question;
    json_decref(v);
    return 1;
}

void prob_close(prob_source *s) {
    if (s->bd) bd_close(s->bd);
    if (s->is_jl) jsonl_close(&s->jl);
    free(s->stem);
    memset(s, 0, sizeof *s);
}

uint64_t prob_count_lines(const char *path) {
    if (!path || !strcmp(path, "-")) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint64_t lines = 0;
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < n; i++) lines += buf[i] == '\n';
    fclose(f);
    return lines;
}
