/* eng_feed.h: what the device KV tests share: the tiny bf16 model they
 * run (write_kv_model) and feed, n rows of one slot through an engine, the
 * last one wanted: how they fill a slot's pages without a generation. */
#ifndef LR_ENG_FEED_H
#define LR_ENG_FEED_H
#include "infer/engine.h"
#include "model/mkmodel.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* lr-mkmodel's tiny Qwen2 in bf16, 2 layers, hidden 64, GQA 4:2, seed 3,
 * written to dir; returns mk_write_model's code (-1: the arguments). */
static int write_kv_model(const char *dir) {
    mk_opts o;
    const char *args[] = {"--layers", "2", "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--dtype", "bf16"};
    if (mk_parse_args(&o, 10, (char **)args, NULL)) return -1;
    o.seed = 3;
    return mk_write_model(dir, &o);
}

/* The tests' folder: tmpdir (a mkdtemp template) made and that model
 * written into tmpdir/m, whose path goes to dir (n bytes); 0 on success. */
__attribute__((unused)) static int make_kv_model(char *tmpdir, char *dir, size_t n) {
    if (!mkdtemp(tmpdir)) return -1;
    snprintf(dir, n, "%s/m", tmpdir);
    return write_kv_model(dir);
}

/* Removes tmpdir and everything in it; system()'s status. */
__attribute__((unused)) static int remove_tmp(const char *tmpdir) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

/* n rows of slot b (tokens (i * 7 + b) % V), the last one wanted; returns eng_run's code. */
__attribute__((unused)) static int feed(engine *e, int b, int n, int V) {
    int *tok = malloc((size_t)n * sizeof *tok), *seq = malloc((size_t)n * sizeof *seq);
    unsigned char *want = calloc((size_t)n, 1);
    for (int i = 0; i < n; i++) tok[i] = (i * 7 + b) % V, seq[i] = b;
    want[n - 1] = 1;
    int32_t am;
    unsigned char bad;
    eng_req q = {.co = {.kmax = 0}};
    eng_res r = {.argmax = &am, .bad = &bad};
    int rc = eng_run(e, n, tok, seq, want, &q, &r);
    free(tok), free(seq), free(want);
    return rc;
}
#endif
