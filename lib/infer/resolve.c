/* resolve: see resolve.h. */
#include "infer/resolve.h"

#include "base/util.h"

#include <stdio.h>

const char *inf_resolve_sampling(inf_sampling *o, const mcfg *g, int follow, const char *model_dir) {
    int cs = !follow && g->do_sample, flags = o->temperature >= 0 || o->top_p >= 0 || o->top_k >= 0;
    if (o->temperature < 0) o->temperature = cs ? g->temperature : 0;
    if (o->top_p < 0) o->top_p = cs ? g->top_p : 1;
    if (o->top_k < 0) o->top_k = cs ? g->top_k : 0;
    if (cs && o->temperature > 0)
        fprintf(stderr, "%s: %s/generation_config.json samples: temperature %g, top_p %g, top_k %d%s (--temperature 0 "
                "for greedy)\n", lr_progname, model_dir, o->temperature, o->top_p, o->top_k,
                flags ? ", with the flags given" : "");
    return follow ? "none (follow mode)"
           : cs   ? (flags ? "generation_config.json, flags override" : "generation_config.json")
           : flags ? "flags"
           : g->gen_file ? "generation_config.json (greedy)" : "default (greedy)";
}

int inf_resolve_prompt(const char **preset, prompt_chat **chat, int follow, const char *prompt_file,
                       const char *model_dir) {
    *chat = NULL;
    if (follow || *preset || prompt_file) {
        if (!*preset) *preset = "lightreasoner";
        return 0;
    }
    int rc = prompt_chat_load(chat, model_dir);
    if (rc) return rc;
    if (*chat) {
        *preset = "chat_template";
    } else {
        *preset = "lightreasoner";
        fprintf(stderr, "%s: %s has no chat template; prompting with --preset lightreasoner (ChatML)\n", lr_progname,
                model_dir);
    }
    return 0;
}
