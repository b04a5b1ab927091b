/* answer: see answer.h. Each function follows one function of the
 * Qwen2.5-Math toolkit's evaluation/parser.py (named in its comment); the
 * regular expressions there are replaced by single left-to-right scans with
 * the same match semantics (leftmost match, non-overlapping, the same
 * greedy/lazy choice), so run time is linear in the text length. */
#include "eval/answer.h"

#include "base/buf.h"
#include "base/util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- characters ---- */
int ans_cp(const char *s, size_t n, size_t i, int *cp) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
    if (k <= 0) {
        *cp = -1;
        return 1;
    }
    *cp = c;
    return (int)k;
}

int ans_is_word(int cp) {
    if (cp < 0) return 0;
    if (cp < 128) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return 1;
    default:
        return 0;
    }
}

int ans_is_space(int cp) {
    if (cp == ' ' || (cp >= 9 && cp <= 13) || (cp >= 0x1c && cp <= 0x1f)) return 1;
    return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

char *ans_pystrip(const char *s) {
    size_t n = strlen(s), a = 0, e = 0, i = 0;
    int seen = 0;
    while (i < n) { /* one forward pass: first and last non-space character */
        int cp, k = ans_cp(s, n, i, &cp);
        if (!ans_is_space(cp)) {
            if (!seen) a = i;
            seen = 1;
            e = i + (size_t)k;
        }
        i += (size_t)k;
    }
    return seen ? strndup(s + a, e - a) : xstrdup("");
}

/* ---- plain string operations ---- */
static char *repl(char *s, const char *from, const char *to) { /* frees s */
    size_t fl = strlen(from);
    const char *hit = strstr(s, from);
    if (!hit) return s;
    lr_buf b = {0};
    const char *p = s;
    while (hit) {
        buf_put(&b, p, (size_t)(hit - p));
        buf_puts(&b, to);
        p = hit + fl;
        hit = strstr(p, from);
    }
    buf_puts(&b, p);
    free(s);
    return buf_take(&b);
}

static char *set(char *old, char *nw) {
    free(old);
    return nw;
}

/* Python str.rstrip(chars) / lstrip(chars) for ASCII char sets, in place. */
static void rstrip_chars(char *s, const char *chars) {
    size_t n = strlen(s);
    while (n > 0 && strchr(chars, s[n - 1])) s[--n] = 0;
}
static void lstrip_chars(char *s, const char *chars) {
    size_t a = 0;
    while (s[a] && strchr(chars, s[a])) a++;
    memmove(s, s + a, strlen(s + a) + 1);
}

/* Last occurrence of needle in s (str.split(needle)[-1] starts after it). */
static const char *last_of(const char *s, const char *needle) {
    const char *last = NULL, *p = s;
    size_t m = strlen(needle);
    while ((p = strstr(p, needle))) {
        last = p;
        p += m;
    }
    return last;
}

/* ---- parser.py unit_texts ("units mainly from MathQA"); the plural of
 * each is appended to the list there, in this order. Entries are regular
 * expressions in the toolkit: '.' matches any character. ---- */
static const char *const UNITS[] = {
    "east", "degree", "mph", "kmph", "ft", "m sqaure", " m east", "sq m", "deg", "mile", "q .", "monkey",
    "prime", "ratio", "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile", "per", "dm", "lt", "gain", "ab",
    "way", "west", "a .", "b .", "c .", "d .", "e .", "f .", "g .", "h .", "t", "a", "h", "no change", "men",
    "soldier", "pie", "bc", "excess", "st", "inches", "noon", "percent", "by", "gal", "kmh", "c", "acre",
    "rise", "a . m", "th", "\xcf\x80 r 2", "sq", "mark", "l", "toy", "coin", "sq . m", "gallon", "\xc2\xb0 f",
    "profit", "minw", "yr", "women", "feet", "am", "pm", "hr", "cu cm", "square", "v \xc3\xa2 \xe2\x82\xac \xe2\x84\xa2",
    "are", "rupee", "rounds", "cubic", "cc", "mtr", "s", "ohm", "number", "kmph", "day", "hour", "minute",
    "min", "second", "man", "woman", "sec", "cube", "mt", "sq inch", "mp", "\xe2\x88\x8f cm \xc2\xb3",
    "hectare", "more", "sec", "unit", "cu . m", "cm 2", "rs .", "rs", "kg", "g", "month", "km", "m", "cm",
    "mm", "apple", "liter", "loss", "yard", "pure", "year", "increase", "decrease", "d", "less", "Surface",
    "litre", "pi sq m", "s .", "metre", "meter", "inch",
};
#define NUNITS (sizeof UNITS / sizeof UNITS[0])

/* Matches the unit pattern u (plus an optional literal trailing 's') at
 * s[i]; returns the end or (size_t)-1. */
static size_t unit_at(const char *s, size_t n, size_t i, const char *u, int plural) {
    for (const char *q = u; *q; q++) {
        if (i >= n) return (size_t)-1;
        if (*q == '.') { /* any character but newline */
            if (s[i] == '\n') return (size_t)-1;
            int cp;
            i += ans_cp(s, n, i, &cp);
        } else {
            if (s[i] != *q) return (size_t)-1;
            i++;
        }
    }
    if (plural) {
        if (i >= n || s[i] != 's') return (size_t)-1;
        i++;
    }
    return i;
}

/* Is the character that ends at s[q) a word character? (q > 0) */
static int word_before(const char *s, size_t q) {
    size_t b = q - 1;
    while (b > 0 && ((unsigned char)s[b] & 0xC0) == 0x80 && q - b < 4) b--;
    int cp;
    if ((size_t)ans_cp(s, q, b, &cp) != q - b) return 0; /* an invalid byte: not a word character */
    return ans_is_word(cp);
}

/* re.sub(r"(^|\W)" + unit + r"($|\W)", r"\1\2", s): deletes the unit text
 * where it stands between non-word characters or the string ends. The
 * regex scan is reproduced by visiting the places where the unit's first
 * (literal) byte occurs, left to right: a match starting there needs the
 * string start (^, only before any match) or a non-word character not
 * consumed by the previous match (\W), and after the unit the end or a
 * non-word character, which the match consumes. Returns NULL if nothing
 * matched. */
static char *remove_unit(const char *s, const char *u, int plural) {
    size_t n = strlen(s), last = 0, copied = 0;
    lr_buf b = {0};
    int any = 0;
    const char *hit = s;
    while ((hit = memchr(hit, u[0], n - (size_t)(hit - s)))) {
        size_t q = (size_t)(hit - s);
        hit++;
        int ok = 0;
        if (q == 0) ok = last == 0;
        else if (!word_before(s, q)) {
            size_t pl = q - 1;
            while (pl > 0 && ((unsigned char)s[pl] & 0xC0) == 0x80 && q - pl < 4) pl--;
            int cp;
            if ((size_t)ans_cp(s, q, pl, &cp) != q - pl) pl = q - 1;
            ok = pl >= last;
        }
        if (!ok) continue;
        size_t ue = unit_at(s, n, q, u, plural), mend;
        if (ue == (size_t)-1) continue;
        if (ue == n) mend = n;
        else {
            int cp, k = ans_cp(s, n, ue, &cp);
            if (ans_is_word(cp)) continue;
            mend = ue + (size_t)k;
        }
        any = 1;
        buf_put(&b, s + copied, q - copied); /* up to the unit, keeping \1 */
        buf_put(&b, s + ue, mend - ue);      /* \2 */
        copied = last = mend;
        hit = s + mend;
        if (mend >= n) break;
    }
    if (!any) return NULL;
    buf_put(&b, s + copied, n - copied);
    return buf_take(&b);
}

/* ---- word2number.w2n.word_to_num, as convert_word_number calls it (any
 * error leaves the text unchanged) ---- */
static const struct { const char *w; long long v; } NUMWORDS[] = {
    {"zero", 0}, {"one", 1}, {"two", 2}, {"three", 3}, {"four", 4}, {"five", 5}, {"six", 6}, {"seven", 7},
    {"eight", 8}, {"nine", 9}, {"ten", 10}, {"eleven", 11}, {"twelve", 12}, {"thirteen", 13},
    {"fourteen", 14}, {"fifteen", 15}, {"sixteen", 16}, {"seventeen", 17}, {"eighteen", 18},
    {"nineteen", 19}, {"twenty", 20}, {"thirty", 30}, {"forty", 40}, {"fifty", 50}, {"sixty", 60},
    {"seventy", 70}, {"eighty", 80}, {"ninety", 90}, {"hundred", 100}, {"thousand", 1000},
    {"million", 1000000}, {"billion", 1000000000}, {"point", -1},
};

static long long numword(const char *w, size_t n) {
    for (size_t i = 0; i < sizeof NUMWORDS / sizeof NUMWORDS[0]; i++)
        if (strlen(NUMWORDS[i].w) == n && memcmp(NUMWORDS[i].w, w, n) == 0) return NUMWORDS[i].v;
    return -2;
}

static int formation(const long long *v, int n, long long *out) {
    if (n <= 0) return -1; /* IndexError in the toolkit */
    if (n == 4) *out = v[0] * v[1] + v[2] + v[3];
    else if (n == 3) *out = v[0] * v[1] + v[2];
    else if (n == 2) *out = (v[0] == 100 || v[1] == 100) ? v[0] * v[1] : v[0] + v[1];
    else *out = v[0];
    return 0;
}

static char *word_to_num(char *s) {
    size_t n = strlen(s);
    /* replace('-', ' ') and lower(); isdigit() -> int() */
    int alldig = n > 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') alldig = 0;
    if (alldig) {
        size_t a = 0;
        while (a + 1 < n && s[a] == '0') a++;
        char *r = xstrdup(s + a);
        free(s);
        return r;
    }
    enum { MAXW = 64 };
    long long v[MAXW];
    int nv = 0, npoint = 0, nth = 0, nmil = 0, nbil = 0;
    size_t i = 0;
    while (i < n) {
        int cp, k = ans_cp(s, n, i, &cp);
        if (ans_is_space(cp) || cp == '-') {
            i += k;
            continue;
        }
        size_t a = i;
        while (i < n) {
            k = ans_cp(s, n, i, &cp);
            if (ans_is_space(cp) || cp == '-') break;
            i += k;
        }
        char w[16];
        if (i - a >= sizeof w) continue;
        for (size_t j = a; j < i; j++) w[j - a] = (s[j] >= 'A' && s[j] <= 'Z') ? s[j] + 32 : s[j];
        long long x = numword(w, i - a);
        if (x == -2) continue;
        if (nv >= MAXW) return s;
        v[nv++] = x;
        npoint += x == -1;
        nth += x == 1000;
        nmil += x == 1000000;
        nbil += x == 1000000000;
    }
    if (nv == 0 || nth > 1 || nmil > 1 || nbil > 1 || npoint > 1) return s;
    int nint = nv, ndec = 0;
    long long *dec = NULL;
    if (npoint) {
        for (int j = 0; j < nv; j++)
            if (v[j] == -1) {
                nint = j;
                dec = v + j + 1;
                ndec = nv - j - 1;
            }
    }
    int bi = -1, mi = -1, ti = -1;
    for (int j = 0; j < nint; j++) {
        if (v[j] == 1000000000 && bi < 0) bi = j;
        if (v[j] == 1000000 && mi < 0) mi = j;
        if (v[j] == 1000 && ti < 0) ti = j;
    }
    if ((ti > -1 && (ti < mi || ti < bi)) || (mi > -1 && mi < bi)) return s;
    long long total = 0, m;
    if (nint == 1) total = v[0];
    else if (nint > 1) {
        if (bi > -1) {
            if (formation(v, bi, &m)) return s;
            total += m * 1000000000LL;
        }
        if (mi > -1) {
            if (bi > -1 ? formation(v + bi + 1, mi - bi - 1, &m) : formation(v, mi, &m)) return s;
            total += m * 1000000LL;
        }
        if (ti > -1) {
            int r = mi > -1 ? formation(v + mi + 1, ti - mi - 1, &m)
                    : bi > -1 ? formation(v + bi + 1, ti - bi - 1, &m) : formation(v, ti, &m);
            if (r) return s;
            total += m * 1000;
        }
        long long h = 0;
        int r = 0;
        if (ti > -1 && ti != nint - 1) r = formation(v + ti + 1, nint - ti - 1, &h);
        else if (mi > -1 && mi != nint - 1) r = formation(v + mi + 1, nint - mi - 1, &h);
        else if (bi > -1 && bi != nint - 1) r = formation(v + bi + 1, nint - bi - 1, &h);
        else if (ti == -1 && mi == -1 && bi == -1) r = formation(v, nint, &h);
        if (r) return s;
        total += h;
    }
    char buf[64];
    int isfloat = 0;
    double f = 0;
    if (ndec > 0) { /* get_decimal_sum: 0 (an int) unless every word is a digit word */
        char ds[40] = "0.";
        int okd = ndec < 30;
        for (int j = 0; j < ndec && okd; j++) {
            if (dec[j] < 0 || dec[j] > 9) okd = 0;
            else ds[2 + j] = (char)('0' + dec[j]), ds[3 + j] = 0;
        }
        if (okd) {
            isfloat = 1;
            f = (double)total + strtod(ds, NULL);
        }
    }
    if (isfloat) ans_py_float_repr(f, buf, sizeof buf);
    else snprintf(buf, sizeof buf, "%lld", total);
    free(s);
    return xstrdup(buf);
}

/* Python repr(float). */
void ans_py_float_repr(double x, char *buf, size_t n) {
    if (isnan(x)) { snprintf(buf, n, "nan"); return; }
    if (isinf(x)) { snprintf(buf, n, x < 0 ? "-inf" : "inf"); return; }
    char e[40];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, x);
        if (strtod(e, NULL) == x) break;
    }
    /* e = [-]d[.ddd]e[+-]XX */
    char digits[24];
    int nd = 0, neg = e[0] == '-';
    const char *q = e + neg;
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9') digits[nd++] = *q;
    int ex = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    lr_buf b = {0};
    if (neg) buf_puts(&b, "-");
    if (ex >= -5 + 1 && ex < 16) { /* repr uses fixed notation for 1e-4 <= |x| < 1e16 */
        if (ex < 0) {
            buf_puts(&b, "0.");
            for (int i = 0; i < -ex - 1; i++) buf_puts(&b, "0");
            buf_puts(&b, digits);
        } else {
            for (int i = 0; i <= ex; i++) buf_put(&b, i < nd ? digits + i : "0", 1);
            buf_puts(&b, ".");
            if (nd > ex + 1) buf_puts(&b, digits + ex + 1);
            else buf_puts(&b, "0");
        }
    } else {
        buf_put(&b, digits, 1);
        if (nd > 1) {
            buf_puts(&b, ".");
            buf_puts(&b, digits + 1);
        }
        char t[16];
        snprintf(t, sizeof t, "e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
        buf_puts(&b, t);
    }
    snprintf(buf, n, "%s", b.p);
    free(b.p);
}

/* ---- strip_string helpers ---- */

/* re.sub(r"\\text{.*?}$", "", s).strip(): the first \text{ (newlines are
 * gone by now) when the string ends with a '}' after it. */
static char *text_at_end(const char *s) {
    size_t n = strlen(s);
    const char *t = strstr(s, "\\text{");
    if (!t || n == 0 || s[n - 1] != '}' || (size_t)(t - s) + 6 > n - 1) return ans_pystrip(s);
    char *c = strndup(s, (size_t)(t - s));
    char *r = ans_pystrip(c);
    free(c);
    return r;
}

/* re.sub(r"\\text\{(.*?)\}", r"\1", s) and re.sub(r"\\mbox{.*?}", "", s) */
static char *unwrap(char *s, const char *cmd, int keep) {
    size_t m = strlen(cmd);
    const char *hit = strstr(s, cmd);
    if (!hit) return s;
    lr_buf b = {0};
    const char *p = s;
    while (hit) {
        const char *close = hit + m;
        while (*close && *close != '}') close++;
        if (*close != '}') break; /* no '}' left: no later match either */
        buf_put(&b, p, (size_t)(hit - p));
        if (keep) buf_put(&b, hit + m, (size_t)(close - hit - m));
        p = close + 1;
        hit = strstr(p, cmd);
    }
    buf_puts(&b, p);
    free(s);
    return buf_take(&b);
}

/* re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s) */
static char *array_to_pmatrix(char *s) {
    const char *cmd = "\\begin{array}{";
    size_t m = strlen(cmd);
    if (!strstr(s, cmd)) return s;
    lr_buf b = {0};
    const char *p = s, *hit;
    while ((hit = strstr(p, cmd))) {
        const char *close = strchr(hit + m, '}');
        if (!close) break; /* (newlines are removed before this runs) */
        buf_put(&b, p, (size_t)(hit - p));
        buf_puts(&b, "\\begin{pmatrix}");
        p = close + 1;
    }
    buf_puts(&b, p);
    free(s);
    return buf_take(&b);
}

static int isdig(char c) { return c >= '0' && c <= '9'; }

/* re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s) then re.sub(r"(\d+)\.0*$", r"\1", s) */
static char *drop_zero_decimals(char *s) {
    size_t n = strlen(s), i = 0;
    lr_buf b = {0};
    while (i < n) {
        if (!isdig(s[i])) {
            buf_put(&b, s + i, 1);
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && isdig(s[j])) j++;
        if (j < n && s[j] == '.') {
            size_t k = j + 1;
            while (k < n && s[k] == '0') k++;
            if (k < n && !isdig(s[k])) {
                int cp, cl = ans_cp(s, n, k, &cp);
                buf_put(&b, s + i, j - i);
                buf_put(&b, s + k, (size_t)cl);
                i = k + (size_t)cl;
                continue;
            }
        }
        buf_put(&b, s + i, j - i);
        i = j;
    }
    free(s);
    s = buf_take(&b);
    n = strlen(s);
    size_t e = n;
    while (e > 0 && s[e - 1] == '0') e--;
    if (e > 1 && s[e - 1] == '.' && isdig(s[e - 2])) s[e - 1] = 0;
    return s;
}

/* _fix_sqrt: re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s) */
static char *fix_sqrt(char *s) {
    if (!strstr(s, "\\sqrt")) return s;
    size_t n = strlen(s);
    lr_buf b = {0};
    const char *p = s, *hit;
    while ((hit = strstr(p, "\\sqrt"))) {
        size_t i = (size_t)(hit - s) + 5, j = i;
        while (j < n) {
            int cp, k = ans_cp(s, n, j, &cp);
            if (!ans_is_word(cp)) break;
            j += k;
        }
        buf_put(&b, p, (size_t)(hit - p) + 5);
        if (j > i) {
            buf_puts(&b, "{");
            buf_put(&b, s + i, j - i);
            buf_puts(&b, "}");
        }
        p = s + j;
    }
    buf_puts(&b, p);
    free(s);
    return buf_take(&b);
}

/* _fix_fracs: \frac12 -> \frac{1}{2}, \frac1{72} -> \frac{1}{72}; a \frac
 * with fewer than two characters after it returns the string unchanged. */
static char *fix_fracs(char *s) {
    const char *hit = strstr(s, "\\frac");
    if (!hit) return s;
    size_t n = strlen(s);
    lr_buf b = {0};
    buf_put(&b, s, (size_t)(hit - s));
    while (hit) {
        const char *sub = hit + 5, *next = strstr(sub, "\\frac");
        size_t sl = next ? (size_t)(next - sub) : strlen(sub);
        buf_puts(&b, "\\frac");
        if (sl > 0 && sub[0] == '{') buf_put(&b, sub, sl);
        else {
            size_t off = (size_t)(sub - s);
            int cp, la = sl ? ans_cp(s, off + sl, off, &cp) : 0;
            if (sl == 0 || (size_t)la >= sl) {
                free(b.p);
                return s;
            }
            int lb = ans_cp(s, off + sl, off + la, &cp);
            const char *a = sub, *bb = sub + la, *post = sub + la + lb;
            size_t pl = sl - la - lb;
            if (!(lb == 1 && bb[0] == '{')) {
                buf_puts(&b, "{");
                buf_put(&b, a, la);
                buf_puts(&b, "}{");
                buf_put(&b, bb, lb);
                buf_puts(&b, "}");
            } else {
                buf_puts(&b, "{");
                buf_put(&b, a, la);
                buf_puts(&b, "}");
                buf_put(&b, bb, lb);
            }
            buf_put(&b, post, pl);
        }
        hit = next;
    }
    (void)n;
    free(s);
    return buf_take(&b);
}

/* Python int(x) followed by str() gives x back: an optional '-', then 0 or
 * a digit string without leading zeros, and not "-0". */
static int canonical_int(const char *a, size_t n) {
    size_t i = 0;
    if (i < n && a[i] == '-') i++;
    if (i >= n) return 0;
    for (size_t j = i; j < n; j++)
        if (!isdig(a[j])) return 0;
    if (a[i] == '0' && n - i > 1) return 0;
    if (a[i] == '0' && i == 1) return 0;
    return 1;
}

/* _fix_a_slash_b: "a/b" with integer a, b (or containing "sqrt") -> \frac{a}{b} */
static char *fix_a_slash_b(char *s) {
    const char *sl = strchr(s, '/');
    if (!sl || strchr(sl + 1, '/')) return s;
    size_t al = (size_t)(sl - s), bl = strlen(sl + 1);
    int aok = memmem(s, al, "sqrt", 4) ? 1 : canonical_int(s, al);
    int bok = strstr(sl + 1, "sqrt") ? 1 : canonical_int(sl + 1, bl);
    if (!aok || !bok) return s;
    lr_buf b = {0};
    buf_puts(&b, "\\frac{");
    buf_put(&b, s, al);
    buf_puts(&b, "}{");
    buf_puts(&b, sl + 1);
    buf_puts(&b, "}");
    free(s);
    return buf_take(&b);
}

static size_t cp_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n;) {
        int cp;
        i += ans_cp(s, n, i, &cp);
        c++;
    }
    return c;
}

/* parser.strip_string */
char *ans_strip(const char *in, int skip_unit) {
    char *s = ans_pystrip(in);
    s = repl(s, "\n", "");
    rstrip_chars(s, ".");
    s = repl(s, "\\!", "");
    s = array_to_pmatrix(s);
    s = repl(s, "\\end{array}", "\\end{pmatrix}");
    s = repl(s, "bmatrix", "pmatrix");
    s = repl(s, "tfrac", "frac");
    s = repl(s, "dfrac", "frac");
    s = repl(s, "\\neq", "\\ne");
    s = repl(s, "\\leq", "\\le");
    s = repl(s, "\\geq", "\\ge");
    s = repl(s, "\\left", "");
    s = repl(s, "\\right", "");
    s = repl(s, "\\{", "{");
    s = repl(s, "\\}", "}");
    /* a trailing \text{...} is a unit, unless it is all there is */
    char *t = text_at_end(s);
    if (t[0] && strcmp(t, s) != 0) s = set(s, t);
    else free(t);
    if (!skip_unit) {
        for (int round = 0; round < 2; round++)
            for (size_t k = 0; k < 2 * NUNITS; k++) {
                char *r = remove_unit(s, UNITS[k % NUNITS], k >= NUNITS);
                if (r && r[0]) s = set(s, r);
                else free(r);
            }
    }
    s = repl(s, "^{\\circ}", "");
    s = repl(s, "^\\circ", "");
    s = repl(s, "\\$", "");
    s = repl(s, "$", "");
    s = repl(s, "\\(", "");
    s = repl(s, "\\)", "");
    s = word_to_num(s);
    s = unwrap(s, "\\text{", 1);
    static const char *const KEYS[] = {"x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"};
    for (size_t k = 0; k < sizeof KEYS / sizeof KEYS[0]; k++) s = repl(s, KEYS[k], "");
    s = repl(s, "\\emptyset", "{}");
    s = repl(s, "(-\\infty,\\infty)", "\\mathbb{R}");
    s = repl(s, "\\%", "");
    s = repl(s, "%", "");
    s = repl(s, " .", " 0.");
    s = repl(s, "{.", "{0.");
    /* (the toolkit's "{...}".isalnum() unwrapping can never fire: '{' is not alphanumeric) */
    s = repl(s, "infinity", "\\infty");
    if (!strstr(s, "\\infty")) s = repl(s, "inf", "\\infty");
    s = repl(s, "+\\inity", "\\infty");
    s = repl(s, "and", "");
    s = repl(s, "\\mathbf", "");
    s = unwrap(s, "\\mbox{", 0);
    if (strchr(s, 'j') && !strchr(s, 'i')) s = repl(s, "j", "i");
    s = drop_zero_decimals(s);
    if (!s[0]) return s;
    if (s[0] == '.') {
        char *z = xmalloc(strlen(s) + 2);
        z[0] = '0';
        strcpy(z + 1, s);
        s = set(s, z);
    }
    /* "k = ..." with a short left side */
    const char *eq = strchr(s, '=');
    if (eq && !strchr(eq + 1, '=') && cp_count(s, (size_t)(eq - s)) <= 2) s = set(s, xstrdup(eq + 1));
    s = fix_sqrt(s);
    s = repl(s, " ", "");
    s = fix_fracs(s);
    s = fix_a_slash_b(s);
    return s;
}

/* ---- extraction ---- */

ans_kind ans_bench_kind(const char *b) {
    if (!strcmp(b, "mmlu_stem") || !strcmp(b, "sat_math") || !strcmp(b, "aqua") || !strcmp(b, "gaokao2023"))
        return ANS_CHOICE;
    if (!strcmp(b, "minerva_math") || !strcmp(b, "carp_en")) return ANS_NOUNIT;
    return ANS_MATH;
}

/* \b(A|B|C|D|E)\b over s.upper(): first (or last) standalone letter, 0 if none */
static char standalone_letter(const char *s, int want_first) {
    size_t n = strlen(s), i = 0;
    int prev_word = 0;
    char found = 0;
    while (i < n) {
        int cp, k = ans_cp(s, n, i, &cp);
        int up = (cp >= 'a' && cp <= 'e') ? cp - 32 : cp;
        if (up >= 'A' && up <= 'E' && !prev_word) {
            int ncp = -1;
            if (i + k < n) ans_cp(s, n, i + k, &ncp);
            if (i + k >= n || !ans_is_word(ncp)) {
                found = (char)up;
                if (want_first) return found;
            }
        }
        prev_word = ans_is_word(cp);
        i += k;
    }
    return found;
}

static void strip_nl(char *s) {
    lstrip_chars(s, "\n");
    rstrip_chars(s, "\n");
}

char *ans_choice_clean(const char *text) {
    char *p = xstrdup(text);
    strip_nl(p);
    /* more than one trigger means few-shot text: keep the first block */
    int icl = 0;
    static const char *const TRIG[] = {"choice is", "answer is"};
    for (int t = 0; t < 2; t++) {
        int c = 0;
        for (const char *q = p; (q = strstr(q, TRIG[t])); q += strlen(TRIG[t])) c++;
        if (c > 1) icl = 1;
    }
    if (icl) {
        char *dd = strstr(p, "\n\n");
        if (dd) *dd = 0;
    }
    /* re.split("choice is|answer is"): the piece after the last trigger */
    const char *after = NULL;
    for (const char *q = p; *q;) {
        if (!strncmp(q, "choice is", 9) || !strncmp(q, "answer is", 9)) {
            q += 9;
            after = q;
        } else q++;
    }
    int flag = after != NULL;
    char *r = xstrdup(after ? after : p);
    free(p);
    strip_nl(r);
    rstrip_chars(r, ".");
    rstrip_chars(r, "/");
    lstrip_chars(r, " ");
    rstrip_chars(r, " ");
    lstrip_chars(r, ":");
    char l = standalone_letter(r, flag);
    if (l) {
        free(r);
        r = xmalloc(2);
        r[0] = l;
        r[1] = 0;
    } else {
        r = set(r, ans_pystrip(r));
        lstrip_chars(r, ".");
        rstrip_chars(r, ".");
    }
    rstrip_chars(r, ".");
    rstrip_chars(r, "/");
    return r;
}

/* re.findall(r"-?\d*\.?\d+", s.replace(",", ""))[-1], or "" */
static char *last_number(const char *s) {
    size_t n = strlen(s);
    lr_buf b = {0};
    for (size_t i = 0; i < n; i++)
        if (s[i] != ',') buf_put(&b, s + i, 1);
    char *t = buf_take(&b);
    n = strlen(t);
    size_t ls = 0, le = 0, i = 0;
    int found = 0;
    while (i < n) {
        size_t k = i + (t[i] == '-');
        size_t e1 = k;
        while (e1 < n && isdig(t[e1])) e1++;
        size_t end = 0;
        if (e1 < n && t[e1] == '.' && e1 + 1 < n && isdig(t[e1 + 1])) {
            end = e1 + 1;
            while (end < n && isdig(t[end])) end++;
        } else if (e1 > k) end = e1;
        if (end) {
            ls = i;
            le = end;
            found = 1;
            i = end;
        } else i++;
    }
    char *r = found ? strndup(t + ls, le - ls) : xstrdup("");
    free(t);
    return r;
}

/* The text between the outer braces of "{...}" (unbalanced: everything). */
static char *brace_body(const char *a) {
    size_t depth = 1, i = 1;
    for (; a[i]; i++) {
        if (a[i] == '{') depth++;
        else if (a[i] == '}' && --depth == 0) break;
    }
    return strndup(a + 1, i - 1);
}

char *ans_extract_answer(const char *text, ans_kind kind) {
    char *p = xstrdup(text);
    p = repl(p, "\xd0\xba\xd0\xb8", ""); /* "ки" step tags of some PRM data */
    if (kind == ANS_CHOICE) {
        char *r = ans_choice_clean(p);
        free(p);
        return r;
    }
    char *pred;
    const char *q, *h;
    if ((q = strstr(p, "final answer is $")) && strstr(p, "$. I hope")) {
        q += strlen("final answer is $");
        const char *e = strstr(q, "$. I hope");
        char *t = e ? strndup(q, (size_t)(e - q)) : xstrdup(q);
        pred = ans_pystrip(t);
        free(t);
    } else if ((h = last_of(p, "boxed"))) {
        const char *a = h + 5;
        if (!a[0]) {
            free(p);
            return xstrdup("");
        }
        if (a[0] == '{') pred = brace_body(a);
        else {
            const char *d = strchr(a, '$');
            char *t = d ? strndup(a, (size_t)(d - a)) : xstrdup(a);
            pred = ans_pystrip(t);
            free(t);
        }
    } else if ((h = last_of(p, "he answer is"))) {
        pred = ans_pystrip(h + strlen("he answer is"));
    } else if ((h = last_of(p, "final answer is"))) {
        pred = ans_pystrip(h + strlen("final answer is"));
    } else if ((h = strstr(p, "\xe7\xad\x94\xe6\xa1\x88\xe6\x98\xaf"))) { /* 答案是: split(...)[1] */
        h += 9;
        const char *e = strstr(h, "\xe7\xad\x94\xe6\xa1\x88\xe6\x98\xaf");
        char *t = e ? strndup(h, (size_t)(e - h)) : xstrdup(h);
        char *u = ans_pystrip(t);
        char *dd = strstr(u, "\n\n");
        if (dd) *dd = 0;
        pred = ans_pystrip(u);
        free(t);
        free(u);
    } else pred = last_number(p);
    free(p);
    /* re.sub(r"\n\s*", "", pred) */
    if (strchr(pred, '\n')) {
        size_t n = strlen(pred), i = 0;
        lr_buf b = {0};
        while (i < n) {
            if (pred[i] == '\n') {
                i++;
                while (i < n) {
                    int cp, k = ans_cp(pred, n, i, &cp);
                    if (!ans_is_space(cp)) break;
                    i += k;
                }
            } else buf_put(&b, pred + i++, 1);
        }
        pred = set(pred, buf_take(&b));
    }
    if (pred[0] == ':') memmove(pred, pred + 1, strlen(pred));
    size_t n = strlen(pred);
    if (n && pred[n - 1] == '.') pred[--n] = 0;
    if (n && pred[n - 1] == '/') pred[--n] = 0;
    char *r = ans_strip(pred, kind == ANS_NOUNIT);
    free(pred);
    return r;
}

/* math_eval.py: output.rstrip(); cut at the first stop string; strip */
char *ans_cut_stop(const char *text) {
    static const char *const STOP[] = {"</s>", "<|im_end|>", "<|endoftext|>"};
    char *s = ans_pystrip(text);
    for (size_t k = 0; k < 3; k++) {
        char *h = strstr(s, STOP[k]);
        if (h) {
            *h = 0;
            s = set(s, ans_pystrip(s));
        }
    }
    return s;
}

char *ans_extract(const char *text, ans_kind kind) {
    char *code = ans_cut_stop(text);
    char *a = ans_extract_answer(code, kind);
    char *r = ans_strip(a, kind == ANS_NOUNIT);
    free(a);
    free(code);
    return r;
}

char *ans_gold(const char *gold_raw, ans_kind kind) {
    if (kind != ANS_NOUNIT) return ans_strip(gold_raw, 0);
    char *s = xstrdup(gold_raw);
    s = repl(s, "\\neq", "\\ne");
    s = repl(s, "\\leq", "\\le");
    return repl(s, "\\geq", "\\ge");
}
