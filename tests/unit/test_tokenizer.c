/* test_tokenizer: lib/model/tokenizer.c against the golden files that
 * tests/ref/tokenizer_ref.py wrote with Hugging Face `tokenizers`:
 *   - every gsm8k (train+test) question/answer and math500 problem/
 *     solution/answer through the real Qwen tokenizer (ids length + hash;
 *     every 10th text under ASan, LR_SAN=1),
 *   - hard strings (full ids and decoded text), Qwen and a tiny tokenizer
 *     with unusual added-token flags,
 *   - decoding of ids that cut UTF-8 characters, special and unknown ids,
 *   - concurrent encoding from two threads, error paths.
 * The first mismatch of each kind prints the text index and the texts. */
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model/tokenizer.h"
#include "base/util.h"

static char root[4096];
static int san;

static char *path_of(const char *base, const char *rel) {
    size_t n = strlen(base) + strlen(rel) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", base, rel);
    return p;
}

/* Same function as id_hash() in tests/ref/tokenizer_ref.py. */
static uint64_t id_hash(const int32_t *ids, size_t n) {
    uint64_t h = LR_FNV_INIT;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        unsigned char b[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24};
        h = lr_fnv1a64(h, b, 4);
    }
    h ^= h >> 33, h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33, h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h >> 16;
}

static void print_text(const char *label, const char *s, size_t len) {
    json_t *j = json_stringn(s, len);
    char *d = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    fprintf(stderr, "  %s: %.2000s\n", label, d ? d : "(not UTF-8)");
    free(d);
    json_decref(j);
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s (%zu):", label, n);
    for (size_t i = 0; i < n && i < 64; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 64 ? " ...\n" : "\n");
}

static size_t json_ids(json_t *arr, int32_t **out) {
    size_t n = json_array_size(arr), i;
    json_t *e;
    *out = xmalloc((n + 1) * sizeof **out);
    json_array_foreach(arr, i, e)(*out)[i] = (int32_t)json_integer_value(e);
    return n;
}

static json_t **load_jsonl(const char *path, size_t *n) {
    char *buf;
    size_t len;
    *n = 0;
    if (lr_read_file(path, &buf, &len)) {
        fprintf(stderr, "%s\n", lr_errmsg());
        return NULL;
    }
    json_t **v = NULL;
    size_t cap = 0;
    for (char *line = buf, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) nl = line + strlen(line) - 1;
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)(nl - line + 1), JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!j) {
            fprintf(stderr, "%s: line %zu: %s\n", path, *n + 1, je.text);
            break;
        }
        if (*n == cap) v = xrealloc(v, (cap = cap ? 2 * cap : 256) * sizeof *v);
        v[(*n)++] = j;
        if (!nl[1]) break;
    }
    free(buf);
    return v;
}

static void free_jsonl(json_t **v, size_t n) {
    for (size_t i = 0; i < n; i++) json_decref(v[i]);
    free(v);
}

/* Hard strings: ids and decoded text must equal the golden ones. Returns
 * the number of mismatching texts. */
static int check_hard(const tok_t *t, const char *golden, size_t *count) {
    size_t n;
    json_t **g = load_jsonl(golden, &n);
    CHECKF(g && n > 100, "%s: %zu lines", golden, n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *text = json_object_get(g[i], "text");
        int32_t *want, *got;
        size_t nwant = json_ids(json_object_get(g[i], "ids"), &want), ngot = 0;
        int rc = tok_encode(t, json_string_value(text), json_string_length(text), &got, &ngot);
        int same = rc == 0 && ngot == nwant && !memcmp(got, want, nwant * sizeof *got);
        char *dec = NULL;
        size_t declen = 0;
        tok_decode(t, want, nwant, &dec, &declen);
        json_t *wdec = json_object_get(g[i], "decoded");
        int dsame = declen == json_string_length(wdec) && !memcmp(dec, json_string_value(wdec), declen);
        if ((!same || !dsame) && bad++ == 0) {
            fprintf(stderr, "%s: first mismatch at text %zu (%s)\n", golden, i, !same ? "encode" : "decode");
            print_text("text", json_string_value(text), json_string_length(text));
            print_ids("want", want, nwant);
            if (rc == 0) print_ids("got ", got, ngot);
            else fprintf(stderr, "  got error: %s\n", lr_errmsg());
            print_text("want decoded", json_string_value(wdec), json_string_length(wdec));
            print_text("got decoded ", dec, declen);
        }
        free(dec);
        free(want);
        if (rc == 0) free(got);
    }
    *count = n;
    free_jsonl(g, n);
    return bad;
}

static void test_hard(const tok_t *qwen) {
    char *g = path_of(root, "tests/golden/tokenizer_hard.jsonl");
    size_t n = 0;
    int bad = check_hard(qwen, g, &n);
    CHECKF(bad == 0, "%d of %zu hard strings differ", bad, n);
    fprintf(stderr, "hard strings (qwen): %zu, %d mismatches\n", n, bad);
    free(g);
}

static void test_decode(const tok_t *qwen) {
    char *gp = path_of(root, "tests/golden/tokenizer_decode.jsonl");
    size_t n;
    json_t **g = load_jsonl(gp, &n);
    CHECK(g && n > 50);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t *ids;
        size_t nid = json_ids(json_object_get(g[i], "ids"), &ids);
        int skip = json_is_true(json_object_get(g[i], "skip_special"));
        json_t *want = json_object_get(g[i], "text");
        char *got;
        size_t len;
        tok_decode_ex(qwen, ids, nid, skip ? TOK_SKIP_SPECIAL : 0, &got, &len);
        if ((len != json_string_length(want) || memcmp(got, json_string_value(want), len)) && bad++ == 0) {
            fprintf(stderr, "%s: first mismatch at case %zu (skip_special %d)\n", gp, i, skip);
            print_ids("ids", ids, nid);
            print_text("want", json_string_value(want), json_string_length(want));
            print_text("got ", got, len);
        }
        free(got);
        free(ids);
    }
    CHECKF(bad == 0, "%d of %zu decode cases differ", bad, n);
    fprintf(stderr, "decode cases: %zu, %d mismatches\n", n, bad);
    free_jsonl(g, n);
    free(gp);
}

/* Every dataset text, in tokenizer_ref.py's order (every 10th under ASan). */
static void test_datasets(const tok_t *qwen) {
    static const struct { const char *file; const char *fields[3]; } spec[] = {
        {"data/gsm8k/train.jsonl", {"question", "answer", NULL}},
        {"data/gsm8k/test.jsonl", {"question", "answer", NULL}},
        {"data/math500/test.jsonl", {"problem", "solution", "answer"}},
    };
    char *gp = path_of(root, "tests/golden/tokenizer_data.txt");
    FILE *gf = fopen(gp, "r");
    CHECKF(gf != NULL, "cannot open %s", gp);
    if (!gf) return free(gp);
    char gline[256];
    if (!fgets(gline, sizeof gline, gf)) gline[0] = 0;   /* the comment line */
    size_t idx = 0, tested = 0, bytes = 0, ntok = 0;
    int bad = 0;
    double t0 = lr_now();
    for (size_t f = 0; f < 3; f++) {
        char *dp = path_of(root, spec[f].file);
        size_t n;
        json_t **recs = load_jsonl(dp, &n);
        CHECKF(recs && n > 0, "cannot read %s", dp);
        for (size_t r = 0; r < n; r++) {
            for (int k = 0; k < 3 && spec[f].fields[k]; k++, idx++) {
                long wn = -1;
                char wh[64] = "";
                if (!fgets(gline, sizeof gline, gf) || sscanf(gline, "%ld %63s", &wn, wh) != 2) {
                    CHECKF(0, "%s: too short at text %zu", gp, idx);
                    goto done;
                }
                if (san && idx % 10) continue;
                json_t *v = json_object_get(recs[r], spec[f].fields[k]);
                char num[64];
                const char *s = json_string_value(v);
                size_t len = json_string_length(v);
                if (!s) {   /* a number-valued answer: str() in Python */
                    snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
                    s = num, len = strlen(num);
                }
                int32_t *ids;
                size_t nid;
                int rc = tok_encode(qwen, s, len, &ids, &nid);
                char hh[64];
                snprintf(hh, sizeof hh, "%012llx", rc ? 0ULL : (unsigned long long)id_hash(ids, nid));
                tested++, bytes += len, ntok += nid;
                if ((rc || (long)nid != wn || strcmp(hh, wh)) && bad++ == 0) {
                    fprintf(stderr, "dataset: first mismatch at text %zu (%s record %zu field %s)\n", idx,
                            spec[f].file, r + 1, spec[f].fields[k]);
                    print_text("text", s, len);
                    fprintf(stderr, "  want %ld ids hash %s, got %zu ids hash %s\n", wn, wh, nid, hh);
                    print_ids("got", ids, nid);
                }
                if (!rc) free(ids);
            }
        }
        free_jsonl(recs, n);
        free(dp);
    }
    CHECKF(!fgets(gline, sizeof gline, gf), "%s: more lines than texts (%zu)", gp, idx);
done:
    fclose(gf);
    double dt = lr_now() - t0;
    CHECKF(bad == 0, "%d of %zu dataset texts differ", bad, tested);
    CHECKF(idx == 19084, "dataset texts: %zu (gsm8k 2 x 8792 + math500 3 x 500 = 19084 expected)", idx);
    fprintf(stderr, "dataset texts: %zu in golden, %zu encoded (%zu bytes, %zu ids, %.2f s), %d mismatches\n", idx,
            tested, bytes, ntok, dt, bad);
    free(gp);
}

typedef struct {
    const tok_t *t;
    json_t **g;
    size_t n;
    int bad;
} thr_arg;

static void *thr_encode(void *p) {
    thr_arg *a = p;
    for (int rep = 0; rep < 3; rep++)
        for (size_t i = 0; i < a->n; i++) {
            json_t *text = json_object_get(a->g[i], "text");
            int32_t *want, *got;
            size_t nwant = json_ids(json_object_get(a->g[i], "ids"), &want), ngot;
            if (tok_encode(a->t, json_string_value(text), json_string_length(text), &got, &ngot) == 0) {
                a->bad += ngot != nwant || memcmp(got, want, nwant * sizeof *got);
                free(got);
            } else {
                a->bad++;
            }
            free(want);
        }
    return NULL;
}

static void test_threads(const tok_t *qwen) {
    char *gp = path_of(root, "tests/golden/tokenizer_hard.jsonl");
    size_t n;
    json_t **g = load_jsonl(gp, &n);
    thr_arg a[2] = {{qwen, g, n, 0}, {qwen, g, n, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, thr_encode, &a[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    CHECKF(a[0].bad == 0 && a[1].bad == 0, "concurrent encode: %d + %d mismatches", a[0].bad, a[1].bad);
    free_jsonl(g, n);
    free(gp);
}

static void test_api(tok_t *qwen) {
    CHECK(tok_vocab_size(qwen) == 151669);
    CHECK(tok_id(qwen, "<|im_end|>") == 151645);
    CHECK(tok_id(qwen, "<|endoftext|>") == 151643);
    CHECK(tok_id(qwen, "Ġthe") == 279);
    CHECK(tok_id(qwen, "<|no_such_token|>") == -1);
    CHECK(tok_is_special(qwen, 151645) && !tok_is_special(qwen, 151667) && !tok_is_special(qwen, 279));
    CHECK(tok_token(qwen, 151645) && !strcmp(tok_token(qwen, 151645), "<|im_end|>"));
    CHECK(tok_token(qwen, 151669) == NULL && tok_token(qwen, -1) == NULL);
    CHECK(strlen(tok_hash(qwen)) == 16);
    size_t bl;
    const uint8_t *tb = tok_token_bytes(qwen, 279, &bl);   /* "Ġthe" */
    CHECK(tb && bl == 4 && !memcmp(tb, " the", 4));
    tb = tok_token_bytes(qwen, 151645, &bl);
    CHECK(tb && bl == 10 && !memcmp(tb, "<|im_end|>", 10));
    CHECK(tok_token_bytes(qwen, 151669, &bl) == NULL && bl == 0);
    int32_t *ids;
    size_t n;
    CHECK(tok_encode(qwen, "ab\xC3(", 4, &ids, &n) == LR_EINPUT);        /* truncated UTF-8 */
    CHECK(tok_encode(qwen, "\xED\xA0\x80", 3, &ids, &n) == LR_EINPUT);   /* a surrogate */
    CHECK(tok_encode(qwen, "", 0, &ids, &n) == 0 && n == 0);
    free(ids);
    /* The cache must not change results. */
    const char *s = "The cache must not change results: 12 apples, 12 apples.";
    int32_t *a, *b;
    size_t na, nb;
    tok_set_cache(qwen, 0);
    CHECK(tok_encode(qwen, s, strlen(s), &a, &na) == 0);
    tok_set_cache(qwen, 1);
    CHECK(tok_encode(qwen, s, strlen(s), &b, &nb) == 0);
    CHECK(na == nb && !memcmp(a, b, na * sizeof *a));
    free(a);
    free(b);

    tok_t *bad;
    CHECK(tok_load(&bad, "/nonexistent/tokenizer.json") == LR_EIO && bad == NULL);
    char *tmp = path_of(getenv("LR_TMP") ? getenv("LR_TMP") : "/tmp", "bad_tokenizer.json");
    FILE *f = fopen(tmp, "w");
    fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\", \"b\"]]},"
          " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"ByteLevel\"}}", f);
    fclose(f);
    CHECK(tok_load(&bad, tmp) == LR_EINPUT && strstr(lr_errmsg(), "merges[0]"));
    f = fopen(tmp, "w");
    fputs("{\"model\": {\"type\": \"WordPiece\"", f);
    fclose(f);
    CHECK(tok_load(&bad, tmp) == LR_EINPUT && strstr(lr_errmsg(), "line 1"));
    remove(tmp);
    free(tmp);
}

static void test_tiny(void) {
    char *tp = path_of(root, "tests/golden/tiny_tokenizer.json");
    tok_t *tiny;
    int rc = tok_load(&tiny, tp);
    CHECKF(rc == 0, "%s", lr_errmsg());
    if (rc) return free(tp);
    CHECK(tok_id(tiny, "<|im_end|>") >= 0 && tok_vocab_size(tiny) < 1000);
    char *g = path_of(root, "tests/golden/tiny_hard.jsonl");
    size_t n = 0;
    int bad = check_hard(tiny, g, &n);
    CHECKF(bad == 0, "%d of %zu tiny-tokenizer strings differ", bad, n);
    fprintf(stderr, "hard strings (tiny tokenizer): %zu, %d mismatches\n", n, bad);
    free(g);
    tok_free(tiny);
    free(tp);
}

/* Robustness of the loader: seeded structural mutations of the tiny
 * tokenizer.json (a random value anywhere replaced by a random JSON value)
 * must load or fail with LR_EINPUT, never crash; what loads must encode. */
static json_t *rand_value(uint64_t *rng) {
    *rng = *rng * 6364136223846793005ULL + 1442695040888963407ULL;
    switch ((*rng >> 33) % 12) {
    case 0: return json_null();
    case 1: return json_integer(-1);
    case 2: return json_integer(0);
    case 3: return json_integer(1 << 30);
    case 4: return json_string("");
    case 5: return json_string("a b");
    case 6: return json_array();
    case 7: return json_object();
    case 8: return json_true();
    case 9: return json_string("(");
    case 10: return json_pack("[ss]", "x", "y");
    default: return json_real(0.5);
    }
}

static void mutate(json_t *v, uint64_t *rng, int depth) {
    *rng = *rng * 6364136223846793005ULL + 1442695040888963407ULL;
    uint64_t r = *rng >> 33;
    if (json_is_object(v) && json_object_size(v)) {
        size_t k = r % json_object_size(v), i = 0;
        const char *key;
        json_t *e;
        json_object_foreach(v, key, e) {
            if (i++ != k) continue;
            if (depth < 6 && (r >> 8) % 4 && (json_is_object(e) || json_is_array(e))) mutate(e, rng, depth + 1);
            else json_object_set_new(v, key, rand_value(rng));
            return;
        }
    } else if (json_is_array(v) && json_array_size(v)) {
        size_t k = r % json_array_size(v);
        json_t *e = json_array_get(v, k);
        if (depth < 6 && (r >> 8) % 4 && (json_is_object(e) || json_is_array(e))) mutate(e, rng, depth + 1);
        else json_array_set_new(v, k, rand_value(rng));
    }
}

static void test_mutations(void) {
    char *tp = path_of(root, "tests/golden/tiny_tokenizer.json");
    json_t *base = json_load_file(tp, 0, NULL);
    CHECK(base != NULL);
    char *mp = path_of(getenv("LR_TMP") ? getenv("LR_TMP") : "/tmp", "mutated_tokenizer.json");
    uint64_t seed = getenv("LR_TOK_SEED") ? strtoull(getenv("LR_TOK_SEED"), NULL, 10) : 20261128, rng = seed;
    CHECK_SEED(seed);
    int n = getenv("LR_TOK_MUTATIONS") ? atoi(getenv("LR_TOK_MUTATIONS")) : san ? 60 : 300, loaded = 0, refused = 0;
    for (int i = 0; i < n && base; i++) {
        json_t *m = json_deep_copy(base);
        for (int k = 0; k < 1 + i % 3; k++) mutate(m, &rng, 0);
        json_dump_file(m, mp, JSON_COMPACT);
        json_decref(m);
        tok_t *t;
        int rc = tok_load(&t, mp);
        CHECKF(rc == 0 || rc == LR_EINPUT, "mutation %d: rc %d: %s", i, rc, lr_errmsg());
        if (rc) {
            refused++;
            continue;
        }
        loaded++;
        static const char *const texts[] = {"Hello world 123", "<|im_start|>a<mask> word\n", "\xc3\xa9\xf0\x9f\x98\x80"};
        for (int k = 0; k < 3; k++) {
            int32_t *ids;
            size_t nid;
            if (tok_encode(t, texts[k], strlen(texts[k]), &ids, &nid) == 0) {
                char *d;
                tok_decode(t, ids, nid, &d, NULL);
                free(d);
                free(ids);
            }
        }
        tok_free(t);
    }
    fprintf(stderr, "loader mutations: %d, %d loaded, %d refused\n", n, loaded, refused);
    CHECK(loaded > 0 && refused > 0);
    remove(mp);
    free(mp);
    json_decref(base);
    free(tp);
}

int main(void) {
    const char *r = getenv("LR_ROOT");
    snprintf(root, sizeof root, "%s", r ? r : ".");
    san = getenv("LR_SAN") && !strcmp(getenv("LR_SAN"), "1");
    char *qp = path_of(root, "build/tokenizers/qwen"); /* unpacked by the build */
    tok_t *qwen;
    double t0 = lr_now();
    int rc = tok_load(&qwen, qp);
    CHECKF(rc == 0, "%s", lr_errmsg());
    if (rc) CHECK_DONE();
    fprintf(stderr, "loaded %s in %.2f s\n", qp, lr_now() - t0);
    free(qp);
    test_api(qwen);
    test_hard(qwen);
    test_decode(qwen);
    test_threads(qwen);
    test_tiny();
    test_mutations();
    test_datasets(qwen);
    tok_free(qwen);
    CHECK_DONE();
}
