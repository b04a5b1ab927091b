/* mpjson: msgpack <-> JSON for record streams (lr-dump and tests).
 *
 * To JSON: ext float32/int32 arrays become JSON arrays (float32 printed with
 * 9 significant digits, enough to round-trip; -inf, which log-probs may hold,
 * as the string "-inf"); strings are escaped, invalid UTF-8 bytes replaced by
 * U+FFFD; other ext types become {"$ext": type, "hex": "..."}.
 * From JSON: jansson values are packed as msgpack; a top-level field that the
 * record kind's schema declares as a typed array is packed as that ext type.
 */
#ifndef LR_MPJSON_H
#define LR_MPJSON_H

#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>

#include "io/schema.h"

/* A growable byte buffer for building output lines. */
typedef struct {
    char *p;
    size_t n, cap;
} lr_buf;
void lr_buf_put(lr_buf *b, const void *s, size_t n);
void lr_buf_puts(lr_buf *b, const char *s);
void lr_buf_free(lr_buf *b);

/* Appends the JSON text of o to b. */
void mpjson_write(lr_buf *b, const msgpack_object *o);
/* Appends a JSON string literal of the bytes s[0..n) to b. */
void mpjson_write_str(lr_buf *b, const char *s, size_t n);

/* Packs a JSON value. kind may be NULL; when given, top-level fields of an
 * object are packed with the schema's typed-array types. Returns 0 or
 * LR_EINPUT with a message naming the field. */
int mpjson_pack(msgpack_packer *pk, const json_t *v, const lr_kind *kind);

#endif
