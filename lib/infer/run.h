/* run: lr-infer's driver. Reads problems (problems.h) or a followed stream,
 * skips those an interrupted output already holds and those of other
 * shards, runs them through generate.h, and writes the records in input
 * order with a resume point (lrs_flush) after every `batch` records.
 * Generate mode batches continuously by default (gen_sched: `batch`
 * problems live at once, a finished one's slot refilled at the next call,
 * finished problems held back for input order up to RUN_AHEAD_BYTES /
 * RUN_AHEAD_MAX); static_batches runs `batch` problems at a time, each
 * batch to its longest answer. Both give the same records. Follow mode runs
 * static batches (every problem's length is known up front).
 *
 * A problem that fails (a bad input row, a prompt too long, NaN logits) is
 * reported on stderr as "lr-infer: ID: why", skipped, and counted; after
 * max_failures of them the run stops (LR_EINPUT with a summary), so a wrong
 * --layout prints a few lines, not one per row. Fatal errors (a corrupt
 * followed stream, a prompt token the model has no row for, I/O, the
 * engine) return their LR_E* code at once. */
#ifndef LR_RUN_H
#define LR_RUN_H

#include "infer/generate.h"
#include "infer/problems.h"
#include "io/progress.h"
#include "io/stream.h"
#include "model/prompt.h"
#include "model/tokenizer.h"

#include <stdint.h>

#define RUN_MAX_FAILURES 10
/* Finished problems held back for input order: at most this many bytes,
 * and this many problems past the live ones. */
#define RUN_AHEAD_BYTES ((size_t)256 << 20)
#define RUN_AHEAD_MAX 4096

typedef struct {
    const char *model_dir;     /* names tokenizer.json / config.json in messages */
    const char *preset;        /* prompt preset; "toolkit": the benchmark's own prompt */
    const prompt_chat *chat;   /* the model's chat template instead (NULL: none) */
    const char *prompt_file;   /* a template instead of the preset */
    int mmlu_shots;            /* preset "toolkit": mmlu_stem's shots (0 or 5) */
    long limit;                /* only the first `limit` problems (-1: all) */
    int shard_k, shard_n;      /* only problems with idx % shard_n == shard_k */
    int batch;                 /* problems per engine pass (the engine's slots) */
    int static_batches;        /* generate: 1 static batches, 0 continuous */
    int shared_prefix;         /* continuous: share the first window's common prompt prefix (gen_sched_prefix) */
    int ahead_max;             /* continuous: finished problems held (0: RUN_AHEAD_MAX) */
    size_t ahead_bytes;        /*   ... and their bytes (0: RUN_AHEAD_BYTES) */
    uint64_t seed;
    int max_failures;          /* stop once this many problems failed (0: never) */
} run_opts;

typedef struct {
    run_opts o;
    gen_ctx *g;
    const tok_t *tok;
    unsigned char *done;       /* resume: done[idx] for records already in the output */
    size_t ndone_cap;
    long failed, written;
    int peak;                  /* continuous: most problems held at once (live + finished) */
    int peak_live;             /* continuous: most problems live at once (gen_sched) */
    long preemptions;          /* continuous: problems preempted for KV pages (gen_sched) */
    long wasted;               /* continuous: rows of calls queued one step ahead, dropped (gen_sched) */
    /* continuous: the shared prompt prefix kept (share_prefix; kept 0: none): its tokens, the pages it holds
     * (cuda), the first window's prompts, the start `count` of them share (gen_common_prefix); follow: the
     * longest one a batch kept and the prompt rows they spared (spared > 0); run_report_prefix prints it */
    struct { size_t kept, lcp; int pages, window, count; uint64_t spared; } prefix;
    lr_progress prog;
} inf_run;

/* The window of first prompts whose common prefix is shared (at most --batch). */
#define RUN_PREFIX_WINDOW 64

void run_init(inf_run *r, const run_opts *o, gen_ctx *g, const tok_t *tok);
/* The stderr line "shared prefix: N tokens, ..." when one was kept, else
 * nothing; printed with the summary of a run that succeeded, so that a
 * failed one still says only what failed. */
void run_report_prefix(const inf_run *r);
void run_free(inf_run *r);
/* lrs_resume's on_record: notes the idx of every record already written. */
int run_note_done(const msgpack_object *rec, void *r);
/* Generate mode over every problem of s. */
int run_generate(inf_run *r, prob_source *s, lrs_writer *w);
/* Follow mode over every record of fr. */
int run_follow(inf_run *r, lrs_reader *fr, lrs_writer *w);

#endif
