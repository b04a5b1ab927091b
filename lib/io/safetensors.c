/* safetensors: see safetensors.h. */
#include "io/safetensors.h"

#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A header larger than this is not a checkpoint we can trust (the largest
 * real headers are a few MB). */
#define ST_MAX_HEADER (100u << 20)

static const struct { const char *name; size_t size; } dtypes[] = {
    [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2},
    [ST_F64] = {"F64", 8}, [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2}, [ST_I8] = {"I8", 1},   [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1},
};
#define NDTYPES ((int)(sizeof dtypes / sizeof dtypes[0]))

const char *st_dtype_name(int d) { return d >= 0 && d < NDTYPES ? dtypes[d].name : "?"; }
size_t st_dtype_size(int d) { return d >= 0 && d < NDTYPES ? dtypes[d].size : 0; }

static int parse_dtype(const char *s) {
    for (int i = 0; i < NDTYPES; i++)
        if (!strcmp(s, dtypes[i].name)) return i;
    return -1;
}

/* ---- conversion ---- */

float st_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t st_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal: renormalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void st_to_f32(float *out, const void *src, int dtype, size_t n) {
    const unsigned char *p = src;
    uint16_t h;
    switch (dtype) {
    case ST_F32: memcpy(out, src, n * 4); break;
    case ST_BF16: for (size_t i = 0; i < n; i++) { memcpy(&h, p + 2 * i, 2); out[i] = st_bf16_to_f32(h); } break;
    case ST_F16: for (size_t i = 0; i < n; i++) { memcpy(&h, p + 2 * i, 2); out[i] = st_f16_to_f32(h); } break;
    default: break;
    }
}

/* ---- reading ---- */

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}
static int cmp_tensor_off(const void *a, const void *b) {
    const st_tensor *x = *(st_tensor *const *)a, *y = *(st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data ? 1 : (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

/* Validates one header entry and appends it to s->tensors. */
static int parse_entry(st_set *s, const st_file *f, const char *name, json_t *e, const unsigned char *data, size_t datalen) {
    if (!json_is_object(e)) return lr_err(LR_EINPUT, "%s: tensor %s: entry is not an object", f->base, name);
    json_t *jd = json_object_get(e, "dtype"), *js = json_object_get(e, "shape"), *jo = json_object_get(e, "data_offsets");
    if (!json_is_string(jd)) return lr_err(LR_EINPUT, "%s: tensor %s: field \"dtype\": missing or not a string", f->base, name);
    int dt = parse_dtype(json_string_value(jd));
    if (dt < 0) return lr_err(LR_EINPUT, "%s: tensor %s: field \"dtype\": unknown dtype \"%s\"", f->base, name, json_string_value(jd));
    if (!json_is_array(js) || json_array_size(js) > ST_MAX_DIMS)
        return lr_err(LR_EINPUT, "%s: tensor %s: field \"shape\": expected an array of at most %d sizes", f->base, name, ST_MAX_DIMS);
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) || !json_is_integer(json_array_get(jo, 1)))
        return lr_err(LR_EINPUT, "%s: tensor %s: field \"data_offsets\": expected [begin, end]", f->base, name);
    st_tensor t = {0};
    t.dtype = dt;
    t.ndim = (int)json_array_size(js);
    t.numel = 1;
    for (int i = 0; i < t.ndim; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return lr_err(LR_EINPUT, "%s: tensor %s: field \"shape\": size %d is not a non-negative integer", f->base, name, i);
        t.shape[i] = json_integer_value(d);
        if (t.shape[i] && t.numel > INT64_MAX / 16 / t.shape[i])
            return lr_err(LR_EINPUT, "%s: tensor %s: field \"shape\": too many elements", f->base, name);
        t.numel *= t.shape[i];
    }
    json_int_t b = json_integer_value(json_array_get(jo, 0)), en = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || en < b || (uint64_t)en > datalen)
        return lr_err(LR_EINPUT, "%s: tensor %s: field \"data_offsets\": [%lld, %lld] outside the %zu data bytes",
                      f->base, name, (long long)b, (long long)en, datalen);
    t.nbytes = (size_t)(en - b);
    if ((uint64_t)t.numel * dtypes[dt].size != t.nbytes)
        return lr_err(LR_EINPUT, "%s: tensor %s: %lld elements of %s need %llu bytes, data_offsets give %zu",
                      f->base, name, (long long)t.numel, dtypes[dt].name,
                      (unsigned long long)t.numel * dtypes[dt].size, t.nbytes);
    t.data = data + b;
    t.file = (int)(f - s->files);
    t.name = xstrdup(name);
    s->tensors = xrealloc(s->tensors, (size_t)(s->ntensors + 1) * sizeof *s->tensors);
    s->tensors[s->ntensors++] = t;
    return LR_OK;
}

/* Maps file and appends its tensors (unsorted). */
static int open_one(st_set *s, const char *path) {
    const char *slash = strrchr(path, '/');
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lr_err(LR_EIO, "%s: %s", path, strerror(errno));
    struct stat stt;
    if (fstat(fd, &stt) < 0) {
        close(fd);
        return lr_err(LR_EIO, "%s: %s", path, strerror(errno));
    }
    size_t size = (size_t)stt.st_size;
    void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (size && map == MAP_FAILED) return lr_err(LR_EIO, "%s: mmap: %s", path, strerror(errno));
    s->files = xrealloc(s->files, (size_t)(s->nfiles + 1) * sizeof *s->files);
    st_file *f = &s->files[s->nfiles++];
    *f = (st_file){.path = xstrdup(path), .base = xstrdup(slash ? slash + 1 : path), .map = map, .size = size};
    if (size < 8) return lr_err(LR_EINPUT, "%s: truncated: %zu bytes, no header length", f->base, size);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | ((unsigned char *)map)[i];
    if (hl > ST_MAX_HEADER || hl > size - 8)
        return lr_err(LR_EINPUT, "%s: header length %llu beyond the file (%zu bytes)%s", f->base,
                      (unsigned long long)hl, size, hl > ST_MAX_HEADER ? " or over 100 MB" : "");
    f->header = (const char *)map + 8;
    f->header_len = (size_t)hl;
    json_error_t jerr;
    json_t *root = json_loadb(f->header, f->header_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return lr_err(LR_EINPUT, "%s: header: bad JSON at byte %d: %s", f->base, jerr.position, jerr.text);
    int rc = LR_OK;
    if (!json_is_object(root)) rc = lr_err(LR_EINPUT, "%s: header: not a JSON object", f->base);
    const unsigned char *data = (const unsigned char *)map + 8 + hl;
    size_t datalen = size - 8 - (size_t)hl;
    int first = s->ntensors;
    const char *key;
    json_t *val;
    if (!rc) json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        if ((rc = parse_entry(s, f, key, val, data, datalen))) break;
    }
    json_decref(root);
    if (rc) return rc;
    /* Tensors must tile the data exactly: no overlap, no hole, no tail. */
    int n = s->ntensors - first;
    st_tensor **order = xmalloc((size_t)(n ? n : 1) * sizeof *order);
    for (int i = 0; i < n; i++) order[i] = &s->tensors[first + i];
    qsort(order, (size_t)n, sizeof *order, cmp_tensor_off);
    size_t at = 0;
    for (int i = 0; i < n && !rc; i++) {
        size_t b = (size_t)((const unsigned char *)order[i]->data - data);
        if (b < at) rc = lr_err(LR_EINPUT, "%s: tensor %s: data_offsets overlap tensor %s", f->base, order[i]->name, order[i - 1]->name);
        else if (b > at) rc = lr_err(LR_EINPUT, "%s: tensor %s: hole of %zu bytes before its data", f->base, order[i]->name, b - at);
        at = b + order[i]->nbytes;
    }
    free(order);
    if (!rc && at != datalen)
        rc = lr_err(LR_EINPUT, "%s: %zu data bytes after the last tensor (truncated or corrupt header)", f->base, datalen - at);
    return rc;
}

static int finish(st_set *s) {
    qsort(s->tensors, (size_t)s->ntensors, sizeof *s->tensors, cmp_tensor_name);
    for (int i = 1; i < s->ntensors; i++)
        if (!strcmp(s->tensors[i].name, s->tensors[i - 1].name))
            return lr_err(LR_EINPUT, "%s: tensor %s: also in %s", s->files[s->tensors[i].file].base,
                          s->tensors[i].name, s->files[s->tensors[i - 1].file].base);
    return LR_OK;
}

int st_open_file(st_set *s, const char *path) {
    memset(s, 0, sizeof *s);
    int rc = open_one(s, path);
    if (!rc) rc = finish(s);
    if (rc) st_close(s);
    return rc;
}

static int open_index(st_set *s, const char *dir, const char *ipath) {
    json_error_t jerr;
    json_t *root = json_load_file(ipath, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return lr_err(access(ipath, R_OK) ? LR_EIO : LR_EINPUT, "%s: line %d: %s", ipath, jerr.line, jerr.text);
    json_t *wm = json_object_get(root, "weight_map");
    int rc = LR_OK;
    if (!json_is_object(wm)) rc = lr_err(LR_EINPUT, "%s: field \"weight_map\": missing or not an object", ipath);
    const char *key;
    json_t *val;
    /* Open every distinct shard once, in sorted order (stable identity). */
    char **names = NULL;
    int nn = 0;
    if (!rc) json_object_foreach(wm, key, val) {
        if (!json_is_string(val) || strchr(json_string_value(val), '/')) {
            rc = lr_err(LR_EINPUT, "%s: weight_map[\"%s\"]: expected a file name", ipath, key);
            break;
        }
        int seen = 0;
        for (int i = 0; i < nn && !seen; i++) seen = !strcmp(names[i], json_string_value(val));
        if (!seen) {
            names = xrealloc(names, (size_t)(nn + 1) * sizeof *names);
            names[nn++] = xstrdup(json_string_value(val));
        }
    }
    for (int i = 1; i < nn; i++) /* insertion sort: a handful of shards */
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j]; names[j] = names[j - 1]; names[j - 1] = t;
        }
    for (int i = 0; i < nn && !rc; i++) {
        size_t len = strlen(dir) + strlen(names[i]) + 2;
        char *p = xmalloc(len);
        snprintf(p, len, "%s/%s", dir, names[i]);
        rc = open_one(s, p);
        free(p);
    }
    if (!rc) rc = finish(s);
    if (!rc) json_object_foreach(wm, key, val) {
        const st_tensor *t = st_find(s, key);
        if (!t) { rc = lr_err(LR_EINPUT, "%s: tensor %s: missing (weight_map names %s)", json_string_value(val), key, json_string_value(val)); break; }
        if (strcmp(s->files[t->file].base, json_string_value(val))) {
            rc = lr_err(LR_EINPUT, "%s: tensor %s: found in %s instead", json_string_value(val), key, s->files[t->file].base);
            break;
        }
    }
    for (int i = 0; i < nn; i++) free(names[i]);
    free(names);
    json_decref(root);
    return rc;
}

int st_open_dir(st_set *s, const char *dir) {
    memset(s, 0, sizeof *s);
    size_t len = strlen(dir) + 64;
    char *p = xmalloc(len);
    snprintf(p, len, "%s/model.safetensors.index.json", dir);
    int rc;
    if (access(p, F_OK) == 0) rc = open_index(s, dir, p);
    else {
        snprintf(p, len, "%s/model.safetensors", dir);
        rc = open_one(s, p);
        if (!rc) rc = finish(s);
    }
    free(p);
    if (rc) st_close(s);
    return rc;
}

void st_close(st_set *s) {
    for (int i = 0; i < s->nfiles; i++) {
        if (s->files[i].map) munmap(s->files[i].map, s->files[i].size);
        free(s->files[i].path);
        free(s->files[i].base);
    }
    for (int i = 0; i < s->ntensors; i++) free(s->tensors[i].name);
    free(s->files);
    free(s->tensors);
    memset(s, 0, sizeof *s);
}

const st_tensor *st_find(const st_set *s, const char *name) {
    st_tensor key = {.name = (char *)name};
    return s->ntensors ? bsearch(&key, s->tensors, (size_t)s->ntensors, sizeof key, cmp_tensor_name) : NULL;
}

void st_drop_pages(const st_tensor *t) {
    if (!t || !t->nbytes) return;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)t->data & ~(uintptr_t)(pg - 1), e = (uintptr_t)t->data + t->nbytes;
    /* a read-only private file mapping: dropped pages are read again from
     * the file on the next access, so a neighbour sharing an edge page
     * loses nothing (a failure only leaves the pages resident) */
    (void)madvise((void *)a, e - a, MADV_DONTNEED);
}

static void fmt_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && at < n; i++) at += (size_t)snprintf(buf + at, n - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

int st_check(const st_set *s, const char *name, int ndim, const int64_t *shape, const st_tensor **out) {
    const st_tensor *t = st_find(s, name);
    if (!t) return lr_err(LR_EINPUT, "%s: tensor %s: missing", s->nfiles ? s->files[0].base : "checkpoint", name);
    const char *fb = s->files[t->file].base;
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char a[256], b[256];
        fmt_shape(a, sizeof a, t->ndim, t->shape);
        fmt_shape(b, sizeof b, ndim, shape);
        return lr_err(LR_EINPUT, "%s: tensor %s: shape %s, expected %s", fb, name, a, b);
    }
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
        return lr_err(LR_EINPUT, "%s: tensor %s: dtype %s, expected F32, F16 or BF16", fb, name, st_dtype_name(t->dtype));
    if (out) *out = t;
    return LR_OK;
}

int st_read_f32(const st_set *s, const char *name, int ndim, const int64_t *shape, float *out) {
    const st_tensor *t;
    int rc = st_check(s, name, ndim, shape, &t);
    if (!rc) st_to_f32(out, t->data, t->dtype, (size_t)t->numel);
    return rc;
}

/* ---- writing ---- */

int st_write(const char *path, const st_wtensor *t, int n) {
    json_t *h = json_object();
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        int64_t numel = 1;
        json_t *sh = json_array();
        for (int d = 0; d < t[i].ndim; d++) {
            numel *= t[i].shape[d];
            json_array_append_new(sh, json_integer(t[i].shape[d]));
        }
        size_t nb = (size_t)numel * st_dtype_size(t[i].dtype);
        json_object_set_new(h, t[i].name, json_pack("{s:s, s:o, s:[I, I]}", "dtype", st_dtype_name(t[i].dtype),
                                                    "shape", sh, "data_offsets", (json_int_t)off, (json_int_t)(off + nb)));
        off += nb;
    }
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    char *js = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(h);
    size_t jl = strlen(js), padded = (jl + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(js);
        return lr_err(LR_EIO, "%s: %s", path, strerror(errno));
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(padded >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(js, 1, jl, f);
    for (size_t i = jl; i < padded; i++) fputc(' ', f);
    free(js);
    for (int i = 0; i < n; i++) {
        int64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= t[i].shape[d];
        fwrite(t[i].data, st_dtype_size(t[i].dtype), (size_t)numel, f);
    }
    int bad = ferror(f);
    if (fclose(f) || bad) return lr_err(LR_EIO, "%s: write error", path);
    return LR_OK;
}
