/* prompt: see prompt.h. */
#include "model/prompt.h"

#include <stdlib.h>
#include <string.h>

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
