/* stream: record streams (see stream.h and docs/FORMATS.md).
 *
 * Writing: records are packed by msgpack-c into a buffer, fed to a zstd
 * compression stream, and a frame is ended at least every LRS_FRAME_BYTES of
 * records and at every lrs_flush(), always between two maps.
 *
 * Reading: zstd decompresses into a buffer; before msgpack-c unpacks an
 * item, mp_size() walks its bytes to find where it ends, checking every
 * declared length against the bytes actually present. So msgpack-c only ever
 * sees a complete item whose element counts are bounded by its byte size,
 * and a lying length (a "msgpack bomb") shows up as a truncated stream
 * instead of a huge allocation.
 */
#include "io/stream.h"

#include "io/schema.h"
#include "base/outfile.h"
#include "base/util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define LRS_FRAME_BYTES (1u << 20)   /* end a zstd frame after this much */
#define LRS_CHUNK (128u << 10)       /* feed zstd in chunks of this size */
#define LRS_MAX_DEPTH 32             /* msgpack-c's own unpack stack depth */

/* ------------------------------------------------------------------ */
/* msgpack item walker                                                 */

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* Size in bytes of the complete msgpack item at p[0..n): >0 its size, 0 when
 * more bytes are needed, -1 invalid byte, -2 nested too deep. Iterative: a
 * stack of "items still to read" per open container. */
static int64_t mp_size(const uint8_t *p, size_t n) {
    uint64_t todo[LRS_MAX_DEPTH + 1];
    int depth = 0;
    size_t off = 0;
    todo[0] = 1;
    while (depth >= 0) {
        if (todo[depth] == 0) { depth--; continue; }
        todo[depth]--;
        if (off >= n) return 0;
        uint8_t b = p[off];
        uint64_t skip = 0, items = 0; /* payload bytes after the header; child items */
        int hdr = 1;
        if (b <= 0x7f || b >= 0xe0) skip = 0;
        else if (b <= 0x8f) items = 2 * (uint64_t)(b & 0x0f);
        else if (b <= 0x9f) items = b & 0x0f;
        else if (b <= 0xbf) skip = b & 0x1f;
        else switch (b) {
            case 0xc0: case 0xc2: case 0xc3: break;
            case 0xc4: case 0xd9: hdr = 2; break;              /* bin8, str8 */
            case 0xc5: case 0xda: hdr = 3; break;              /* bin16, str16 */
            case 0xc6: case 0xdb: hdr = 5; break;              /* bin32, str32 */
            case 0xc7: hdr = 3; break;                         /* ext8: len, type */
            case 0xc8: hdr = 4; break;
            case 0xc9: hdr = 6; break;
            case 0xca: skip = 4; break;
            case 0xcb: skip = 8; break;
            case 0xcc: case 0xd0: skip = 1; break;
            case 0xcd: case 0xd1: skip = 2; break;
            case 0xce: case 0xd2: skip = 4; break;
            case 0xcf: case 0xd3: skip = 8; break;
            case 0xd4: skip = 2; break;                        /* fixext: type + data */
            case 0xd5: skip = 3; break;
            case 0xd6: skip = 5; break;
            case 0xd7: skip = 9; break;
            case 0xd8: skip = 17; break;
            case 0xdc: case 0xde: hdr = 3; break;              /* array16, map16 */
            case 0xdd: case 0xdf: hdr = 5; break;              /* array32, map32 */
            default: return -1;                                /* 0xc1 */
            }
        if (off + hdr > n) return 0;
        switch (b) {
        case 0xc4: case 0xd9: case 0xc5: case 0xda: case 0xc6: case 0xdb:
            skip = be(p + off + 1, hdr - 1);
            break;
        case 0xc7: case 0xc8: case 0xc9:
            skip = be(p + off + 1, hdr - 2);
            break;
        case 0xdc: case 0xdd: items = be(p + off + 1, hdr - 1); break;
        case 0xde: case 0xdf: items = 2 * be(p + off + 1, hdr - 1); break;
        default: break;
        }
        off += hdr;
        if (skip > n - off) return 0;
        off += skip;
        if (items) {
            if (depth + 1 > LRS_MAX_DEPTH) return -2;
            /* Each child takes at least one byte: a count larger than what
             * is left is a bomb or a truncation, decided by reading on. */
            todo[++depth] = items;
        }
    }
    return (int64_t)off;
}

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static int key_eq(const msgpack_object *k, const char *s) {
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && !memcmp(k->via.str.ptr, s, n);
}

const msgpack_object *lrs_get(const msgpack_object *map, const char *key) {
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (key_eq(&map->via.map.ptr[i].key, key)) return &map->via.map.ptr[i].val;
    return NULL;
}

static char *obj_strdup(const msgpack_object *o) {
    if (!o || o->type != MSGPACK_OBJECT_STR) return NULL;
    char *s = xmalloc(o->via.str.size + 1);
    memcpy(s, o->via.str.ptr, o->via.str.size);
    s[o->via.str.size] = 0;
    return s;
}

static int obj_int(const msgpack_object *o, int64_t *v) {
    if (!o) return 0;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) { *v = (int64_t)o->via.u64; return 1; }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) { *v = o->via.i64; return 1; }
    return 0;
}

void lrs_pack_cstr(msgpack_packer *pk, const char *s) {
    size_t n = s ? strlen(s) : 0;
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s ? s : "", n);
}

/* Ext payloads are little-endian; this machine family is too (checked at
 * compile time below), so the arrays are copied as they are. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "stream.c assumes a little-endian host"
#endif

/* An empty array is packed without a body: msgpack-c would memcpy from v,
 * which may be NULL then. */
static void pack_ext(msgpack_packer *pk, const void *v, size_t bytes, int8_t type) {
    msgpack_pack_ext(pk, bytes, type);
    if (bytes) msgpack_pack_ext_body(pk, v, bytes);
}

void lrs_pack_f32s(msgpack_packer *pk, const float *v, size_t n) { pack_ext(pk, v, n * 4, LRS_EXT_F32); }

void lrs_pack_i32s(msgpack_packer *pk, const int32_t *v, size_t n) { pack_ext(pk, v, n * 4, LRS_EXT_I32); }

static void free_ident(lrs_ident *id) {
    free(id->name);
    free(id->hash);
    memset(id, 0, sizeof *id);
}

static void free_header(lrs_header *h) {
    free(h->kind);
    free(h->tool);
    free(h->tool_version);
    for (int i = 0; i < h->argc; i++) free(h->argv[i]);
    free(h->argv);
    free_ident(&h->model);
    free_ident(&h->tokenizer);
    memset(h, 0, sizeof *h);
}

void lrs_header_init(lrs_header *h, const char *kind, int kind_version, const char *tool,
                     int argc, char **argv) {
    memset(h, 0, sizeof *h);
    h->kind = (char *)kind;
    h->kind_version = kind_version;
    h->tool = (char *)tool;
    h->tool_version = LR_VERSION;
    h->argc = argc;
    h->argv = argv;
    h->model.name = h->model.hash = h->tokenizer.name = h->tokenizer.hash = "";
}

int lrs_ident_same(const lrs_ident *a, const lrs_ident *b) {
    const char *ah = a->hash ? a->hash : "", *bh = b->hash ? b->hash : "";
    if (*ah && *bh) return !strcmp(ah, bh) && a->vocab == b->vocab;
    return !strcmp(a->name ? a->name : "", b->name ? b->name : "") && a->vocab == b->vocab;
}

/* ------------------------------------------------------------------ */
/* writer                                                              */

struct lrs_writer {
    FILE *f;
    char *path;
    int own_file;
    lr_out *of;                /* lrs_create: the temporary, renamed on close */
    ZSTD_CCtx *cctx;
    msgpack_sbuffer sbuf;      /* records not yet handed to zstd */
    msgpack_packer pk;
    char *out;                 /* zstd output buffer */
    size_t outcap;
    size_t frame_bytes;        /* uncompressed bytes in the open frame */
    uint64_t nrec;             /* records in this segment */
    int failed;
};

static int w_io(lrs_writer *w) {
    w->failed = 1;
    return lr_err(LR_EIO, "%s: write error: %s", w->path, strerror(errno ? errno : EIO));
}

/* Feeds sbuf to zstd; `end` closes the frame. */
static int w_push(lrs_writer *w, int end) {
    if (w->failed) return LR_EIO;
    ZSTD_inBuffer in = {w->sbuf.data, w->sbuf.size, 0};
    ZSTD_EndDirective mode = end ? ZSTD_e_end : ZSTD_e_continue;
    for (;;) {
        ZSTD_outBuffer out = {w->out, w->outcap, 0};
        size_t r = ZSTD_compressStream2(w->cctx, &out, &in, mode);
        if (ZSTD_isError(r)) {
            w->failed = 1;
            return lr_err(LR_EIO, "%s: zstd: %s", w->path, ZSTD_getErrorName(r));
        }
        if (out.pos && fwrite(w->out, 1, out.pos, w->f) != out.pos) return w_io(w);
        if (end ? r == 0 : in.pos == in.size) break;
    }
    w->frame_bytes += w->sbuf.size;
    w->sbuf.size = 0;
    if (end) {
        w->frame_bytes = 0;
        if (fflush(w->f)) return w_io(w);
    }
    return LR_OK;
}

static void pack_ident(msgpack_packer *pk, const lrs_ident *id) {
    msgpack_pack_map(pk, 3);
    lrs_pack_cstr(pk, "name");
    lrs_pack_cstr(pk, id->name);
    lrs_pack_cstr(pk, "hash");
    lrs_pack_cstr(pk, id->hash);
    lrs_pack_cstr(pk, "vocab");
    msgpack_pack_int64(pk, id->vocab);
}

/* The zstd level for what the writer compresses next (set before the
 * header, so before any frame): 0 is the default, others are clamped. */
static void w_level(lrs_writer *w, int level) {
    if (!level) level = LRS_ZSTD_DEFAULT;
    level = level < LRS_ZSTD_MIN ? LRS_ZSTD_MIN : level > LRS_ZSTD_MAX ? LRS_ZSTD_MAX : level;
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level);
}

static void pack_header(lrs_writer *w, const lrs_header *h, lrs_pack_fn params, void *ctx) {
    w_level(w, h->zstd_level);
    msgpack_packer *pk = &w->pk;
    msgpack_pack_map(pk, 10);
    lrs_pack_cstr(pk, "lrs");
    lrs_pack_cstr(pk, LRS_FORMAT);
    lrs_pack_cstr(pk, "format_version");
    msgpack_pack_int(pk, LRS_FORMAT_VERSION);
    lrs_pack_cstr(pk, "kind");
    lrs_pack_cstr(pk, h->kind);
    lrs_pack_cstr(pk, "kind_version");
    msgpack_pack_int(pk, h->kind_version);
    lrs_pack_cstr(pk, "tool");
    lrs_pack_cstr(pk, h->tool);
    lrs_pack_cstr(pk, "tool_version");
    lrs_pack_cstr(pk, h->tool_version);
    lrs_pack_cstr(pk, "argv");
    msgpack_pack_array(pk, h->argc);
    for (int i = 0; i < h->argc; i++) lrs_pack_cstr(pk, h->argv[i]);
    lrs_pack_cstr(pk, "model");
    pack_ident(pk, &h->model);
    lrs_pack_cstr(pk, "tokenizer");
    pack_ident(pk, &h->tokenizer);
    lrs_pack_cstr(pk, "params");
    if (params) params(pk, ctx);
    else msgpack_pack_map(pk, 0);
}

/* given: a file the caller owns (path is then only its name), else NULL. */
static int w_create(lrs_writer **wp, const char *path, const char *mode, FILE *given) {
    *wp = NULL;
    lrs_writer *w = xcalloc(1, sizeof *w);
    w->path = xstrdup(strcmp(path, "-") || given ? path : "<stdout>");
    if (given) {
        w->f = given;
    } else if (!strcmp(path, "-")) {
        if (isatty(1)) {
            free(w->path);
            free(w);
            return lr_err(LR_EUSAGE, "refusing to write a binary stream to a terminal (redirect stdout or use -o)");
        }
        w->f = stdout;
    } else {
        w->f = fopen(path, mode);
        if (!w->f) {
            int rc = lr_err(LR_EIO, "%s: %s", path, strerror(errno));
            free(w->path);
            free(w);
            return rc;
        }
        w->own_file = 1;
    }
    w->cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, LRS_ZSTD_DEFAULT);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    msgpack_sbuffer_init(&w->sbuf);
    msgpack_packer_init(&w->pk, &w->sbuf, msgpack_sbuffer_write);
    w->outcap = ZSTD_CStreamOutSize();
    w->out = xmalloc(w->outcap);
    *wp = w;
    return LR_OK;
}

static void w_free(lrs_writer *w) {
    if (w->of) out_abort(&w->of); /* not committed: the temporary goes */
    else if (w->own_file) fclose(w->f);
    else if (w->f) fflush(w->f);
    ZSTD_freeCCtx(w->cctx);
    msgpack_sbuffer_destroy(&w->sbuf);
    free(w->out);
    free(w->path);
    free(w);
}

int lrs_create(lrs_writer **wp, const char *path, const lrs_header *h, lrs_pack_fn params, void *ctx) {
    *wp = NULL;
    if (!strcmp(path, "-")) return lrs_open_write(wp, path, h, params, ctx);
    lr_out *o;
    FILE *f;
    int rc = out_open(&o, path, 0, &f);
    if (rc) return rc;
    if ((rc = w_create(wp, path, "wb", f))) {
        out_abort(&o);
        return rc;
    }
    (*wp)->of = o;
    pack_header(*wp, h, params, ctx);
    return LR_OK;
}

int lrs_open_write(lrs_writer **wp, const char *path, const lrs_header *h, lrs_pack_fn params,
                   void *ctx) {
    int rc = w_create(wp, path, "wb", NULL);
    if (rc) return rc;
    pack_header(*wp, h, params, ctx);
    return LR_OK;
}

msgpack_packer *lrs_pk(lrs_writer *w) { return &w->pk; }

int lrs_record_done(lrs_writer *w) {
    w->nrec++;
    if (w->sbuf.size >= LRS_CHUNK) {
        int end = w->frame_bytes + w->sbuf.size >= LRS_FRAME_BYTES;
        return w_push(w, end);
    }
    return w->failed ? LR_EIO : LR_OK;
}

int lrs_flush(lrs_writer *w) { return w_push(w, 1); }

uint64_t lrs_written(const lrs_writer *w) { return w->nrec; }

int lrs_close(lrs_writer *w) {
    msgpack_pack_map(&w->pk, 1);
    lrs_pack_cstr(&w->pk, "lrs_end");
    msgpack_pack_uint64(&w->pk, w->nrec);
    int rc = w_push(w, 1);
    if (w->of) {
        /* an incomplete stream never reaches the final name */
        if (rc) out_abort(&w->of);
        else rc = out_commit(&w->of);
        w->f = NULL;
    } else if (w->own_file) {
        if (fclose(w->f) && !rc) rc = w_io(w);
        w->own_file = 0;
        w->f = NULL;
    }
    w_free(w);
    return rc;
}

void lrs_abort(lrs_writer *w) {
    if (!w) return;
    if (!w->failed && !w->of) w_push(w, 1); /* keep what was written; no end marker */
    w_free(w);
}

/* ------------------------------------------------------------------ */
/* reader                                                              */

typedef struct { uint64_t coff, doff; } frame_end;

struct lrs_reader {
    FILE *f;
    char *path;
    int own_file;
    ZSTD_DCtx *dctx;
    uint8_t *in;               /* compressed input buffer */
    size_t incap, inpos, inlen;
    int in_eof;
    uint64_t coff;             /* compressed bytes consumed so far */
    size_t zret;               /* last ZSTD_decompressStream hint; 0 = at frame end */
    int any_input;
    uint8_t *buf;              /* decompressed bytes not yet parsed: buf[beg..end) */
    size_t beg, end, cap;
    uint64_t doff_beg;         /* decompressed offset of buf[beg] */
    size_t retry_at;           /* walk again once this many bytes are buffered */
    msgpack_unpacked item;
    msgpack_unpacked hdr_item; /* keeps the first header's params alive */
    lrs_header hdr;
    const lr_kind *schema;
    uint64_t recno;            /* items read, header = 0 */
    uint64_t seg_records;
    int state;                 /* 0 expect header, 1 in segment, 2 after end marker */
    int done;
    int clean_eof;             /* input ended between items and frames */
    /* resume support: the last frame end, and whether it sits on an item
     * boundary that has been fully parsed */
    frame_end *fends;
    size_t nfends, capfends;
    uint64_t good_coff;        /* compressed offset of last frame end <= parsed items */
};

const lrs_header *lrs_header_of(const lrs_reader *r) { return &r->hdr; }
const msgpack_object *lrs_header_obj(const lrs_reader *r) { return &r->hdr_item.data; }
uint64_t lrs_recno(const lrs_reader *r) { return r->recno; }
const char *lrs_path(const lrs_reader *r) { return r->path; }

static int r_err(const lrs_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int r_err(const lrs_reader *r, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lr_err(LR_EINPUT, "%s: record %llu: %s", r->path, (unsigned long long)r->recno, msg);
}

int lrs_field_err(const lrs_reader *r, const char *field, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lr_err(LR_EINPUT, "%s: record %llu: field \"%s\": %s", r ? r->path : "?",
                  (unsigned long long)(r ? r->recno : 0), field, msg);
}

/* Decompresses more bytes into buf. Returns 1 if bytes were added, 0 at a
 * clean EOF (input ended on a frame boundary), or an error code. */
static int r_fill(lrs_reader *r) {
    if (r->beg > 0 && (r->beg == r->end || r->beg > r->cap / 2)) {
        memmove(r->buf, r->buf + r->beg, r->end - r->beg);
        r->end -= r->beg;
        r->beg = 0;
    }
    for (;;) {
        if (r->inpos == r->inlen && !r->in_eof) {
            r->inlen = fread(r->in, 1, r->incap, r->f);
            r->inpos = 0;
            if (r->inlen == 0) {
                if (ferror(r->f)) return lr_err(LR_EIO, "%s: read error: %s", r->path, strerror(errno));
                r->in_eof = 1;
            } else {
                r->any_input = 1;
            }
        }
        if (r->inpos == r->inlen && r->in_eof) {
            if (r->zret != 0)
                return r_err(r, "truncated stream (input ends inside a zstd frame)");
            return 0;
        }
        if (r->end == r->cap) {
            if (r->cap >= LRS_MAX_RECORD + (1u << 20))
                return r_err(r, "item larger than %u MiB (corrupt length or not a record stream)",
                             LRS_MAX_RECORD >> 20);
            r->cap = r->cap ? r->cap * 2 : (1u << 20);
            r->buf = xrealloc(r->buf, r->cap);
        }
        ZSTD_inBuffer in = {r->in, r->inlen, r->inpos};
        ZSTD_outBuffer out = {r->buf, r->cap, r->end};
        size_t ret = ZSTD_decompressStream(r->dctx, &out, &in);
        if (ZSTD_isError(ret))
            return r_err(r, "corrupt stream (zstd: %s)", ZSTD_getErrorName(ret));
        r->coff += in.pos - r->inpos;
        r->inpos = in.pos;
        size_t added = out.pos - r->end;
        r->end = out.pos;
        r->zret = ret;
        if (ret == 0) { /* a frame just ended: remember where, for resume */
            if (r->nfends == r->capfends)
                r->fends = xrealloc(r->fends, (r->capfends = r->capfends * 2 + 8) * sizeof *r->fends);
            r->fends[r->nfends++] = (frame_end){r->coff, r->doff_beg + (r->end - r->beg)};
        }
        if (added) return 1;
    }
}

/* Moves the resume point past every frame end that lies at or before the
 * decompressed offset `doff` (all items before it are parsed). */
static void r_mark_parsed(lrs_reader *r, uint64_t doff) {
    size_t i = 0;
    while (i < r->nfends && r->fends[i].doff <= doff) {
        r->good_coff = r->fends[i].coff;
        i++;
    }
    if (i) {
        memmove(r->fends, r->fends + i, (r->nfends - i) * sizeof *r->fends);
        r->nfends -= i;
    }
}

/* Reads the next msgpack item into r->item. 1 = got one, 0 = clean EOF with
 * no partial item, else error. */
static int r_item(lrs_reader *r) {
    r->retry_at = 0;
    int drained = 0; /* r_fill reported the end of the input */
    for (;;) {
        size_t avail = r->end - r->beg;
        if (avail && (avail >= r->retry_at || drained)) {
            int64_t sz = mp_size(r->buf + r->beg, avail);
            if (sz == -1) return r_err(r, "corrupt record (invalid msgpack byte)");
            if (sz == -2) return r_err(r, "corrupt record (nested deeper than %d)", LRS_MAX_DEPTH);
            if (sz > 0) {
                size_t off = 0;
                msgpack_unpack_return ur =
                    msgpack_unpack_next(&r->item, (const char *)r->buf + r->beg, (size_t)sz, &off);
                if (ur != MSGPACK_UNPACK_SUCCESS || off != (size_t)sz)
                    return r_err(r, "corrupt record (msgpack unpack failed)");
                r->beg += sz;
                r->doff_beg += sz;
                return 1;
            }
            if (drained) return r_err(r, "truncated stream (input ends inside a record)");
            r->retry_at = avail * 2; /* re-walk only after doubling: linear time */
        }
        if (drained) return 0;
        int rc = r_fill(r);
        if (rc == 0) {
            drained = 1;
            continue;
        }
        if (rc != 1) return rc;
    }
}

static int parse_ident(lrs_reader *r, const msgpack_object *o, const char *field, lrs_ident *id) {
    if (!o || o->type != MSGPACK_OBJECT_MAP) return r_err(r, "header field \"%s\": expected map", field);
    id->name = obj_strdup(lrs_get(o, "name"));
    id->hash = obj_strdup(lrs_get(o, "hash"));
    if (!id->name || !id->hash || !obj_int(lrs_get(o, "vocab"), &id->vocab))
        return r_err(r, "header field \"%s\": needs name, hash (strings) and vocab (integer)", field);
    return LR_OK;
}

/* Parses a header item into h (owned strings). */
static int parse_header(lrs_reader *r, const msgpack_object *o, lrs_header *h) {
    memset(h, 0, sizeof *h);
    const msgpack_object *fmt = lrs_get(o, "lrs");
    if (!fmt) return r_err(r, "not a record stream header (no \"lrs\" field)");
    if (!key_eq(fmt, LRS_FORMAT)) return r_err(r, "header field \"lrs\": not \"" LRS_FORMAT "\"");
    int64_t fv, kv;
    if (!obj_int(lrs_get(o, "format_version"), &fv))
        return r_err(r, "header field \"format_version\": missing or not an integer");
    if (fv != LRS_FORMAT_VERSION)
        return r_err(r, "unsupported stream format version %lld (this build reads %d)", (long long)fv,
                     LRS_FORMAT_VERSION);
    h->kind = obj_strdup(lrs_get(o, "kind"));
    if (!h->kind) return r_err(r, "header field \"kind\": missing or not a string");
    if (!obj_int(lrs_get(o, "kind_version"), &kv))
        return r_err(r, "header field \"kind_version\": missing or not an integer");
    h->kind_version = (int)kv;
    if (!lr_schema_find(h->kind, h->kind_version))
        return r_err(r, "unknown record kind \"%s\" version %d", h->kind, h->kind_version);
    h->tool = obj_strdup(lrs_get(o, "tool"));
    h->tool_version = obj_strdup(lrs_get(o, "tool_version"));
    if (!h->tool || !h->tool_version) return r_err(r, "header fields \"tool\"/\"tool_version\": missing");
    const msgpack_object *av = lrs_get(o, "argv");
    if (!av || av->type != MSGPACK_OBJECT_ARRAY) return r_err(r, "header field \"argv\": expected array");
    h->argv = xcalloc(av->via.array.size + 1, sizeof *h->argv);
    for (uint32_t i = 0; i < av->via.array.size; i++) {
        h->argv[i] = obj_strdup(&av->via.array.ptr[i]);
        if (!h->argv[i]) return r_err(r, "header field \"argv\": expected strings");
        h->argc++;
    }
    int rc = parse_ident(r, lrs_get(o, "model"), "model", &h->model);
    if (!rc) rc = parse_ident(r, lrs_get(o, "tokenizer"), "tokenizer", &h->tokenizer);
    if (rc) return rc;
    const msgpack_object *p = lrs_get(o, "params");
    if (p && p->type != MSGPACK_OBJECT_MAP) return r_err(r, "header field \"params\": expected map");
    return LR_OK;
}

static int r_open(lrs_reader **rp, const char *path, const char *want_kind) {
    lrs_reader *r = xcalloc(1, sizeof *r);
    *rp = r;
    r->path = xstrdup(strcmp(path, "-") ? path : "<stdin>");
    if (!strcmp(path, "-")) {
        r->f = stdin;
    } else {
        r->f = fopen(path, "rb");
        if (!r->f) return lr_err(LR_EIO, "%s: %s", path, strerror(errno));
        r->own_file = 1;
    }
    r->dctx = ZSTD_createDCtx();
    r->incap = ZSTD_DStreamInSize();
    r->in = xmalloc(r->incap);
    msgpack_unpacked_init(&r->item);
    msgpack_unpacked_init(&r->hdr_item);
    int rc = r_item(r);
    if (rc == 0) {
        if (!r->any_input) return r_err(r, "empty input (no stream header)");
        return r_err(r, "no stream header");
    }
    if (rc != 1) {
        if (!r->any_input) return r_err(r, "empty input (no stream header)");
        return rc;
    }
    /* the header item moves to hdr_item so that params outlive records */
    msgpack_unpacked tmp = r->hdr_item;
    r->hdr_item = r->item;
    r->item = tmp;
    rc = parse_header(r, &r->hdr_item.data, &r->hdr);
    if (rc) return rc;
    r->hdr.params = lrs_get(&r->hdr_item.data, "params");
    if (want_kind && strcmp(want_kind, r->hdr.kind))
        return r_err(r, "stream holds \"%s\" records, expected \"%s\"", r->hdr.kind, want_kind);
    r->schema = lr_schema_find(r->hdr.kind, r->hdr.kind_version);
    r->state = 1;
    r_mark_parsed(r, r->doff_beg);
    return LR_OK;
}

int lrs_open_read(lrs_reader **rp, const char *path, const char *want_kind) {
    int rc = r_open(rp, path, want_kind);
    if (rc) {
        lrs_close_read(*rp);
        *rp = NULL;
    }
    return rc;
}

int lrs_next(lrs_reader *r, const msgpack_object **rec) {
    for (;;) {
        if (r->done) return 0;
        r->recno++;
        int rc = r_item(r);
        if (rc == 0) {
            r->recno--;
            r->clean_eof = 1;
            if (r->state == 2) { r->done = 1; return 0; }
            return lr_err(LR_EINPUT, "%s: after record %llu: stream incomplete (no end marker)", r->path,
                          (unsigned long long)r->recno);
        }
        if (rc != 1) return rc;
        const msgpack_object *o = &r->item.data;
        if (o->type != MSGPACK_OBJECT_MAP) return r_err(r, "corrupt record (not a map)");
        const msgpack_object *endm = lrs_get(o, "lrs_end");
        if (endm) {
            int64_t n;
            if (r->state != 1) return r_err(r, "end marker outside a segment");
            if (!obj_int(endm, &n) || (uint64_t)n != r->seg_records)
                return r_err(r, "end marker counts %lld records, segment has %llu", (long long)(obj_int(endm, &n) ? n : -1),
                             (unsigned long long)r->seg_records);
            r->state = 2;
            r->seg_records = 0;
            r->recno--; /* markers are not records */
            r_mark_parsed(r, r->doff_beg);
            continue;
        }
        if (lrs_get(o, "lrs")) {
            if (r->state != 2) return r_err(r, "stream header inside a segment (missing end marker before it)");
            lrs_header h;
            rc = parse_header(r, o, &h);
            if (!rc && (strcmp(h.kind, r->hdr.kind) || h.kind_version != r->hdr.kind_version))
                rc = r_err(r, "concatenated stream of kind \"%s\" v%d after \"%s\" v%d", h.kind, h.kind_version,
                           r->hdr.kind, r->hdr.kind_version);
            if (!rc && !lrs_ident_same(&h.model, &r->hdr.model))
                rc = r_err(r, "concatenated stream from a different model (%s vs %s)", h.model.name, r->hdr.model.name);
            if (!rc && !lrs_ident_same(&h.tokenizer, &r->hdr.tokenizer))
                rc = r_err(r, "concatenated stream from a different tokenizer (%s vs %s)", h.tokenizer.hash,
                           r->hdr.tokenizer.hash);
            free_header(&h);
            if (rc) return rc;
            r->state = 1;
            r->recno--;
            r_mark_parsed(r, r->doff_beg);
            continue;
        }
        if (r->state != 1) return r_err(r, "record after the end marker (missing header)");
        char msg[512];
        if (!lr_schema_check(r->schema, o, msg, sizeof msg)) return r_err(r, "%s", msg);
        r->seg_records++;
        r_mark_parsed(r, r->doff_beg);
        *rec = o;
        return 1;
    }
}

void lrs_close_read(lrs_reader *r) {
    if (!r) return;
    if (r->own_file && r->f) fclose(r->f);
    ZSTD_freeDCtx(r->dctx);
    msgpack_unpacked_destroy(&r->item);
    msgpack_unpacked_destroy(&r->hdr_item);
    free_header(&r->hdr);
    free(r->in);
    free(r->buf);
    free(r->fends);
    free(r->path);
    free(r);
}

/* ------------------------------------------------------------------ */
/* typed field access                                                  */

/* Copies an ext typed array of 4-byte elements into *buf (grown to fit);
 * 1 when o is such an ext of the given type, 0 otherwise. */
static int copy_ext(const msgpack_object *o, int type, void **buf, size_t *cap, size_t *n) {
    if (o->type != MSGPACK_OBJECT_EXT || o->via.ext.type != type || o->via.ext.size % 4) return 0;
    size_t m = o->via.ext.size / 4;
    if (m > *cap) *buf = xrealloc(*buf, (*cap = m) * 4);
    if (m) memcpy(*buf, o->via.ext.ptr, m * 4); /* an empty array: *buf may still be NULL */
    *n = m;
    return 1;
}

/* Grows *buf for the m elements of a plain msgpack array. */
static void grow4(void **buf, size_t *cap, size_t m) {
    if (m > *cap) *buf = xrealloc(*buf, (*cap = m) * 4);
}

int lrs_obj_f32s(const msgpack_object *o, float **buf, size_t *cap, size_t *n) {
    if (copy_ext(o, LRS_EXT_F32, (void **)buf, cap, n)) return LR_OK;
    if (o->type != MSGPACK_OBJECT_ARRAY) return lr_err(LR_EINPUT, "expected float32 array");
    size_t m = o->via.array.size;
    grow4((void **)buf, cap, m);
    for (size_t i = 0; i < m; i++) {
        const msgpack_object *e = &o->via.array.ptr[i];
        int64_t v;
        if (e->type == MSGPACK_OBJECT_FLOAT32 || e->type == MSGPACK_OBJECT_FLOAT64) (*buf)[i] = (float)e->via.f64;
        else if (obj_int(e, &v)) (*buf)[i] = (float)v;
        else return lr_err(LR_EINPUT, "expected float32 array");
    }
    *n = m;
    return LR_OK;
}

int lrs_obj_i32s(const msgpack_object *o, int32_t **buf, size_t *cap, size_t *n) {
    if (copy_ext(o, LRS_EXT_I32, (void **)buf, cap, n)) return LR_OK;
    if (o->type != MSGPACK_OBJECT_ARRAY) return lr_err(LR_EINPUT, "expected int32 array");
    size_t m = o->via.array.size;
    grow4((void **)buf, cap, m);
    for (size_t i = 0; i < m; i++) {
        int64_t v;
        if (!obj_int(&o->via.array.ptr[i], &v) || v < INT32_MIN || v > INT32_MAX)
            return lr_err(LR_EINPUT, "expected int32 array");
        (*buf)[i] = (int32_t)v;
    }
    *n = m;
    return LR_OK;
}

int lrs_get_int(const lrs_reader *r, const msgpack_object *rec, const char *key, int64_t *out) {
    const msgpack_object *o = lrs_get(rec, key);
    if (!o) return lrs_field_err(r, key, "missing");
    if (!obj_int(o, out)) return lrs_field_err(r, key, "expected integer");
    return LR_OK;
}

int lrs_get_f64(const lrs_reader *r, const msgpack_object *rec, const char *key, double *out) {
    const msgpack_object *o = lrs_get(rec, key);
    int64_t v;
    if (!o) return lrs_field_err(r, key, "missing");
    if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64) *out = o->via.f64;
    else if (obj_int(o, &v)) *out = (double)v;
    else return lrs_field_err(r, key, "expected number");
    if (isnan(*out)) return lrs_field_err(r, key, "NaN");
    return LR_OK;
}

int lrs_get_str(const lrs_reader *r, const msgpack_object *rec, const char *key, const char **s,
                size_t *len) {
    const msgpack_object *o = lrs_get(rec, key);
    if (!o) return lrs_field_err(r, key, "missing");
    if (o->type != MSGPACK_OBJECT_STR) return lrs_field_err(r, key, "expected string");
    *s = o->via.str.ptr;
    if (len) *len = o->via.str.size;
    return LR_OK;
}

int lrs_get_f32s(const lrs_reader *r, const msgpack_object *rec, const char *key, float **buf,
                 size_t *cap, size_t *n) {
    const msgpack_object *o = lrs_get(rec, key);
    if (!o) return lrs_field_err(r, key, "missing");
    if (lrs_obj_f32s(o, buf, cap, n)) return lrs_field_err(r, key, "expected float32 array");
    return LR_OK;
}

int lrs_get_i32s(const lrs_reader *r, const msgpack_object *rec, const char *key, int32_t **buf,
                 size_t *cap, size_t *n) {
    const msgpack_object *o = lrs_get(rec, key);
    if (!o) return lrs_field_err(r, key, "missing");
    if (lrs_obj_i32s(o, buf, cap, n)) return lrs_field_err(r, key, "expected int32 array");
    return LR_OK;
}

/* ------------------------------------------------------------------ */
/* resume                                                              */

int lrs_resume(lrs_writer **wp, const char *path, const lrs_header *h, lrs_pack_fn params,
               void *ctx, lrs_record_fn on_record, void *cbctx) {
    *wp = NULL;
    struct stat st;
    if (!strcmp(path, "-")) return lr_err(LR_EUSAGE, "cannot resume a stream on stdout; give an output file");
    if (stat(path, &st) != 0 || st.st_size == 0) return lrs_open_write(wp, path, h, params, ctx);

    /* Pass 1: validate the header and find the last frame end that follows
     * complete items (everything before it is kept). */
    lrs_reader *r;
    int rc = r_open(&r, path, NULL);
    uint64_t good = 0;
    if (rc == 0) {
        if (strcmp(r->hdr.kind, h->kind) || r->hdr.kind_version != h->kind_version ||
            !lrs_ident_same(&r->hdr.model, &h->model) || !lrs_ident_same(&r->hdr.tokenizer, &h->tokenizer)) {
            rc = lr_err(LR_EINPUT, "%s: cannot resume: it holds %s v%d records of model %s (tokenizer %s), "
                        "this run writes %s v%d of model %s (tokenizer %s)", path, r->hdr.kind,
                        r->hdr.kind_version, r->hdr.model.name, r->hdr.tokenizer.hash, h->kind,
                        h->kind_version, h->model.name, h->tokenizer.hash);
            lrs_close_read(r);
            return rc;
        }
        const msgpack_object *rec;
        while ((rc = lrs_next(r, &rec)) == 1) {}
        good = rc == 0 ? (uint64_t)st.st_size : r->good_coff;
    }
    lrs_close_read(r);
    if (good == 0) return lrs_open_write(wp, path, h, params, ctx);
    if (good < (uint64_t)st.st_size) {
        fprintf(stderr, "%s: %s: resuming: dropping %llu bytes of incomplete data at the end\n", lr_progname,
                path, (unsigned long long)(st.st_size - good));
        if (truncate(path, (off_t)good) != 0) return lr_err(LR_EIO, "%s: truncate: %s", path, strerror(errno));
    }

    /* Pass 2: hand every record to the caller; learn whether the last
     * segment is complete and how many records it has. */
    rc = r_open(&r, path, NULL);
    if (rc) {
        lrs_close_read(r);
        return rc;
    }
    const msgpack_object *rec;
    int cb = 0;
    while ((rc = lrs_next(r, &rec)) == 1)
        if (on_record && (cb = on_record(rec, cbctx)) != 0) break;
    int state = r->state, clean = r->clean_eof;
    uint64_t seg = r->seg_records;
    lrs_close_read(r);
    if (cb) return cb;
    if (rc != 0 && !(state == 1 && clean)) return rc; /* damaged before the resume point */
    rc = w_create(wp, path, "ab", NULL);
    if (rc) return rc;
    if (state == 2) pack_header(*wp, h, params, ctx); /* complete: start a new segment */
    else (*wp)->nrec = seg;                           /* continue the open segment */
    w_level(*wp, h->zstd_level);
    return LR_OK;
}
