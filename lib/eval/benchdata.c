/* benchdata: see benchdata.h. Field names, the question assembly and the
 * gold extraction follow parse_question / parse_ground_truth in the
 * toolkit's evaluation/parser.py, data set by data set. */
#include "eval/benchdata.h"

#include "io/jsonl.h"

#include "eval/answer.h"
#include "model/prompt.h"
#include "base/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const NAMES[BD_NLAYOUTS] = {"gsm8k", "math500", "svamp", "asdiv", "minerva_math",
                                              "olympiadbench", "mmlu_stem"};

const char *bd_layout_name(bd_layout l) { return l < BD_NLAYOUTS ? NAMES[l] : "?"; }

const char *bd_layout_list(void) { return "gsm8k, math500, svamp, asdiv, minerva_math, olympiadbench, mmlu_stem"; }

int bd_layout_from_name(const char *name, bd_layout *out) {
    for (int i = 0; i < BD_NLAYOUTS; i++)
        if (!strcmp(name, NAMES[i])) {
            *out = (bd_layout)i;
            return 0;
        }
    return -1;
}

int bd_layout_guess(const char *path, bd_layout *out) {
    /* the nearest path component (directory or file stem) that names a layout */
    char *p = xstrdup(path);
    int found = -1;
    for (char *tok = strtok(p, "/"); tok; tok = strtok(NULL, "/")) {
        char *dot = strchr(tok, '.');
        if (dot) *dot = 0;
        bd_layout l;
        if (!bd_layout_from_name(tok, &l)) {
            *out = l;
            found = 0;
        }
    }
    free(p);
    return found;
}

struct bd_reader {
    jsonl in;
    char *path, *stem;
    bd_layout layout;
};

int bd_open(const char *path, const char *layout, bd_reader **out) {
    bd_layout l;
    if (layout) {
        if (bd_layout_from_name(layout, &l))
            return lr_err(LR_EUSAGE, "unknown benchmark layout \"%s\" (known: %s)", layout, bd_layout_list());
    } else if (bd_layout_guess(path, &l))
        return lr_err(LR_EUSAGE, "%s: cannot tell the benchmark layout from the path (name one of: %s)", path,
                      bd_layout_list());
    int std = !strcmp(path, "-");
    bd_reader *r = xcalloc(1, sizeof *r);
    r->path = xstrdup(path);
    int rc = jsonl_open(&r->in, r->path);
    if (rc) {
        free(r->path);
        free(r);
        return rc;
    }
    const char *base = strrchr(path, '/');
    r->stem = xstrdup(std ? "stdin" : base ? base + 1 : path);
    char *dot = strchr(r->stem, '.');
    if (dot) *dot = 0;
    r->layout = l;
    *out = r;
    return LR_OK;
}

bd_layout bd_reader_layout(const bd_reader *r) { return r->layout; }

void bd_close(bd_reader *r) {
    if (!r) return;
    jsonl_close(&r->in);
    free(r->path);
    free(r->stem);
    free(r);
}

void bd_item_free(bd_item *it) {
    free(it->id);
    free(it->question);
    free(it->gold);
    free(it->gold_norm);
    free(it->subject);
    memset(it, 0, sizeof *it);
}

/* A string field, or NULL. */
static const char *str_field(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static char *cat3(const char *a, const char *sep, const char *b) {
    size_t n = strlen(a) + strlen(sep) + strlen(b) + 1;
    char *r = xmalloc(n);
    snprintf(r, n, "%s%s%s", a, sep, b);
    return r;
}

/* re.sub(r"\(.*?\)", "", s): asdiv's "9 (apples)" -> "9 " */
static char *drop_parens(const char *s) {
    size_t n = strlen(s), o = 0;
    char *r = xmalloc(n + 1);
    for (size_t i = 0; i < n;) {
        if (s[i] == '(') {
            size_t j = i + 1;
            while (j < n && s[j] != ')' && s[j] != '\n') j++;
            if (j < n && s[j] == ')') {
                i = j + 1;
                continue;
            }
        }
        r[o++] = s[i++];
    }
    r[o] = 0;
    return r;
}

static int bad(bd_reader *r, const char *what) {
    return lr_err(LR_EINPUT, "%s: line %zu: %s", r->path, r->in.lineno, what);
}

/* question and raw gold of one parsed row, per layout */
static int fill(bd_reader *r, json_t *o, bd_item *it) {
    const char *q = NULL;
    char *question = NULL, *gold = NULL;
    switch (r->layout) {
    case BD_GSM8K: {
        const char *a = str_field(o, "answer");
        if (!(q = str_field(o, "question"))) return bad(r, "field \"question\": missing or not a string");
        if (!a) return bad(r, "field \"answer\": missing or not a string");
        const char *h = strstr(a, "####");
        if (!h || strstr(h + 4, "####")) return bad(r, "field \"answer\": no single \"####\" before the gold answer");
        gold = xstrdup(h + 4);
        break;
    }
    case BD_MATH500:
        if (!(q = str_field(o, "problem"))) return bad(r, "field \"problem\": missing or not a string");
        if (!str_field(o, "answer")) return bad(r, "field \"answer\": missing or not a string");
        gold = xstrdup(str_field(o, "answer"));
        break;
    case BD_SVAMP: {
        const char *body = str_field(o, "Body"), *qq = str_field(o, "Question");
        json_t *a = json_object_get(o, "Answer");
        if (!body) return bad(r, "field \"Body\": missing or not a string");
        if (!qq) return bad(r, "field \"Question\": missing or not a string");
        char buf[64];
        if (json_is_real(a)) ans_py_float_repr(json_real_value(a), buf, sizeof buf);
        else if (json_is_integer(a)) snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(a));
        else if (json_is_string(a)) snprintf(buf, sizeof buf, "%.60s", json_string_value(a));
        else return bad(r, "field \"Answer\": missing or not a number");
        gold = xstrdup(buf);
        /* parse_question: body stripped, a '.' added when missing, then the question */
        char *b = ans_pystrip(body), *qs = ans_pystrip(qq);
        size_t bl = strlen(b);
        char *b2 = (bl && b[bl - 1] == '.') ? xstrdup(b) : cat3(b, "", ".");
        question = cat3(b2, " ", qs);
        free(b);
        free(b2);
        free(qs);
        break;
    }
    case BD_ASDIV: {
        const char *body = str_field(o, "body"), *qq = str_field(o, "question"), *a = str_field(o, "answer");
        if (!body) return bad(r, "field \"body\": missing or not a string");
        if (!qq) return bad(r, "field \"question\": missing or not a string");
        if (!a) return bad(r, "field \"answer\": missing or not a string");
        gold = drop_parens(a);
        char *b = ans_pystrip(body), *qs = ans_pystrip(qq);
        question = cat3(b, " ", qs);
        free(b);
        free(qs);
        break;
    }
    case BD_MINERVA: {
        const char *sol = str_field(o, "solution");
        if (!(q = str_field(o, "problem"))) return bad(r, "field \"problem\": missing or not a string");
        if (!sol) return bad(r, "field \"solution\": missing or not a string");
        gold = ans_extract_answer(sol, ANS_NOUNIT);
        break;
    }
    case BD_OLYMPIAD: {
        json_t *fa = json_object_get(o, "final_answer");
        if (!(q = str_field(o, "question"))) return bad(r, "field \"question\": missing or not a string");
        if (!json_is_array(fa) || json_array_size(fa) == 0 || !json_is_string(json_array_get(fa, 0)))
            return bad(r, "field \"final_answer\": missing, empty or not a list of strings");
        const char *a = json_string_value(json_array_get(fa, 0));
        size_t s = 0, e = strlen(a);
        while (s < e && a[s] == '$') s++;
        while (e > s && a[e - 1] == '$') e--;
        gold = strndup(a + s, e - s);
        break;
    }
    case BD_MMLU_STEM: {
        json_t *ch = json_object_get(o, "choices"), *a = json_object_get(o, "answer");
        if (!(q = str_field(o, "question"))) return bad(r, "field \"question\": missing or not a string");
        if (!json_is_array(ch) || json_array_size(ch) != 4)
            return bad(r, "field \"choices\": missing or not a list of 4 options");
        if (!json_is_integer(a) || json_integer_value(a) < 0 || json_integer_value(a) > 3)
            return bad(r, "field \"answer\": missing or not an index 0-3");
        gold = xmalloc(2);
        gold[0] = (char)('A' + json_integer_value(a));
        gold[1] = 0;
        /* "{question}\nAnswer Choices: (A) ... (B) ..." with str(option).strip() */
        char *qs = ans_pystrip(q);
        size_t cap = strlen(qs) + 64;
        char *opt[4];
        for (int i = 0; i < 4; i++) {
            json_t *v = json_array_get(ch, i);
            char *t;
            if (json_is_string(v)) t = ans_pystrip(json_string_value(v));
            else {
                char *d = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
                t = d ? ans_pystrip(d) : xstrdup("");
                free(d);
            }
            opt[i] = t;
            cap += strlen(t) + 8;
        }
        question = xmalloc(cap);
        int n = snprintf(question, cap, "%s\nAnswer Choices:", qs);
        for (int i = 0; i < 4; i++) n += snprintf(question + n, cap - (size_t)n, " (%c) %s", 'A' + i, opt[i]);
        for (int i = 0; i < 4; i++) free(opt[i]);
        free(qs);
        q = NULL;
        break;
    }
    default:
        return bad(r, "internal: unknown layout");
    }
    if (!question) question = xstrdup(q);
    ans_kind kind = ans_bench_kind(NAMES[r->layout]);
    char *norm = ans_gold(gold, kind);
    /* parse_question: yes/no and true/false golds tell the model so */
    const char *suffix = "";
    if (!strcasecmp(norm, "true") || !strcasecmp(norm, "false")) suffix = " (True or False)";
    if (!strcasecmp(norm, "yes") || !strcasecmp(norm, "no")) suffix = " (Yes or No)";
    char *full = cat3(question, suffix, "");
    free(question);
    it->question = ans_pystrip(full);
    free(full);
    if (!it->question[0]) { /* math_eval.py skips a row whose question is empty */
        free(it->question);
        it->question = NULL;
        free(gold);
        free(norm);
        return bad(r, "empty question");
    }
    it->gold = gold;
    it->gold_norm = norm;
    return LR_OK;
}

int bd_next(bd_reader *r, bd_item *it) {
    memset(it, 0, sizeof *it);
    json_t *o;
    int rc = jsonl_next(&r->in, JSONL_OBJECT, &o);
    if (rc) return rc;
    size_t lineno = r->in.lineno - 1; /* 0-based: the row's place in the file, for ids */
    rc = fill(r, o, it);
    json_t *sj = json_object_get(o, "subject"), *lj = json_object_get(o, "level");
    it->level = -1;
    if (!rc && json_is_string(sj)) it->subject = xstrdup(json_string_value(sj));
    if (json_is_integer(lj)) it->level = (int)json_integer_value(lj);
    else if (json_is_string(lj) && sscanf(json_string_value(lj), "Level %d", &it->level) != 1) it->level = -1;
    json_decref(o);
    if (rc) return rc;
    char id[512];
    snprintf(id, sizeof id, "%s/%s:%zu", NAMES[r->layout], r->stem, lineno);
    it->id = xstrdup(id);
    it->line = lineno;
    return LR_OK;
}

/* examples.py get_examples()["mmlu_stem"] (the toolkit's five MMLU-STEM
 * shots, marked "mammoth" there), byte for byte: the toolkit's Python source
 * writes some \frac and \right with a single backslash, which Python reads
 * as a form feed or carriage return; C reads these literals the same way. */
static const char *const MMLU_SHOTS[5][2] = {
    {"Simplify and write the result with a rational denominator: $$\\sqrt{\\sqrt[3]{\\sqrt{\frac{1}{729}}}}$$\nAnswer Choices: (A) \\frac{3\\sqrt{3}}{3} (B) \\frac{1}{3} (C) \\sqrt{3} (D) \\frac{\\sqrt{3}}{3}",
     "Factoring $729=3^6$ and combining the roots $\\frac{1}{2}\\frac{1}{3}\\frac{1}{2}=\\frac{1}{12}$, we get that $\\sqrt{\\sqrt[3]{\\sqrt{\frac{1}{729}}}}=\\left(\frac{1}{3^6}\right)^{\\frac{1}{12}}=\frac{1}{3^{\\frac{1}{2}}}=\frac{3}{\\sqrt{3}}$. The answer is (D)."},
    {"In animal cells, which of the following represents the most likely pathway that a secretory protein takes as it is synthesized in a cell?\nAnswer Choices: (A) Plasma membrane–Golgi apparatus–ribosome–secretory vesicle–rough ER (B) Ribosome–Golgi apparatus–rough ER–secretory vesicle–plasma membrane (C) Plasma membrane–Golgi apparatus–ribosome–secretory vesicle–rough ER (D) Ribosome–rough ER–Golgi apparatus–secretory vesicle–plasma membrane",
     "Protein synthesis starts at the ribosome, so we can eliminate (A) and (C). The ribosome is often in the endoplasmic reticulum and moves from there to the Golgi apparatus, where it is modified and packaged into a vesicle. The vesicle then floats to the plasma membrane and is secreted. The answer is (D)."},
    {"A microwave oven is connected to an outlet, 120 V, and draws a current of 2 amps. At what rate is energy being used by the microwave oven?\nAnswer Choices: (A) 10 W (B) 30 W (C) 60 W (D) 240 W",
     "Rate of energy usage is known as power; in an dissipative electrical circuit, power is given by voltage times current. So in our case, the power is 120 V times 2 amps, or 240 W. The answer is (D)."},
    {"Which of the following is considered an acid anhydride?\nAnswer Choices: (A) HCl (B) H2SO3 (C) SO2 (D) Al(NO3)3",
     "An acid anhydride is a compound that is derived by removing water from an acid. The chemical formula for water is H2O, which means that we need to determine which of these options, when combined with H2O, forms an acid. SO2, or Sulfur dioxide, when combined with H2O, makes H2SO4, or sulfuric acid. The answer is (C)."},
    {"What is the output of \"abc\"[::-1] in Python 3? \nAnswer Choices: (A) Error (B) abc (C) cba (D) c",
     "We know that the slicing operator [::-1] takes all of the elements in the string in reverse order, so we reverse the order of the string \"abc\", resulting in \"cba\". The answer is (C)."},
};

/* utils.py construct_prompt with PROMPT_TEMPLATES["qwen25-math-cot"] (the
 * preset of prompt.c): demo_prompt = "\n\n".join(input.format(q) + a for the
 * shots); full = demo_prompt + "\n\n" + input.format(question), then
 * .strip(" "). */
char *bd_prompt(bd_layout l, const char *question) { return bd_prompt_shots(l, question, BD_MMLU_MAX_SHOTS); }

char *bd_prompt_shots(bd_layout l, const char *question, int mmlu_shots) {
    const char *tmpl = prompt_preset_template("qwen25-math-cot");
    int shots = l == BD_MMLU_STEM ? (mmlu_shots < 0 ? 0 : mmlu_shots > 5 ? 5 : mmlu_shots) : 0;
    char *ctx = NULL;
    if (prompt_render_template(tmpl, "qwen25-math-cot", question, &ctx)) return NULL; /* the preset is well formed */
    size_t cap = strlen(ctx) + 1;
    char *shot[5] = {0};
    for (int i = 0; i < shots; i++) {
        if (prompt_render_template(tmpl, "qwen25-math-cot", MMLU_SHOTS[i][0], &shot[i])) return NULL;
        cap += strlen(shot[i]) + strlen(MMLU_SHOTS[i][1]) + 2;
    }
    char *p = xmalloc(cap);
    size_t n = 0;
    for (int i = 0; i < shots; i++) {
        n += (size_t)snprintf(p + n, cap - n, "%s%s\n\n", shot[i], MMLU_SHOTS[i][1]);
        free(shot[i]);
    }
    n += (size_t)snprintf(p + n, cap - n, "%s", ctx);
    free(ctx);
    size_t a = 0;
    while (p[a] == ' ') a++;
    while (n > a && p[n - 1] == ' ') p[--n] = 0;
    memmove(p, p + a, n - a + 1);
    return p;
}
