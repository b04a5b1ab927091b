/* compare: paired statistics of scored runs against a base (compare.h). */
#include "eval/compare.h"

#include "io/jsonl.h"
#include "base/rng.h"
#include "base/util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

double cmp_mcnemar_p(size_t b, size_t c) {
    size_t n = b + c, m = b < c ? b : c;
    if (!n) return 1.0;
    /* P[X <= m] summed from the smallest term up, each term from lgamma:
     * relative error ~1e-13 for the sizes of a benchmark */
    double sum = 0, ln2n = (double)n * log(2.0), nn = (double)n;
    for (size_t k = 0; k <= m; k++) {
        double kk = (double)k;
        sum += exp(lgamma(nn + 1) - lgamma(kk + 1) - lgamma(nn - kk + 1) - ln2n);
    }
    double p = 2 * sum;
    return p > 1 ? 1 : p;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(const double *x, size_t n, double q) {
    double h = (double)(n - 1) * q;
    size_t lo = (size_t)floor(h);
    if (lo + 1 >= n) return x[n - 1];
    return x[lo] + (h - (double)lo) * (x[lo + 1] - x[lo]);
}

int cmp_bootstrap(const double *d, size_t n, size_t resamples, uint64_t seed, double level, double *lo, double *hi) {
    *lo = *hi = 0;
    if (!n || !resamples) return 0;
    double *means = xmalloc(sizeof(double) * resamples);
    uint64_t s = rng_stream(seed, 0);
    for (size_t r = 0; r < resamples; r++) {
        double sum = 0;
        for (size_t i = 0; i < n; i++) {
            size_t k = (size_t)(rng_unit(&s) * (double)n);
            sum += d[k < n ? k : n - 1];
        }
        means[r] = sum / (double)n;
    }
    qsort(means, resamples, sizeof(double), cmp_double);
    *lo = quantile(means, resamples, (1 - level) / 2);
    *hi = quantile(means, resamples, (1 + level) / 2);
    free(means);
    return 0;
}

/* ---- loading ---- */

typedef struct {
    char *name;
    json_t *index; /* base's problem id -> position */
    size_t n;
} bench_ix;

typedef struct {
    char *path;          /* the results.jsonl read */
    unsigned char **ok;  /* [bench][problem]: 1 right, 0 wrong */
} run_t;

typedef struct {
    char *label;
    int group; /* given as LABEL=PATH,... */
    run_t *runs;
    int nruns;
} arg_t;

struct cmp_set {
    bench_ix *bench;
    int nbench;
    arg_t *args;
    int nargs;
};

/* summary.json (or a folder holding it) -> its label and the results.jsonl
 * path beside it. */
static int open_summary(const char *path, char **label, char **results) {
    struct stat st;
    size_t n = strlen(path) + 32;
    char *sum = xmalloc(n);
    if (!stat(path, &st) && S_ISDIR(st.st_mode)) snprintf(sum, n, "%s/summary.json", path);
    else snprintf(sum, n, "%s", path);
    json_error_t e;
    json_t *o = json_load_file(sum, 0, &e);
    int rc = 0;
    if (!o) {
        if (stat(sum, &st)) rc = lr_err(LR_EIO, "%s: %s", sum, strerror(errno));
        else rc = lr_err(LR_EINPUT, "%s: line %d: not JSON: %s", sum, e.line, e.text);
    } else if (!json_is_object(json_object_get(o, "benchmarks")))
        rc = lr_err(LR_EINPUT, "%s: field \"benchmarks\": missing (not an lr-eval summary.json)", sum);
    if (!rc) {
        json_t *l = json_object_get(o, "label");
        *label = xstrdup(json_is_string(l) ? json_string_value(l) : path);
        const char *slash = strrchr(sum, '/');
        size_t dl = slash ? (size_t)(slash - sum + 1) : 0;
        *results = xmalloc(dl + 16);
        memcpy(*results, sum, dl);
        strcpy(*results + dl, "results.jsonl");
    }
    json_decref(o);
    free(sum);
    return rc;
}

static int find_bench(cmp_set *s, const char *name) {
    for (int b = 0; b < s->nbench; b++)
        if (!strcmp(s->bench[b].name, name)) return b;
    return -1;
}

/* Reads one results.jsonl: the base's defines the problems (base = 1), every
 * other must hold exactly those. */
static int load_results(cmp_set *s, run_t *r, int base) {
    FILE *f = fopen(r->path, "rb");
    if (!f) return lr_err(LR_EIO, "%s: %s (lr-eval score --out-dir writes it beside summary.json)", r->path, strerror(errno));
    jsonl in;
    jsonl_from(&in, f, r->path);
    int rc = 0, got;
    size_t *filled = NULL;
    int nfilled = 0;
    if (!base) {
        r->ok = xcalloc((size_t)s->nbench, sizeof *r->ok);
        filled = xcalloc((size_t)s->nbench, sizeof *filled);
        nfilled = s->nbench;
        for (int b = 0; b < s->nbench; b++) r->ok[b] = xcalloc(s->bench[b].n ? s->bench[b].n : 1, 1);
    }
    /* the base's verdicts grow with its lines, then move into r->ok */
    unsigned char **grow = NULL;
    size_t *gcap = NULL;
    json_t *o;
    while ((got = jsonl_next(&in, 0, &o)) == 0) { /* blank lines are skipped */
        size_t lineno = in.lineno;
        json_t *id = json_object_get(o, "id"), *bn = json_object_get(o, "bench"), *c = json_object_get(o, "correct");
        if (!json_is_string(id)) rc = lr_err(LR_EINPUT, "%s: line %zu: field \"id\": missing or not a string", r->path, lineno);
        else if (!json_is_string(bn)) rc = lr_err(LR_EINPUT, "%s: line %zu: field \"bench\": missing or not a string", r->path, lineno);
        else if (!json_is_boolean(c)) rc = lr_err(LR_EINPUT, "%s: line %zu: field \"correct\": missing or not a boolean", r->path, lineno);
        if (rc) {
            json_decref(o);
            break;
        }
        int b = find_bench(s, json_string_value(bn));
        if (base && b < 0) {
            s->bench = xrealloc(s->bench, sizeof *s->bench * (size_t)(s->nbench + 1));
            grow = xrealloc(grow, sizeof *grow * (size_t)(s->nbench + 1));
            gcap = xrealloc(gcap, sizeof *gcap * (size_t)(s->nbench + 1));
            b = s->nbench++;
            s->bench[b] = (bench_ix){.name = xstrdup(json_string_value(bn)), .index = json_object()};
            grow[b] = NULL;
            gcap[b] = 0;
        }
        if (b < 0) {
            rc = lr_err(LR_EINPUT, "%s: line %zu: field \"bench\": \"%s\" is not in the base's results", r->path, lineno,
                        json_string_value(bn));
        } else if (base) {
            bench_ix *B = &s->bench[b];
            if (json_object_get(B->index, json_string_value(id)))
                rc = lr_err(LR_EINPUT, "%s: line %zu: field \"id\": duplicate id \"%s\"", r->path, lineno, json_string_value(id));
            else {
                json_object_set_new(B->index, json_string_value(id), json_integer((json_int_t)B->n));
                if (B->n == gcap[b]) grow[b] = xrealloc(grow[b], gcap[b] = gcap[b] * 2 + 64);
                grow[b][B->n++] = (unsigned char)json_is_true(c);
            }
        } else {
            json_t *k = json_object_get(s->bench[b].index, json_string_value(id));
            if (!k)
                rc = lr_err(LR_EINPUT, "%s: line %zu: field \"id\": problem \"%s\" is not in the base's results", r->path, lineno,
                            json_string_value(id));
            else {
                size_t at = (size_t)json_integer_value(k);
                /* 2 marks "seen": a second line for the same id is refused */
                if (r->ok[b][at] & 2)
                    rc = lr_err(LR_EINPUT, "%s: line %zu: field \"id\": duplicate id \"%s\"", r->path, lineno, json_string_value(id));
                r->ok[b][at] = (unsigned char)(2 | json_is_true(c));
                filled[b]++;
            }
        }
        json_decref(o);
        if (rc) break;
    }
    if (!rc && got > 0) rc = got; /* not JSON, or a read error: jsonl named the file and line */
    jsonl_close(&in);
    fclose(f);
    if (base) {
        r->ok = xcalloc((size_t)(s->nbench ? s->nbench : 1), sizeof *r->ok);
        for (int b = 0; b < s->nbench; b++) r->ok[b] = grow[b] ? grow[b] : xcalloc(1, 1);
        free(grow);
        free(gcap);
        if (!rc && !s->nbench) rc = lr_err(LR_EINPUT, "%s: no results", r->path);
    } else {
        for (int b = 0; b < nfilled && !rc; b++)
            if (filled[b] != s->bench[b].n)
                rc = lr_err(LR_EINPUT, "%s: %s: %zu of the base's %zu problems have no result (score the same problems)",
                            r->path, s->bench[b].name, s->bench[b].n - filled[b], s->bench[b].n);
        for (int b = 0; b < nfilled; b++)
            for (size_t i = 0; i < s->bench[b].n; i++) r->ok[b][i] &= 1;
        free(filled);
    }
    return rc;
}

int cmp_load(const char *const *args, int nargs, cmp_set **out) {
    *out = NULL;
    if (nargs < 1) return lr_err(LR_EUSAGE, "compare: needs at least one summary (see --help)");
    cmp_set *s = xcalloc(1, sizeof *s);
    s->args = xcalloc((size_t)nargs, sizeof *s->args);
    int rc = 0;
    for (int a = 0; a < nargs && !rc; a++) {
        const char *arg = args[a], *eq = strchr(arg, '=');
        struct stat st;
        arg_t *A = &s->args[a];
        s->nargs = a + 1;
        char *list;
        if (eq && stat(arg, &st)) { /* LABEL=PATH,PATH,... */
            A->group = 1;
            A->label = xstrdup(arg);
            A->label[eq - arg] = 0;
            list = xstrdup(eq + 1);
        } else list = xstrdup(arg);
        for (char *save = NULL, *p = strtok_r(list, ",", &save); p && !rc; p = strtok_r(NULL, ",", &save)) {
            A->runs = xrealloc(A->runs, sizeof *A->runs * (size_t)(A->nruns + 1));
            run_t *r = &A->runs[A->nruns++];
            memset(r, 0, sizeof *r);
            char *label = NULL;
            rc = open_summary(p, &label, &r->path);
            if (!rc && !A->label) A->label = label;
            else free(label);
            if (!rc && a == 0 && A->nruns > 1)
                rc = lr_err(LR_EUSAGE, "compare: the base (first argument) must be one run, not a group");
            if (!rc) rc = load_results(s, r, a == 0);
        }
        if (!rc && !A->nruns) rc = lr_err(LR_EUSAGE, "compare: \"%s\": no summary named", arg);
        free(list);
    }
    if (rc) {
        cmp_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void cmp_free(cmp_set *s) {
    if (!s) return;
    for (int a = 0; a < s->nargs; a++) {
        for (int r = 0; r < s->args[a].nruns; r++) {
            run_t *R = &s->args[a].runs[r];
            if (R->ok)
                for (int b = 0; b < s->nbench; b++) free(R->ok[b]);
            free(R->ok);
            free(R->path);
        }
        free(s->args[a].runs);
        free(s->args[a].label);
    }
    free(s->args);
    for (int b = 0; b < s->nbench; b++) {
        free(s->bench[b].name);
        json_decref(s->bench[b].index);
    }
    free(s->bench);
    free(s);
}

/* ---- the table ---- */

typedef struct {
    double acc, sd, delta, lo, hi, p, pmin, pmax, b, c;
} row_stats;

static void row_of(const cmp_set *s, int bi, const arg_t *A, const cmp_opts *o, double *d, double *accs, row_stats *st) {
    size_t n = s->bench[bi].n;
    const unsigned char *base = s->args[0].runs[0].ok[bi];
    double *ps = xmalloc(sizeof(double) * (size_t)A->nruns);
    memset(st, 0, sizeof *st);
    for (size_t i = 0; i < n; i++) d[i] = -(double)base[i];
    for (int r = 0; r < A->nruns; r++) {
        const unsigned char *ok = A->runs[r].ok[bi];
        size_t right = 0, b = 0, c = 0;
        for (size_t i = 0; i < n; i++) {
            right += ok[i];
            b += base[i] && !ok[i];
            c += !base[i] && ok[i];
            d[i] += (double)ok[i] / A->nruns;
        }
        accs[r] = n ? 100.0 * (double)right / (double)n : 0;
        ps[r] = cmp_mcnemar_p(b, c);
        st->b += (double)b / A->nruns;
        st->c += (double)c / A->nruns;
        st->acc += accs[r] / A->nruns;
    }
    for (int r = 0; r < A->nruns; r++) st->sd += (accs[r] - st->acc) * (accs[r] - st->acc);
    st->sd = A->nruns > 1 ? sqrt(st->sd / (A->nruns - 1)) : 0;
    double base_acc = 0;
    for (size_t i = 0; i < n; i++) base_acc += base[i];
    st->delta = st->acc - (n ? 100.0 * base_acc / (double)n : 0);
    cmp_bootstrap(d, n, o->resamples, o->seed, o->level, &st->lo, &st->hi);
    st->lo *= 100;
    st->hi *= 100;
    qsort(ps, (size_t)A->nruns, sizeof(double), cmp_double);
    st->pmin = ps[0];
    st->pmax = ps[A->nruns - 1];
    st->p = A->nruns % 2 ? ps[A->nruns / 2] : (ps[A->nruns / 2 - 1] + ps[A->nruns / 2]) / 2;
    free(ps);
}

/* p-values as the tables print them: 3 significant digits, small ones in
 * exponent form */
static void fmt_p(char *buf, size_t n, double p) {
    if (p < 1e-3) snprintf(buf, n, "%.2g", p);
    else snprintf(buf, n, "%.3f", p);
}

static void fmt_count(char *buf, size_t n, double v) {
    if (v == floor(v)) snprintf(buf, n, "%.0f", v);
    else snprintf(buf, n, "%.1f", v);
}

int cmp_write(cmp_set *s, const cmp_opts *o, FILE *md, FILE *json) {
    /* benchmarks in the paper's order, then the others in the base's order */
    static const char *const ORDER[] = {"gsm8k", "math500", "math", "svamp", "asdiv", "minerva_math", "olympiadbench", "mmlu_stem"};
    const int NORDER = (int)(sizeof ORDER / sizeof ORDER[0]);
    int *order = xmalloc(sizeof(int) * (size_t)s->nbench), no = 0;
    for (int k = 0; k < NORDER; k++) {
        int b = find_bench(s, ORDER[k]);
        if (b >= 0) order[no++] = b;
    }
    for (int b = 0; b < s->nbench; b++) {
        int seen = 0;
        for (int k = 0; k < NORDER && !seen; k++) seen = !strcmp(s->bench[b].name, ORDER[k]);
        if (!seen) order[no++] = b;
    }
    int maxruns = 1;
    for (int a = 0; a < s->nargs; a++) maxruns = s->args[a].nruns > maxruns ? s->args[a].nruns : maxruns;
    double *accs = xmalloc(sizeof(double) * (size_t)maxruns);
    int rc = 0;
    for (int k = 0; k < no; k++) {
        int bi = order[k];
        size_t n = s->bench[bi].n;
        double *d = xmalloc(sizeof(double) * (n ? n : 1));
        fprintf(md, "%s%s: %zu problems; delta vs %s in points, %g%% interval from a paired bootstrap over problems "
                    "(%zu resamples, seed %llu); McNemar exact p (median, min-max over runs)\n\n",
                k ? "\n" : "", s->bench[bi].name, n, s->args[0].label, 100 * o->level, o->resamples,
                (unsigned long long)o->seed);
        fprintf(md, "| run | runs | accuracy (%%) | sd | delta | %g%% interval | McNemar p | base only / run only |\n"
                    "|---|---|---|---|---|---|---|---|\n", 100 * o->level);
        for (int a = 0; a < s->nargs; a++) {
            const arg_t *A = &s->args[a];
            row_stats st;
            row_of(s, bi, A, o, d, accs, &st);
            char sd[32] = "-", p[96] = "-", pa[32], pb[32], bc[80] = "-", cb[32], cc[32];
            if (A->nruns > 1) snprintf(sd, sizeof sd, "%.1f", st.sd);
            if (a) {
                fmt_p(p, sizeof p, st.p);
                if (A->nruns > 1) {
                    fmt_p(pa, sizeof pa, st.pmin);
                    fmt_p(pb, sizeof pb, st.pmax);
                    size_t l = strlen(p);
                    snprintf(p + l, sizeof p - l, " (%s-%s)", pa, pb);
                }
                fmt_count(cb, sizeof cb, st.b);
                fmt_count(cc, sizeof cc, st.c);
                snprintf(bc, sizeof bc, "%s / %s", cb, cc);
                fprintf(md, "| %s | %d | %.1f | %s | %+.1f | [%+.1f, %+.1f] | %s | %s |\n", A->label, A->nruns, st.acc, sd,
                        st.delta, st.lo, st.hi, p, bc);
            } else fprintf(md, "| %s | %d | %.1f | %s | | | | |\n", A->label, A->nruns, st.acc, sd);
            if (json) {
                json_t *j = json_object(), *ra = json_array();
                for (int r = 0; r < A->nruns; r++) json_array_append_new(ra, json_real(accs[r]));
                json_object_set_new(j, "bench", json_string(s->bench[bi].name));
                json_object_set_new(j, "label", json_string(A->label));
                json_object_set_new(j, "runs", json_integer(A->nruns));
                json_object_set_new(j, "problems", json_integer((json_int_t)n));
                json_object_set_new(j, "acc", json_real(st.acc));
                json_object_set_new(j, "acc_sd", json_real(st.sd));
                json_object_set_new(j, "acc_runs", ra);
                if (a) {
                    json_object_set_new(j, "delta", json_real(st.delta));
                    json_object_set_new(j, "ci_lo", json_real(st.lo));
                    json_object_set_new(j, "ci_hi", json_real(st.hi));
                    json_object_set_new(j, "p", json_real(st.p));
                    json_object_set_new(j, "p_min", json_real(st.pmin));
                    json_object_set_new(j, "p_max", json_real(st.pmax));
                    json_object_set_new(j, "base_only", json_real(st.b));
                    json_object_set_new(j, "run_only", json_real(st.c));
                }
                char *t = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17));
                if (!t || fputs(t, json) == EOF || fputc('\n', json) == EOF) rc = LR_EIO;
                free(t);
                json_decref(j);
            }
        }
        free(d);
    }
    free(accs);
    free(order);
    if (rc || ferror(md)) return lr_err(LR_EIO, "write error");
    return 0;
}
