/* settings: see settings.h. */
#include "infer/settings.h"

#include "base/buf.h"

#include "base/util.h"
#include "io/stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int settings_fileid(const char *path, inf_fileid *id) {
    memset(id, 0, sizeof *id);
    id->size = -1;
    if (!path || !strcmp(path, "-")) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return lr_err(LR_EIO, "%s: cannot open: %s", path, strerror(errno));
    static char buf[1 << 16];
    uint64_t h = LR_FNV_INIT;
    int64_t size = 0;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) h = lr_fnv1a64(h, buf, n), size += (int64_t)n;
    int bad = ferror(f);
    fclose(f);
    if (bad) return lr_err(LR_EIO, "%s: read error", path);
    snprintf(id->hash, sizeof id->hash, "%016llx", (unsigned long long)h);
    id->size = size;
    return 0;
}

/* The entries are packed into a side buffer while counted, then emitted
 * behind their map header, so that a new setting is one put_* line. */
typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int n;
} entries;

static msgpack_packer *key(entries *e, const char *k) {
    e->n++;
    lrs_pack_cstr(&e->pk, k);
    return &e->pk;
}
static void put_str(entries *e, const char *k, const char *v) { lrs_pack_cstr(key(e, k), v ? v : ""); }
static void put_int(entries *e, const char *k, int64_t v) { msgpack_pack_int64(key(e, k), v); }
static void put_u64(entries *e, const char *k, uint64_t v) { msgpack_pack_uint64(key(e, k), v); }
static void put_dbl(entries *e, const char *k, double v) { msgpack_pack_double(key(e, k), v); }
/* A list of strings as one string: each as "LENGTH:TEXT", so any bytes
 * compare exactly and the check's two values print readably. */
static void put_strs(entries *e, const char *k, const char *const *v, int n) {
    lr_buf b = {0};
    for (int i = 0; i < n; i++) buf_printf(&b, "%s%zu:%s", i ? "," : "", strlen(v[i]), v[i]);
    put_str(e, k, b.p ? b.p : "");
    buf_free(&b);
}
static void put_ids(entries *e, const char *k, const int32_t *v, int n) {
    msgpack_packer *pk = key(e, k);
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) msgpack_pack_int32(pk, v[i]);
}

void settings_pack(msgpack_packer *pk, void *arg) {
    const inf_settings *s = arg;
    entries e = {.n = 0};
    msgpack_sbuffer_init(&e.sb);
    msgpack_packer_init(&e.pk, &e.sb, msgpack_sbuffer_write);
    char shard[32];
    snprintf(shard, sizeof shard, "%d/%d", s->shard_k, s->shard_n);
    put_str(&e, "device", s->device);
    put_str(&e, "mode", s->mode);
    put_str(&e, "input", s->input);
    put_str(&e, "input_hash", s->input_id.hash);
    put_int(&e, "input_size", s->input_id.size);
    put_str(&e, "layout", s->layout);
    put_str(&e, "field", s->field);
    put_str(&e, "id_field", s->id_field);
    put_str(&e, "preset", s->preset);
    put_str(&e, "prompt_hash", s->prompt_id.hash);
    put_str(&e, "adapter", s->adapter);
    put_int(&e, "max_new_tokens", s->max_new);
    put_int(&e, "max_context", s->max_context);
    put_int(&e, "limit", s->limit);
    put_str(&e, "shard", shard);
    put_dbl(&e, "temperature", s->temperature);
    put_dbl(&e, "top_p", s->top_p);
    put_int(&e, "top_k", s->top_k);
    put_u64(&e, "seed", s->seed);
    put_dbl(&e, "top_mass", s->mass);
    put_int(&e, "top_k_max", s->kmax);
    put_int(&e, "full", s->full);
    put_ids(&e, "eos", s->eos, s->neos);
    put_strs(&e, "stop", s->stop, s->nstop);
    put_int(&e, "shots", s->mmlu_shots);
    put_str(&e, "chat_template", s->chat_template);
    put_str(&e, "sampling", s->sampling);
    if (s->sig) tok_sig_pack(key(&e, "tokenizer_compat"), s->sig);
    put_str(&e, "followed_tokenizer", s->followed_tokenizer);
    put_int(&e, "added_ids_differ", s->added_ids_differ);
    msgpack_pack_map(pk, (size_t)e.n);
    pk->callback(pk->data, e.sb.data, e.sb.size);
    msgpack_sbuffer_destroy(&e.sb);
}

static const msgpack_object *find(const msgpack_object *map, const char *k, size_t klen) {
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *kk = &map->via.map.ptr[i].key;
        if (kk->type == MSGPACK_OBJECT_STR && kk->via.str.size == klen && !memcmp(kk->via.str.ptr, k, klen))
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static void show(char *dst, size_t n, const msgpack_object *o) {
    if (!o) snprintf(dst, n, "(none)");
    else if (o->type == MSGPACK_OBJECT_STR) snprintf(dst, n, "\"%.*s\"", (int)o->via.str.size, o->via.str.ptr);
    else if (msgpack_object_print_buffer(dst, n, *o) < 0) snprintf(dst, n, "?");
}

static int differs(const char *path, const char *k, size_t klen, const msgpack_object *old, const msgpack_object *now) {
    char a[256], b[256];
    show(a, sizeof a, old);
    show(b, sizeof b, now);
    return lr_err(LR_EINPUT, "%s: cannot resume: setting \"%.*s\" differs: the file was made with %s, this run has %s "
                  "(rerun with the same settings, or remove %s to start over)", path, (int)klen, k, a, b, path);
}

int settings_check(const char *path, const msgpack_object *params, const inf_settings *s) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    settings_pack(&pk, (void *)s);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = 0;
    if (msgpack_unpack_next(&u, sb.data, sb.size, &off) != MSGPACK_UNPACK_SUCCESS)
        rc = lr_err(LR_EIO, "settings: cannot unpack the params just packed");
    const msgpack_object *now = &u.data;
    /* every setting of this run, then any the file has and this run lacks */
    for (uint32_t i = 0; !rc && i < now->via.map.size; i++) {
        const msgpack_object_kv *kv = &now->via.map.ptr[i];
        const msgpack_object *old = find(params, kv->key.via.str.ptr, kv->key.via.str.size);
        if (!old || !msgpack_object_equal(*old, kv->val))
            rc = differs(path, kv->key.via.str.ptr, kv->key.via.str.size, old, &kv->val);
    }
    for (uint32_t i = 0; !rc && params && params->type == MSGPACK_OBJECT_MAP && i < params->via.map.size; i++) {
        const msgpack_object_kv *kv = &params->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR) continue;
        if (!find(now, kv->key.via.str.ptr, kv->key.via.str.size))
            rc = differs(path, kv->key.via.str.ptr, kv->key.via.str.size, &kv->val, NULL);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}
