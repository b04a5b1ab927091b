/* tokenizer: see tokenizer.h for the pipeline and what is supported. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "model/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "base/util.h"
#include "io/stream.h"

#define MAX_RE 4
#define CACHE_SLOTS (1u << 17)   /* open addressing, at most half full */
#define CACHE_MAX_WORD 128       /* longer words are not cached */
#define MAX_ID ((1 << 24) - 1)    /* arrays are indexed by id: refuse absurd ids */

typedef struct {
    char *orig;         /* the "content" of the JSON */
    char *content;      /* as matched: orig, or its NFC form (own allocation) */
    uint32_t len;
    int32_t id;
    uint8_t special, normalized, lstrip, rstrip, single_word;
} added_t;

/* The added tokens matched in one pass (raw or normalized text), sorted by
 * first byte then by length, longest first, so the first hit at a position
 * is the leftmost-longest match. */
typedef struct {
    uint32_t *idx;      /* into tok->added */
    size_t n;
    uint32_t first[257];
} agroup_t;

typedef struct { const char *s; uint32_t len; int32_t id; } sslot_t;        /* string -> id */
typedef struct { uint64_t key; uint32_t rank; int32_t new_id; } pslot_t;    /* pair -> merge */

typedef struct {
    uint64_t h;
    uint32_t klen, nids;
    char *key;          /* one allocation: key bytes then the ids */
    int32_t *ids;
} centry_t;

typedef struct {
    pthread_mutex_t mu;
    centry_t *tab;      /* CACHE_SLOTS */
    size_t n;
    int on;
} cache_t;

struct tok {
    int64_t nvocab;            /* largest id + 1 */
    char **str;                /* [nvocab] token strings, NULL for holes */
    uint8_t *special;          /* [nvocab] */
    uint8_t *dec;              /* decoded bytes of every token, concatenated */
    size_t *dec_off;           /* [nvocab + 1] */
    char *blob;                /* storage of the vocabulary strings */
    sslot_t *vtab;             /* model vocabulary: string -> id */
    size_t vmask;
    pslot_t *ptab;             /* merges: (left id, right id) -> rank, new id */
    size_t pmask;
    int32_t byte_id[256];      /* id of each byte's ByteLevel character */
    uint32_t byte_cp[256];     /* the ByteLevel alphabet: byte -> code point */
    added_t *added;
    size_t nadded;
    agroup_t grp[2];           /* [0] raw, [1] normalized */
    int nfc, ignore_merges;
    int32_t unk_id;
    pcre2_code *re[MAX_RE];
    int nre;
    char hash[17];
    cache_t *cache;
    /* compatibility signature (tok_sig): the regular vocabulary (model.vocab,
     * before added tokens overlay it) and the merges */
    int64_t nregular;          /* largest model.vocab id + 1 */
    char **rstr;               /* [nregular] model.vocab strings, NULL for holes */
    uint32_t *block;           /* [nblock] hash of each TOK_SIG_BLOCK regular ids */
    size_t nblock, nmerges;
    uint64_t merges_hash;      /* the merges' id pairs in rank order */
    char base[17];             /* hash of nregular, blocks and merges */
};

/* ---- small hash tables ---- */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

static int32_t vocab_get(const tok_t *t, const char *s, size_t len) {
    if (!t->vtab) return -1;
    for (size_t i = lr_fnv1a64(LR_FNV_INIT, s, len) & t->vmask;; i = (i + 1) & t->vmask) {
        const sslot_t *e = &t->vtab[i];
        if (!e->s) return -1;
        if (e->len == len && memcmp(e->s, s, len) == 0) return e->id;
    }
}

static void vocab_put(tok_t *t, const char *s, size_t len, int32_t id) {
    for (size_t i = lr_fnv1a64(LR_FNV_INIT, s, len) & t->vmask;; i = (i + 1) & t->vmask) {
        sslot_t *e = &t->vtab[i];
        if (!e->s || (e->len == len && memcmp(e->s, s, len) == 0)) {
            e->s = s, e->len = (uint32_t)len, e->id = id;
            return;
        }
    }
}

static const pslot_t *pair_get(const tok_t *t, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = mix64(key) & t->pmask;; i = (i + 1) & t->pmask) {
        const pslot_t *e = &t->ptab[i];
        if (e->new_id < 0) return NULL;
        if (e->key == key) return e;
    }
}

/* Later duplicates overwrite earlier ones, like the HashMap `tokenizers`
 * builds from the merges list. */
static void pair_put(tok_t *t, int32_t a, int32_t b, uint32_t rank, int32_t new_id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = mix64(key) & t->pmask;; i = (i + 1) & t->pmask) {
        pslot_t *e = &t->ptab[i];
        if (e->new_id < 0 || e->key == key) {
            e->key = key, e->rank = rank, e->new_id = new_id;
            return;
        }
    }
}

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 character at s (strict: no surrogates, no
 * overlong forms, <= U+10FFFF), or 0 when invalid. */
static size_t utf8_valid_char(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3) return 0;
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4) return 0;
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

/* Length of the invalid sequence at s that Rust's from_utf8_lossy replaces
 * by one U+FFFD: the lead byte plus the continuation bytes that were still
 * acceptable for it (the Unicode "maximal subpart" rule). */
static size_t utf8_invalid_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t need, i = 1;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) need = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) need = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 1;
    if (i < n && s[i] >= lo && s[i] <= hi) i++;
    else return i;
    while (i < need && i < n && (s[i] & 0xC0) == 0x80) i++;
    return i;
}

static void put_utf8(char *buf, size_t *n, uint32_t cp) {
    *n += (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)buf + *n);
}

/* ---- loading ---- */

static const char *jstr(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jbool(json_t *o, const char *key, int dflt) {
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* `tokenizers` runs the pattern with Oniguruma, whose \s is the Unicode
 * White_Space property; PCRE2's \s (UCP) also matches U+180E MONGOLIAN
 * VOWEL SEPARATOR (once a space, a format character since Unicode 6.3).
 * So \s and \S become \p{White_Space} and \P{White_Space}, which PCRE2
 * accepts inside classes too ([^\s\p{L}]). Other escapes are copied. */
static char *onig_to_pcre2(const char *pat, size_t len, size_t *out_len) {
    char *o = xmalloc(len * 16 + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (pat[i] == '\\' && i + 1 < len && (pat[i + 1] == 's' || pat[i + 1] == 'S')) {
            n += (size_t)sprintf(o + n, "\\%c{White_Space}", pat[i + 1] == 's' ? 'p' : 'P');
            i++;
        } else if (pat[i] == '\\' && i + 1 < len) {
            o[n++] = pat[i++];
            o[n++] = pat[i];
        } else {
            o[n++] = pat[i];
        }
    }
    o[n] = 0;
    *out_len = n;
    return o;
}

static int add_regex(tok_t *t, const char *pat0, size_t len0, int literal, const char *where) {
    if (t->nre == MAX_RE) return lr_err(LR_EINPUT, "%s: more than %d split patterns", where, MAX_RE);
    int ec;
    PCRE2_SIZE eo;
    uint32_t opt = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    size_t len = len0;
    char *pat = literal ? NULL : onig_to_pcre2(pat0, len0, &len);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(literal ? pat0 : pat), len, opt, &ec, &eo, NULL);
    free(pat);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return lr_err(LR_EINPUT, "%s: regex error at offset %zu: %s", where, (size_t)eo, (char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* falls back to the interpreter if JIT is absent */
    t->re[t->nre++] = re;
    return LR_OK;
}

static int load_pretok(tok_t *t, json_t *p, int *saw_bytelevel) {
    if (json_is_null(p) || !p) return LR_OK;
    const char *type = jstr(p, "type");
    if (!type) return lr_err(LR_EINPUT, "field \"pre_tokenizer\": missing \"type\"");
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(p, "pretokenizers"), *e;
        size_t i;
        if (!json_is_array(arr)) return lr_err(LR_EINPUT, "field \"pre_tokenizer.pretokenizers\": expected array");
        json_array_foreach(arr, i, e) {
            int rc = load_pretok(t, e, saw_bytelevel);
            if (rc) return rc;
        }
        return LR_OK;
    }
    if (!strcmp(type, "Split")) {
        const char *beh = jstr(p, "behavior");
        if (!beh || strcmp(beh, "Isolated") || jbool(p, "invert", 0))
            return lr_err(LR_EINPUT, "field \"pre_tokenizer\": Split supported only with behavior Isolated, invert false");
        json_t *pat = json_object_get(p, "pattern"), *v;
        if ((v = json_object_get(pat, "Regex")) && json_is_string(v))
            return add_regex(t, json_string_value(v), json_string_length(v), 0, "field \"pre_tokenizer.pattern.Regex\"");
        if ((v = json_object_get(pat, "String")) && json_is_string(v))
            return add_regex(t, json_string_value(v), json_string_length(v), 1, "field \"pre_tokenizer.pattern.String\"");
        return lr_err(LR_EINPUT, "field \"pre_tokenizer.pattern\": expected {\"Regex\": ...} or {\"String\": ...}");
    }
    if (!strcmp(type, "ByteLevel")) {
        if (jbool(p, "add_prefix_space", 0))
            return lr_err(LR_EINPUT, "field \"pre_tokenizer.add_prefix_space\": true is not supported");
        *saw_bytelevel = 1;
        if (jbool(p, "use_regex", 1))
            return add_regex(t, GPT2_PATTERN, strlen(GPT2_PATTERN), 0, "ByteLevel regex");
        return LR_OK;
    }
    return lr_err(LR_EINPUT, "field \"pre_tokenizer\": type \"%s\" is not supported", type);
}

static int load_normalizer(tok_t *t, json_t *n) {
    if (!n || json_is_null(n)) return LR_OK;
    const char *type = jstr(n, "type");
    if (type && !strcmp(type, "NFC")) return t->nfc = 1, LR_OK;
    if (type && !strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(n, "normalizers"), *e;
        size_t i;
        json_array_foreach(arr, i, e) {
            int rc = load_normalizer(t, e);
            if (rc) return rc;
        }
        return LR_OK;
    }
    return lr_err(LR_EINPUT, "field \"normalizer\": type \"%s\" is not supported (only NFC)", type ? type : "?");
}

/* The ByteLevel alphabet of GPT-2: printable Latin-1 bytes stand for
 * themselves, the other 68 bytes for U+0100 upwards, in byte order. */
static void build_bytelevel(tok_t *t) {
    uint32_t extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        t->byte_cp[b] = printable ? (uint32_t)b : 256 + extra++;
    }
}

static int cp_to_byte(const tok_t *t, uint32_t cp) {
    if (cp < 256) {
        return t->byte_cp[cp] == cp ? (int)cp : -1;
    }
    if (cp < 256 + 68) {
        for (int b = 0; b < 256; b++)
            if (t->byte_cp[b] == cp) return b;
    }
    return -1;
}

/* The bytes a token contributes to decoded text (ByteLevel decoder): its
 * characters mapped back to bytes, or its own UTF-8 when one character is
 * outside the alphabet. */
static size_t token_bytes(const tok_t *t, const char *s, size_t len, uint8_t *out) {
    size_t n = 0;
    utf8proc_ssize_t i = 0;
    while ((size_t)i < len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)len - i, &cp);
        int b = k > 0 ? cp_to_byte(t, (uint32_t)cp) : -1;
        if (b < 0) {
            memcpy(out, s, len);
            return len;
        }
        out[n++] = (uint8_t)b;
        i += k;
    }
    return n;
}

static int cmp_group(const void *a, const void *b, void *arg) {
    const added_t *ad = arg;
    const added_t *x = &ad[*(const uint32_t *)a], *y = &ad[*(const uint32_t *)b];
    unsigned char fx = (unsigned char)x->content[0], fy = (unsigned char)y->content[0];
    if (fx != fy) return fx < fy ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static void build_group(tok_t *t, int g) {
    agroup_t *gr = &t->grp[g];
    gr->idx = xmalloc((t->nadded + 1) * sizeof *gr->idx);
    for (size_t i = 0; i < t->nadded; i++)
        if (t->added[i].normalized == g && t->added[i].len > 0) gr->idx[gr->n++] = (uint32_t)i;
    qsort_r(gr->idx, gr->n, sizeof *gr->idx, cmp_group, t->added);
    size_t k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < gr->n && (unsigned char)t->added[gr->idx[k]].content[0] < b) k++;
        gr->first[b] = (uint32_t)k;
    }
}

static int load_added(tok_t *t, json_t *arr) {
    if (!arr || json_is_null(arr)) return LR_OK;
    if (!json_is_array(arr)) return lr_err(LR_EINPUT, "field \"added_tokens\": expected array");
    t->added = xcalloc(json_array_size(arr) + 1, sizeof *t->added);
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        json_t *id = json_object_get(e, "id"), *c = json_object_get(e, "content");
        if (!json_is_integer(id) || !json_is_string(c) || json_integer_value(id) < 0 ||
            json_integer_value(id) > MAX_ID)
            return lr_err(LR_EINPUT, "field \"added_tokens[%zu]\": needs integer \"id\" (0..%d) and string \"content\"", i, MAX_ID);
        added_t *a = &t->added[t->nadded++];
        a->id = (int32_t)json_integer_value(id);
        a->special = (uint8_t)jbool(e, "special", 0);
        a->normalized = (uint8_t)jbool(e, "normalized", !a->special);
        a->lstrip = (uint8_t)jbool(e, "lstrip", 0);
        a->rstrip = (uint8_t)jbool(e, "rstrip", 0);
        a->single_word = (uint8_t)jbool(e, "single_word", 0);
        a->len = (uint32_t)json_string_length(c);
        a->orig = a->content = xmalloc(a->len + 1);
        memcpy(a->orig, json_string_value(c), a->len + 1);
    }
    return LR_OK;
}

static int load_json(tok_t *t, json_t *root) {
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return lr_err(LR_EINPUT, "field \"model\": expected object");
    const char *mtype = jstr(model, "type");
    if (mtype && strcmp(mtype, "BPE"))
        return lr_err(LR_EINPUT, "field \"model.type\": \"%s\" is not supported (only BPE)", mtype);
    if (json_is_number(json_object_get(model, "dropout")))
        return lr_err(LR_EINPUT, "field \"model.dropout\": BPE dropout is not supported");
    const char *pre = jstr(model, "continuing_subword_prefix"), *suf = jstr(model, "end_of_word_suffix");
    if ((pre && *pre) || (suf && *suf) || jbool(model, "byte_fallback", 0))
        return lr_err(LR_EINPUT, "field \"model\": subword prefix/suffix and byte_fallback are not supported");
    t->ignore_merges = jbool(model, "ignore_merges", 0);
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab)) return lr_err(LR_EINPUT, "field \"model.vocab\": expected object");
    if (!json_is_array(merges)) return lr_err(LR_EINPUT, "field \"model.merges\": expected array");

    int rc = load_added(t, json_object_get(root, "added_tokens"));
    if (rc) return rc;
    rc = load_normalizer(t, json_object_get(root, "normalizer"));
    if (rc) return rc;
    int saw_bl = 0;
    rc = load_pretok(t, json_object_get(root, "pre_tokenizer"), &saw_bl);
    if (rc) return rc;
    if (!saw_bl) return lr_err(LR_EINPUT, "field \"pre_tokenizer\": no ByteLevel step (only byte-level BPE is supported)");
    json_t *dec = json_object_get(root, "decoder");
    const char *dtype = jstr(dec, "type");
    if (!dtype || strcmp(dtype, "ByteLevel"))
        return lr_err(LR_EINPUT, "field \"decoder\": only a ByteLevel decoder is supported");

    /* Vocabulary: ids, strings (one blob), string -> id table. */
    int64_t maxid = -1;
    size_t total = 0, nv = json_object_size(vocab);
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > MAX_ID)
            return lr_err(LR_EINPUT, "field \"model.vocab\": token \"%s\": expected an integer id in 0..%d", key, MAX_ID);
        if (json_integer_value(v) > maxid) maxid = json_integer_value(v);
        total += strlen(key) + 1;
    }
    for (size_t i = 0; i < t->nadded; i++)
        if (t->added[i].id > maxid) maxid = t->added[i].id;
    t->nvocab = maxid + 1;
    t->str = xcalloc((size_t)t->nvocab + 1, sizeof *t->str);
    t->special = xcalloc((size_t)t->nvocab + 1, 1);
    t->blob = xmalloc(total + 1);
    t->vmask = pow2_at_least(2 * nv + 2) - 1;
    t->vtab = xcalloc(t->vmask + 1, sizeof *t->vtab);
    char *w = t->blob;
    json_object_foreach(vocab, key, v) {
        size_t len = strlen(key);
        memcpy(w, key, len + 1);
        int32_t id = (int32_t)json_integer_value(v);
        t->str[id] = w;
        vocab_put(t, w, len, id);
        w += len + 1;
    }
    /* The regular vocabulary as model.vocab gives it, kept apart from the
     * added tokens overlaying it: what two compatible tokenizers share. */
    int64_t nreg = 0;
    json_object_foreach(vocab, key, v) if (json_integer_value(v) + 1 > nreg) nreg = json_integer_value(v) + 1;
    t->nregular = nreg;
    t->rstr = xcalloc((size_t)nreg + 1, sizeof *t->rstr);
    memcpy(t->rstr, t->str, (size_t)nreg * sizeof *t->rstr);
    t->nblock = (size_t)((nreg + TOK_SIG_BLOCK - 1) / TOK_SIG_BLOCK);
    t->block = xcalloc(t->nblock + 1, sizeof *t->block);
    for (size_t b = 0; b < t->nblock; b++) {
        uint64_t h = LR_FNV_INIT;
        for (int64_t id = (int64_t)b * TOK_SIG_BLOCK; id < nreg && id < (int64_t)(b + 1) * TOK_SIG_BLOCK; id++) {
            const char *w = t->rstr[id] ? t->rstr[id] : "";
            h = lr_fnv1a64(h, w, strlen(w) + (t->rstr[id] != NULL)); /* a hole hashes apart from "" */
            h = lr_fnv1a64(h, "\xff", 1);
        }
        t->block[b] = (uint32_t)(h ^ (h >> 32));
    }
    for (size_t i = 0; i < t->nadded; i++) {
        t->str[t->added[i].id] = t->added[i].orig;
        t->special[t->added[i].id] = t->added[i].special;
    }

    /* Merges: "a b" strings (old files) or ["a", "b"] pairs. */
    size_t nm = json_array_size(merges);
    t->pmask = pow2_at_least(2 * nm + 2) - 1;
    t->ptab = xmalloc((t->pmask + 1) * sizeof *t->ptab);
    for (size_t i = 0; i <= t->pmask; i++) t->ptab[i].new_id = -1;
    size_t cat_cap = 256;
    char *cat = xmalloc(cat_cap);
    uint64_t mh = LR_FNV_INIT;
    for (size_t i = 0; i < nm; i++) {
        json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t la, lb;
        if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
            json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0)), la = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1)), lb = json_string_length(json_array_get(m, 1));
        } else if (json_is_string(m) && strchr(json_string_value(m), ' ') &&
                   !strchr(strchr(json_string_value(m), ' ') + 1, ' ')) {
            a = json_string_value(m), la = (size_t)(strchr(a, ' ') - a);
            b = a + la + 1, lb = strlen(b);
        } else {
            free(cat);
            return lr_err(LR_EINPUT, "field \"model.merges[%zu]\": expected [\"a\", \"b\"] or \"a b\"", i);
        }
        if (la + lb + 1 > cat_cap) cat = xrealloc(cat, cat_cap = la + lb + 1);
        memcpy(cat, a, la), memcpy(cat + la, b, lb);
        int32_t ia = vocab_get(t, a, la), ib = vocab_get(t, b, lb), inew = vocab_get(t, cat, la + lb);
        if (ia < 0 || ib < 0 || inew < 0) {
            free(cat);
            return lr_err(LR_EINPUT, "field \"model.merges[%zu]\": token %s is not in the vocabulary", i,
                          ia < 0 ? "left" : ib < 0 ? "right" : "merged");
        }
        pair_put(t, ia, ib, (uint32_t)i, inew);
        int32_t pr[2] = {ia, ib};
        mh = lr_fnv1a64(mh, pr, sizeof pr);
    }
    free(cat);
    t->merges_hash = mh, t->nmerges = nm;
    {
        uint64_t h = lr_fnv1a64(LR_FNV_INIT, &t->nregular, sizeof t->nregular);
        h = lr_fnv1a64(h, t->block, t->nblock * sizeof *t->block);
        h = lr_fnv1a64(h, &mh, sizeof mh);
        snprintf(t->base, sizeof t->base, "%016llx", (unsigned long long)h);
    }

    t->unk_id = -1;
    const char *unk = jstr(model, "unk_token");
    if (unk) t->unk_id = vocab_get(t, unk, strlen(unk));

    build_bytelevel(t);
    for (int b = 0; b < 256; b++) {
        char buf[8];
        size_t n = 0;
        put_utf8(buf, &n, t->byte_cp[b]);
        t->byte_id[b] = vocab_get(t, buf, n);
        /* Without the byte's token (and no unk_token to stand for it) every
         * character holding that byte would vanish from the encoding. */
        if (t->byte_id[b] < 0 && t->unk_id < 0)
            return lr_err(LR_EINPUT, "field \"model.vocab\": no token for byte 0x%02x (\"%.*s\") and no unk_token: "
                          "a byte-level vocabulary needs all 256 byte tokens", b, (int)n, buf);
    }

    /* Normalized added tokens are matched against normalized text, so their
     * own content is normalized too; tok_id still accepts the original. */
    for (size_t i = 0; i < t->nadded; i++) {
        added_t *a = &t->added[i];
        if (!a->normalized || !t->nfc || a->len == 0) continue;
        utf8proc_uint8_t *d = NULL;
        utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)a->content, a->len, &d,
                                          UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (k < 0) return lr_err(LR_EINPUT, "field \"added_tokens\": \"%s\": invalid UTF-8", a->orig);
        a->content = (char *)d, a->len = (uint32_t)k;
        t->str[a->id] = a->content;   /* `tokenizers` also decodes it in normalized form */
    }
    /* Decoded bytes of every token, precomputed once. */
    size_t dtotal = 0;
    for (int64_t id = 0; id < t->nvocab; id++)
        if (t->str[id]) dtotal += strlen(t->str[id]);
    t->dec = xmalloc(dtotal + 1);
    t->dec_off = xmalloc(((size_t)t->nvocab + 1) * sizeof *t->dec_off);
    size_t off = 0;
    for (int64_t id = 0; id < t->nvocab; id++) {
        t->dec_off[id] = off;
        if (t->str[id]) off += token_bytes(t, t->str[id], strlen(t->str[id]), t->dec + off);
    }
    t->dec_off[t->nvocab] = off;

    build_group(t, 0);
    build_group(t, 1);
    return LR_OK;
}

int tok_load(tok_t **out, const char *path) {
    *out = NULL;
    struct stat st;
    char *file = NULL;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t n = strlen(path) + sizeof "/tokenizer.json";
        file = xmalloc(n);
        snprintf(file, n, "%s/tokenizer.json", path);
    } else {
        file = xstrdup(path);
    }
    char *buf;
    size_t len;
    int rc = lr_read_file(file, &buf, &len);
    if (rc) {
        free(file);
        return rc;
    }
    tok_t *t = xcalloc(1, sizeof *t);
    uint64_t h = lr_fnv1a64(LR_FNV_INIT, buf, len);
    uint64_t n64 = len;
    h = lr_fnv1a64(h, &n64, sizeof n64);
    snprintf(t->hash, sizeof t->hash, "%016llx", (unsigned long long)h);
    json_error_t je;
    json_t *root = json_loadb(buf, len, 0, &je);
    free(buf);
    if (!root) {
        rc = lr_err(LR_EINPUT, "%s: line %d: %s", file, je.line, je.text);
    } else {
        rc = load_json(t, root);
        json_decref(root);
        if (rc) lr_err_prefix(rc, "%s", file);
    }
    free(file);
    if (rc) {
        tok_free(t);
        return rc;
    }
    t->cache = xcalloc(1, sizeof *t->cache);
    pthread_mutex_init(&t->cache->mu, NULL);
    t->cache->tab = xcalloc(CACHE_SLOTS, sizeof *t->cache->tab);
    t->cache->on = 1;
    *out = t;
    return LR_OK;
}

void tok_free(tok_t *t) {
    if (!t) return;
    if (t->cache) {
        for (size_t i = 0; i < CACHE_SLOTS; i++) free(t->cache->tab[i].key);
        free(t->cache->tab);
        pthread_mutex_destroy(&t->cache->mu);
        free(t->cache);
    }
    for (size_t i = 0; i < t->nadded; i++) {
        if (t->added[i].content != t->added[i].orig) free(t->added[i].content);
        free(t->added[i].orig);
    }
    free(t->added);
    for (int g = 0; g < 2; g++) free(t->grp[g].idx);
    for (int i = 0; i < t->nre; i++) pcre2_code_free(t->re[i]);
    free(t->str);
    free(t->special);
    free(t->dec);
    free(t->dec_off);
    free(t->blob);
    free(t->vtab);
    free(t->ptab);
    free(t->rstr);
    free(t->block);
    free(t);
}

void tok_set_cache(tok_t *t, int on) { t->cache->on = on; }

/* ---- encoding ---- */

typedef struct { int32_t id; int32_t prev, next; } sym_t;
typedef struct { uint32_t rank, pos; int32_t new_id; } merge_t;

/* Per-call scratch: encode allocates its own, so calls never share state
 * (apart from the locked word cache). */
typedef struct {
    const tok_t *t;
    int32_t *out;
    size_t n, cap;
    sym_t *sym;
    size_t symcap;
    merge_t *heap;
    size_t hn, hcap;
    char *mapped;
    size_t mapcap;
    pcre2_match_data *md;
    int rc;
} enc_t;

static void emit(enc_t *e, int32_t id) {
    if (e->n == e->cap) e->out = xrealloc(e->out, (e->cap = e->cap ? 2 * e->cap : 64) * sizeof *e->out);
    e->out[e->n++] = id;
}

static int merge_less(const merge_t *a, const merge_t *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(enc_t *e, merge_t m) {
    if (e->hn == e->hcap) e->heap = xrealloc(e->heap, (e->hcap = e->hcap ? 2 * e->hcap : 64) * sizeof *e->heap);
    size_t i = e->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_less(&m, &e->heap[p])) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = m;
}

static merge_t heap_pop(enc_t *e) {
    merge_t top = e->heap[0], last = e->heap[--e->hn];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= e->hn) break;
        if (c + 1 < e->hn && merge_less(&e->heap[c + 1], &e->heap[c])) c++;
        if (!merge_less(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (e->hn) e->heap[i] = last;
    return top;
}

static void push_pair(enc_t *e, int32_t pos) {
    const sym_t *s = &e->sym[pos];
    if (s->next < 0) return;
    const pslot_t *p = pair_get(e->t, s->id, e->sym[s->next].id);
    if (p) heap_push(e, (merge_t){p->rank, (uint32_t)pos, p->new_id});
}

/* BPE of one word, the way `tokenizers`' Word::merge_all does it: a min-heap
 * of candidate merges ordered by (rank, position); a popped merge is applied
 * only if the pair now at its position still merges into the same token. */
static void bpe_word_uncached(enc_t *e, const uint8_t *w, size_t len) {
    const tok_t *t = e->t;
    if (t->ignore_merges) {
        if (e->mapcap < 2 * len) e->mapped = xrealloc(e->mapped, e->mapcap = 2 * len);
        size_t n = 0;
        for (size_t i = 0; i < len; i++) put_utf8(e->mapped, &n, t->byte_cp[w[i]]);
        int32_t id = vocab_get(t, e->mapped, n);
        if (id >= 0) {
            emit(e, id);
            return;
        }
    }
    if (e->symcap < len) e->sym = xrealloc(e->sym, (e->symcap = len) * sizeof *e->sym);
    int32_t ns = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t id = t->byte_id[w[i]];
        if (id < 0) id = t->unk_id;
        if (id < 0) continue;   /* unknown character and no unk token: dropped, as in `tokenizers` */
        e->sym[ns] = (sym_t){id, ns - 1, ns + 1};
        ns++;
    }
    if (ns == 0) return;
    e->sym[ns - 1].next = -1;
    e->hn = 0;
    for (int32_t i = 0; i + 1 < ns; i++) push_pair(e, i);
    while (e->hn) {
        merge_t m = heap_pop(e);
        sym_t *s = &e->sym[m.pos];
        if (s->id < 0 || s->next < 0) continue;
        int32_t r = s->next;
        const pslot_t *p = pair_get(t, s->id, e->sym[r].id);
        if (!p || p->new_id != m.new_id) continue;
        s->id = m.new_id;
        s->next = e->sym[r].next;
        e->sym[r].id = -1;
        if (s->next >= 0) e->sym[s->next].prev = (int32_t)m.pos;
        if (s->prev >= 0) push_pair(e, s->prev);
        push_pair(e, (int32_t)m.pos);
    }
    for (int32_t i = 0; i >= 0; i = e->sym[i].next) emit(e, e->sym[i].id);
}

static void bpe_word(enc_t *e, const uint8_t *w, size_t len) {
    if (len == 0) return;
    cache_t *c = e->t->cache;
    if (!c->on || len > CACHE_MAX_WORD) {
        bpe_word_uncached(e, w, len);
        return;
    }
    uint64_t h = lr_fnv1a64(LR_FNV_INIT, w, len);
    size_t slot = h & (CACHE_SLOTS - 1);
    pthread_mutex_lock(&c->mu);
    for (size_t i = slot;; i = (i + 1) & (CACHE_SLOTS - 1)) {
        centry_t *ce = &c->tab[i];
        if (!ce->key) break;
        if (ce->h == h && ce->klen == len && memcmp(ce->key, w, len) == 0) {
            for (uint32_t k = 0; k < ce->nids; k++) emit(e, ce->ids[k]);
            pthread_mutex_unlock(&c->mu);
            return;
        }
    }
    pthread_mutex_unlock(&c->mu);
    size_t start = e->n;
    bpe_word_uncached(e, w, len);
    size_t nids = e->n - start;
    pthread_mutex_lock(&c->mu);
    if (c->n < CACHE_SLOTS / 2) {   /* full: stop caching, as `tokenizers` does */
        size_t i = slot;
        while (c->tab[i].key && !(c->tab[i].h == h && c->tab[i].klen == len && !memcmp(c->tab[i].key, w, len)))
            i = (i + 1) & (CACHE_SLOTS - 1);
        if (!c->tab[i].key) {
            centry_t *ce = &c->tab[i];
            size_t koff = (len + 3) & ~(size_t)3;
            ce->key = xmalloc(koff + nids * sizeof(int32_t) + 1);
            memcpy(ce->key, w, len);
            ce->ids = (int32_t *)(void *)(ce->key + koff);
            if (nids) memcpy(ce->ids, e->out + start, nids * sizeof(int32_t)); /* e->out may be NULL */
            ce->h = h, ce->klen = (uint32_t)len, ce->nids = (uint32_t)nids;
            c->n++;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

/* Splits s by the regex of `level` (matches and gaps both become words)
 * and hands each word to the next level, the last level to BPE. */
static void pretokenize(enc_t *e, const char *s, size_t len, int level) {
    const tok_t *t = e->t;
    if (len == 0 || e->rc) return;
    if (level == t->nre) {
        bpe_word(e, (const uint8_t *)s, len);
        return;
    }
    size_t off = 0, last = 0;
    while (off < len) {
        int rc = pcre2_match(t->re[level], (PCRE2_SPTR)s, len, off, PCRE2_NO_UTF_CHECK, e->md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)   /* huge words: the interpreter keeps its stack on the heap */
            rc = pcre2_match(t->re[level], (PCRE2_SPTR)s, len, off, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            e->rc = lr_err(LR_EINPUT, "pre-tokenizer regex failed: %s", (char *)msg);
            return;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {   /* empty match: no word; step over one character */
            off = me + 1;
            while (off < len && ((unsigned char)s[off] & 0xC0) == 0x80) off++;
            continue;
        }
        if (ms > last) pretokenize(e, s + last, ms - last, level + 1);
        pretokenize(e, s + ms, me - ms, level + 1);
        last = off = me;
    }
    if (last < len) pretokenize(e, s + last, len - last, level + 1);
}

/* The added-token rules use the Rust `regex` crate's Unicode \s and \w. */
static int is_ws(uint32_t cp) {   /* White_Space */
    return (cp >= 9 && cp <= 13) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

static int is_word_cp(uint32_t cp) {   /* Alphabetic, marks, Nd, Pc, Join_Control */
    if (cp == 0x200C || cp == 0x200D || (cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) ||
        (cp >= 0x1F150 && cp <= 0x1F169) || (cp >= 0x1F170 && cp <= 0x1F189))
        return 1;   /* Other_Alphabetic symbols and joiners */
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) || c == UTF8PROC_CATEGORY_MN ||
           c == UTF8PROC_CATEGORY_MC || c == UTF8PROC_CATEGORY_ME || c == UTF8PROC_CATEGORY_ND ||
           c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_PC;
}

static uint32_t cp_before(const char *s, size_t pos, size_t *start) {
    size_t i = pos;
    do i--; while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80);
    utf8proc_int32_t cp;
    utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(pos - i), &cp);
    *start = i;
    return (uint32_t)cp;
}

static uint32_t cp_at(const char *s, size_t pos, size_t len, size_t *clen) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + pos, (utf8proc_ssize_t)(len - pos), &cp);
    *clen = k > 0 ? (size_t)k : 1;
    return (uint32_t)cp;
}

static void normalize_and_split(enc_t *e, const char *s, size_t len);

/* Cuts the added tokens of group g out of s (leftmost-longest, then the
 * lstrip / rstrip / single_word rules of `tokenizers`' AddedVocabulary);
 * gaps go on to normalisation (g = 0) or pre-tokenisation (g = 1). */
static void split_added(enc_t *e, int g, const char *s, size_t len) {
    const tok_t *t = e->t;
    const agroup_t *gr = &t->grp[g];
    size_t start_off = 0, i = 0;
    while (gr->n && i < len) {
        unsigned char b = (unsigned char)s[i];
        const added_t *hit = NULL;
        for (uint32_t k = gr->first[b]; k < gr->first[b + 1]; k++) {
            const added_t *a = &t->added[gr->idx[k]];
            if (a->len <= len - i && memcmp(s + i, a->content, a->len) == 0) {
                hit = a;
                break;
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        size_t ms = i, me = i + hit->len, cl, st;
        i = me;   /* the matcher resumes after the raw match */
        if (hit->single_word) {
            int start_ok = ms == 0 || !is_word_cp(cp_before(s, ms, &st));
            int stop_ok = me == len || !is_word_cp(cp_at(s, me, len, &cl));
            if (!start_ok || !stop_ok) continue;
        }
        if (hit->lstrip) {
            size_t ns = ms;
            while (ns > 0 && is_ws(cp_before(s, ns, &st))) ns = st;
            ms = ns > start_off ? ns : start_off;
        }
        if (hit->rstrip) {
            while (me < len && is_ws(cp_at(s, me, len, &cl))) me += cl;
        }
        if (start_off < ms) {
            if (g == 0) normalize_and_split(e, s + start_off, ms - start_off);
            else pretokenize(e, s + start_off, ms - start_off, 0);
        }
        emit(e, hit->id);
        start_off = me;
        if (i < me) i = me;
    }
    if (start_off < len) {
        if (g == 0) normalize_and_split(e, s + start_off, len - start_off);
        else pretokenize(e, s + start_off, len - start_off, 0);
    }
}

static void normalize_and_split(enc_t *e, const char *s, size_t len) {
    int ascii = 1;
    for (size_t i = 0; i < len && ascii; i++) ascii = (unsigned char)s[i] < 0x80;
    if (!e->t->nfc || ascii) {   /* ASCII is already NFC */
        split_added(e, 1, s, len);
        return;
    }
    utf8proc_uint8_t *d = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &d,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (k < 0) {
        e->rc = lr_err(LR_EINPUT, "NFC failed: %s", utf8proc_errmsg(k));
        return;
    }
    split_added(e, 1, (const char *)d, (size_t)k);
    free(d);
}

int tok_encode(const tok_t *t, const char *text, size_t len, int32_t **ids, size_t *n) {
    *ids = NULL, *n = 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_valid_char((const unsigned char *)text + i, len - i);
        if (!k) return lr_err(LR_EINPUT, "text is not valid UTF-8 at byte %zu", i);
        i += k;
    }
    enc_t e = {.t = t};
    e.md = pcre2_match_data_create(4, NULL);
    split_added(&e, 0, text, len);
    pcre2_match_data_free(e.md);
    free(e.sym);
    free(e.heap);
    free(e.mapped);
    if (e.rc) {
        free(e.out);
        return e.rc;
    }
    *ids = e.out ? e.out : xmalloc(sizeof(int32_t));
    *n = e.n;
    return LR_OK;
}

/* ---- decoding and lookups ---- */

int tok_decode_ex(const tok_t *t, const int32_t *ids, size_t n, int flags, char **text, size_t *len) {
    size_t nb = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < t->nvocab) nb += t->dec_off[ids[i] + 1] - t->dec_off[ids[i]];
    uint8_t *raw = xmalloc(nb + 1);
    size_t r = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->nvocab || !t->str[id]) continue;   /* no such token: skipped */
        if ((flags & TOK_SKIP_SPECIAL) && t->special[id]) continue;
        size_t k = t->dec_off[id + 1] - t->dec_off[id];
        memcpy(raw + r, t->dec + t->dec_off[id], k);
        r += k;
    }
    /* Each invalid subsequence becomes U+FFFD (3 bytes) and is >= 1 byte. */
    char *out = xmalloc(3 * r + 1);
    size_t o = 0;
    for (size_t i = 0; i < r;) {
        size_t k = utf8_valid_char(raw + i, r - i);
        if (k) {
            memcpy(out + o, raw + i, k);
            o += k, i += k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3, i += utf8_invalid_len(raw + i, r - i);
        }
    }
    out[o] = 0;
    free(raw);
    *text = out;
    if (len) *len = o;
    return LR_OK;
}

int tok_decode(const tok_t *t, const int32_t *ids, size_t n, char **text, size_t *len) {
    return tok_decode_ex(t, ids, n, 0, text, len);
}

int32_t tok_id(const tok_t *t, const char *s) {
    for (size_t i = 0; i < t->nadded; i++)
        if (!strcmp(t->added[i].orig, s)) return t->added[i].id;
    return vocab_get(t, s, strlen(s));
}

const char *tok_token(const tok_t *t, int32_t id) {
    return id >= 0 && id < t->nvocab ? t->str[id] : NULL;
}

const uint8_t *tok_token_bytes(const tok_t *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->nvocab || !t->str[id]) {
        *len = 0;
        return NULL;
    }
    *len = t->dec_off[id + 1] - t->dec_off[id];
    return t->dec + t->dec_off[id];
}

int tok_is_special(const tok_t *t, int32_t id) {
    return id >= 0 && id < t->nvocab && t->special[id];
}

int64_t tok_vocab_size(const tok_t *t) { return t->nvocab; }

const char *tok_hash(const tok_t *t) { return t->hash; }

/* ---- compatibility ---- */

void tok_sig_of(const tok_t *t, tok_sig *s) {
    memset(s, 0, sizeof *s);
    s->regular = t->nregular;
    memcpy(s->base, t->base, sizeof s->base);
    s->nblock = t->nblock;
    s->block = xmalloc((t->nblock + 1) * sizeof *s->block);
    memcpy(s->block, t->block, t->nblock * sizeof *s->block);
    s->nmerges = (int64_t)t->nmerges;
    snprintf(s->merges, sizeof s->merges, "%016llx", (unsigned long long)t->merges_hash);
    s->nadded = t->nadded;
    s->added_id = xmalloc((t->nadded + 1) * sizeof *s->added_id);
    s->added = xmalloc((t->nadded + 1) * sizeof *s->added);
    for (size_t i = 0; i < t->nadded; i++) s->added_id[i] = t->added[i].id, s->added[i] = xstrdup(t->added[i].orig);
}

void tok_sig_free(tok_sig *s) {
    if (!s) return;
    for (size_t i = 0; i < s->nadded; i++) free(s->added[i]);
    free(s->added), free(s->added_id), free(s->block);
    memset(s, 0, sizeof *s);
}

void tok_sig_pack(msgpack_packer *pk, const tok_sig *s) {
    msgpack_pack_map(pk, 6);
    lrs_pack_cstr(pk, "regular"); msgpack_pack_int64(pk, s->regular);
    lrs_pack_cstr(pk, "base"); lrs_pack_cstr(pk, s->base);
    lrs_pack_cstr(pk, "blocks"); lrs_pack_i32s(pk, (const int32_t *)s->block, s->nblock);
    lrs_pack_cstr(pk, "nmerges"); msgpack_pack_int64(pk, s->nmerges);
    lrs_pack_cstr(pk, "merges"); lrs_pack_cstr(pk, s->merges);
    lrs_pack_cstr(pk, "added");
    msgpack_pack_array(pk, s->nadded);
    for (size_t i = 0; i < s->nadded; i++) {
        msgpack_pack_array(pk, 2);
        msgpack_pack_int32(pk, s->added_id[i]);
        lrs_pack_cstr(pk, s->added[i]);
    }
}

static int sig_str(const msgpack_object *o, const char *key, char *out) {
    const msgpack_object *v = lrs_get(o, key);
    if (!v || v->type != MSGPACK_OBJECT_STR || v->via.str.size != 16) return -1;
    memcpy(out, v->via.str.ptr, 16);
    out[16] = 0;
    return 0;
}

static int sig_int(const msgpack_object *o, const char *key, int64_t *out) {
    const msgpack_object *v = lrs_get(o, key);
    if (!v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 > (uint64_t)MAX_ID * 64) return -1;
    *out = (int64_t)v->via.u64;
    return 0;
}

int tok_sig_read(const msgpack_object *o, tok_sig *s) {
    memset(s, 0, sizeof *s);
    const char *bad = NULL;
    if (!o || o->type != MSGPACK_OBJECT_MAP) return lr_err(LR_EINPUT, "field \"tokenizer_compat\": expected a map");
    size_t cap = 0, n = 0;
    int32_t *blocks = NULL;
    const msgpack_object *bl = lrs_get(o, "blocks"), *ad = lrs_get(o, "added");
    if (sig_int(o, "regular", &s->regular)) bad = "regular";
    else if (sig_str(o, "base", s->base)) bad = "base";
    else if (sig_int(o, "nmerges", &s->nmerges)) bad = "nmerges";
    else if (sig_str(o, "merges", s->merges)) bad = "merges";
    else if (!bl || lrs_obj_i32s(bl, &blocks, &cap, &n) ||
             n != (size_t)((s->regular + TOK_SIG_BLOCK - 1) / TOK_SIG_BLOCK)) bad = "blocks";
    else if (!ad || ad->type != MSGPACK_OBJECT_ARRAY) bad = "added";
    if (!bad) {
        s->block = (uint32_t *)blocks, s->nblock = n, blocks = NULL;
        s->added_id = xmalloc((ad->via.array.size + 1) * sizeof *s->added_id);
        s->added = xcalloc(ad->via.array.size + 1, sizeof *s->added);
        for (uint32_t i = 0; i < ad->via.array.size && !bad; i++) {
            const msgpack_object *e = &ad->via.array.ptr[i];
            if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2 ||
                e->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || e->via.array.ptr[0].via.u64 > MAX_ID ||
                e->via.array.ptr[1].type != MSGPACK_OBJECT_STR) {
                bad = "added";
                break;
            }
            s->added_id[i] = (int32_t)e->via.array.ptr[0].via.u64;
            const msgpack_object_str *st = &e->via.array.ptr[1].via.str;
            s->added[i] = xmalloc(st->size + 1);
            memcpy(s->added[i], st->ptr, st->size);
            s->added[i][st->size] = 0;
            s->nadded = i + 1;
        }
    }
    free(blocks);
    if (bad) {
        tok_sig_free(s);
        return lr_err(LR_EINPUT, "field \"tokenizer_compat.%s\": missing or malformed", bad);
    }
    return LR_OK;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The added tokens of both sides by id: counts the ids whose content
 * differs or exists on one side only, keeping the first few. */
static void added_diff(const tok_sig *a, const tok_sig *b, tok_compat_res *r) {
    size_t n = a->nadded + b->nadded, k = 0;
    int32_t *ids = xmalloc((n + 1) * sizeof *ids);
    for (size_t i = 0; i < a->nadded; i++) ids[k++] = a->added_id[i];
    for (size_t i = 0; i < b->nadded; i++) ids[k++] = b->added_id[i];
    qsort(ids, k, sizeof *ids, cmp_i32);
    for (size_t i = 0; i < k; i++) {
        if (i && ids[i] == ids[i - 1]) continue;
        const char *ca = NULL, *cb = NULL;
        for (size_t j = 0; j < a->nadded; j++) if (a->added_id[j] == ids[i]) ca = a->added[j];
        for (size_t j = 0; j < b->nadded; j++) if (b->added_id[j] == ids[i]) cb = b->added[j];
        if (ca && cb && !strcmp(ca, cb)) continue;
        if (r->nfirst < (int)(sizeof r->first / sizeof r->first[0])) r->first[r->nfirst++] = ids[i];
        r->ndiffer++;
    }
    free(ids);
}

int tok_sig_compat(const tok_sig *a, const tok_sig *b, tok_compat_res *r) {
    memset(r, 0, sizeof *r);
    r->compatible = 1;
    size_t nb = a->nblock < b->nblock ? a->nblock : b->nblock, i = 0;
    while (i < nb && a->block[i] == b->block[i]) i++;
    int64_t top = a->regular < b->regular ? a->regular : b->regular;
    if (i < nb && a->regular != b->regular && (int64_t)(i + 1) * TOK_SIG_BLOCK >= top) {
        /* the smaller one's last block: it may differ only by the ids beyond */
        snprintf(r->what, sizeof r->what, "regular vocabularies differ in size: %lld vs %lld ids, first within ids %lld..%lld",
                 (long long)a->regular, (long long)b->regular, (long long)i * TOK_SIG_BLOCK, (long long)top);
        r->compatible = 0;
    } else if (i < nb) {
        int64_t hi = (int64_t)(i + 1) * TOK_SIG_BLOCK - 1;
        snprintf(r->what, sizeof r->what, "regular vocabularies differ, first within ids %lld..%lld",
                 (long long)i * TOK_SIG_BLOCK, (long long)(hi < top ? hi : top - 1));
        r->compatible = 0;
    } else if (a->regular != b->regular) {
        snprintf(r->what, sizeof r->what, "regular vocabularies differ in size: %lld vs %lld ids (first differing id %lld)",
                 (long long)a->regular, (long long)b->regular,
                 (long long)(a->regular < b->regular ? a->regular : b->regular));
        r->compatible = 0;
    } else if (a->nmerges != b->nmerges || strcmp(a->merges, b->merges)) {
        snprintf(r->what, sizeof r->what, "merges differ (%lld vs %lld merges)", (long long)a->nmerges,
                 (long long)b->nmerges);
        r->compatible = 0;
    }
    added_diff(a, b, r);
    return r->compatible;
}

/* Same comparison with both vocabularies at hand: the first id that
 * disagrees, with both tokens. */
int tok_compat(const tok_t *a, const tok_t *b, tok_compat_res *r) {
    tok_sig sa, sb;
    tok_sig_of(a, &sa), tok_sig_of(b, &sb);
    tok_sig_compat(&sa, &sb, r);
    tok_sig_free(&sa), tok_sig_free(&sb);
    int64_t top = a->nregular < b->nregular ? a->nregular : b->nregular;
    for (int64_t id = 0; id < top; id++) {
        const char *x = a->rstr[id], *y = b->rstr[id];
        if (x == y || (x && y && !strcmp(x, y))) continue;
        snprintf(r->what, sizeof r->what, "regular vocabularies differ, first at id %lld: \"%.60s\" vs \"%.60s\"",
                 (long long)id, x ? x : "(none)", y ? y : "(none)");
        r->compatible = 0;
        break;
    }
    return r->compatible;
}

void tok_compat_ids(const tok_compat_res *r, char *buf, size_t n) {
    size_t o = strlen(buf);
    for (int i = 0; i < r->nfirst && o + 16 < n; i++) o += (size_t)snprintf(buf + o, n - o, i ? ", %d" : "%d", r->first[i]);
    if (r->ndiffer > r->nfirst && o + 8 < n) snprintf(buf + o, n - o, ", ...");
}
