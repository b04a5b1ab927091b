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
        s->f = strcmp(s->path, "-") ? fopen(s->path, "rb") : stdin;
        if (!s->f) return lr_err(LR_EIO, "%s: cannot open", s->path);
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
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        ssize_t n = getline(&line, &cap, s->f);
        if (n < 0) {
            free(line);
            return ferror(s->f) ? lr_err(LR_EIO, "%s: read error", s->path) : 0;
        }
        long ln = s->line++;
        if (n <= 1) continue;
        json_error_t je;
        json_t *v = json_loadb(line, n, 0, &je);
        const json_t *q = v ? json_object_get(v, s->field) : NULL;
        *idx = ln;
        if (!v) lr_err(LR_EINPUT, "%s: line %ld: malformed JSON: %s", s->path, ln + 1, je.text);
        else if (!json_is_string(q))
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
        free(line);
        return 1;
    }
}

void prob_close(prob_source *s) {
    if (s->bd) bd_close(s->bd);
    if (s->f && s->f != stdin) fclose(s->f);
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
