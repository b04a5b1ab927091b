/* mathexpr: see mathexpr.h. A recursive-descent parser with a depth limit
 * builds nodes into one array in post-order (children before parents), so
 * evaluating at a point is a single loop over that array. */
#include "eval/mathexpr.h"

#include "base/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { MX_MAXLEN = 4096, MX_MAXDEPTH = 64, MX_NPOINTS = 3, MX_NVARS = 53 };

typedef enum { N_NUM, N_VAR, N_NEG, N_ADD, N_SUB, N_MUL, N_DIV, N_POW, N_FACT, N_ABS, N_FN } ntype;
typedef enum { F_SIN, F_COS, F_TAN, F_SEC, F_CSC, F_COT, F_ASIN, F_ACOS, F_ATAN, F_SINH, F_COSH, F_TANH, F_LN, F_EXP } fn;

typedef struct {
    ntype t;
    int a, b; /* child node indices */
    fn f;
    double v; /* N_NUM value, N_VAR index */
} node;

typedef struct {
    const char *s;
    size_t i, n;
    node *nodes;
    int nn, cap, depth, bad;
    int usesvar;
} parser;

static int add(parser *p, ntype t, int a, int b, double v) {
    if (p->bad) return -1;
    if (p->nn >= p->cap) {
        p->bad = 1;
        return -1;
    }
    node *x = &p->nodes[p->nn];
    x->t = t;
    x->a = a;
    x->b = b;
    x->v = v;
    x->f = F_SIN;
    return p->nn++;
}

static int fail(parser *p) {
    p->bad = 1;
    return -1;
}

/* whitespace and LaTeX spacing/sizing commands are skipped */
static void skip(parser *p) {
    static const char *const SKIP[] = {"\\,", "\\;", "\\:", "\\!", "\\ ", "\\quad", "\\qquad", "\\left", "\\right",
                                       "\\displaystyle", "\\big", "\\Big"};
    for (;;) {
        if (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n')) {
            p->i++;
            continue;
        }
        /* sympy's LaTeX lexer has no token for a '.' that does not start a
         * number: it reports it and drops it, and the parse goes on */
        if (p->i < p->n && p->s[p->i] == '.' && !(p->i + 1 < p->n && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9')) {
            p->i++;
            continue;
        }
        int hit = 0;
        for (size_t k = 0; k < sizeof SKIP / sizeof SKIP[0]; k++) {
            size_t m = strlen(SKIP[k]);
            if (p->i + m <= p->n && !memcmp(p->s + p->i, SKIP[k], m)) {
                /* a command must not continue with letters (\leftarrow) */
                char c = p->i + m < p->n ? p->s[p->i + m] : 0;
                if (SKIP[k][1] >= 'a' && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) continue;
                p->i += m;
                hit = 1;
                break;
            }
        }
        if (!hit) return;
    }
}

static int peek(parser *p) {
    skip(p);
    return p->i < p->n ? (unsigned char)p->s[p->i] : 0;
}

/* The command name at p->i (after '\'), or length 0. */
static size_t cmd_len(parser *p) {
    if (p->i >= p->n || p->s[p->i] != '\\') return 0;
    size_t j = p->i + 1;
    while (j < p->n && ((p->s[j] >= 'a' && p->s[j] <= 'z') || (p->s[j] >= 'A' && p->s[j] <= 'Z'))) j++;
    return j - p->i - 1;
}

static int cmd_is(parser *p, const char *name) {
    size_t m = cmd_len(p);
    return m == strlen(name) && !memcmp(p->s + p->i + 1, name, m);
}

static int parse_expr(parser *p);
static int parse_unary(parser *p);
static int parse_power(parser *p);

static const struct { const char *name; fn f; } FNS[] = {
    {"sin", F_SIN}, {"cos", F_COS}, {"tan", F_TAN}, {"sec", F_SEC}, {"csc", F_CSC}, {"cot", F_COT},
    {"arcsin", F_ASIN}, {"arccos", F_ACOS}, {"arctan", F_ATAN}, {"sinh", F_SINH}, {"cosh", F_COSH},
    {"tanh", F_TANH}, {"ln", F_LN}, {"log", F_LN}, {"exp", F_EXP},
};

/* a command that starts a value (used for implicit multiplication) */
static int value_cmd(parser *p) {
    if (cmd_is(p, "frac") || cmd_is(p, "dfrac") || cmd_is(p, "tfrac") || cmd_is(p, "cfrac") || cmd_is(p, "sqrt") ||
        cmd_is(p, "pi"))
        return 1;
    for (size_t k = 0; k < sizeof FNS / sizeof FNS[0]; k++)
        if (cmd_is(p, FNS[k].name)) return 1;
    return 0;
}

static int group(parser *p, char open, char close) {
    if (peek(p) != open) return fail(p);
    p->i++;
    int e = parse_expr(p);
    if (peek(p) != close) return fail(p);
    p->i++;
    return e;
}

static int parse_primary(parser *p);

/* argument of \frac, \sqrt, ^: {group} or a single digit, letter or command */
static int arg(parser *p) {
    int c = peek(p);
    if (c == '{') return group(p, '{', '}');
    if (c >= '0' && c <= '9') {
        p->i++;
        return add(p, N_NUM, -1, -1, c - '0');
    }
    return parse_primary(p);
}

static int isdigit_at(const parser *p, size_t j) { return j < p->n && p->s[j] >= '0' && p->s[j] <= '9'; }
static size_t past_ws(const parser *p, size_t j) {
    while (j < p->n && (p->s[j] == ' ' || p->s[j] == '\t' || p->s[j] == '\n')) j++;
    return j;
}

/* sympy's LaTeX NUMBER token: DIGIT+ (',' DIGIT DIGIT DIGIT)* ['.' DIGIT+],
 * so "2,251,252" is one number and "3,5" is 3 followed by ",5". Whitespace
 * between the digits and around the commas is dropped, as sympy's lexer
 * drops it: "10, 100" is 10100 and "1 0" is 10 (a raw minerva gold such as
 * "10, 100" is therefore one number, not a list). */
static int number(parser *p) {
    char buf[64];
    size_t j = p->i, o = 0;
    while (isdigit_at(p, j) && o < 60) {
        buf[o++] = p->s[j++];
        size_t k = past_ws(p, j);
        if (isdigit_at(p, k)) j = k;
    }
    for (;;) {
        size_t c = past_ws(p, j), d1, d2, d3;
        if (!o || o >= 56 || c >= p->n || p->s[c] != ',') break;
        d1 = past_ws(p, c + 1);
        if (!isdigit_at(p, d1)) break;
        d2 = past_ws(p, d1 + 1);
        if (!isdigit_at(p, d2)) break;
        d3 = past_ws(p, d2 + 1);
        if (!isdigit_at(p, d3)) break;
        buf[o++] = p->s[d1], buf[o++] = p->s[d2], buf[o++] = p->s[d3];
        j = d3 + 1;
    }
    if (j + 1 < p->n && p->s[j] == '.' && p->s[j + 1] >= '0' && p->s[j + 1] <= '9') {
        buf[o++] = p->s[j++];
        while (j < p->n && p->s[j] >= '0' && p->s[j] <= '9' && o < 62) buf[o++] = p->s[j++];
    }
    if (o == 0 || o >= 62) return fail(p);
    buf[o] = 0;
    p->i = j;
    return add(p, N_NUM, -1, -1, strtod(buf, NULL));
}

static int parse_primary(parser *p) {
    if (++p->depth > MX_MAXDEPTH) return fail(p);
    int r = -1, c = peek(p);
    if ((c >= '0' && c <= '9') || c == '.') r = number(p);
    else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        p->i++;
        p->usesvar = 1;
        /* a letter before '(' is a function call in sympy's LaTeX grammar
         * ("I(0)", "x(x+1)" are applications of an unknown function, equal
         * to nothing but themselves), not a product: not understood here */
        if (peek(p) == '(') r = fail(p);
        else r = add(p, N_VAR, -1, -1, c >= 'a' ? c - 'a' : 26 + c - 'A');
    } else if (c == '(') r = group(p, '(', ')');
    else if (c == '[') r = group(p, '[', ']');
    else if (c == '{') r = group(p, '{', '}');
    else if (c == '|') {
        p->i++;
        int e = parse_expr(p);
        if (peek(p) != '|') r = fail(p);
        else {
            p->i++;
            r = add(p, N_ABS, e, -1, 0);
        }
    } else if (c == '\\') {
        size_t m = cmd_len(p);
        if (cmd_is(p, "frac") || cmd_is(p, "dfrac") || cmd_is(p, "tfrac") || cmd_is(p, "cfrac")) {
            p->i += m + 1;
            int a = arg(p), b = arg(p);
            r = add(p, N_DIV, a, b, 0);
        } else if (cmd_is(p, "sqrt")) {
            p->i += m + 1;
            int idx = -1;
            if (peek(p) == '[') idx = group(p, '[', ']');
            int a = arg(p);
            if (idx < 0) idx = add(p, N_NUM, -1, -1, 2);
            int one = add(p, N_NUM, -1, -1, 1);
            int inv = add(p, N_DIV, one, idx, 0);
            r = add(p, N_POW, a, inv, 0);
        } else if (cmd_is(p, "pi")) { /* sympy's parse_latex makes \pi a plain symbol */
            p->i += m + 1;
            p->usesvar = 1;
            r = add(p, N_VAR, -1, -1, 52);
        } else {
            size_t k;
            for (k = 0; k < sizeof FNS / sizeof FNS[0]; k++)
                if (cmd_is(p, FNS[k].name)) break;
            if (k == sizeof FNS / sizeof FNS[0]) r = fail(p); /* \infty, \text, ... */
            else {
                p->i += m + 1;
                int ex = -1, base = -1;
                if (FNS[k].f == F_LN && peek(p) == '_') {
                    p->i++;
                    base = arg(p);
                }
                if (peek(p) == '^') {
                    p->i++;
                    ex = arg(p);
                }
                int c2 = peek(p), a;
                if (c2 == '(') a = group(p, '(', ')');
                else if (c2 == '{') a = group(p, '{', '}');
                else a = parse_power(p);
                int f = add(p, N_FN, a, -1, 0);
                if (f >= 0) p->nodes[f].f = FNS[k].f;
                if (base >= 0) {
                    int lb = add(p, N_FN, base, -1, 0);
                    if (lb >= 0) p->nodes[lb].f = F_LN;
                    f = add(p, N_DIV, f, lb, 0);
                }
                r = ex >= 0 ? add(p, N_POW, f, ex, 0) : f;
            }
        }
    } else r = fail(p);
    p->depth--;
    return r;
}

static int parse_power(parser *p) {
    if (++p->depth > MX_MAXDEPTH) return fail(p);
    int base = parse_primary(p);
    while (peek(p) == '!') {
        p->i++;
        base = add(p, N_FACT, base, -1, 0);
    }
    if (peek(p) == '^') {
        p->i++;
        int e = peek(p) == '{' ? group(p, '{', '}') : parse_unary(p);
        base = add(p, N_POW, base, e, 0);
    }
    p->depth--;
    return base;
}

static int parse_unary(parser *p) {
    if (++p->depth > MX_MAXDEPTH) return fail(p);
    int c = peek(p), r;
    if (c == '-') {
        p->i++;
        r = add(p, N_NEG, parse_unary(p), -1, 0);
    } else if (c == '+') {
        p->i++;
        r = parse_unary(p);
    } else r = parse_power(p);
    p->depth--;
    return r;
}

static int parse_term(parser *p) {
    int left = parse_unary(p);
    while (!p->bad) {
        int c = peek(p);
        if (c == '*' || cmd_is(p, "cdot") || cmd_is(p, "times")) {
            p->i += c == '*' ? 1 : cmd_len(p) + 1;
            left = add(p, N_MUL, left, parse_unary(p), 0);
        } else if (c == '/' || c == ':' || cmd_is(p, "div")) { /* ':' divides in sympy's LaTeX grammar */
            p->i += (c == '/' || c == ':') ? 1 : cmd_len(p) + 1;
            left = add(p, N_DIV, left, parse_unary(p), 0);
        } else if ((c >= '0' && c <= '9') || (c == '.' && p->i + 1 < p->n && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   c == '(' || c == '{' || (c == '\\' && value_cmd(p))) {
            left = add(p, N_MUL, left, parse_power(p), 0);
        } else break;
    }
    return left;
}

static int parse_expr(parser *p) {
    if (++p->depth > MX_MAXDEPTH) return fail(p);
    int left = parse_term(p);
    while (!p->bad) {
        int c = peek(p);
        if (c == '+') {
            p->i++;
            left = add(p, N_ADD, left, parse_term(p), 0);
        } else if (c == '-') {
            p->i++;
            left = add(p, N_SUB, left, parse_term(p), 0);
        } else break;
    }
    p->depth--;
    return left;
}

typedef struct {
    node *nodes;
    int nn, root, usesvar;
} expr;

static int parse(const char *s, expr *e) {
    size_t n = strlen(s);
    if (n == 0 || n > MX_MAXLEN) return -1;
    parser p = {.s = s, .n = n, .cap = (int)(4 * n + 16)};
    p.nodes = xmalloc(sizeof(node) * (size_t)p.cap);
    int root = parse_expr(&p);
    /* sympy's parse_latex reads one expression and ignores what follows a
     * token that cannot continue it ("1,2" -> 1, "{0}.[Note" -> 0); the
     * toolkit inherits that, so it is kept for these stop tokens */
    int c = p.bad ? 0 : peek(&p);
    if (c && !(c == ',' || c == ')' || c == ']' || c == '}' || c == '[')) p.bad = 1;
    if (p.bad || root < 0) {
        free(p.nodes);
        return -1;
    }
    e->nodes = p.nodes;
    e->nn = p.nn;
    e->root = root;
    e->usesvar = p.usesvar;
    return 0;
}

static double apply(fn f, double x) {
    switch (f) {
    case F_SIN: return sin(x);
    case F_COS: return cos(x);
    case F_TAN: return tan(x);
    case F_SEC: return 1 / cos(x);
    case F_CSC: return 1 / sin(x);
    case F_COT: return 1 / tan(x);
    case F_ASIN: return asin(x);
    case F_ACOS: return acos(x);
    case F_ATAN: return atan(x);
    case F_SINH: return sinh(x);
    case F_COSH: return cosh(x);
    case F_TANH: return tanh(x);
    case F_LN: return log(x);
    case F_EXP: return exp(x);
    }
    return NAN;
}

/* Value at one assignment of the variables (NAN when undefined). */
static double eval(const expr *e, const double *vars, double *tmp) {
    for (int k = 0; k < e->nn; k++) {
        const node *x = &e->nodes[k];
        double a = x->a >= 0 ? tmp[x->a] : 0, b = x->b >= 0 ? tmp[x->b] : 0, r = NAN;
        switch (x->t) {
        case N_NUM: r = x->v; break;
        case N_VAR: r = vars[(int)x->v]; break;
        case N_NEG: r = -a; break;
        case N_ADD: r = a + b; break;
        case N_SUB: r = a - b; break;
        case N_MUL: r = a * b; break;
        case N_DIV: r = b == 0 ? NAN : a / b; break;
        case N_POW: r = pow(a, b); break;
        case N_FACT: r = (a >= 0 && a <= 170 && a == floor(a)) ? tgamma(a + 1) : NAN; break;
        case N_ABS: r = fabs(a); break;
        case N_FN: r = apply(x->f, a); break;
        }
        tmp[k] = r;
    }
    return tmp[e->root];
}

int mx_eval(const char *s, double *out) {
    expr e;
    if (parse(s, &e)) return -1;
    double *tmp = xmalloc(sizeof(double) * (size_t)e.nn), vars[MX_NVARS] = {0};
    double v = eval(&e, vars, tmp);
    int used = e.usesvar;
    free(tmp);
    free(e.nodes);
    if (used || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int close_rel(double a, double b, double rel) {
    if (a == b) return 1;
    return fabs(a - b) <= rel * fmax(fabs(a), fabs(b));
}

int mx_equal(const char *as, const char *bs) {
    expr a, b;
    if (parse(as, &a)) return 0;
    if (parse(bs, &b)) {
        free(a.nodes);
        return 0;
    }
    double *ta = xmalloc(sizeof(double) * (size_t)a.nn), *tb = xmalloc(sizeof(double) * (size_t)b.nn);
    int eq = 0;
    if (!a.usesvar && !b.usesvar) {
        double vars[MX_NVARS] = {0};
        double x = eval(&a, vars, ta), y = eval(&b, vars, tb);
        eq = isfinite(x) && isfinite(y) && close_rel(x, y, 1e-4);
    } else {
        /* fixed, irregular points in (0.5, 2.5) so that distinct simple
         * expressions differ at least at one of them */
        int good = 0, bad = 0;
        for (int pt = 0; pt < MX_NPOINTS; pt++) {
            double vars[MX_NVARS];
            for (int k = 0; k < MX_NVARS; k++) {
                double f = sqrt(2.0 + k * 7 + pt * 13);
                vars[k] = 0.5 + 2.0 * (f - floor(f));
            }
            double x = eval(&a, vars, ta), y = eval(&b, vars, tb);
            if (!isfinite(x) || !isfinite(y)) continue;
            if (close_rel(x, y, 1e-8) || fabs(x - y) < 1e-12) good++;
            else bad++;
        }
        eq = bad == 0 && good >= 2;
    }
    free(ta);
    free(tb);
    free(a.nodes);
    free(b.nodes);
    return eq;
}
