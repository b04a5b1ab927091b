/* score: model outputs judged the Qwen2.5-Math toolkit's way (judge.h)
 * against benchmark rows (benchdata.h), for `lr-eval judge` and `lr-eval
 * score`.
 *
 * Contract:
 *  - Input text that should be UTF-8 and is not has its invalid bytes
 *    replaced by U+FFFD, and the lines so repaired are counted, never
 *    refused: a model's output is scored as it is.
 *  - Predictions are {"id", "prediction"[, "tokens": N]} JSON lines, an
 *    lr-infer `dist` stream (.lrs) read directly, or lr-dump's JSON of one
 *    ("text", or "tokens" ids decoded with a tokenizer; a dump with a header
 *    must end with its {"lrs_end"} line, else it was cut short). Ids are
 *    unique; a duplicate is refused naming both lines.
 *  - Scoring joins benchmark rows to predictions by id ("gsm8k/test:17" =
 *    layout/file stem:0-based line): a row without a prediction counts as
 *    wrong and is marked missing; a row without question or answer is
 *    skipped, counted, and the first five are named on stderr. Each scored
 *    prediction is marked used, so the caller can report the unmatched.
 *  - Errors: LR_EINPUT (or LR_EIO) with one message naming the file, the
 *    line or record and the field. Nothing here exits or frees what it did
 *    not allocate.
 */
#ifndef LR_SCORE_H
#define LR_SCORE_H

#include "eval/summary.h"
#include "model/tokenizer.h"
#include "io/jsonl.h"

#include <jansson.h>
#include <stdio.h>

/* JSON lines read with invalid UTF-8 repaired. */
typedef struct {
    jsonl in;
    size_t repaired; /* lines whose invalid UTF-8 was replaced */
} sc_lines;

/* The next non-blank line as a JSON object (a new reference): 0, -1 at the
 * end, or an error naming the file and line. */
int sc_next_object(sc_lines *L, json_t **out);
/* A JSON string of s, its invalid UTF-8 replaced (never NULL). */
json_t *sc_jstr(const char *s);
/* o as one compact JSON line. Returns 0 or LR_EIO. */
int sc_write_line(FILE *f, json_t *o);

/* `lr-eval judge` on one object {"bench", "prediction", "gold"} (gold a
 * string or a number; for mmlu_stem also the index 0-3): adds "extracted"
 * and "correct" and sets *correct. name and lineno place it in messages.
 * Returns 0 or LR_EINPUT naming the field. */
int sc_judge_object(json_t *o, const char *name, size_t lineno, int *correct);

typedef struct {
    char *id, *pred;
    long long tokens; /* generated tokens; -1: not given */
    size_t line;      /* line or record it came from */
    int used;         /* joined with a benchmark row */
} sc_pred;

/* Predictions indexed by id. Zero-initialise. */
typedef struct {
    sc_pred *rows;
    size_t n, cap;
    size_t *slot; /* open addressing: index + 1, 0 empty */
    size_t nslot;
} sc_preds;

/* Adds the predictions of path ("-": stdin) to an empty P; tok (may be
 * NULL) decodes records that give only token ids. Lines repaired are added
 * to *repaired. */
int sc_load_preds(const char *path, const tok_t *tok, sc_preds *P, size_t *repaired);
sc_pred *sc_find(sc_preds *P, const char *id);
void sc_preds_free(sc_preds *P);

/* The benchmark files the ids name under dir: "<dir>/<layout>/<stem>.jsonl"
 * for ids "<layout>/<stem>:<line>", each once, in order of first
 * appearance. Writes new strings into files (room for P->n) and returns
 * their count. */
int sc_data_files(const sc_preds *P, const char *dir, char **files);

/* Scores the benchmark file path (layout NULL: from the path) against P:
 * one JSON line per row to out ({"id", "bench", "prediction", "extracted",
 * "gold", "correct"[, "tokens"][, "missing"]}), the counts into *st (set
 * afresh; st->bench stays NULL if the file could not be opened). */
int sc_score_file(const char *path, const char *layout, sc_preds *P, FILE *out, sum_bench *st);

#endif
