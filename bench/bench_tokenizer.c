/* bench_tokenizer: single-thread encode speed of lib/model/tokenizer.c on
 * the gsm8k (train+test question/answer) and math500 (problem/solution/
 * answer) texts, best of 3 passes, with the word cache on and off (the
 * baseline of this program; bench/tokenizer.sh adds Hugging Face's).
 * usage: bench_tokenizer [TOKENIZER] [REPO_DIR]   (defaults: build/tokenizers/qwen, .)
 * Last line: "mbps <cache on> <cache off> <first pass> bytes <n> texts <n> ids <n>". */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer.h"
#include "base/util.h"

int main(int argc, char **argv) {
    lr_progname = "bench_tokenizer";
    const char *root = argc > 2 ? argv[2] : ".";
    char tp[4096];
    snprintf(tp, sizeof tp, "%s/build/tokenizers/qwen", root);
    const char *tpath = argc > 1 ? argv[1] : tp;
    static const struct { const char *file; const char *fields[3]; } spec[] = {
        {"data/gsm8k/train.jsonl", {"question", "answer", NULL}},
        {"data/gsm8k/test.jsonl", {"question", "answer", NULL}},
        {"data/math500/test.jsonl", {"problem", "solution", "answer"}},
    };
    char **texts = NULL;
    size_t *lens = NULL, n = 0, cap = 0, bytes = 0;
    for (int f = 0; f < 3; f++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", root, spec[f].file);
        FILE *fp = fopen(p, "r");
        if (!fp) lr_die(LR_EIO, "%s: cannot open", p);
        char *line = NULL;
        size_t lcap = 0;
        while (getline(&line, &lcap, fp) > 0) {
            json_t *rec = json_loads(line, 0, NULL);
            if (!rec) lr_die(LR_EINPUT, "%s: bad JSON line", p);
            for (int k = 0; k < 3 && spec[f].fields[k]; k++) {
                json_t *v = json_object_get(rec, spec[f].fields[k]);
                char num[64];
                const char *s = json_string_value(v);
                size_t len = json_string_length(v);
                if (!s) snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v)), s = num, len = strlen(num);
                if (n == cap) {
                    cap = cap ? 2 * cap : 1024;
                    texts = xrealloc(texts, cap * sizeof *texts);
                    lens = xrealloc(lens, cap * sizeof *lens);
                }
                texts[n] = xmalloc(len + 1);
                memcpy(texts[n], s, len + 1);
                lens[n++] = len;
                bytes += len;
            }
            json_decref(rec);
        }
        free(line);
        fclose(fp);
    }
    tok_t *t;
    int rc = tok_load(&t, tpath);
    if (rc) return lr_fail(rc);
    double mbps[2] = {0, 0}, cold = 0;
    size_t nids = 0;
    for (int cache = 1; cache >= 0; cache--) {
        tok_set_cache(t, cache);
        for (int rep = 0; rep < 3; rep++) {
            double t0 = lr_now();
            nids = 0;
            for (size_t i = 0; i < n; i++) {
                int32_t *ids;
                size_t k;
                if ((rc = tok_encode(t, texts[i], lens[i], &ids, &k))) return lr_fail(rc);
                nids += k;
                free(ids);
            }
            double r = bytes / 1e6 / (lr_now() - t0);
            if (cache && rep == 0) cold = r;   /* first pass: the word cache starts empty */
            if (r > mbps[!cache]) mbps[!cache] = r;
        }
    }
    printf("lr tokenizer, 1 thread: first pass %.2f MB/s; best of 3: %.2f MB/s with word cache, %.2f MB/s without "
           "(cache speedup %.2fx)\n", cold, mbps[0], mbps[1], mbps[0] / mbps[1]);
    printf("mbps %.3f %.3f %.3f bytes %zu texts %zu ids %zu\n", mbps[0], mbps[1], cold, bytes, n, nids);
    for (size_t i = 0; i < n; i++) free(texts[i]);
    free(texts);
    free(lens);
    tok_free(t);
    return 0;
}
