/* output: where an lr-infer run writes its `dist` stream, and what it does
 * with an output that already exists.
 *
 *   stdout ("-" or no -o): written straight through, no resume.
 *   FILE: written as FILE.part and renamed onto FILE only when complete.
 *     An interrupted FILE.part is resumed only when its header has the
 *     same kind, model, tokenizer and settings (settings.h; otherwise
 *     refused, naming the setting); a complete FILE of the same run is
 *     continued through a copy (the problems it lacks are added); a FILE
 *     of another run is replaced once the new one is complete.
 *
 * An output naming one of the run's inputs (or their .part) is refused
 * before anything is opened. Messages on stderr start with lr_progname. */
#ifndef LR_INFER_OUTPUT_H
#define LR_INFER_OUTPUT_H

#include "infer/run.h"
#include "infer/settings.h"
#include "io/stream.h"

/* The run's inputs, for inf_output_check. */
typedef struct {
    const char *model_dir;   /* its config.json, tokenizer.json, model.safetensors */
    const char *data, *follow, *prompt_file; /* NULL when absent */
} inf_inputs;

/* Refuses out (and part) when it is not a regular file or names one of
 * in's files: 0 or LR_EUSAGE. */
int inf_output_check(const char *out, const char *part, const inf_inputs *in);

/* Opens the writer: stdout when part is NULL, else part as described
 * above, resuming records through run_note_done(run). *fresh is 0 when
 * part holds records of this run from before (kept on failure). Returns 0
 * or the LR_E* code. */
int inf_output_open(lrs_writer **w, const char *out, const char *part, const lrs_header *h, inf_settings *s,
                    inf_run *run, int *fresh);

/* Makes part durable and renames it onto out: 0 or LR_EIO. */
int inf_output_commit(const char *part, const char *out);

#endif
