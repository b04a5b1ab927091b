/* prompt: see prompt.h. */
#include "model/prompt.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"

typedef struct { const char *name, *tmpl; } preset_t;

/* Exactly the strings of METHOD.md (braces doubled: these are templates). */
static const preset_t PRESETS[] = {
    {"lightreasoner",
     "<|im_start|>system\nPlease reason step by step.<|im_end|>\n"
     "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"},
    {"qwen25-math-cot",
     "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{{}}.<|im_end|>\n"
     "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"},
    {"raw", "{question}"},
};
#define NPRESETS (sizeof PRESETS / sizeof PRESETS[0])

const char *const *prompt_presets(void) {
    static const char *names[NPRESETS + 1];
    for (size_t i = 0; i < NPRESETS; i++) names[i] = PRESETS[i].name;
    names[NPRESETS] = NULL;
    return names;
}

const char *prompt_preset_template(const char *name) {
    for (size_t i = 0; i < NPRESETS; i++)
        if (!strcmp(PRESETS[i].name, name)) return PRESETS[i].tmpl;
    return NULL;
}

int prompt_render_template(const char *tmpl, const char *where, const char *question, char **out) {
    static const char PH[] = "{question}";
    size_t tl = strlen(tmpl), ql = strlen(question), uses = 0;
    for (const char *p = strstr(tmpl, PH); p; p = strstr(p + 1, PH)) uses++;
    char *buf = xmalloc(tl + uses * ql + 1);
    size_t o = 0;
    uses = 0;
    for (size_t i = 0; i < tl;) {
        if (!strncmp(tmpl + i, PH, sizeof PH - 1)) {
            memcpy(buf + o, question, ql);
            o += ql, i += sizeof PH - 1, uses++;
        } else if ((tmpl[i] == '{' || tmpl[i] == '}') && tmpl[i + 1] == tmpl[i]) {
            buf[o++] = tmpl[i];
            i += 2;
        } else if (tmpl[i] == '{' || tmpl[i] == '}') {
            free(buf);
            return lr_err(LR_EINPUT, "%s: byte %zu: lone '%c' (write %c%c for a literal brace; the only field is {question})",
                          where, i, tmpl[i], tmpl[i], tmpl[i]);
        } else {
            buf[o++] = tmpl[i++];
        }
    }
    buf[o] = 0;
    if (!uses) {
        free(buf);
        return lr_err(LR_EINPUT, "%s: no {question} placeholder", where);
    }
    *out = buf;
    return LR_OK;
}

int prompt_render(const char *preset, const char *template_file, const char *question, char **out) {
    *out = NULL;
    if (preset && template_file) return lr_err(LR_EUSAGE, "give a prompt preset or a prompt file, not both");
    if (template_file) {
        char *tmpl;
        size_t len;
        int rc = lr_read_file(template_file, &tmpl, &len);
        if (rc) return rc;
        if (strlen(tmpl) != len) {
            free(tmpl);
            return lr_err(LR_EINPUT, "%s: contains a NUL byte", template_file);
        }
        rc = prompt_render_template(tmpl, template_file, question, out);
        free(tmpl);
        return rc;
    }
    const char *name = preset ? preset : "raw";
    const char *tmpl = prompt_preset_template(name);
    if (!tmpl) return lr_err(LR_EUSAGE, "unknown prompt preset \"%s\" (known: lightreasoner, qwen25-math-cot, raw)", name);
    return prompt_render_template(tmpl, name, question, out);
}

/* ---------------------------------------------------------------- */
/* chat templates                                                    */

enum { FAM_CHATML, FAM_DEEPSEEK, FAM_LLAMA3 };
static const char *const FAMILY[] = {"chatml", "deepseek-r1", "llama3"};

struct prompt_chat {
    int family;
    char *bos;         /* the bos_token, "" when none (Jinja renders undefined as "") */
    char *gen;         /* the generation prompt, as the template's literal says */
    int dated;         /* llama3: the system turn opens with knowledge + date lines */
    char *knowledge;   /* e.g. "Cutting Knowledge Date: December 2023\n" */
    char *date;        /* the "Today Date"; NULL = today (strftime_now) */
};

const char *prompt_chat_family(const prompt_chat *c) { return FAMILY[c->family]; }

void prompt_chat_free(prompt_chat *c) {
    if (!c) return;
    free(c->bos), free(c->gen), free(c->knowledge), free(c->date);
    free(c);
}

void prompt_chat_set_date(prompt_chat *c, const char *date) {
    free(c->date);
    c->date = xstrdup(date);
}

/* A Jinja string literal at *s (quote ' or "), its escapes decoded the way
 * Jinja's lexer does (Python unicode-escape) for the escapes templates use.
 * Returns the malloc'd value and sets *end after the closing quote; NULL
 * for anything else, so an unexpected construct refuses the template. */
static char *jinja_literal(const char *s, const char **end) {
    char q = *s;
    if (q != '\'' && q != '"') return NULL;
    size_t cap = strlen(s) + 1, o = 0;
    char *v = xmalloc(cap);
    for (s++; *s && *s != q; s++) {
        if (*s != '\\') { v[o++] = *s; continue; }
        s++;
        switch (*s) {
        case 'n': v[o++] = '\n'; break;
        case 't': v[o++] = '\t'; break;
        case 'r': v[o++] = '\r'; break;
        case '\\': case '\'': case '"': v[o++] = *s; break;
        default: free(v); return NULL;
        }
    }
    if (*s != q) { free(v); return NULL; }
    v[o] = 0;
    *end = s + 1;
    return v;
}

static const char *skip_ws(const char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    return s;
}

/* The expression of an output tag `{{ 'a' + "b" }}` (whitespace control
 * dashes allowed) made only of string literals: their concatenation. */
static char *literal_output(const char *s, const char **end) {
    if (strncmp(s, "{{", 2)) return NULL;
    s = skip_ws(s + 2 + (s[2] == '-'));
    char *acc = NULL;
    for (;;) {
        const char *e;
        char *v = jinja_literal(s, &e);
        if (!v) { free(acc); return NULL; }
        if (acc) {
            char *j = xmalloc(strlen(acc) + strlen(v) + 1);
            strcpy(j, acc), strcat(j, v);
            free(acc), free(v);
            acc = j;
        } else {
            acc = v;
        }
        s = skip_ws(e);
        if (*s != '+') break;
        s = skip_ws(s + 1);
    }
    if (*s == '-') s++;
    if (strncmp(s, "}}", 2)) { free(acc); return NULL; }
    *end = s + 2;
    return acc;
}

/* Start of the statement inside the `{%` tag at s (after `{%`, `-`, spaces). */
static const char *tag_body(const char *s) { return skip_ws(s + 2 + (s[2] == '-')); }

/* The generation prompt: the literal output right after the last
 * `{% if add_generation_prompt ... %}`. What follows it up to the tag's end
 * may only be an endif or Qwen3's `enable_thinking is false` block, which
 * the default (no enable_thinking given) leaves out. */
static char *generation_prompt(const char *t) {
    const char *tag = NULL;
    for (const char *p = strstr(t, "{%"); p; p = strstr(p + 2, "{%")) {
        const char *b = tag_body(p);
        if (!strncmp(b, "if add_generation_prompt", 24) && (b[24] == ' ' || b[24] == '%' || b[24] == '-')) tag = p;
    }
    if (!tag) return NULL;
    const char *close = strstr(tag, "%}");
    if (!close) return NULL;
    const char *s = skip_ws(close + 2), *e;
    char *gen = literal_output(s, &e);
    if (!gen) return NULL;
    s = skip_ws(e);
    if (strncmp(s, "{%", 2)) { free(gen); return NULL; }
    const char *b = tag_body(s);
    if (strncmp(b, "endif", 5) && strncmp(b, "if enable_thinking is defined and enable_thinking is false", 58)) {
        free(gen);
        return NULL;
    }
    return gen;
}

/* The template with `\n` escapes decoded and all whitespace removed: the
 * form the family markers are matched in, so layout and the two ways of
 * writing a newline in a literal do not matter. */
static char *squeeze(const char *t) {
    char *m = xmalloc(strlen(t) + 1);
    size_t o = 0;
    for (const char *p = t; *p; p++) {
        if (p[0] == '\\' && p[1] == 'n') { p++; continue; }
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') continue;
        m[o++] = *p;
    }
    m[o] = 0;
    return m;
}

int prompt_chat_parse(prompt_chat **out, const char *t, const char *bos, const char *where) {
    *out = NULL;
    char *m = squeeze(t), *gen = generation_prompt(t);
    prompt_chat *c = xcalloc(1, sizeof *c);
    c->family = -1;
    int ok = gen != NULL;
    if (ok && !strncmp(gen, "<|im_start|>assistant", 21) && strstr(m, "'<|im_start|>'+message") &&
        strstr(m, "<|im_end|>")) {
        /* Qwen's templates write the content untouched; a trimming variant
         * is some other template. */
        c->family = strstr(m, "trim") || strstr(m, "strip()") ? -1 : FAM_CHATML;
    } else if (ok && !strncmp(gen, "<｜Assistant｜>", strlen("<｜Assistant｜>")) &&
               strstr(m, "{{bos_token}}{{ns.system_prompt}}") && strstr(m, "{{'<｜User｜>'+message['content']}}")) {
        c->family = FAM_DEEPSEEK;
    } else if (ok && !strcmp(gen, "<|start_header_id|>assistant<|end_header_id|>\n\n") &&
               strstr(m, "'<|start_header_id|>'+message['role']+'<|end_header_id|>'+message['content']|trim+'<|eot_id|>'")) {
        if (strstr(m, "CuttingKnowledgeDate")) {
            /* 3.1 and later: system turn = knowledge + date + trimmed system */
            const char *k = strstr(t, "Cutting Knowledge Date"), *e;
            if (k > t && (k[-1] == '"' || k[-1] == '\'')) c->knowledge = jinja_literal(k - 1, &e);
            const char *ds = strstr(t, "set date_string = ");
            if (!strstr(t, "strftime_now") && ds) c->date = jinja_literal(ds + 18, &e);
            if (c->knowledge && (c->date || strstr(t, "strftime_now")) && strstr(m, "{{-bos_token}}") &&
                strstr(m, "\"TodayDate:\"+date_string+\"\"") && strstr(m, "system_message=messages[0]['content']|trim"))
                c->family = FAM_LLAMA3, c->dated = 1;
        } else if (strstr(m, "{%setcontent=bos_token+content%}")) {
            c->family = FAM_LLAMA3;
        }
    }
    free(m);
    if (c->family < 0) {
        free(gen);
        prompt_chat_free(c);
        return lr_err(LR_EINPUT, "%s: a template of no family this tool renders (ChatML/Qwen, DeepSeek-R1-Distill, "
                      "Llama 3); give --preset NAME or --prompt-file FILE", where);
    }
    c->gen = gen;
    c->bos = xstrdup(bos ? bos : "");
    *out = c;
    return LR_OK;
}

/* Python's str.isspace code points (what Jinja's trim filter strips). */
static int py_space(uint32_t cp) {
    return (cp >= 9 && cp <= 13) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000;
}

/* Decodes the UTF-8 character at s (n bytes left); 0 when invalid. */
static size_t utf8_at(const unsigned char *s, size_t n, uint32_t *cp) {
    if (s[0] < 0x80) { *cp = s[0]; return 1; }
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (!len || len > n) return 0;
    uint32_t v = s[0] & (0x3f >> (len - 1));
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0;
        v = v << 6 | (s[k] & 0x3f);
    }
    *cp = v;
    return len;
}

/* The [start, start + len) of s that Python's s.strip() keeps. */
static int py_strip(const char *s, size_t *start, size_t *len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), k;
    uint32_t cp;
    /* character boundaries, so that the end can be walked backwards */
    size_t *bound = xmalloc((n + 1) * sizeof *bound), nb = 0;
    for (size_t i = 0; i < n; i += k) {
        if (!(k = utf8_at(u + i, n - i, &cp))) { free(bound); return -1; }
        bound[nb++] = i;
    }
    bound[nb] = n;
    size_t i = 0, j = nb;
    while (i < nb && (utf8_at(u + bound[i], n - bound[i], &cp), py_space(cp))) i++;
    while (j > i && (utf8_at(u + bound[j - 1], n - bound[j - 1], &cp), py_space(cp))) j--;
    *start = bound[i], *len = bound[j] - bound[i];
    free(bound);
    return 0;
}

static void put(char **buf, size_t *o, size_t *cap, const char *s, size_t n) {
    if (*o + n + 1 > *cap) *buf = xrealloc(*buf, *cap = 2 * (*o + n + 1));
    memcpy(*buf + *o, s, n);
    *o += n;
    (*buf)[*o] = 0;
}
#define PUTS(s) put(&buf, &o, &cap, (s), strlen(s))

int prompt_chat_render(const prompt_chat *c, const char *system, const char *question, char **out) {
    *out = NULL;
    size_t cap = strlen(system) + strlen(question) + 256, o = 0;
    char *buf = xmalloc(cap);
    buf[0] = 0;
    switch (c->family) {
    case FAM_CHATML:
        PUTS("<|im_start|>system\n"), PUTS(system), PUTS("<|im_end|>\n<|im_start|>user\n"), PUTS(question);
        PUTS("<|im_end|>\n"), PUTS(c->gen);
        break;
    case FAM_DEEPSEEK:
        PUTS(c->bos), PUTS(system), PUTS("<｜User｜>"), PUTS(question), PUTS(c->gen);
        break;
    case FAM_LLAMA3: {
        size_t sa, sl, qa, ql;
        if (py_strip(system, &sa, &sl) || py_strip(question, &qa, &ql)) {
            free(buf);
            return lr_err(LR_EINPUT, "chat template: the text is not valid UTF-8");
        }
        PUTS(c->bos), PUTS("<|start_header_id|>system<|end_header_id|>\n\n");
        if (c->dated) {
            char today[64];
            const char *d = c->date;
            if (!d) {
                time_t now = time(NULL);
                struct tm tm;
                strftime(today, sizeof today, "%d %b %Y", localtime_r(&now, &tm));
                d = today;
            }
            PUTS(c->knowledge), PUTS("Today Date: "), PUTS(d), PUTS("\n\n");
        }
        put(&buf, &o, &cap, system + sa, sl);
        PUTS("<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n");
        put(&buf, &o, &cap, question + qa, ql);
        PUTS("<|eot_id|>"), PUTS(c->gen);
        break;
    }
    }
    *out = buf;
    return LR_OK;
}

/* bos_token: a string, an AddedToken object {"content": ...}, or null. */
static int read_bos(json_t *root, const char *file, const char **bos) {
    json_t *v = json_object_get(root, "bos_token");
    *bos = NULL;
    if (!v || json_is_null(v)) return LR_OK;
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v))
        return lr_err(LR_EINPUT, "%s: field \"bos_token\": expected a string, {\"content\": string} or null", file);
    *bos = json_string_value(v);
    return LR_OK;
}

int prompt_chat_load(prompt_chat **c, const char *dir) {
    *c = NULL;
    size_t n = strlen(dir) + 32;
    char *cfg = xmalloc(n), *jin = xmalloc(n), *where = NULL, *jtext = NULL;
    snprintf(cfg, n, "%s/tokenizer_config.json", dir);
    snprintf(jin, n, "%s/chat_template.jinja", dir);
    json_t *root = NULL;
    const char *tmpl = NULL, *bos = NULL;
    int rc = LR_OK;
    if (access(cfg, F_OK) == 0) {
        json_error_t je;
        root = json_load_file(cfg, 0, &je);
        if (!root)
            rc = access(cfg, R_OK) ? lr_err(LR_EIO, "%s: cannot read", cfg)
                                   : lr_err(LR_EINPUT, "%s: line %d: %s", cfg, je.line, je.text);
        else if (!json_is_object(root)) rc = lr_err(LR_EINPUT, "%s: not a JSON object", cfg);
        else rc = read_bos(root, cfg, &bos);
    }
    /* transformers >= 4.50 saves the template beside the config, and a
     * chat_template.jinja wins over the config's field when loading. */
    if (!rc && access(jin, F_OK) == 0) {
        size_t len;
        if (!(rc = lr_read_file(jin, &jtext, &len))) {
            if (strlen(jtext) != len) rc = lr_err(LR_EINPUT, "%s: contains a NUL byte", jin);
            tmpl = jtext, where = xstrdup(jin);
        }
    } else if (!rc && root) {
        json_t *v = json_object_get(root, "chat_template");
        if (json_is_array(v)) {  /* named templates: transformers uses "default" */
            size_t i;
            json_t *e, *dflt = NULL;
            json_array_foreach(v, i, e) {
                json_t *nm = json_object_get(e, "name");
                if (json_is_string(nm) && !strcmp(json_string_value(nm), "default")) dflt = json_object_get(e, "template");
            }
            if (!json_is_string(dflt))
                rc = lr_err(LR_EINPUT, "%s: field \"chat_template\": a list without a \"default\" template string", cfg);
            v = dflt;
        }
        if (!rc && v && !json_is_null(v) && !json_is_string(v))
            rc = lr_err(LR_EINPUT, "%s: field \"chat_template\": expected a string", cfg);
        if (!rc && json_is_string(v)) {
            tmpl = json_string_value(v);
            size_t wl = strlen(cfg) + 32;
            where = xmalloc(wl);
            snprintf(where, wl, "%s: field \"chat_template\"", cfg);
        }
    }
    if (!rc && tmpl) rc = prompt_chat_parse(c, tmpl, bos, where);
    json_decref(root);
    free(cfg), free(jin), free(where), free(jtext);
    return rc;
}
