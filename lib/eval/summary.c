/* summary: accuracy tables (summary.h). */
#include "eval/summary.h"
#include "base/util.h"

#include <stdlib.h>
#include <string.h>

void sum_group_add(sum_groups *G, const char *key, int correct) {
    size_t i = 0; /* few groups: a linear search */
    while (i < G->n && strcmp(G->g[i].key, key)) i++;
    if (i == G->n) {
        G->g = xrealloc(G->g, (G->n + 1) * sizeof *G->g);
        G->g[G->n++] = (sum_group){xstrdup(key), 0, 0};
    }
    G->g[i].total++;
    G->g[i].correct += (size_t)(correct != 0);
}

static int by_key(const void *a, const void *b) {
    const sum_group *x = a, *y = b;
    size_t lx = strlen(x->key), ly = strlen(y->key); /* levels: "2" before "10" */
    int numeric = x->key[0] >= '0' && x->key[0] <= '9' && y->key[0] >= '0' && y->key[0] <= '9';
    if (numeric && lx != ly) return lx < ly ? -1 : 1;
    return strcmp(x->key, y->key);
}

void sum_groups_sort(sum_groups *G) {
    if (G->n) qsort(G->g, G->n, sizeof *G->g, by_key);
}

double sum_acc(const sum_bench *s) { return s->total ? 100.0 * (double)s->correct / (double)s->total : 0; }

static double gacc(const sum_group *g) { return g->total ? 100.0 * (double)g->correct / (double)g->total : 0; }

static json_t *groups_json(const sum_groups *G) {
    json_t *o = json_object();
    for (size_t i = 0; i < G->n; i++) {
        json_t *g = json_object();
        json_object_set_new(g, "total", json_integer((json_int_t)G->g[i].total));
        json_object_set_new(g, "correct", json_integer((json_int_t)G->g[i].correct));
        json_object_set_new(g, "acc", json_real(gacc(&G->g[i])));
        json_object_set_new(o, G->g[i].key, g);
    }
    return o;
}

static void groups_md(FILE *f, const char *bench, const char *what, const sum_groups *G) {
    if (!G->n) return;
    fprintf(f, "\n%s by %s\n\n| %s | problems | correct | accuracy (%%) |\n|---|---|---|---|\n", bench, what, what);
    for (size_t i = 0; i < G->n; i++)
        fprintf(f, "| %s | %zu | %zu | %.1f |\n", G->g[i].key, G->g[i].total, G->g[i].correct, gacc(&G->g[i]));
}

json_t *sum_json(const sum_bench *S, int nb, const char *label, size_t unmatched, size_t repaired) {
    json_t *root = json_object(), *bs = json_object();
    json_object_set_new(root, "label", json_string(label));
    double sum = 0;
    for (int i = 0; i < nb; i++) {
        json_t *b = json_object();
        json_object_set_new(b, "file", json_string(S[i].file));
        json_object_set_new(b, "total", json_integer((json_int_t)S[i].total));
        json_object_set_new(b, "scored", json_integer((json_int_t)S[i].scored));
        json_object_set_new(b, "correct", json_integer((json_int_t)S[i].correct));
        json_object_set_new(b, "missing", json_integer((json_int_t)S[i].missing));
        json_object_set_new(b, "skipped_rows", json_integer((json_int_t)S[i].skipped));
        json_object_set_new(b, "acc", json_real(sum_acc(&S[i])));
        json_object_set_new(b, "mean_tokens", S[i].tok_n ? json_real(S[i].tok_sum / (double)S[i].tok_n) : json_null());
        if (S[i].by_subject.n) json_object_set_new(b, "by_subject", groups_json(&S[i].by_subject));
        if (S[i].by_level.n) json_object_set_new(b, "by_level", groups_json(&S[i].by_level));
        json_object_set_new(bs, S[i].bench, b);
        sum += sum_acc(&S[i]);
    }
    json_object_set_new(root, "benchmarks", bs);
    json_object_set_new(root, "avg", nb ? json_real(sum / nb) : json_null());
    json_object_set_new(root, "unmatched_predictions", json_integer((json_int_t)unmatched));
    json_object_set_new(root, "invalid_utf8_lines", json_integer((json_int_t)repaired));
    return root;
}

void sum_md(FILE *f, const sum_bench *S, int nb, const char *label) {
    fprintf(f, "%s\n\n| benchmark | problems | scored | correct | accuracy (%%) | missing | skipped rows | mean tokens |\n"
               "|---|---|---|---|---|---|---|---|\n", label);
    double sum = 0;
    for (int i = 0; i < nb; i++) {
        char tok[32] = "-";
        if (S[i].tok_n) snprintf(tok, sizeof tok, "%.1f", S[i].tok_sum / (double)S[i].tok_n);
        fprintf(f, "| %s | %zu | %zu | %zu | %.1f | %zu | %zu | %s |\n", S[i].bench, S[i].total, S[i].scored, S[i].correct,
                sum_acc(&S[i]), S[i].missing, S[i].skipped, tok);
        sum += sum_acc(&S[i]);
    }
    if (nb) fprintf(f, "| avg | | | | %.1f | | | |\n", sum / nb);
    for (int i = 0; i < nb; i++) {
        groups_md(f, S[i].bench, "subject", &S[i].by_subject);
        groups_md(f, S[i].bench, "level", &S[i].by_level);
    }
}

static void groups_free(sum_groups *G) {
    for (size_t i = 0; i < G->n; i++) free(G->g[i].key);
    free(G->g);
    G->g = NULL;
    G->n = 0;
}

void sum_bench_free(sum_bench *b) {
    free(b->bench);
    free(b->file);
    b->bench = b->file = NULL;
    groups_free(&b->by_subject);
    groups_free(&b->by_level);
}
