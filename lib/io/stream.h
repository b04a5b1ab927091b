/* stream: record streams, the one format every tool reads and writes.
 *
 * A stream is a sequence of zstd frames whose decompressed bytes are a
 * sequence of msgpack maps: one header map, then records, then an end marker
 * map; after an end marker another header may follow (concatenated streams:
 * `cat a.lrs b.lrs` is a valid stream when the headers agree). Frames end only
 * between records, so a crashed producer leaves complete frames followed by at
 * most one partial frame: resuming truncates the partial frame and appends.
 * docs/FORMATS.md is the full description.
 *
 * Typed numeric arrays travel as msgpack ext objects (little-endian):
 *   ext type 1: float32 array, ext type 2: int32 array.
 *
 * Every record is validated against the schema of the stream's kind
 * (schema.h) before the reader returns it, so a tool that got a record back
 * can read its required fields without further checks of presence and type.
 */
#ifndef LR_STREAM_H
#define LR_STREAM_H

#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>

#define LRS_FORMAT "lightreasoner-stream"
#define LRS_FORMAT_VERSION 1
#define LRS_EXT_F32 1
#define LRS_EXT_I32 2
/* Largest record a reader accepts (decompressed bytes); bounds memory. */
#define LRS_MAX_RECORD (512u << 20)

/* Identity of a model or tokenizer, as carried by a header. */
typedef struct {
    char *name;        /* e.g. folder name or config _name_or_path; "" if none */
    char *hash;        /* hex content hash; "" if none */
    int64_t vocab;     /* vocabulary size (model: lm_head rows); 0 if none */
} lrs_ident;

typedef struct {
    char *kind;            /* record kind, e.g. "dist" (see schema.h) */
    int kind_version;
    char *tool;            /* producing tool, e.g. "lr-infer" */
    char *tool_version;
    int argc;              /* the producing tool's full argument list */
    char **argv;
    lrs_ident model;
    lrs_ident tokenizer;
    /* Free-form parameters of the producer (e.g. beta, preset), as a
     * msgpack map packed by the producer; NULL/0 when none. On the reading
     * side `params` points into the reader's memory. */
    const msgpack_object *params;
    /* Writing only, not stored in the stream: the zstd level of the records
     * (LRS_ZSTD_MIN..LRS_ZSTD_MAX; 0 = LRS_ZSTD_DEFAULT), also when resuming
     * (lrs_resume). Levels change only
     * the size and the writing speed: readers see the same records. */
    int zstd_level;
} lrs_header;
enum { LRS_ZSTD_MIN = 1, LRS_ZSTD_MAX = 19, LRS_ZSTD_DEFAULT = 3 };

/* ---------- writing ---------- */
typedef struct lrs_writer lrs_writer;

/* Packs the producer's params map (called once while writing the header). */
typedef void (*lrs_pack_fn)(msgpack_packer *pk, void *ctx);

/* Opens path ("-" = stdout) for writing and writes the header; records are
 * compressed at h->zstd_level (clamped to LRS_ZSTD_MIN..MAX: tools refuse
 * other values as usage errors). An existing file is replaced (to continue
 * one, see lrs_resume()). A terminal as stdout is refused (binary output). */
int lrs_open_write(lrs_writer **w, const char *path, const lrs_header *h,
                   lrs_pack_fn params, void *params_ctx);
/* A new output stream that no reader sees half-written (base/outfile.h):
 * path is written under a temporary name that lrs_close renames onto path;
 * lrs_abort, an exit without lrs_close and SIGINT/SIGTERM (exit 130)
 * remove it. "-" is stdout, as for lrs_open_write. */
int lrs_create(lrs_writer **w, const char *path, const lrs_header *h, lrs_pack_fn params,
               void *params_ctx);
/* The packer for the next record: pack exactly one map, then call
 * lrs_record_done(). */
msgpack_packer *lrs_pk(lrs_writer *w);
int lrs_record_done(lrs_writer *w);
/* Ends the current zstd frame and flushes it to the file: everything written
 * so far survives a crash (a resume point). Called automatically every
 * ~1 MiB of records. */
int lrs_flush(lrs_writer *w);
/* Writes the end marker, flushes and closes. Returns nonzero (message set)
 * if any write failed, in which case the stream has no end marker. */
int lrs_close(lrs_writer *w);
/* Error path: flushes what was written WITHOUT an end marker (so a consumer
 * sees the stream is incomplete) and frees the writer; an lrs_create file
 * is removed instead. */
void lrs_abort(lrs_writer *w);
uint64_t lrs_written(const lrs_writer *w);

/* Packing helpers. */
void lrs_pack_cstr(msgpack_packer *pk, const char *s);
void lrs_pack_f32s(msgpack_packer *pk, const float *v, size_t n);
void lrs_pack_i32s(msgpack_packer *pk, const int32_t *v, size_t n);

/* Resume: reads an existing (possibly crashed) stream at path, truncates the
 * file after the last complete frame, calls on_record for every record kept
 * (all segments; a nonzero return aborts with that code), and opens the file for appending
 * records to its open segment (no new header). The existing header must have the same kind
 * and identities as h. If the file does not exist, behaves like
 * lrs_open_write. If its last segment is already complete (end marker), the
 * writer appends a new segment, so the result stays a valid concatenation. */
typedef int (*lrs_record_fn)(const msgpack_object *rec, void *ctx);
int lrs_resume(lrs_writer **w, const char *path, const lrs_header *h,
               lrs_pack_fn params, void *params_ctx,
               lrs_record_fn on_record, void *ctx);

/* ---------- reading ---------- */
typedef struct lrs_reader lrs_reader;

/* Opens path ("-" = stdin) and reads the header. want_kind NULL accepts any
 * known kind. Errors are LR_EINPUT/LR_EIO with "path: record N: ..." set. */
int lrs_open_read(lrs_reader **r, const char *path, const char *want_kind);
const lrs_header *lrs_header_of(const lrs_reader *r);
/* The first header as read (a msgpack map), e.g. to print it whole. */
const msgpack_object *lrs_header_obj(const lrs_reader *r);
/* Next record: returns 1 and sets *rec (valid until the next call), 0 at the
 * clean end of the stream (end marker then EOF), or an LR_E* code (> 1) with
 * the message set. */
int lrs_next(lrs_reader *r, const msgpack_object **rec);
/* Number of the record last returned (1-based; the header is record 0). */
uint64_t lrs_recno(const lrs_reader *r);
const char *lrs_path(const lrs_reader *r);
void lrs_close_read(lrs_reader *r);

/* Sets an error naming the reader's path, the current record and the field:
 * "path: record N: field "f": <msg>". Returns LR_EINPUT. */
int lrs_field_err(const lrs_reader *r, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Field access on a record map. lrs_get returns NULL when the key is absent.
 * The typed getters return 0, or LR_EINPUT naming path/record/field when the
 * field is absent or has the wrong type. Arrays are copied into *buf (grown
 * with realloc; *cap in elements) because ext payloads are unaligned. */
const msgpack_object *lrs_get(const msgpack_object *map, const char *key);
int lrs_get_int(const lrs_reader *r, const msgpack_object *rec, const char *key, int64_t *out);
int lrs_get_f64(const lrs_reader *r, const msgpack_object *rec, const char *key, double *out);
int lrs_get_str(const lrs_reader *r, const msgpack_object *rec, const char *key,
                const char **s, size_t *len);
int lrs_get_f32s(const lrs_reader *r, const msgpack_object *rec, const char *key,
                 float **buf, size_t *cap, size_t *n);
int lrs_get_i32s(const lrs_reader *r, const msgpack_object *rec, const char *key,
                 int32_t **buf, size_t *cap, size_t *n);
/* Decodes an ext float32/int32 object (or a plain msgpack array of numbers)
 * into buf; returns 0 or LR_EINPUT (message without location). */
int lrs_obj_f32s(const msgpack_object *o, float **buf, size_t *cap, size_t *n);
int lrs_obj_i32s(const msgpack_object *o, int32_t **buf, size_t *cap, size_t *n);

/* Header helpers for producers. */
void lrs_header_init(lrs_header *h, const char *kind, int kind_version,
                     const char *tool, int argc, char **argv);
/* 1 when two identities are the same model/tokenizer (hash equality when both
 * have hashes, else name and vocab). */
int lrs_ident_same(const lrs_ident *a, const lrs_ident *b);

#endif
