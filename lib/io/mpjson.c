/* mpjson: see mpjson.h. */
#include "io/mpjson.h"

#include "io/stream.h"
#include "base/util.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

void lr_buf_put(lr_buf *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void lr_buf_puts(lr_buf *b, const char *s) { lr_buf_put(b, s, strlen(s)); }

void lr_buf_free(lr_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07;
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

void mpjson_write_str(lr_buf *b, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    lr_buf_put(b, "\"", 1);
    size_t run = 0; /* start of a run of bytes copied verbatim */
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        const char *esc = NULL;
        char tmp[8];
        size_t adv = 1;
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            esc = tmp;
        } else if (c >= 0x80) {
            adv = utf8_len(s + i, n - i);
            if (!adv) esc = "\xef\xbf\xbd", adv = 1; /* U+FFFD for an invalid byte */
        }
        if (esc) {
            lr_buf_put(b, s + run, i - run);
            lr_buf_puts(b, esc);
            run = i + adv;
        }
        i += adv;
    }
    lr_buf_put(b, s + run, n - run);
    lr_buf_put(b, "\"", 1);
}

static void put_double(lr_buf *b, double v, int digits) {
    char tmp[40];
    if (isnan(v)) lr_buf_puts(b, "\"nan\"");
    else if (isinf(v)) lr_buf_puts(b, v < 0 ? "\"-inf\"" : "\"inf\"");
    else {
        snprintf(tmp, sizeof tmp, "%.*g", digits, v);
        /* keep floats recognisable as floats (1 -> 1.0) so JSON -> msgpack
         * gives back a float */
        if (!strpbrk(tmp, ".eEn")) strcat(tmp, ".0");
        lr_buf_puts(b, tmp);
    }
}

void mpjson_write(lr_buf *b, const msgpack_object *o) {
    char tmp[40];
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: lr_buf_puts(b, "null"); break;
    case MSGPACK_OBJECT_BOOLEAN: lr_buf_puts(b, o->via.boolean ? "true" : "false"); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        snprintf(tmp, sizeof tmp, "%" PRIu64, o->via.u64);
        lr_buf_puts(b, tmp);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        snprintf(tmp, sizeof tmp, "%" PRId64, o->via.i64);
        lr_buf_puts(b, tmp);
        break;
    case MSGPACK_OBJECT_FLOAT32: put_double(b, o->via.f64, 9); break;
    case MSGPACK_OBJECT_FLOAT64: put_double(b, o->via.f64, 17); break;
    case MSGPACK_OBJECT_STR: mpjson_write_str(b, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN: {
        lr_buf_puts(b, "{\"$bin\":\"");
        for (uint32_t i = 0; i < o->via.bin.size; i++) {
            snprintf(tmp, sizeof tmp, "%02x", (unsigned char)o->via.bin.ptr[i]);
            lr_buf_put(b, tmp, 2);
        }
        lr_buf_puts(b, "\"}");
        break;
    }
    case MSGPACK_OBJECT_ARRAY:
        lr_buf_put(b, "[", 1);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i) lr_buf_put(b, ",", 1);
            mpjson_write(b, &o->via.array.ptr[i]);
        }
        lr_buf_put(b, "]", 1);
        break;
    case MSGPACK_OBJECT_MAP:
        lr_buf_put(b, "{", 1);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            if (i) lr_buf_put(b, ",", 1);
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (k->type == MSGPACK_OBJECT_STR) mpjson_write_str(b, k->via.str.ptr, k->via.str.size);
            else { /* JSON keys are strings: write the key's JSON text as one */
                lr_buf kb = {0};
                mpjson_write(&kb, k);
                mpjson_write_str(b, kb.p, kb.n);
                lr_buf_free(&kb);
            }
            lr_buf_put(b, ":", 1);
            mpjson_write(b, &o->via.map.ptr[i].val);
        }
        lr_buf_put(b, "}", 1);
        break;
    case MSGPACK_OBJECT_EXT: {
        const char *p = o->via.ext.ptr;
        uint32_t n = o->via.ext.size;
        if ((o->via.ext.type == LRS_EXT_F32 || o->via.ext.type == LRS_EXT_I32) && n % 4 == 0) {
            lr_buf_put(b, "[", 1);
            for (uint32_t i = 0; i < n; i += 4) {
                if (i) lr_buf_put(b, ",", 1);
                if (o->via.ext.type == LRS_EXT_F32) {
                    float f;
                    memcpy(&f, p + i, 4);
                    put_double(b, f, 9);
                } else {
                    int32_t v;
                    memcpy(&v, p + i, 4);
                    snprintf(tmp, sizeof tmp, "%" PRId32, v);
                    lr_buf_puts(b, tmp);
                }
            }
            lr_buf_put(b, "]", 1);
        } else {
            snprintf(tmp, sizeof tmp, "{\"$ext\":%d,\"hex\":\"", o->via.ext.type);
            lr_buf_puts(b, tmp);
            for (uint32_t i = 0; i < n; i++) {
                snprintf(tmp, sizeof tmp, "%02x", (unsigned char)p[i]);
                lr_buf_put(b, tmp, 2);
            }
            lr_buf_puts(b, "\"}");
        }
        break;
    }
    }
}

/* A JSON array -> ext typed array. */
static int pack_typed(msgpack_packer *pk, const json_t *v, lr_type t, const char *field) {
    if (!json_is_array(v)) return lr_err(LR_EINPUT, "field \"%s\": expected an array", field);
    size_t n = json_array_size(v);
    if (t == LRT_F32S) {
        float *a = xmalloc(n * sizeof *a);
        for (size_t i = 0; i < n; i++) {
            const json_t *e = json_array_get(v, i);
            if (json_is_number(e)) a[i] = (float)json_number_value(e);
            else if (json_is_string(e) && !strcmp(json_string_value(e), "-inf")) a[i] = -INFINITY;
            else {
                free(a);
                return lr_err(LR_EINPUT, "field \"%s\": element %zu: expected a number", field, i);
            }
        }
        lrs_pack_f32s(pk, a, n);
        free(a);
    } else {
        int32_t *a = xmalloc(n * sizeof *a);
        for (size_t i = 0; i < n; i++) {
            const json_t *e = json_array_get(v, i);
            json_int_t x = json_is_integer(e) ? json_integer_value(e) : 0;
            if (!json_is_integer(e) || x < INT32_MIN || x > INT32_MAX) {
                free(a);
                return lr_err(LR_EINPUT, "field \"%s\": element %zu: expected an int32", field, i);
            }
            a[i] = (int32_t)x;
        }
        lrs_pack_i32s(pk, a, n);
        free(a);
    }
    return LR_OK;
}

static int pack_value(msgpack_packer *pk, const json_t *v, int depth) {
    if (depth > 30) return lr_err(LR_EINPUT, "JSON nested too deeply");
    switch (json_typeof(v)) {
    case JSON_NULL: msgpack_pack_nil(pk); break;
    case JSON_TRUE: msgpack_pack_true(pk); break;
    case JSON_FALSE: msgpack_pack_false(pk); break;
    case JSON_INTEGER: msgpack_pack_int64(pk, json_integer_value(v)); break;
    case JSON_REAL: msgpack_pack_double(pk, json_real_value(v)); break;
    case JSON_STRING: {
        size_t n = json_string_length(v);
        msgpack_pack_str(pk, n);
        msgpack_pack_str_body(pk, json_string_value(v), n);
        break;
    }
    case JSON_ARRAY:
        msgpack_pack_array(pk, json_array_size(v));
        for (size_t i = 0; i < json_array_size(v); i++) {
            int rc = pack_value(pk, json_array_get(v, i), depth + 1);
            if (rc) return rc;
        }
        break;
    case JSON_OBJECT: {
        const char *k;
        json_t *e;
        msgpack_pack_map(pk, json_object_size(v));
        json_object_foreach((json_t *)v, k, e) {
            lrs_pack_cstr(pk, k);
            int rc = pack_value(pk, e, depth + 1);
            if (rc) return rc;
        }
        break;
    }
    }
    return LR_OK;
}

int mpjson_pack(msgpack_packer *pk, const json_t *v, const lr_kind *kind) {
    if (!kind || !json_is_object(v)) return pack_value(pk, v, 0);
    const char *k;
    json_t *e;
    msgpack_pack_map(pk, json_object_size(v));
    json_object_foreach((json_t *)v, k, e) {
        lrs_pack_cstr(pk, k);
        const lr_field *f = lr_schema_field(kind, k);
        int rc = f && (f->type == LRT_F32S || f->type == LRT_I32S) ? pack_typed(pk, e, f->type, k)
                                                                  : pack_value(pk, e, 1);
        if (rc) return rc;
    }
    return LR_OK;
}
