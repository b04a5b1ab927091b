/* safetensors: read-only mmap access to Hugging Face .safetensors
 * checkpoints (one file or shards listed in model.safetensors.index.json),
 * a writer for small files (lr-mkmodel, tests) and dtype conversion.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "BF16", "shape": [r, c], "data_offsets": [b, e]}, ...,
 * "__metadata__": {...}}, then the data; offsets are relative to the data
 * start. Every field is validated on open: offsets inside the file, shape
 * product x dtype size == e - b, tensors neither overlapping nor leaving
 * holes (as the reference Rust implementation requires). */
#ifndef LR_SAFETENSORS_H
#define LR_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

enum st_dtype { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL };
#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    int dtype;                 /* enum st_dtype */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const void *data;          /* into the mmap'd file, read-only */
    size_t nbytes;
    int file;                  /* index into st_set.files */
} st_tensor;

typedef struct {
    char *path;                /* as opened */
    char *base;                /* file name without directory, for messages */
    void *map;
    size_t size;
    const char *header;        /* JSON header bytes inside the map */
    size_t header_len;
} st_file;

typedef struct {
    st_file *files;
    int nfiles;
    st_tensor *tensors;        /* sorted by name */
    int ntensors;
} st_set;

/* Opens one .safetensors file. Returns 0 or LR_EIO/LR_EINPUT with a
 * message naming the file and tensor. */
int st_open_file(st_set *s, const char *path);
/* Opens a model folder: model.safetensors.index.json (sharded) when present,
 * else model.safetensors. Tensors named in the weight_map must exist in the
 * file it names. */
int st_open_dir(st_set *s, const char *dir);
void st_close(st_set *s);

/* The tensor of that name, or NULL. */
const st_tensor *st_find(const st_set *s, const char *name);
/* Drops t's pages from this process's resident memory (madvise
 * MADV_DONTNEED; they stay in the page cache and are read again on the next
 * access): for a reader that has copied the tensor elsewhere, such as a
 * device upload, so that walking a 15 GB checkpoint does not leave it all
 * resident. NULL: nothing. */
void st_drop_pages(const st_tensor *t);
/* Converts tensor `name` to float32 into out after checking that it exists,
 * has a float dtype and exactly the shape (ndim, shape). Error example:
 * "model.safetensors: tensor model.layers.0.self_attn.q_proj.weight: shape
 * [64, 32], expected [64, 64]". */
int st_read_f32(const st_set *s, const char *name, int ndim, const int64_t *shape, float *out);
/* The same checks without reading: *t (if t) is the tensor. */
int st_check(const st_set *s, const char *name, int ndim, const int64_t *shape, const st_tensor **t);

const char *st_dtype_name(int dtype);
size_t st_dtype_size(int dtype);

/* Conversions (bf16 rounding: to nearest even, NaN kept NaN). */
float st_bf16_to_f32(uint16_t h);
float st_f16_to_f32(uint16_t h);
uint16_t st_f32_to_bf16(float f);
void st_to_f32(float *out, const void *src, int dtype, size_t n);

/* Writer: data must hold numel elements of dtype. Header is padded with
 * spaces to a multiple of 8 so data stays aligned. Returns 0 or LR_EIO. */
typedef struct {
    const char *name;
    int dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
} st_wtensor;
int st_write(const char *path, const st_wtensor *t, int n);

#endif
