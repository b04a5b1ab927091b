/* test_tokcompat: tokenizer compatibility (tokenizer.h) on variants of
 * tests/golden/tiny_tokenizer.json written here: added tokens renamed or
 * added -> compatible, with the differing ids counted; a regular token
 * changed, the vocabulary grown, the merges reordered -> not, the first id
 * (tok_compat) or block (tok_sig_compat) named; the signature survives
 * msgpack packing, and a malformed one is refused naming the field. */
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model/tokenizer.h"
#include "base/util.h"

static const char *tmp;

/* Writes json as tmp/name.json and loads it. */
static tok_t *variant(json_t *j, const char *name) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s.json", tmp, name);
    if (json_dump_file(j, p, 0)) { fprintf(stderr, "cannot write %s\n", p); exit(1); }
    tok_t *t = NULL;
    int rc = tok_load(&t, p);
    CHECKF(rc == 0, "%s: %s", name, lr_errmsg());
    return t;
}

/* Round trip of a signature through msgpack. */
static int repack(const tok_sig *s, tok_sig *out) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    tok_sig_pack(&pk, s);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = msgpack_unpack_next(&u, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS ? tok_sig_read(&u.data, out) : -1;
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

int main(void) {
    const char *root = getenv("LR_ROOT") ? getenv("LR_ROOT") : ".";
    tmp = getenv("LR_TMP") ? getenv("LR_TMP") : "/tmp";
    char path[4200];
    snprintf(path, sizeof path, "%s/tests/golden/tiny_tokenizer.json", root);
    json_error_t je;
    json_t *base = json_load_file(path, 0, &je);
    CHECKF(base != NULL, "%s: %s", path, je.text);
    if (!base) CHECK_DONE();
    tok_t *a = variant(base, "a");

    /* Added tokens: 601 renamed, 650 new. Compatible, 2 ids differ. */
    json_t *j = json_deep_copy(base), *added = json_object_get(j, "added_tokens"), *e;
    size_t i;
    json_array_foreach(added, i, e) if (json_integer_value(json_object_get(e, "id")) == 601)
        json_object_set_new(e, "content", json_string("<｜User｜>"));
    json_t *extra = json_deep_copy(json_array_get(added, 0));
    json_object_set_new(extra, "id", json_integer(650));
    json_object_set_new(extra, "content", json_string("<think>"));
    json_array_append_new(added, extra);
    tok_t *b = variant(j, "b");
    json_decref(j);
    tok_compat_res r;
    CHECK(tok_compat(a, b, &r) == 1 && r.ndiffer == 2 && r.nfirst == 2 && r.first[0] == 601 && r.first[1] == 650);
    char ids[64] = "";
    tok_compat_ids(&r, ids, sizeof ids);
    CHECKF(!strcmp(ids, "601, 650"), "%s", ids);
    tok_sig sa, sb, ra, rb;
    tok_sig_of(a, &sa), tok_sig_of(b, &sb);
    CHECK(!strcmp(sa.base, sb.base) && sa.regular == 600 && sa.nblock == 3);
    CHECK(repack(&sa, &ra) == 0 && repack(&sb, &rb) == 0);
    CHECK(ra.regular == sa.regular && !strcmp(ra.base, sa.base) && ra.nadded == sa.nadded && ra.nmerges == 341);
    CHECK(tok_sig_compat(&ra, &rb, &r) == 1 && r.ndiffer == 2 && r.first[0] == 601);
    CHECK(tok_sig_compat(&ra, &ra, &r) == 1 && r.ndiffer == 0);
    tok_sig_free(&ra), tok_sig_free(&rb), tok_sig_free(&sb);

    /* A regular token changed (id 300's string): named by id and by block. */
    j = json_deep_copy(base);
    json_t *vocab = json_object_get(json_object_get(j, "model"), "vocab");
    const char *k;
    json_t *v;
    char *victim = NULL;
    json_object_foreach(vocab, k, v) if (json_integer_value(v) == 300) victim = xstrdup(k);
    CHECK(victim != NULL);
    /* swap ids 3 ("!") and 300 so that the merges stay valid */
    json_object_set_new(vocab, victim, json_integer(3));
    json_object_set_new(vocab, "!", json_integer(300));
    tok_t *c = variant(j, "c");
    json_decref(j);
    CHECK(tok_compat(a, c, &r) == 0);
    CHECKF(strstr(r.what, "first at id 3:"), "%s", r.what);
    tok_sig_of(c, &sb);
    CHECK(tok_sig_compat(&sa, &sb, &r) == 0);
    CHECKF(strstr(r.what, "ids 0..255"), "%s", r.what);
    tok_sig_free(&sb);
    free(victim);

    /* One more regular token at the end: the sizes differ. */
    j = json_deep_copy(base);
    json_object_set_new(json_object_get(json_object_get(j, "model"), "vocab"), "zzqq", json_integer(600));
    json_array_foreach(json_object_get(j, "added_tokens"), i, e)
        if (json_integer_value(json_object_get(e, "id")) >= 600)
            json_object_set_new(e, "id", json_integer(json_integer_value(json_object_get(e, "id")) + 1));
    tok_t *d = variant(j, "d");
    json_decref(j);
    tok_sig_of(d, &sb);
    CHECK(tok_sig_compat(&sa, &sb, &r) == 0);
    CHECKF(strstr(r.what, "600 vs 601"), "%s", r.what);
    tok_sig_free(&sb);

    /* The same merges in another order: the merges differ. */
    j = json_deep_copy(base);
    json_t *m = json_object_get(json_object_get(j, "model"), "merges"), *m0 = json_incref(json_array_get(m, 0));
    json_array_remove(m, 0);
    json_array_append_new(m, m0);
    tok_t *f = variant(j, "f");
    json_decref(j);
    CHECK(tok_compat(a, f, &r) == 0);
    CHECKF(strstr(r.what, "merges differ"), "%s", r.what);

    /* A malformed signature is refused naming the field. */
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str(&pk, 7), msgpack_pack_str_body(&pk, "regular", 7);
    msgpack_pack_int(&pk, 600);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    CHECK(msgpack_unpack_next(&u, sbuf.data, sbuf.size, NULL) == MSGPACK_UNPACK_SUCCESS);
    tok_sig bad;
    CHECK(tok_sig_read(&u.data, &bad) == LR_EINPUT);
    CHECKF(strstr(lr_errmsg(), "tokenizer_compat.base"), "%s", lr_errmsg());
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sbuf);

    tok_sig_free(&sa);
    tok_free(a), tok_free(b), tok_free(c), tok_free(d), tok_free(f);
    json_decref(base);
    CHECK_DONE();
}
