/* test_prompt: the presets render exactly the METHOD.md strings (and what
 * transformers' Qwen chat template renders, tests/golden/prompt_ref.json),
 * the template-file rules ({question}, {{ }}, errors), and the rendered
 * prompts tokenize to the ids Hugging Face gets. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model/prompt.h"
#include "model/tokenizer.h"
#include "base/util.h"

/* Copied from METHOD.md (stage 1 and "qwen25-math-cot"), {question} kept. */
static const char METHOD_LR[] =
    "<|im_start|>system\nPlease reason step by step.<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
    "<|im_start|>assistant\n";
static const char METHOD_COT[] =
    "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
    "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n";

static char *subst(const char *tmpl, const char *q) {
    const char *p = strstr(tmpl, "{question}");
    char *out = xmalloc(strlen(tmpl) + strlen(q) + 1);
    sprintf(out, "%.*s%s%s", (int)(p - tmpl), tmpl, q, p + 10);
    return out;
}

static int render_str(const char *tmpl, const char *q, char **out) {
    return prompt_render_template(tmpl, "test", q, out);
}

int main(void) {
    const char *root = getenv("LR_ROOT") ? getenv("LR_ROOT") : ".";
    char path[4200];
    snprintf(path, sizeof path, "%s/tests/golden/prompt_ref.json", root);
    json_error_t je;
    json_t *ref = json_load_file(path, 0, &je);
    CHECKF(ref != NULL, "%s: %s", path, je.text);
    if (!ref) CHECK_DONE();
    const char *q = json_string_value(json_object_get(ref, "question"));

    char *out, *want;
    CHECK(prompt_render("lightreasoner", NULL, q, &out) == 0);
    want = subst(METHOD_LR, q);
    CHECKF(!strcmp(out, want), "lightreasoner: %s", out);
    CHECK(!strcmp(out, json_string_value(json_object_get(ref, "lightreasoner"))));
    free(want), free(out);
    CHECK(prompt_render("qwen25-math-cot", NULL, q, &out) == 0);
    want = subst(METHOD_COT, q);
    CHECKF(!strcmp(out, want), "qwen25-math-cot: %s", out);
    CHECK(!strcmp(out, json_string_value(json_object_get(ref, "qwen25-math-cot"))));
    free(want), free(out);
    /* A question with braces and a literal "{question}" is inserted as is. */
    CHECK(prompt_render("raw", NULL, "\\boxed{x} {question} }{", &out) == 0 && !strcmp(out, "\\boxed{x} {question} }{"));
    free(out);
    CHECK(prompt_render(NULL, NULL, "q", &out) == 0 && !strcmp(out, "q"));
    free(out);

    const char *const *names = prompt_presets();
    int n = 0;
    for (; names[n]; n++) CHECK(prompt_preset_template(names[n]) != NULL);
    CHECK(n == 3);
    CHECK(prompt_render("nope", NULL, "q", &out) == LR_EUSAGE && strstr(lr_errmsg(), "nope"));

    /* Template rules. */
    CHECK(render_str("a {{b}} {question} }}{{", "Q", &out) == 0 && !strcmp(out, "a {b} Q }{"));
    free(out);
    CHECK(render_str("{question}|{question}", "xy", &out) == 0 && !strcmp(out, "xy|xy"));
    free(out);
    CHECK(render_str("\\boxed{} {question}", "Q", &out) == LR_EINPUT && strstr(lr_errmsg(), "byte 6"));
    CHECK(render_str("{question} }", "Q", &out) == LR_EINPUT);
    CHECK(render_str("{Question}", "Q", &out) == LR_EINPUT);
    CHECK(render_str("no placeholder", "Q", &out) == LR_EINPUT && strstr(lr_errmsg(), "{question}"));

    /* Template file: bytes kept verbatim, including the final newline. */
    char tf[4200];
    snprintf(tf, sizeof tf, "%s/prompt.txt", getenv("LR_TMP") ? getenv("LR_TMP") : "/tmp");
    FILE *f = fopen(tf, "w");
    fputs("<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{{}}.<|im_end|>\n"
          "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n", f);
    fclose(f);
    CHECK(prompt_render(NULL, tf, q, &out) == 0);
    CHECK(!strcmp(out, json_string_value(json_object_get(ref, "qwen25-math-cot"))));
    free(out);
    CHECK(prompt_render("raw", tf, q, &out) == LR_EUSAGE);
    remove(tf);
    CHECK(prompt_render(NULL, tf, q, &out) == LR_EIO);

    /* The rendered prompts give Hugging Face's ids. */
    char tp[4200];
    snprintf(tp, sizeof tp, "%s/build/tokenizers/qwen", root); /* unpacked by the build */
    tok_t *t;
    int rc = tok_load(&t, tp);
    CHECKF(rc == 0, "%s", lr_errmsg());
    static const char *const P[] = {"lightreasoner", "qwen25-math-cot"};
    for (int i = 0; i < 2 && rc == 0; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s_ids", P[i]);
        json_t *ids = json_object_get(ref, key);
        CHECK(prompt_render(P[i], NULL, q, &out) == 0);
        int32_t *got;
        size_t ng;
        CHECK(tok_encode(t, out, strlen(out), &got, &ng) == 0);
        int same = ng == json_array_size(ids);
        for (size_t k = 0; same && k < ng; k++) same = got[k] == json_integer_value(json_array_get(ids, k));
        CHECKF(same, "%s: ids differ from Hugging Face's", P[i]);
        CHECK(ng > 0 && got[0] == tok_id(t, "<|im_start|>"));
        free(got);
        free(out);
    }
    tok_free(t);
    json_decref(ref);
    CHECK_DONE();
}
