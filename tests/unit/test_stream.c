/* Stream writer/reader: round trips, concatenation, resume after a crash,
 * and every kind of bad input the format defines (except byte-level truncation
 * and flips, which tests/cli/stream.sh drives through lr-dump). */
#include "check.h"
#include "tpath.h"
#include "io/schema.h"
#include "io/stream.h"
#include "base/util.h"

#include <string.h>
#include <unistd.h>
#include <zstd.h>


static lrs_header make_header(const char *model_hash) {
    static char *argv[] = {"test_stream", "--x"};
    lrs_header h;
    lrs_header_init(&h, "dist", 1, "test_stream", 2, argv);
    h.model.name = "m";
    h.model.hash = (char *)model_hash;
    h.model.vocab = 300;
    h.tokenizer.name = "t";
    h.tokenizer.hash = "tok1";
    h.tokenizer.vocab = 259;
    return h;
}

/* A dist record for problem i with T steps, k listed tokens per step. */
static void pack_dist(msgpack_packer *pk, int i, int T, int k, int drop_field) {
    static int32_t prompt[3], tokens[4096], ks[4096], ids[4096 * 64];
    static float lp[4096 * 64], tail[4096];
    prompt[0] = 1, prompt[1] = 2, prompt[2] = i;
    for (int t = 0; t < T; t++) {
        tokens[t] = (i * 7 + t) % 300;
        ks[t] = k;
        tail[t] = 0.001f * t;
        for (int j = 0; j < k; j++) {
            /* noise keeps the payload incompressible, like real log-probs */
            static uint32_t x = 2463534242u;
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            ids[t * k + j] = (t + j) % 300;
            lp[t * k + j] = -0.5f * j - 0.001f * i - (float)(x % 100000) * 1e-9f;
        }
    }
    char id[32];
    snprintf(id, sizeof id, "p:%d", i);
    msgpack_pack_map(pk, drop_field ? 8 : 9);
    lrs_pack_cstr(pk, "id"); lrs_pack_cstr(pk, id);
    lrs_pack_cstr(pk, "idx"); msgpack_pack_int(pk, i);
    lrs_pack_cstr(pk, "prompt"); lrs_pack_i32s(pk, prompt, 3);
    lrs_pack_cstr(pk, "tokens"); lrs_pack_i32s(pk, tokens, T);
    lrs_pack_cstr(pk, "finish"); lrs_pack_cstr(pk, "length");
    lrs_pack_cstr(pk, "k"); lrs_pack_i32s(pk, ks, T);
    lrs_pack_cstr(pk, "top_ids"); lrs_pack_i32s(pk, ids, (size_t)T * k);
    lrs_pack_cstr(pk, "top_lp"); lrs_pack_f32s(pk, lp, (size_t)T * k);
    if (!drop_field) { lrs_pack_cstr(pk, "tail"); lrs_pack_f32s(pk, tail, T); }
}

static int write_stream(const char *path, const char *hash, int first, int n, int T, int close) {
    lrs_header h = make_header(hash);
    lrs_writer *w;
    int rc = lrs_open_write(&w, path, &h, NULL, NULL);
    if (rc) return rc;
    for (int i = first; i < first + n; i++) {
        pack_dist(lrs_pk(w), i, T, 4, 0);
        if ((rc = lrs_record_done(w))) break;
    }
    if (close) return lrs_close(w);
    lrs_abort(w);
    return rc;
}

/* Reads all records; returns the count, or -code on error. Checks that
 * record i has idx first+i. */
static long read_all(const char *path, int first) {
    lrs_reader *r;
    int rc = lrs_open_read(&r, path, "dist");
    if (rc) return -rc;
    const msgpack_object *rec;
    long n = 0;
    int32_t *buf = NULL;
    size_t cap = 0, len;
    while ((rc = lrs_next(r, &rec)) == 1) {
        int64_t idx;
        CHECK(lrs_get_int(r, rec, "idx", &idx) == 0);
        CHECK(idx == first + n);
        CHECK(lrs_get_i32s(r, rec, "prompt", &buf, &cap, &len) == 0 && len == 3 && buf[2] == idx);
        n++;
    }
    free(buf);
    lrs_close_read(r);
    return rc ? -rc : n;
}

static void test_roundtrip(void) {
    const char *p = tpath("rt.lrs");
    CHECK(write_stream(p, "h1", 0, 500, 64, 1) == 0);
    CHECK(read_all(p, 0) == 500);
    /* the params map and header fields survive */
    lrs_reader *r;
    CHECK(lrs_open_read(&r, p, NULL) == 0);
    const lrs_header *h = lrs_header_of(r);
    CHECK(!strcmp(h->kind, "dist") && h->kind_version == 1 && h->argc == 2 && !strcmp(h->argv[1], "--x"));
    CHECK(!strcmp(h->model.hash, "h1") && h->tokenizer.vocab == 259);
    lrs_close_read(r);
    /* wrong kind requested */
    CHECK(lrs_open_read(&r, p, "example") == LR_EINPUT);
    CHECKF(strstr(lr_errmsg(), "expected \"example\""), "%s", lr_errmsg());
}

/* Empty typed arrays (a problem with no generated tokens, an empty
 * prompt): packed from NULL and read into a NULL buffer, the way tools
 * start their reusable buffers. memcpy with a NULL pointer is undefined
 * even for 0 bytes, which UBSan reports. */
static void test_empty_arrays(void) {
    const char *p = tpath("empty_arrays.lrs");
    lrs_header h = make_header("h1");
    lrs_writer *w;
    CHECK(lrs_open_write(&w, p, &h, NULL, NULL) == 0);
    msgpack_packer *pk = lrs_pk(w);
    msgpack_pack_map(pk, 9);
    lrs_pack_cstr(pk, "id"); lrs_pack_cstr(pk, "p:0");
    lrs_pack_cstr(pk, "idx"); msgpack_pack_int(pk, 0);
    lrs_pack_cstr(pk, "prompt"); lrs_pack_i32s(pk, NULL, 0);
    lrs_pack_cstr(pk, "tokens"); lrs_pack_i32s(pk, NULL, 0);
    lrs_pack_cstr(pk, "finish"); lrs_pack_cstr(pk, "length");
    lrs_pack_cstr(pk, "k"); lrs_pack_i32s(pk, NULL, 0);
    lrs_pack_cstr(pk, "top_ids"); lrs_pack_i32s(pk, NULL, 0);
    lrs_pack_cstr(pk, "top_lp"); lrs_pack_f32s(pk, NULL, 0);
    lrs_pack_cstr(pk, "tail"); lrs_pack_f32s(pk, NULL, 0);
    CHECK(lrs_record_done(w) == 0);
    CHECK(lrs_close(w) == 0);
    lrs_reader *r;
    CHECK(lrs_open_read(&r, p, "dist") == 0);
    const msgpack_object *rec;
    CHECK(lrs_next(r, &rec) == 1);
    int32_t *ib = NULL;
    float *fb = NULL;
    size_t icap = 0, fcap = 0, n = 99;
    CHECK(lrs_get_i32s(r, rec, "tokens", &ib, &icap, &n) == 0 && n == 0);
    n = 99;
    CHECK(lrs_get_f32s(r, rec, "tail", &fb, &fcap, &n) == 0 && n == 0);
    msgpack_object empty = {.type = MSGPACK_OBJECT_ARRAY}; /* a plain empty array */
    n = 99;
    CHECK(lrs_obj_i32s(&empty, &ib, &icap, &n) == 0 && n == 0);
    CHECK(lrs_next(r, &rec) == 0);
    lrs_close_read(r);
    free(ib);
    free(fb);
}

static void test_big_records_and_frames(void) {
    /* records that span many zstd chunks and frames */
    const char *p = tpath("big.lrs");
    CHECK(write_stream(p, "h1", 0, 20, 4000, 1) == 0);
    CHECK(read_all(p, 0) == 20);
}

/* Records of random sizes, so that items end at every position relative to
 * zstd's output chunks and the end of the input (a reader once reported a
 * complete stream as truncated when its last records arrived together). */
static void test_random_sizes(void) {
    const char *p = tpath("rand.lrs");
    uint64_t seed = 12345;
    CHECK_SEED(seed);
    int sizes[][2] = {{1000, 16}, {128, 64}, {4000, 4}};
    for (int round = 0; round < 3; round++) {
        lrs_header h = make_header("h1");
        lrs_writer *w;
        CHECK(lrs_open_write(&w, p, &h, NULL, NULL) == 0);
        int n = 700;
        for (int i = 0; i < n; i++) {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            pack_dist(lrs_pk(w), i, 1 + (int)(seed % sizes[round][0]), 1 + (int)(seed >> 40) % sizes[round][1], 0);
            lrs_record_done(w);
        }
        CHECK(lrs_close(w) == 0);
        CHECKF(read_all(p, 0) == n, "round %d: %s", round, lr_errmsg());
    }
}

static void test_concat(void) {
    const char *a = tpath("a.lrs"), *b = tpath("b.lrs"), *ab = tpath("ab.lrs"), *c = tpath("c.lrs");
    CHECK(write_stream(a, "h1", 0, 10, 8, 1) == 0);
    CHECK(write_stream(b, "h1", 10, 7, 8, 1) == 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cat %s %s > %s", a, b, ab);
    CHECK(system(cmd) == 0);
    CHECK(read_all(ab, 0) == 17);
    /* a different model in the second segment is refused */
    CHECK(write_stream(c, "OTHER", 10, 7, 8, 1) == 0);
    snprintf(cmd, sizeof cmd, "cat %s %s > %s", a, c, ab);
    CHECK(system(cmd) == 0);
    CHECK(read_all(ab, 0) == -LR_EINPUT);
    CHECKF(strstr(lr_errmsg(), "different model"), "%s", lr_errmsg());
}

static int collect(const msgpack_object *rec, void *ctx) {
    long *n = ctx;
    const msgpack_object *idx = lrs_get(rec, "idx");
    if (!idx || (long)idx->via.i64 != *n) return LR_EINPUT;
    (*n)++;
    return 0;
}

static void test_resume(void) {
    /* A crash: frames flushed every 25 records, then garbage half a frame. */
    const char *p = tpath("crash.lrs");
    lrs_header h = make_header("h1");
    lrs_writer *w;
    CHECK(lrs_open_write(&w, p, &h, NULL, NULL) == 0);
    for (int i = 0; i < 100; i++) {
        pack_dist(lrs_pk(w), i, 16, 4, 0);
        lrs_record_done(w);
        if (i % 25 == 24) lrs_flush(w);
    }
    lrs_abort(w); /* records 0..99 flushed, no end marker */
    CHECK(read_all(p, 0) == -LR_EINPUT);
    CHECKF(strstr(lr_errmsg(), "no end marker"), "%s", lr_errmsg());
    /* cut the file inside the last frame, as a kill -9 might */
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    CHECK(truncate(p, size - 17) == 0);
    long seen = 0;
    CHECK(lrs_resume(&w, p, &h, NULL, NULL, collect, &seen) == 0);
    CHECKF(seen == 75, "resume kept %ld records, expected the 75 of complete frames", seen);
    for (int i = (int)seen; i < 130; i++) {
        pack_dist(lrs_pk(w), i, 16, 4, 0);
        lrs_record_done(w);
    }
    CHECK(lrs_close(w) == 0);
    CHECK(read_all(p, 0) == 130);
    /* resuming a complete stream appends a new segment */
    seen = 0;
    CHECK(lrs_resume(&w, p, &h, NULL, NULL, collect, &seen) == 0);
    CHECK(seen == 130);
    pack_dist(lrs_pk(w), 130, 16, 4, 0);
    lrs_record_done(w);
    CHECK(lrs_close(w) == 0);
    CHECK(read_all(p, 0) == 131);
    /* resuming with another model is refused */
    lrs_header h2 = make_header("OTHER");
    CHECK(lrs_resume(&w, p, &h2, NULL, NULL, collect, &seen) == LR_EINPUT);
    /* resuming a file that does not exist starts a new stream */
    const char *q = tpath("fresh.lrs");
    seen = 0;
    CHECK(lrs_resume(&w, q, &h, NULL, NULL, collect, &seen) == 0 && seen == 0);
    CHECK(lrs_close(w) == 0);
    CHECK(read_all(q, 0) == 0);
}

/* Writes raw msgpack bytes compressed as one zstd frame. */
static void write_raw(const char *path, const void *data, size_t n) {
    size_t cap = ZSTD_compressBound(n);
    void *out = malloc(cap);
    size_t z = ZSTD_compress(out, cap, data, n, 3);
    FILE *f = fopen(path, "wb");
    fwrite(out, 1, z, f);
    fclose(f);
    free(out);
}

/* The header's msgpack bytes, with kind/version substituted. */
static void pack_raw_header(msgpack_packer *pk, const char *kind, int version) {
    lrs_header h = make_header("h1");
    msgpack_pack_map(pk, 10);
    lrs_pack_cstr(pk, "lrs"); lrs_pack_cstr(pk, LRS_FORMAT);
    lrs_pack_cstr(pk, "format_version"); msgpack_pack_int(pk, 1);
    lrs_pack_cstr(pk, "kind"); lrs_pack_cstr(pk, kind);
    lrs_pack_cstr(pk, "kind_version"); msgpack_pack_int(pk, version);
    lrs_pack_cstr(pk, "tool"); lrs_pack_cstr(pk, "t");
    lrs_pack_cstr(pk, "tool_version"); lrs_pack_cstr(pk, "0");
    lrs_pack_cstr(pk, "argv"); msgpack_pack_array(pk, 0);
    const lrs_ident *ids[2] = {&h.model, &h.tokenizer};
    for (int i = 0; i < 2; i++) {
        lrs_pack_cstr(pk, i ? "tokenizer" : "model");
        msgpack_pack_map(pk, 3);
        lrs_pack_cstr(pk, "name"); lrs_pack_cstr(pk, ids[i]->name);
        lrs_pack_cstr(pk, "hash"); lrs_pack_cstr(pk, ids[i]->hash);
        lrs_pack_cstr(pk, "vocab"); msgpack_pack_int64(pk, ids[i]->vocab);
    }
    lrs_pack_cstr(pk, "params"); msgpack_pack_map(pk, 0);
}

static long read_raw_case(const char *name, const msgpack_sbuffer *sb, const char *want_msg) {
    const char *p = tpath(name);
    write_raw(p, sb->data, sb->size);
    long rc = read_all(p, 0);
    CHECKF(rc == -LR_EINPUT, "%s: got %ld", name, rc);
    CHECKF(strstr(lr_errmsg(), want_msg) && strstr(lr_errmsg(), p), "%s: message \"%s\" lacks \"%s\"", name,
           lr_errmsg(), want_msg);
    return rc;
}

static void test_bad_inputs(void) {
    msgpack_sbuffer sb;
    msgpack_packer pk;

    /* unknown kind, unknown kind version */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_raw_header(&pk, "nonsense", 1);
    read_raw_case("kind.lrs", &sb, "unknown record kind \"nonsense\"");
    msgpack_sbuffer_clear(&sb);
    pack_raw_header(&pk, "dist", 99);
    read_raw_case("version.lrs", &sb, "version 99");

    /* a record lacking a required field */
    msgpack_sbuffer_clear(&sb);
    pack_raw_header(&pk, "dist", 1);
    pack_dist(&pk, 0, 3, 2, 1);
    read_raw_case("missing.lrs", &sb, "record 1: field \"tail\": missing");

    /* a msgpack bomb: an array declaring 2^32-1 elements, 10 bytes present */
    msgpack_sbuffer_clear(&sb);
    pack_raw_header(&pk, "dist", 1);
    msgpack_sbuffer_write(&sb, "\xdd\xff\xff\xff\xff", 5);
    msgpack_sbuffer_write(&sb, "\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01", 10);
    read_raw_case("bomb.lrs", &sb, "truncated");
    /* a string declaring 4 GiB */
    msgpack_sbuffer_clear(&sb);
    pack_raw_header(&pk, "dist", 1);
    msgpack_sbuffer_write(&sb, "\x81\xdb\xff\xff\xff\xf0", 6);
    read_raw_case("strbomb.lrs", &sb, "truncated");
    /* nesting deeper than the limit */
    msgpack_sbuffer_clear(&sb);
    pack_raw_header(&pk, "dist", 1);
    for (int i = 0; i < 100; i++) msgpack_sbuffer_write(&sb, "\x91", 1);
    msgpack_sbuffer_write(&sb, "\x01", 1);
    read_raw_case("deep.lrs", &sb, "nested deeper");
    /* the limit docs/FORMATS.md states: 32 nested containers unpack (and
     * then fail only as "not a map"), 33 are refused before msgpack-c */
    msgpack_sbuffer_clear(&sb);
    pack_raw_header(&pk, "dist", 1);
    for (int i = 0; i < 32; i++) msgpack_sbuffer_write(&sb, "\x91", 1);
    msgpack_sbuffer_write(&sb, "\x01", 1);
    read_raw_case("deep32.lrs", &sb, "record 1: corrupt record (not a map)");
    msgpack_sbuffer_clear(&sb);
    pack_raw_header(&pk, "dist", 1);
    for (int i = 0; i < 33; i++) msgpack_sbuffer_write(&sb, "\x91", 1);
    msgpack_sbuffer_write(&sb, "\x01", 1);
    read_raw_case("deep33.lrs", &sb, "nested deeper than 32");
    /* an invalid msgpack byte */
    msgpack_sbuffer_clear(&sb);
    pack_raw_header(&pk, "dist", 1);
    msgpack_sbuffer_write(&sb, "\xc1", 1);
    read_raw_case("c1.lrs", &sb, "invalid msgpack");
    /* a record that is not a map, and a header that is not one */
    msgpack_sbuffer_clear(&sb);
    pack_raw_header(&pk, "dist", 1);
    msgpack_pack_int(&pk, 5);
    read_raw_case("notmap.lrs", &sb, "not a map");
    msgpack_sbuffer_clear(&sb);
    pack_dist(&pk, 0, 3, 2, 0);
    read_raw_case("nohdr.lrs", &sb, "not a record stream header");
    /* an end marker whose count is wrong */
    msgpack_sbuffer_clear(&sb);
    pack_raw_header(&pk, "dist", 1);
    pack_dist(&pk, 0, 3, 2, 0);
    msgpack_pack_map(&pk, 1);
    lrs_pack_cstr(&pk, "lrs_end");
    msgpack_pack_int(&pk, 5);
    read_raw_case("count.lrs", &sb, "end marker counts 5");
    /* NaN inside a float array */
    msgpack_sbuffer_clear(&sb);
    pack_raw_header(&pk, "dist", 1);
    {
        float nanv[2] = {0.0f, NAN};
        int32_t one[1] = {1};
        msgpack_pack_map(&pk, 9);
        lrs_pack_cstr(&pk, "id"); lrs_pack_cstr(&pk, "x");
        lrs_pack_cstr(&pk, "idx"); msgpack_pack_int(&pk, 0);
        lrs_pack_cstr(&pk, "prompt"); lrs_pack_i32s(&pk, one, 1);
        lrs_pack_cstr(&pk, "tokens"); lrs_pack_i32s(&pk, one, 1);
        lrs_pack_cstr(&pk, "finish"); lrs_pack_cstr(&pk, "eos");
        lrs_pack_cstr(&pk, "k"); lrs_pack_i32s(&pk, one, 1);
        lrs_pack_cstr(&pk, "top_ids"); lrs_pack_i32s(&pk, one, 1);
        lrs_pack_cstr(&pk, "top_lp"); lrs_pack_f32s(&pk, nanv, 2);
        lrs_pack_cstr(&pk, "tail"); lrs_pack_f32s(&pk, nanv, 1);
    }
    read_raw_case("nan.lrs", &sb, "field \"top_lp\": contains NaN");
    msgpack_sbuffer_destroy(&sb);

    /* empty input, and bytes that are not zstd */
    const char *e = tpath("empty.lrs");
    FILE *f = fopen(e, "wb");
    fclose(f);
    CHECK(read_all(e, 0) == -LR_EINPUT);
    CHECKF(strstr(lr_errmsg(), "empty input"), "%s", lr_errmsg());
    f = fopen(e, "wb");
    fputs("{\"not\": \"a stream\"}\n", f);
    fclose(f);
    CHECK(read_all(e, 0) == -LR_EINPUT);
    CHECKF(strstr(lr_errmsg(), "corrupt stream"), "%s", lr_errmsg());
    CHECK(read_all(tpath("does-not-exist.lrs"), 0) == -LR_EIO);
}

int main(void) {
    const char *t = getenv("LR_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s", t ? t : "/tmp");
    test_roundtrip();
    test_empty_arrays();
    test_big_records_and_frames();
    test_random_sizes();
    test_concat();
    test_resume();
    test_bad_inputs();
    CHECK_DONE();
}
