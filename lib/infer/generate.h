/* generate: the batched loops of lr-infer (METHOD.md stage 1, steps 1-3)
 * over an engine (engine.h), and the `dist` records they fill
 * (docs/FORMATS.md).
 *
 *   gen_generate: prefill n prompts at once, then decode every live problem
 *     one token per engine call (greedy, or sample.h with temperature > 0)
 *     until an EOS id or max_new tokens; each step's compact distribution
 *     (compact.h) is recorded (static batching: the batch ends with its
 *     longest answer);
 *   gen_sched: the same loop with continuous batching: the engine's slots
 *     hold problems that join (gen_admit) and leave (done) between calls,
 *     and each call (gen_step) packs the decode rows of the live problems
 *     with the prompt rows of those just admitted. Work is admitted by the
 *     engine's free KV pages (eng_pages), slots being only a cap: when a
 *     step's rows need more pages than are free, the newest live problems
 *     are preempted (their pages freed) and later re-prefilled from prompt
 *     + the tokens they already produced, before any new problem joins
 *     (gen_sched_prefix: prompts that start with a shared prefix run on
 *     it, computed once, and feed only their own rows). A
 *     problem's tokens and lists are the static loop's (the same rows
 *     through the same model; only the float rounding of a different batch,
 *     or of a re-prefill, may differ, ~1e-6);
 *   gen_follow: teacher-force the prompt + tokens of n followed records and
 *     record, per step, this model's own list and its log-probs of the
 *     followed record's list (gathered on the engine).
 *
 * A problem that fails (NaN/inf logits, too long for the context) gets
 * p->err set and p->failed = 1 and is left out of later steps; the caller
 * reports it and does not write it. Engine errors return an LR_E* code. */
#ifndef LR_GENERATE_H
#define LR_GENERATE_H

#include "infer/engine.h"
#include "infer/sample.h"
#include "io/stream.h"
#include "model/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

/* One problem in flight and the record being built for it. */
typedef struct {
    char *id, *question;
    long idx;
    int32_t *prompt;           // (nprompt)
    size_t nprompt;
    /* generated / followed tokens and per-step compact lists */
    int32_t *tokens, *k;       // (T) each
    int32_t *ids;              // (nids) the lists of all steps, concatenated
    float *lp, *tail;          // (nids), (T)
    size_t T, nids, cap_T, cap_ids;
    /* follow mode: the followed stream's lists, and our log-probs of them */
    int32_t *fk, *fids;        // (T), (nf)
    size_t nf, *foff;          // foff (T + 1): start of step t's list in fids
    float *ref_lp, *ref_tail;  // (nf), (T)
    float *full;               // (T, V) with full
    char *text;                /* decoded tokens (generate mode) */
    const char *finish;        /* "eos", "length" or "follow" */
    uint64_t rng;              /* sampling stream (gen_seed) */
    int failed;
    int slot;                  /* gen_sched: the engine slot while live */
    int prefilled;             /* gen_sched: prompt + tokens[0..T-1) are in the slot's cache */
    long order;                /* gen_sched: admission number (the newest live problem is preempted first) */
    int shared;                /* gen_sched: its prompt starts with the shared prefix, which it runs on */
    int pend;                  /* gen_sched: its rows queued on the engine and not yet taken (0, 1 or 2) */
    char *err;                 /* why it failed (malloc'd) */
} gen_problem;

typedef struct {
    int V;                     /* the model's vocabulary (logits per row) */
    cd_opts co;                /* the recorded lists */
    int sample;                /* 1: draw with smp; 0: greedy (argmax, lowest id on ties) */
    smp_opts smp;
    int max_new;               /* generate: stop after this many tokens */
    int full;                  /* also record whole-vocabulary log-probs */
    const int32_t *eos;        /* generate: stop at any of these ids */
    int neos;
    /* generate: also stop once the decoded text of the new tokens (special
     * tokens skipped) contains one of these strings, as the toolkit's
     * stop=["</s>", ...] does; the tokens up to and including the one that
     * completed it are kept, and finish is "stop" */
    const char *const *stop;
    int nstop;
    const tok_t *tok;          /* decodes for the stop strings */
} gen_opts;

typedef struct {
    engine *e;
    gen_opts o;
    double *uni;               // (uni_cap) with sample: the next call's uniform per wanted row (read at submit)
    int32_t *gids;             // (gids_cap) the next call's gathered ids (read at submit)
    /* two buffers of one engine call's results and follow mode's gather
     * offsets into them, buffer i with room for res_rows[i] wanted rows and
     * glps_cap[i] gathered log-probs: a call fills one while a call queued
     * before it (overlap) may still deliver to the other */
    eng_res res[2];
    size_t *goff[2];           // (res_rows[i] + 1)
    size_t res_rows[2], glps_cap[2], uni_cap, gids_cap;
    /* decode one step ahead, and follow mode's calls queued one ahead
     * (docs/CUDA.md): 1 on a cuda engine unless LR_GPU_OVERLAP=0 (gen_init;
     * a caller may set it, before gen_sched_init for gen_sched) */
    int overlap;
    uint64_t tokens;           /* steps recorded so far (throughput) */
    uint64_t calls, rows;      /* engine calls and rows run so far */
    uint64_t ahead;            /* calls queued while another was (both loops' overlap) */
    uint64_t prefix_rows;      /* gen_follow with share: prompt rows the shared prefixes spared */
    size_t prefix_max;         /* and the longest prefix kept */
} gen_ctx;

void gen_init(gen_ctx *g, engine *e, const gen_opts *o);
void gen_free(gen_ctx *g);

/* The sampling stream of problem idx under seed; it depends only on the
 * two, so a problem draws the same tokens in any batch or shard. */
void gen_seed(gen_problem *p, uint64_t seed);
/* 1 when prompt + new_tokens fit the engine's context; else 0 with p failed. */
int gen_fits(gen_ctx *g, gen_problem *p, size_t new_tokens);
/* Marks p failed with a printf-style reason. */
void gen_fail(gen_problem *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Generates for ps[0..n) (prompts set, failed ones skipped). */
int gen_generate(gen_ctx *g, gen_problem *ps, int n);
/* Teacher-forces ps[0..n), each loaded by gen_load_followed. share: the
 * batch's shared prompt prefix (gen_common_prefix over its prompts) is
 * computed once, in the slot of a prompt that starts with it, kept
 * (eng_prefix_keep) and attached to every slot whose prompt starts with
 * it, whose rows then run from there; dropped when the batch ends. It
 * never needs more KV pages than the batch without it (the prefix's pages
 * are its first prompt's). g->prefix_rows counts the prompt rows spared. */
int gen_follow(gen_ctx *g, gen_problem *ps, int n, int share);
/* (With g->overlap, each of gen_follow's calls is queued before the last
 * one's results are recorded: the same calls, the same records.) */

/* Pages a problem joins with beyond those of its prompt, so that it does
 * not need one at its first decode steps (and is not preempted at once). */
#define GEN_RESERVE_PAGES 1

/* Continuous batching over the engine's B slots and KV pages. */
typedef struct {
    int B;
    engine *e;
    gen_problem **live;        // (B) the problem in slot b, NULL when free
    int nlive;
    gen_problem **wait;        // (B) preempted problems, oldest admission first
    int nwait;
    int *dn;                   // (B) pages slot b's next decode row takes (0 unless live and prefilled)
    int dneed;                 /* their sum: kept as slots grow and vacate */
    int32_t *prefix;           /* the shared prompt prefix (gen_sched_prefix), NULL: none */
    size_t nprefix;            /* its tokens (cuda: whole KV pages) */
    long shared_joins;         /* admissions (re-admissions too) that ran on it */
    long order;                /* the next admission's number */
    long preemptions;          /* problems preempted so far */
    int peak_live;             /* most problems live at once */
    size_t queued;             /* prompt rows admitted but not yet run */
    int promised;              /* pages those rows will take */
    size_t prefill_rows;       /* at most this many prompt rows per call (>= one prompt) */
    int *tok, *seq, *feed;     /* one call's rows: token, slot, and the pick it is fed (-1: its token) */
    unsigned char *want;
    size_t cap;
    /* decode one step ahead (docs/CUDA.md): with overlap each gen_step
     * queues the next call, whose decode rows take the queued call's picks
     * on the engine (eng_submit's feed), before it takes that call's
     * results, so the host's work on one step (its lists, the stop
     * strings, writing, admitting) overlaps the device's on the next */
    int overlap;               /* gen_sched_init copies the context's (gen_ctx.overlap) */
    int nfl, flh;              /* calls queued and not yet taken (0..2), the oldest's index */
    gen_problem **flp[2];      // (B) each queued call's wanted row g: its problem, NULL once that has ended
    int flG[2];                /* their wanted rows */
    int *flg;                  // (B) slot b's wanted row in the newest queued call (-1: none)
    long wasted;               /* rows run for problems that had ended meanwhile (their results dropped) */
} gen_sched;

/* B: the engine's slots; prefill_rows: 0 for the default (4096). Empties
 * every slot of the engine. s->overlap is g->overlap; a caller may set
 * it either way before the first gen_step. */
void gen_sched_init(gen_sched *s, gen_ctx *g, int B, size_t prefill_rows);
void gen_sched_free(gen_sched *s);
/* The shared prompt prefix, computed once: tok[0..n) are prefilled in one
 * call (slots empty; none when n is under eng_prefix_min) and the engine
 * keeps them (eng_prefix_keep: cuda their whole pages, cpu a copy of
 * their keys and values). From then on a problem whose prompt is longer than the
 * kept prefix and starts with it joins on it: only its own rows run (from
 * the prefix's length on) and only its own pages count, for admission and
 * preemption alike; other problems run as before. *kept: the tokens kept,
 * 0 when the engine keeps none (then nothing changes). The prefix goes
 * back at gen_sched_free. Returns an LR_E* code on an engine error. */
int gen_sched_prefix(gen_ctx *g, gen_sched *s, const int32_t *tok, size_t n, size_t *kept);
/* The prefix rule: of the token runs that at least ceil(n/2) of the n
 * prompts (and at least two) start with, each of them past it (a prompt's last token always
 * runs as its own row), the one that spares the most rows: k prompts
 * sharing c tokens, the largest k * c (on a tie the longer run), so that
 * a token one half of them add to a header all of them share does not
 * cost the other half the header. Which prompts share it does not
 * matter: the prompts are sorted, and a run that k of them share is the
 * common start of k neighbours in that order, so the answer is the best
 * window of at least ceil(n/2) neighbours. *anchor: the index of a prompt
 * that starts with it (-1 when n < 2: one prompt shares with no other);
 * *count (unless NULL): the k prompts that continue it (0: none). */
size_t gen_common_prefix(const int32_t *const *tok, const size_t *len, int n, int *anchor, int *count);
/* 1 when p can join now: no preempted problem is waiting, a slot is free,
 * its prompt fits this call's prefill budget (an empty budget takes any
 * prompt), and its prompt's pages + GEN_RESERVE_PAGES (at most a full
 * context's) fit in the free pages beside those the admitted prompts and
 * the live problems' next rows take. */
int gen_can_admit(const gen_sched *s, const gen_problem *p);
/* Puts p (prompt set, fitting the context, not failed) in a free slot; its
 * prompt is prefilled by the next gen_step. p must stay put until done. */
void gen_admit(gen_sched *s, gen_problem *p);
/* One engine call over every live problem: one token each (the admitted
 * ones: their prompt and first token; re-admitted preempted ones: prompt +
 * tokens so far, and their next token). First the preempted problems
 * rejoin, oldest first, while they fit; then, while the call's rows need
 * more pages than are free, the newest live problem is preempted. Problems
 * that end (EOS, max_new, NaN logits: finish or failed set) leave their
 * slot, and their pages go back. With overlap, a call is queued before the
 * last one's results are taken: its rows for the problems that then end
 * are run and dropped (s->wasted), and problems admitted after a step join
 * one call later; a call that would need a preemption is not queued ahead
 * (the step runs as without overlap), so a problem's sampling stream is
 * drawn only for rows whose results it takes, as without. Returns an
 * LR_E* code on an engine error. */
int gen_step(gen_ctx *g, gen_sched *s);
/* 1 while a problem is live or waiting to rejoin, or a call is queued. */
int gen_busy(const gen_sched *s);
/* 1 when p has finished (written or reported next), 0 while live. */
int gen_done(const gen_problem *p);
/* Bytes p holds (full_V: V with --full, else 0), for the bound on finished
 * problems held back for output order. */
size_t gen_problem_bytes(const gen_problem *p, int full_V);

/* Loads one record of a followed `dist` stream into p (cleared). A
 * malformed record returns LR_EINPUT naming stream, record and field (the
 * followed stream is corrupt); ids outside [0, V) likewise. */
int gen_load_followed(gen_ctx *g, lrs_reader *r, const msgpack_object *rec, gen_problem *p);

/* Packs p as one `dist` record (then call lrs_record_done). */
void gen_write(lrs_writer *w, const gen_problem *p, int V, int full);
/* Frees everything p holds and zeroes it. */
void gen_problem_clear(gen_problem *p);

#endif
