/* shards: see shards.h. */
#include "infer/shards.h"

#include "base/util.h"
#include "io/stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHARD_KEY "shard"

static int key_is(const msgpack_object *k, const char *s) {
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(s) && !memcmp(k->via.str.ptr, s, k->via.str.size);
}

/* "K/N" of the header's params; 0 or LR_EINPUT */
static int shard_of(const lrs_reader *r, int *k, int *n) {
    const msgpack_object *p = lrs_header_of(r)->params;
    const msgpack_object *s = p ? lrs_get(p, SHARD_KEY) : NULL;
    char buf[64] = "", tail;
    if (s && s->type == MSGPACK_OBJECT_STR && s->via.str.size < sizeof buf) {
        memcpy(buf, s->via.str.ptr, s->via.str.size);
        buf[s->via.str.size] = 0;
    }
    if (!s) return lr_err(LR_EINPUT, "%s: header: no \"params\".\"" SHARD_KEY "\": not an lr-infer output", lrs_path(r));
    if (sscanf(buf, "%d/%d%c", k, n, &tail) != 2 || *n < 1 || *k < 0 || *k >= *n)
        return lr_err(LR_EINPUT, "%s: header: \"params\".\"" SHARD_KEY "\": expected \"K/N\" with 0 <= K < N",
                      lrs_path(r));
    return LR_OK;
}

static void show(char *dst, size_t n, const msgpack_object *o) {
    if (!o) snprintf(dst, n, "(none)");
    else if (o->type == MSGPACK_OBJECT_STR) snprintf(dst, n, "\"%.*s\"", (int)o->via.str.size, o->via.str.ptr);
    else if (msgpack_object_print_buffer(dst, n, *o) < 0) snprintf(dst, n, "?");
}

static const msgpack_object *find(const msgpack_object *map, const msgpack_object *key) {
    for (uint32_t i = 0; map && i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && key->type == MSGPACK_OBJECT_STR && k->via.str.size == key->via.str.size &&
            !memcmp(k->via.str.ptr, key->via.str.ptr, k->via.str.size))
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

/* b's params against a's, every key both ways but "shard" */
static int same_params(const lrs_reader *a, const lrs_reader *b) {
    const msgpack_object *pa = lrs_header_of(a)->params, *pb = lrs_header_of(b)->params;
    for (int pass = 0; pass < 2; pass++) {
        const msgpack_object *from = pass ? pb : pa, *to = pass ? pa : pb;
        for (uint32_t i = 0; from && i < from->via.map.size; i++) {
            const msgpack_object *k = &from->via.map.ptr[i].key, *v = &from->via.map.ptr[i].val;
            if (key_is(k, SHARD_KEY)) continue;
            const msgpack_object *w = find(to, k);
            if (w && msgpack_object_equal(*v, *w)) continue;
            char va[256], vb[256];
            show(va, sizeof va, pass ? w : v);
            show(vb, sizeof vb, pass ? v : w);
            return lr_err(LR_EINPUT, "%s: header: params \"%.*s\" is %s, %s has %s: not shards of one run",
                          lrs_path(b), (int)k->via.str.size, k->via.str.ptr, vb, lrs_path(a), va);
        }
    }
    return LR_OK;
}

static int check_headers(lrs_reader **r, int n, int *kof) {
    const lrs_header *h0 = lrs_header_of(r[0]);
    int rc = LR_OK, *seen = xmalloc((size_t)n * sizeof *seen);
    for (int i = 0; i < n; i++) seen[i] = -1;
    for (int i = 0; i < n && !rc; i++) {
        const lrs_header *h = lrs_header_of(r[i]);
        int k, N;
        if ((rc = shard_of(r[i], &k, &N))) break;
        if (N != n)
            rc = lr_err(LR_EINPUT, "%s: header: shard %d/%d: a run of %d shards, %d files given", lrs_path(r[i]), k, N,
                        N, n);
        else if (seen[k] >= 0)
            rc = lr_err(LR_EINPUT, "%s: header: shard %d/%d again (also %s)", lrs_path(r[i]), k, N,
                        lrs_path(r[seen[k]]));
        else if (strcmp(h->kind, h0->kind) || h->kind_version != h0->kind_version || strcmp(h->tool, h0->tool))
            rc = lr_err(LR_EINPUT, "%s: header: kind \"%s\" v%d by %s, %s has \"%s\" v%d by %s: not shards of one run",
                        lrs_path(r[i]), h->kind, h->kind_version, h->tool, lrs_path(r[0]), h0->kind,
                        h0->kind_version, h0->tool);
        else if (!lrs_ident_same(&h->model, &h0->model) || !lrs_ident_same(&h->tokenizer, &h0->tokenizer))
            rc = lr_err(LR_EINPUT, "%s: header: model or tokenizer identity differs from %s's: not shards of one run",
                        lrs_path(r[i]), lrs_path(r[0]));
        else if (i)
            rc = same_params(r[0], r[i]);
        if (!rc) seen[k] = i, kof[i] = k;
    }
    free(seen);
    return rc;
}

/* the joined header's params: the first shard's, "shard" being "0/1" */
static void pack_params(msgpack_packer *pk, void *ctx) {
    const msgpack_object *p = ctx;
    msgpack_pack_map(pk, p->via.map.size);
    for (uint32_t i = 0; i < p->via.map.size; i++) {
        const msgpack_object_kv *kv = &p->via.map.ptr[i];
        msgpack_pack_object(pk, kv->key);
        if (key_is(&kv->key, SHARD_KEY)) lrs_pack_cstr(pk, "0/1");
        else msgpack_pack_object(pk, kv->val);
    }
}

typedef struct {
    const msgpack_object *rec; /* NULL: this shard is done */
    int64_t idx, prev;
} head;

/* the next record of shard i (its K is k of N) into h */
static int advance(lrs_reader *r, head *h, int k, int n) {
    int got = lrs_next(r, &h->rec);
    if (got == 0) {
        h->rec = NULL;
        return LR_OK;
    }
    if (got != 1) return got;
    int rc = lrs_get_int(r, h->rec, "idx", &h->idx);
    if (rc) return rc;
    if (h->idx < 0 || h->idx % n != k)
        return lrs_field_err(r, "idx", "%" PRId64 " is not a problem of shard %d/%d", h->idx, k, n);
    if (h->prev >= 0 && h->idx <= h->prev)
        return lrs_field_err(r, "idx", "%" PRId64 " after %" PRId64 ": the shard is not in input order", h->idx, h->prev);
    h->prev = h->idx;
    return LR_OK;
}

int shards_join(const char *out, const char *const *in, int n, int zstd_level, int argc, char **argv) {
    if (n < 1) return lr_err(LR_EUSAGE, "shards: no input streams");
    lrs_reader **r = xcalloc((size_t)n, sizeof *r);
    head *hd = xcalloc((size_t)n, sizeof *hd);
    int *kof = xcalloc((size_t)n, sizeof *kof), rc = LR_OK;
    lrs_writer *w = NULL;
    for (int i = 0; i < n && !rc; i++) rc = lrs_open_read(&r[i], in[i], NULL);
    if (!rc) rc = check_headers(r, n, kof);
    if (!rc) {
        const lrs_header *h0 = lrs_header_of(r[0]);
        lrs_header h = *h0;
        h.argc = argc, h.argv = argv, h.params = NULL, h.zstd_level = zstd_level;
        rc = lrs_create(&w, out, &h, pack_params, (void *)h0->params);
    }
    for (int i = 0; i < n && !rc; i++) hd[i].prev = -1, rc = advance(r[i], &hd[i], kof[i], n);
    while (!rc) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (hd[i].rec && (best < 0 || hd[i].idx < hd[best].idx)) best = i;
        if (best < 0) break;
        msgpack_pack_object(lrs_pk(w), *hd[best].rec);
        rc = lrs_record_done(w);
        if (!rc) rc = advance(r[best], &hd[best], kof[best], n);
    }
    if (w) {
        if (rc) lrs_abort(w);
        else rc = lrs_close(w);
    }
    for (int i = 0; i < n; i++)
        if (r[i]) lrs_close_read(r[i]);
    free(r), free(hd), free(kof);
    return rc;
}
