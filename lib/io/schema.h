/* schema: the record kinds every stream may carry, with their fields.
 * The reader validates each record against its kind's table (required fields
 * present, types right), lr-dump uses it to turn JSON back into typed
 * records. docs/FORMATS.md describes the same kinds in prose; keep the two
 * in step. Adding a kind = one table in schema.c + a section in FORMATS.md. */
#ifndef LR_SCHEMA_H
#define LR_SCHEMA_H

#include <msgpack.h>

typedef enum {
    LRT_INT,    /* msgpack integer */
    LRT_NUM,    /* integer or float; NaN/inf rejected */
    LRT_STR,    /* UTF-8 string */
    LRT_BOOL,
    LRT_F32S,   /* ext 1 float32 array (finite values only) */
    LRT_I32S,   /* ext 2 int32 array */
    LRT_ANY,    /* any msgpack value (maps, lists of strings, ...) */
} lr_type;

typedef struct {
    const char *name;
    lr_type type;
    int required;
} lr_field;

typedef struct {
    const char *kind;
    int version;
    const lr_field *fields;   /* terminated by {NULL} */
} lr_kind;

/* The schema of kind/version, or NULL when unknown. */
const lr_kind *lr_schema_find(const char *kind, int version);
const lr_field *lr_schema_field(const lr_kind *k, const char *name);
/* Validates a record map; on failure writes "field \"x\": reason" into msg. */
int lr_schema_check(const lr_kind *k, const msgpack_object *rec, char *msg, size_t msglen);

#endif
