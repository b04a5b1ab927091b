/* schema: see schema.h. One table per record kind; docs/FORMATS.md has the
 * meaning of every field. */
#include "io/schema.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* lr-infer: one record per problem (generate and follow modes). */
static const lr_field dist_v1[] = {
    {"id", LRT_STR, 1},        {"idx", LRT_INT, 1},
    {"prompt", LRT_I32S, 1},   {"tokens", LRT_I32S, 1},
    {"finish", LRT_STR, 1},    {"k", LRT_I32S, 1},
    {"top_ids", LRT_I32S, 1},  {"top_lp", LRT_F32S, 1},
    {"tail", LRT_F32S, 1},     {"question", LRT_STR, 0},
    {"text", LRT_STR, 0},      {"ref_lp", LRT_F32S, 0},
    {"ref_tail", LRT_F32S, 0}, {"full", LRT_F32S, 0},
    {NULL, 0, 0},
};

/* lr-kl: one record per selected step t >= 1 (docs/FORMATS.md, `kl`). */
static const lr_field kl_v1[] = {
    {"id", LRT_STR, 1},         {"idx", LRT_INT, 1},      {"step", LRT_INT, 1},
    {"prompt_len", LRT_INT, 1}, {"context", LRT_I32S, 1}, {"token", LRT_INT, 1},
    {"ids", LRT_I32S, 1},       {"lp_e", LRT_F32S, 1},    {"tail_e", LRT_NUM, 1},
    {"lp_a", LRT_F32S, 1},      {"tail_a", LRT_NUM, 1},   {"kl", LRT_NUM, 1},
    {"kl_err", LRT_NUM, 1},     {"exact", LRT_BOOL, 1},   {"question", LRT_STR, 0},
    {NULL, 0, 0},
};

/* lr-contrast: one training example per record (docs/FORMATS.md, `example`). */
static const lr_field example_v1[] = {
    {"id", LRT_STR, 1},          {"idx", LRT_INT, 1},      {"step", LRT_INT, 1},
    {"prompt_len", LRT_INT, 1},  {"context", LRT_I32S, 1}, {"target_ids", LRT_I32S, 1},
    {"weights", LRT_F32S, 1},    {"kl", LRT_NUM, 1},       {"question", LRT_STR, 0},
    {NULL, 0, 0},
};

static const lr_kind kinds[] = {
    {"dist", 1, dist_v1},
    {"kl", 1, kl_v1},
    {"example", 1, example_v1},
};

const lr_kind *lr_schema_find(const char *kind, int version) {
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(kinds[i].kind, kind) && kinds[i].version == version) return &kinds[i];
    return NULL;
}

static int key_is(const msgpack_object *k, const char *name) {
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           !memcmp(k->via.str.ptr, name, n);
}

const lr_field *lr_schema_field(const lr_kind *k, const char *name) {
    for (const lr_field *f = k->fields; f->name; f++)
        if (!strcmp(f->name, name)) return f;
    return NULL;
}

static const char *type_name(lr_type t) {
    switch (t) {
    case LRT_INT: return "integer";
    case LRT_NUM: return "number";
    case LRT_STR: return "string";
    case LRT_BOOL: return "boolean";
    case LRT_F32S: return "float32 array";
    case LRT_I32S: return "int32 array";
    default: return "value";
    }
}

static int type_ok(lr_type t, const msgpack_object *v, const char **why) {
    *why = NULL;
    switch (t) {
    case LRT_INT:
        return v->type == MSGPACK_OBJECT_POSITIVE_INTEGER || v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
    case LRT_NUM:
        if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64) {
            if (!isfinite(v->via.f64)) { *why = "not finite"; return 0; }
            return 1;
        }
        return v->type == MSGPACK_OBJECT_POSITIVE_INTEGER || v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
    case LRT_STR: return v->type == MSGPACK_OBJECT_STR;
    case LRT_BOOL: return v->type == MSGPACK_OBJECT_BOOLEAN;
    case LRT_F32S:
        if (v->type != MSGPACK_OBJECT_EXT || v->via.ext.type != 1 || v->via.ext.size % 4) return 0;
        for (uint32_t i = 0; i < v->via.ext.size; i += 4) {
            float x;
            memcpy(&x, v->via.ext.ptr + i, 4);
            if (!isfinite(x) && !(isinf(x) && x < 0)) { *why = "contains NaN or +inf"; return 0; }
        }
        return 1;
    case LRT_I32S:
        return v->type == MSGPACK_OBJECT_EXT && v->via.ext.type == 2 && v->via.ext.size % 4 == 0;
    default: return 1;
    }
}

int lr_schema_check(const lr_kind *k, const msgpack_object *rec, char *msg, size_t msglen) {
    if (rec->type != MSGPACK_OBJECT_MAP) {
        snprintf(msg, msglen, "record is not a map");
        return 0;
    }
    for (const lr_field *f = k->fields; f->name; f++) {
        const msgpack_object *v = NULL;
        for (uint32_t i = 0; i < rec->via.map.size; i++)
            if (key_is(&rec->via.map.ptr[i].key, f->name)) { v = &rec->via.map.ptr[i].val; break; }
        if (!v) {
            if (f->required) { snprintf(msg, msglen, "field \"%s\": missing", f->name); return 0; }
            continue;
        }
        const char *why;
        if (!type_ok(f->type, v, &why)) {
            if (why) snprintf(msg, msglen, "field \"%s\": %s", f->name, why);
            else snprintf(msg, msglen, "field \"%s\": expected %s", f->name, type_name(f->type));
            return 0;
        }
    }
    return 1;
}
