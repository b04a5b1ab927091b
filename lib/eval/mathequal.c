/* mathequal: see mathequal.h. The order of the checks, and where each one
 * returns instead of falling through, follows grader.math_equal. */
#include "eval/mathequal.h"

#include "eval/answer.h"
#include "eval/mathexpr.h"
#include "base/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

enum { MEQ_MAXDEPTH = 32 };

static int isdig(char c) { return c >= '0' && c <= '9'; }

/* digitpart = digit (["_"] digit)*, copied without underscores */
static size_t digitpart(const char *s, size_t i, char *out, size_t *o) {
    size_t j = i;
    if (!isdig(s[j])) return 0;
    while (isdig(s[j]) || (s[j] == '_' && isdig(s[j + 1]) && j > i)) {
        if (s[j] != '_') out[(*o)++] = s[j];
        j++;
    }
    return j - i;
}

int meq_py_float(const char *in, double *out) {
    char *s = ans_pystrip(in);
    size_t n = strlen(s), i = 0, o = 0;
    char *buf = xmalloc(n + 8);
    int ok = 0;
    if (s[i] == '+' || s[i] == '-') buf[o++] = s[i++];
    const char *rest = s + i;
    if (!strcasecmp(rest, "inf") || !strcasecmp(rest, "infinity") || !strcasecmp(rest, "nan")) {
        strcpy(buf + o, rest);
        ok = 1;
    } else {
        size_t a = digitpart(s, i, buf, &o), f = 0;
        i += a;
        if (s[i] == '.') {
            buf[o++] = s[i++];
            f = digitpart(s, i, buf, &o);
            i += f;
        }
        if (a || f) {
            ok = 1;
            if (s[i] == 'e' || s[i] == 'E') {
                buf[o++] = s[i++];
                if (s[i] == '+' || s[i] == '-') buf[o++] = s[i++];
                size_t e = digitpart(s, i, buf, &o);
                if (!e) ok = 0;
                i += e;
            }
            if (i != n) ok = 0;
            buf[o] = 0;
        }
    }
    if (ok) *out = strtod(buf, NULL);
    free(buf);
    free(s);
    return ok ? 0 : -1;
}

int meq_parse_digits(const char *in, double *out) {
    size_t n = strlen(in), o = 0;
    char *s = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        if (in[i] != ',') s[o++] = in[i];
    s[o] = 0;
    int rc = meq_py_float(s, out);
    if (rc && o > 0 && s[o - 1] == '%') {
        s[--o] = 0;
        if (o > 0 && s[o - 1] == '\\') s[--o] = 0;
        if (!meq_py_float(s, out)) {
            *out /= 100;
            rc = 0;
        }
    }
    free(s);
    return rc;
}

/* math.isclose(a, b, rel_tol=1e-4) */
static int isclose4(double a, double b) {
    if (a == b) return 1;
    if (isinf(a) || isinf(b)) return 0;
    return fabs(a - b) <= 1e-4 * fmax(fabs(a), fabs(b));
}

static int numerical_equal(const char *pred, const char *ref) {
    double p, r;
    if (meq_parse_digits(pred, &p) || meq_parse_digits(ref, &r)) return 0;
    double cand[3] = {r / 100, r, r * 100};
    for (int k = 0; k < 3; k++)
        if (isclose4(p, cand[k])) return 1;
    return 0;
}

/* str.lower() with simple case mapping */
static char *lower_dup(const char *s) {
    size_t n = strlen(s), o = 0;
    char *r = xmalloc(4 * n + 1);
    for (size_t i = 0; i < n;) {
        int cp, k = ans_cp(s, n, i, &cp);
        if (cp < 0) {
            r[o++] = s[i];
        } else {
            utf8proc_int32_t lc = utf8proc_tolower(cp);
            o += (size_t)utf8proc_encode_char(lc, (utf8proc_uint8_t *)r + o);
        }
        i += (size_t)k;
    }
    r[o] = 0;
    return r;
}

static int eq_lower(const char *a, const char *b) {
    char *x = lower_dup(a), *y = lower_dup(b);
    int r = strcmp(x, y) == 0;
    free(x);
    free(y);
    return r;
}

static int has_format(const char *s, char open, char close) {
    size_t n = strlen(s);
    return n > 0 && s[0] == open && s[n - 1] == close;
}

/* s[1:-1] by characters */
static char *inner(const char *s) {
    size_t n = strlen(s);
    if (n == 0) return xstrdup("");
    int cp;
    size_t a = (size_t)ans_cp(s, n, 0, &cp);
    size_t e = n - 1;
    while (e > a && ((unsigned char)s[e] & 0xC0) == 0x80 && n - e < 4) e--;
    if (ans_cp(s, n, e, &cp) != (int)(n - e)) e = n - 1;
    if (e <= a) return xstrdup("");
    return strndup(s + a, e - a);
}

/* grader.is_list_format: regex.match(r"(\(|\[).+(\)|\])", s) */
static int is_list_format(const char *s) {
    if (s[0] != '(' && s[0] != '[') return 0;
    for (size_t i = 1; s[i] && s[i] != '\n'; i++)
        if (i >= 2 && (s[i] == ')' || s[i] == ']')) return 1;
    return 0;
}

static int is_matrix_format(const char *s) {
    size_t n = strlen(s);
    return (!strncmp(s, "\\begin{pmatrix}", 15) || !strncmp(s, "\\begin{bmatrix}", 15)) && n >= 13 &&
           (!strcmp(s + n - 13, "\\end{pmatrix}") || !strcmp(s + n - 13, "\\end{bmatrix}"));
}

/* Splits s on sep (a string) into a NULL-terminated array of copies. */
static char **split(const char *s, const char *sep, int *count) {
    size_t m = strlen(sep);
    int cap = 8, n = 0;
    char **v = xmalloc(sizeof(char *) * (size_t)cap);
    const char *p = s, *h;
    for (;;) {
        h = strstr(p, sep);
        if (n + 2 > cap) v = xrealloc(v, sizeof(char *) * (size_t)(cap *= 2));
        if (!h) {
            v[n++] = xstrdup(p);
            break;
        }
        v[n++] = strndup(p, (size_t)(h - p));
        p = h + m;
    }
    v[n] = NULL;
    *count = n;
    return v;
}

static void free_split(char **v) {
    for (char **q = v; *q; q++) free(*q);
    free(v);
}

static int math_equal(const char *pred, const char *ref, int depth);

static int compare_lists(const char *pred, const char *ref, int depth) {
    char *pi = inner(pred), *ri = inner(ref);
    int np, nr, r = 0;
    char **pp = split(pi, ",", &np), **rr = split(ri, ",", &nr);
    if (np == nr) {
        r = 1;
        for (int i = 0; i < np && r; i++) r = math_equal(pp[i], rr[i], depth + 1);
    }
    free_split(pp);
    free_split(rr);
    free(pi);
    free(ri);
    return r;
}

/* the non-empty stripped lines between \begin{pmatrix} and \end{pmatrix} */
static char **matrix_lines(const char *s, int *count) {
    size_t n = strlen(s);
    char *body = strndup(s + 15, n - 15 - 13 > n ? 0 : n - 15 - 13);
    int k;
    char **raw = split(body, "\\\\", &k);
    free(body);
    int o = 0;
    for (int i = 0; i < k; i++) {
        char *t = ans_pystrip(raw[i]);
        free(raw[i]);
        if (t[0]) raw[o++] = t;
        else free(t);
    }
    raw[o] = NULL;
    *count = o;
    return raw;
}

static int compare_matrices(const char *pred, const char *ref, int depth) {
    if (strlen(pred) < 28 || strlen(ref) < 28) return 0;
    int np, nr, r = 0;
    char **pl = matrix_lines(pred, &np), **rl = matrix_lines(ref, &nr);
    if (np == nr) {
        r = 1;
        for (int i = 0; i < np && r; i++) {
            int a, b;
            char **pp = split(pl[i], "&", &a), **rr = split(rl[i], "&", &b);
            if (a != b) r = 0;
            for (int j = 0; j < a && r; j++) r = math_equal(pp[j], rr[j], depth + 1);
            free_split(pp);
            free_split(rr);
        }
    }
    free_split(pl);
    free_split(rl);
    return r;
}

/* grader.str_to_pmatrix: the greedy match of r"\{.*,.*\}" (one at most)
 * with ',' turned into '\'. */
static char *str_to_pmatrix(const char *in) {
    char *s = ans_pystrip(in);
    size_t n = strlen(s);
    const char *lastc = strrchr(s, '}');
    char *r = xstrdup("");
    if (lastc && !strchr(s, '\n')) {
        for (size_t p = 0; s + p < lastc; p++) {
            if (s[p] != '{') continue;
            const char *comma = memchr(s + p + 1, ',', (size_t)(lastc - (s + p + 1)));
            if (!comma) break; /* no later '{' has a comma before the last '}' either */
            /* m.strip("{}") */
            size_t a = p, e = (size_t)(lastc - s) + 1;
            while (a < e && (s[a] == '{' || s[a] == '}')) a++;
            while (e > a && (s[e - 1] == '{' || s[e - 1] == '}')) e--;
            size_t o = 0;
            free(r);
            r = xmalloc(e - a + 32);
            o += (size_t)sprintf(r, "\\begin{pmatrix}");
            for (size_t i = a; i < e; i++) r[o++] = s[i] == ',' ? '\\' : s[i];
            strcpy(r + o, "\\end{pmatrix}");
            break;
        }
    }
    (void)n;
    free(s);
    return r;
}

/* str.strip("[]()") */
static char *strip_brackets(const char *s) {
    size_t a = 0, e = strlen(s);
    while (a < e && strchr("[]()", s[a])) a++;
    while (e > a && strchr("[]()", s[e - 1])) e--;
    return strndup(s + a, e - a);
}

static char *remove_chars(const char *s, const char *chars) {
    size_t n = strlen(s), o = 0;
    char *r = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        if (!strchr(chars, s[i])) r[o++] = s[i];
    r[o] = 0;
    return r;
}

static int count_char(const char *s, char c) {
    int k = 0;
    for (; *s; s++) k += *s == c;
    return k;
}

static size_t cp_len(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; c++) {
        int cp;
        i += (size_t)ans_cp(s, n, i, &cp);
    }
    return c;
}

static int is_simple_equation(const char *s) {
    if (count_char(s, '=') != 1) return 0;
    char *l = strndup(s, (size_t)(strchr(s, '=') - s));
    char *t = ans_pystrip(l);
    int r = cp_len(t, strlen(t)) <= 2;
    free(l);
    free(t);
    return r;
}

/* grader.format_equation: "lhs - (rhs)" */
static char *format_equation(const char *s, int negate) {
    const char *eq = strchr(s, '=');
    char *l = strndup(s, (size_t)(eq - s));
    char *lt = ans_pystrip(l), *rt = ans_pystrip(eq + 1);
    size_t n = strlen(lt) + strlen(rt) + 16;
    char *r = xmalloc(n);
    snprintf(r, n, negate ? "-(%s - (%s))" : "%s - (%s)", lt, rt);
    free(l);
    free(lt);
    free(rt);
    return r;
}

/* grader.choice_answer_clean (the grader's own, simpler copy) */
static char *grader_choice(const char *in) {
    char *p = xstrdup(in);
    size_t n = strlen(p), a = 0;
    while (n > 0 && p[n - 1] == '\n') p[--n] = 0;
    while (p[a] == '\n') a++;
    memmove(p, p + a, n - a + 1);
    n = strlen(p);
    while (n > 0 && p[n - 1] == '.') p[--n] = 0;
    while (n > 0 && p[n - 1] == '/') p[--n] = 0;
    while (n > 0 && p[n - 1] == ' ') p[--n] = 0;
    for (a = 0; p[a] == ' '; a++) {}
    while (p[a] == ':') a++;
    memmove(p, p + a, strlen(p + a) + 1);
    /* last standalone A-E of p.upper() */
    n = strlen(p);
    char found = 0;
    int prev_word = 0;
    for (size_t i = 0; i < n;) {
        int cp, k = ans_cp(p, n, i, &cp);
        int up = (cp >= 'a' && cp <= 'e') ? cp - 32 : cp;
        if (up >= 'A' && up <= 'E' && !prev_word) {
            int ncp = -1;
            if (i + (size_t)k < n) ans_cp(p, n, i + (size_t)k, &ncp);
            if (i + (size_t)k >= n || !ans_is_word(ncp)) found = (char)up;
        }
        prev_word = ans_is_word(cp);
        i += (size_t)k;
    }
    if (found) {
        p[0] = found;
        p[1] = 0;
    } else {
        char *t = ans_pystrip(p);
        free(p);
        p = t;
        size_t b = 0, e = strlen(p);
        while (b < e && p[b] == '.') b++;
        while (e > b && p[e - 1] == '.') e--;
        memmove(p, p + b, e - b);
        p[e - b] = 0;
    }
    n = strlen(p);
    while (n > 0 && p[n - 1] == '.') p[--n] = 0;
    while (n > 0 && p[n - 1] == '/') p[--n] = 0;
    return p;
}

static int math_equal(const char *pred_in, const char *ref_in, int depth) {
    if (depth > MEQ_MAXDEPTH) return 0;
    {
        char *a = ans_pystrip(pred_in), *b = ans_pystrip(ref_in);
        int same = eq_lower(a, b);
        free(a);
        free(b);
        if (same) return 1;
    }
    if (ref_in[0] >= 'A' && ref_in[0] <= 'E' && ref_in[1] == 0) {
        char *c = grader_choice(pred_in);
        int same = strcmp(c, ref_in) == 0;
        free(c);
        if (same) return 1;
    }
    if (numerical_equal(pred_in, ref_in)) return 1;
    if (!pred_in[0]) return 0;

    int result = 0;
    char *ref = ans_pystrip(ref_in), *pred = ans_pystrip(pred_in);
    if (strstr(pred, "pmatrix") && !strstr(ref, "pmatrix")) {
        char *m = str_to_pmatrix(ref);
        free(ref);
        ref = m;
    }
    /* [], (), {} */
    char *ps = xstrdup(pred), *rs = xstrdup(ref);
    if ((has_format(ps, '[', ']') && !has_format(rs, '(', ')')) || (has_format(ps, '(', ')') && !has_format(rs, '[', ']'))) {
        char *a = strip_brackets(ps), *b = strip_brackets(rs);
        free(ps);
        free(rs);
        ps = a;
        rs = b;
    }
    char *pr = remove_chars(ps, "{}()"), *rr = remove_chars(rs, "{}()");
    int same = eq_lower(pr, rr);
    free(ps);
    free(rs);
    free(pr);
    free(rr);
    if (same) {
        result = 1;
        goto done;
    }
    if (is_list_format(pred) && is_list_format(ref)) {
        result = compare_lists(pred, ref, depth);
        goto done;
    }
    if (is_matrix_format(pred) && is_matrix_format(ref)) {
        result = compare_matrices(pred, ref, depth);
        goto done;
    }
    if (count_char(pred, '=') == 1 && count_char(ref, '=') == 1) {
        char *a = format_equation(pred, 0), *b = format_equation(ref, 0), *c = format_equation(pred, 1);
        result = mx_equal(a, b) || mx_equal(c, b);
        free(a);
        free(b);
        free(c);
        goto done;
    } else if (is_simple_equation(pred) && !strchr(ref, '=')) {
        result = math_equal(strchr(pred, '=') + 1, ref, depth + 1);
        goto done;
    } else if (is_simple_equation(ref) && !strchr(pred, '=')) {
        result = math_equal(pred, strchr(ref, '=') + 1, depth + 1);
        goto done;
    }
    result = mx_equal(pred, ref);
done:
    free(pred);
    free(ref);
    return result;
}

int meq_equal(const char *pred, const char *gold) {
    if (!pred || !gold) return 0;
    return math_equal(pred, gold, 0);
}
