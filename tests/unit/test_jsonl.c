/* test_jsonl: the JSON-lines reader: blank lines skipped, 1-based line
 * numbers in every message, objects required when asked, any value with
 * JSONL_ANY, a last line without newline read, long lines whole. */
#include "check.h"

#include "base/util.h"
#include "io/jsonl.h"

#include <string.h>

static FILE *text(const char *s) { return fmemopen((void *)s, strlen(s), "rb"); }

int main(void) {
    jsonl r;
    json_t *v;
    FILE *f = text("{\"a\": 1}\n\n  \t\r\n{\"a\": 2}\n[1]\n");
    jsonl_from(&r, f, "t.jsonl");
    CHECK(jsonl_next(&r, JSONL_OBJECT, &v) == 0 && json_integer_value(json_object_get(v, "a")) == 1 && r.lineno == 1);
    json_decref(v);
    CHECK(jsonl_next(&r, JSONL_OBJECT, &v) == 0 && json_integer_value(json_object_get(v, "a")) == 2 && r.lineno == 4);
    json_decref(v);
    CHECK(jsonl_next(&r, JSONL_OBJECT, &v) == LR_EINPUT && v == NULL);
    CHECKF(!strcmp(lr_errmsg(), "t.jsonl: line 5: not a JSON object"), "%s", lr_errmsg());
    CHECK(jsonl_next(&r, JSONL_OBJECT, &v) == -1);
    jsonl_close(&r);
    fclose(f);

    f = text("{\"a\": 1}\nnot json\n");
    jsonl_from(&r, f, "u.jsonl");
    CHECK(jsonl_next(&r, 0, &v) == 0);
    json_decref(v);
    CHECK(jsonl_next(&r, 0, &v) == LR_EINPUT);
    CHECKF(!strncmp(lr_errmsg(), "u.jsonl: line 2: not JSON: ", 27), "%s", lr_errmsg());
    jsonl_close(&r);
    fclose(f);

    f = text("\"a\\u0000b\"\n42");  /* JSONL_ANY: strings with NUL, numbers; no final newline */
    jsonl_from(&r, f, "any");
    CHECK(jsonl_next(&r, JSONL_ANY, &v) == 0 && json_string_length(v) == 3);
    json_decref(v);
    CHECK(jsonl_next(&r, JSONL_ANY, &v) == 0 && json_integer_value(v) == 42 && r.lineno == 2);
    json_decref(v);
    CHECK(jsonl_next(&r, JSONL_ANY, &v) == -1);
    jsonl_close(&r);
    fclose(f);

    size_t n = 1 << 20; /* one 1 MiB line */
    char *big = malloc(n + 16);
    big[0] = '"';
    memset(big + 1, 'x', n);
    strcpy(big + n + 1, "\"\n");
    f = text(big);
    jsonl_from(&r, f, "big");
    CHECK(jsonl_next(&r, JSONL_ANY, &v) == 0 && json_string_length(v) == n);
    json_decref(v);
    jsonl_close(&r);
    fclose(f);
    free(big);

    CHECK(jsonl_open(&r, "/nonexistent/x.jsonl") == LR_EIO && strstr(lr_errmsg(), "/nonexistent/x.jsonl: cannot open"));
    CHECK_DONE();
}
