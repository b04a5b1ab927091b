/* resolve: what an lr-infer run uses where its flags say nothing, and the
 * line on stderr saying so when it matters.
 *
 * Sampling: what generation_config.json says (the authors' "greedy" is
 * whatever it says: generate() is called without sampling arguments), each
 * flag given (>= 0) overriding its field. A greedy file leaves sampling off
 * (top_p 1, top_k 0) unless flags ask. Follow mode samples nothing.
 *
 * Prompt: the model's own chat template unless a preset or a prompt file
 * is given (generate mode), as the authors' apply_chat_template; a folder
 * without one gets the lightreasoner preset. */
#ifndef LR_INFER_RESOLVE_H
#define LR_INFER_RESOLVE_H

#include "model/modelcfg.h"
#include "model/prompt.h"

typedef struct {
    double temperature, top_p; /* < 0: not given */
    int top_k;                 /* < 0: not given */
} inf_sampling;

/* Fills the fields of *smp left unset from g (model_dir names it in the
 * message); returns where the settings came from, for the header, e.g.
 * "generation_config.json, flags override". */
const char *inf_resolve_sampling(inf_sampling *smp, const mcfg *g, int follow, const char *model_dir);

/* Sets *preset to what the header records ("chat_template" when *chat is
 * loaded, else the preset given or "lightreasoner"); *chat NULL unless the
 * chat template is used. 0 or prompt_chat_load's error. */
int inf_resolve_prompt(const char **preset, prompt_chat **chat, int follow, const char *prompt_file,
                       const char *model_dir);

#endif
