/* resolve.h: what an lr-infer run uses where its flags say nothing.
 * Sampling follows transformers' generate() called without sampling
 * arguments: a generation_config.json with do_sample false (or none) is
 * greedy whatever its temperature says, one with do_sample true samples
 * with its own values; each flag given replaces just its own field; follow
 * mode samples nothing. The prompt is the chat template unless a preset or
 * a template file is given, and lightreasoner for a folder without one. */
#include "check.h"
#include "infer/resolve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const inf_sampling UNSET = {-1, -1, -1};

static int same(inf_sampling s, double t, double p, int k) {
    return s.temperature == t && s.top_p == p && s.top_k == k;
}

int main(void) {
    /* generation_config.json with do_sample true: its values, as generate() */
    mcfg smp = {.gen_file = 1, .do_sample = 1, .temperature = 0.6, .top_p = 0.95, .top_k = 20};
    /* a file with do_sample false: greedy, whatever temperature it holds */
    mcfg greedy = {.gen_file = 1, .do_sample = 0, .temperature = 0.7, .top_p = 0.8, .top_k = 50};
    mcfg none = {.gen_file = 0, .temperature = 1, .top_p = 1, .top_k = 50};
    inf_sampling s;

    s = UNSET;
    CHECK(!strcmp(inf_resolve_sampling(&s, &smp, 0, "m"), "generation_config.json"));
    CHECK(same(s, 0.6, 0.95, 20));
    s = (inf_sampling){-1, 0.5, -1}; /* one flag: only its field changes */
    CHECK(!strcmp(inf_resolve_sampling(&s, &smp, 0, "m"), "generation_config.json, flags override"));
    CHECK(same(s, 0.6, 0.5, 20));
    s = (inf_sampling){0, -1, -1}; /* --temperature 0 on a sampling file: greedy */
    inf_resolve_sampling(&s, &smp, 0, "m");
    CHECK(s.temperature == 0);

    s = UNSET;
    CHECK(!strcmp(inf_resolve_sampling(&s, &greedy, 0, "m"), "generation_config.json (greedy)"));
    CHECK(same(s, 0, 1, 0));
    s = UNSET;
    CHECK(!strcmp(inf_resolve_sampling(&s, &none, 0, "m"), "default (greedy)"));
    CHECK(same(s, 0, 1, 0));
    s = (inf_sampling){0.9, -1, 5}; /* flags on a greedy model: exactly the flags */
    CHECK(!strcmp(inf_resolve_sampling(&s, &greedy, 0, "m"), "flags"));
    CHECK(same(s, 0.9, 1, 5));

    s = UNSET; /* follow mode: nothing sampled, even from a sampling file */
    CHECK(!strcmp(inf_resolve_sampling(&s, &smp, 1, "m"), "none (follow mode)"));
    CHECK(same(s, 0, 1, 0));

    /* the prompt */
    prompt_chat *chat = (prompt_chat *)&s; /* must be reset to NULL */
    const char *preset = "raw";
    CHECK(inf_resolve_prompt(&preset, &chat, 0, NULL, "/nonexistent") == 0);
    CHECK(!strcmp(preset, "raw") && chat == NULL);
    preset = NULL;
    CHECK(inf_resolve_prompt(&preset, &chat, 1, NULL, "/nonexistent") == 0); /* follow: no template read */
    CHECK(!strcmp(preset, "lightreasoner") && chat == NULL);
    preset = NULL;
    CHECK(inf_resolve_prompt(&preset, &chat, 0, "tmpl.txt", "/nonexistent") == 0);
    CHECK(!strcmp(preset, "lightreasoner") && chat == NULL);

    char dir[] = "/tmp/lr-resolve-XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    preset = NULL; /* a folder without a chat template: the ChatML preset */
    CHECK(inf_resolve_prompt(&preset, &chat, 0, NULL, dir) == 0);
    CHECK(!strcmp(preset, "lightreasoner") && chat == NULL);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    /* Qwen2.5's template, shortened to what its family is recognised by */
    fputs("{\"chat_template\": \"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\\\n' + "
          "message['content'] + '<|im_end|>' + '\\\\n'}}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\\\\n' }}{% endif %}\"}\n", f);
    fclose(f);
    preset = NULL;
    int rc = inf_resolve_prompt(&preset, &chat, 0, NULL, dir);
    CHECKF(rc == 0, "rc %d", rc);
    if (!rc) {
        CHECK(!strcmp(preset, "chat_template") && chat != NULL);
        if (chat) CHECK(!strcmp(prompt_chat_family(chat), "chatml"));
        prompt_chat_free(chat);
    }
    unlink(path);
    rmdir(dir);
    CHECK_DONE();
}
