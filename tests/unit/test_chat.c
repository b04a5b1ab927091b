/* test_chat: the model's own prompt. Every chat template of
 * tests/golden/chat_templates.json (the real template texts of Qwen2.5,
 * Qwen2.5-Math, plain ChatML, DeepSeek-R1-Distill old and new, Llama 3 and
 * 3.1, Qwen3, a <think> variant of Qwen2.5-Math, rendered there by transformers' apply_chat_template) renders byte
 * for byte the same here; the unknown ones are refused naming --preset and
 * --prompt-file; tokenizer_config.json reading (bos_token forms, named
 * templates, chat_template.jinja, bad fields) gives one message naming the
 * file and field. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "model/prompt.h"
#include "base/util.h"

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); exit(1); }
    fputs(text, f);
    fclose(f);
}

/* Loads dir after writing its tokenizer_config.json as given. */
static int load_cfg(const char *dir, const char *cfg_json, prompt_chat **c) {
    char p[4300];
    mkdir(dir, 0777);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    write_file(p, cfg_json);
    return prompt_chat_load(c, dir);
}

static json_t *known_case(json_t *known, const char *name) {
    size_t i;
    json_t *k;
    json_array_foreach(known, i, k) if (!strcmp(json_string_value(json_object_get(k, "name")), name)) return k;
    fprintf(stderr, "golden: no case %s\n", name);
    exit(1);
}

int main(void) {
    const char *root = getenv("LR_ROOT") ? getenv("LR_ROOT") : ".";
    const char *tmp = getenv("LR_TMP") ? getenv("LR_TMP") : "/tmp";
    char path[4200];
    snprintf(path, sizeof path, "%s/tests/golden/chat_templates.json", root);
    json_error_t je;
    json_t *g = json_load_file(path, 0, &je);
    CHECKF(g != NULL, "%s: %s", path, je.text);
    if (!g) CHECK_DONE();
    const char *sys = json_string_value(json_object_get(g, "system"));
    CHECK(sys && !strcmp(sys, PROMPT_CHAT_SYSTEM));
    json_t *qs = json_object_get(g, "questions"), *known = json_object_get(g, "known");
    CHECK(json_array_size(known) >= 8 && json_array_size(qs) >= 4);

    size_t i, j;
    json_t *k;
    json_array_foreach(known, i, k) {
        const char *name = json_string_value(json_object_get(k, "name"));
        json_t *bos = json_object_get(k, "bos_token");
        prompt_chat *c;
        int rc = prompt_chat_parse(&c, json_string_value(json_object_get(k, "chat_template")),
                                   json_is_string(bos) ? json_string_value(bos) : NULL, name);
        CHECKF(rc == 0, "%s: %s", name, lr_errmsg());
        if (rc) continue;
        CHECKF(!strcmp(prompt_chat_family(c), json_string_value(json_object_get(k, "family"))), "%s: family %s", name,
               prompt_chat_family(c));
        json_t *q;
        json_array_foreach(qs, j, q) {
            char *out;
            CHECK(prompt_chat_render(c, sys, json_string_value(q), &out) == 0);
            const char *want = json_string_value(json_array_get(json_object_get(k, "renders"), j));
            CHECKF(!strcmp(out, want), "%s: question %zu:\n  ours: %s\n  want: %s", name, j, out, want);
            free(out);
        }
        prompt_chat_free(c);
    }

    /* Llama 3.2 dates its system turn with strftime_now: fixed for the
     * comparison, as the reference passed date_string. */
    json_t *dated = json_object_get(g, "dated");
    if (dated) {
        prompt_chat *c;
        CHECK(prompt_chat_parse(&c, json_string_value(json_object_get(dated, "chat_template")), "<|begin_of_text|>", "3.2") == 0);
        if (c) {
            prompt_chat_set_date(c, json_string_value(json_object_get(dated, "date_string")));
            char *out;
            CHECK(prompt_chat_render(c, sys, "What is 2 + 3?", &out) == 0);
            CHECKF(!strcmp(out, json_string_value(json_object_get(dated, "render"))), "llama 3.2: %s", out);
            free(out);
            prompt_chat_free(c);
        }
    }

    json_t *unknown = json_object_get(g, "unknown");
    CHECK(json_array_size(unknown) >= 3);
    json_array_foreach(unknown, i, k) {
        prompt_chat *c = NULL;
        const char *name = json_string_value(json_object_get(k, "name"));
        int rc = prompt_chat_parse(&c, json_string_value(json_object_get(k, "chat_template")), "<s>", name);
        CHECKF(rc == LR_EINPUT && c == NULL, "%s accepted", name);
        CHECKF(strstr(lr_errmsg(), "--preset") && strstr(lr_errmsg(), "--prompt-file") && strstr(lr_errmsg(), name),
               "%s: %s", name, lr_errmsg());
    }

    /* Reading tokenizer_config.json. The DeepSeek template with bos_token
     * as an AddedToken object, as DeepSeek ships it. */
    json_t *ds = known_case(known, "deepseek-r1-distill");
    json_t *cfg = json_pack("{s:{s:s, s:s, s:b}, s:O}", "bos_token", "__type", "AddedToken", "content",
                            "<｜begin▁of▁sentence｜>", "normalized", 1, "chat_template", json_object_get(ds, "chat_template"));
    char *cj = json_dumps(cfg, 0), dir[4300];
    json_decref(cfg);
    snprintf(dir, sizeof dir, "%s/ds", tmp);
    prompt_chat *c = NULL;
    CHECKF(load_cfg(dir, cj, &c) == 0 && c, "%s", lr_errmsg());
    free(cj);
    if (c) {
        char *out;
        CHECK(prompt_chat_render(c, sys, json_string_value(json_array_get(qs, 0)), &out) == 0);
        CHECK(!strcmp(out, json_string_value(json_array_get(json_object_get(ds, "renders"), 0))));
        free(out);
        prompt_chat_free(c);
    }
    /* chat_template.jinja beside the config wins over the config's field. */
    char jp[4400];
    snprintf(jp, sizeof jp, "%s/chat_template.jinja", dir);
    write_file(jp, json_string_value(json_object_get(known_case(known, "llama-3"), "chat_template")));
    CHECK(prompt_chat_load(&c, dir) == 0 && c && !strcmp(prompt_chat_family(c), "llama3"));
    prompt_chat_free(c);

    /* Named templates: "default" is the one. */
    snprintf(dir, sizeof dir, "%s/named", tmp);
    cfg = json_pack("{s:[{s:s, s:s}, {s:s, s:O}]}", "chat_template", "name", "tool_use", "template", "{{ nope }}",
                    "name", "default", "template", json_object_get(known_case(known, "chatml"), "chat_template"));
    cj = json_dumps(cfg, 0);
    json_decref(cfg);
    CHECK(load_cfg(dir, cj, &c) == 0 && c && !strcmp(prompt_chat_family(c), "chatml"));
    free(cj);
    prompt_chat_free(c);

    /* No template, no config: no chat template (the caller falls back). */
    snprintf(dir, sizeof dir, "%s/none", tmp);
    CHECK(load_cfg(dir, "{\"bos_token\": null}", &c) == 0 && c == NULL);
    snprintf(dir, sizeof dir, "%s/empty", tmp);
    mkdir(dir, 0777);
    CHECK(prompt_chat_load(&c, dir) == 0 && c == NULL);

    /* Bad files: one message naming the file and the field. */
    snprintf(dir, sizeof dir, "%s/bad1", tmp);
    CHECK(load_cfg(dir, "{\"chat_template\": 5}", &c) == LR_EINPUT && !c);
    CHECKF(strstr(lr_errmsg(), "tokenizer_config.json: field \"chat_template\"") && !strchr(lr_errmsg(), '\n'), "%s",
           lr_errmsg());
    snprintf(dir, sizeof dir, "%s/bad2", tmp);
    CHECK(load_cfg(dir, "{\"bos_token\": 7, \"chat_template\": \"x\"}", &c) == LR_EINPUT);
    CHECKF(strstr(lr_errmsg(), "field \"bos_token\""), "%s", lr_errmsg());
    snprintf(dir, sizeof dir, "%s/bad3", tmp);
    CHECK(load_cfg(dir, "{\"chat_template\": \"{{", &c) == LR_EINPUT);
    CHECKF(strstr(lr_errmsg(), "tokenizer_config.json: line 1"), "%s", lr_errmsg());
    snprintf(dir, sizeof dir, "%s/bad4", tmp);
    CHECK(load_cfg(dir, "{\"chat_template\": \"{{ messages }}\"}", &c) == LR_EINPUT);
    CHECKF(strstr(lr_errmsg(), "field \"chat_template\"") && strstr(lr_errmsg(), "--prompt-file"), "%s", lr_errmsg());
    snprintf(dir, sizeof dir, "%s/bad5", tmp);
    CHECK(load_cfg(dir, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}]}", &c) == LR_EINPUT);
    CHECKF(strstr(lr_errmsg(), "\"default\""), "%s", lr_errmsg());

    json_decref(g);
    CHECK_DONE();
}
