/* benchdata: the seven evaluation benchmarks (JSON lines under
 * data/, field layouts in data/README.md) read one row at a time as
 * (id, question, gold answer), and the prompts the Qwen2.5-Math toolkit
 * builds from them (evaluation/parser.py parse_question and
 * parse_ground_truth, utils.py construct_prompt).
 *
 * Ids are "<layout>/<file stem>:<0-based line>", e.g. "gsm8k/test:17"; lr-infer
 * and lr-eval both use them to join generations with gold answers.
 */
#ifndef LR_BENCHDATA_H
#define LR_BENCHDATA_H

#include <stddef.h>

typedef enum {
    BD_GSM8K, BD_MATH500, BD_SVAMP, BD_ASDIV, BD_MINERVA, BD_OLYMPIAD, BD_MMLU_STEM, BD_NLAYOUTS
} bd_layout;

const char *bd_layout_name(bd_layout l); /* "gsm8k", "math500", ..., the benchmark name */
/* 0 and *out for a known name, else -1. */
int bd_layout_from_name(const char *name, bd_layout *out);
/* The layout named by a path's directory or file name (".../gsm8k/test.jsonl"), or -1. */
int bd_layout_guess(const char *path, bd_layout *out);
/* "gsm8k, math500, ..." for messages. */
const char *bd_layout_list(void);

typedef struct {
    char *id;        /* "gsm8k/test:17" */
    char *question;  /* the question text the prompt carries */
    char *gold;      /* gold answer as the toolkit extracts it, before normalisation */
    char *gold_norm; /* what answers are compared with (answer.h ans_gold) */
    size_t line;     /* 0-based line in the file */
    char *subject;   /* the row's "subject" (MATH-500: "Precalculus"), NULL if none */
    int level;       /* the row's "level" (MATH-500: 1-5; "Level 3" reads as 3), -1 if none */
} bd_item;

typedef struct bd_reader bd_reader;

/* Opens a benchmark file ("-": stdin, ids then say "stdin" for the stem;
 * it needs a layout); layout NULL guesses it from the path. Errors:
 * LR_EIO (cannot open), LR_EUSAGE (unknown layout name or cannot guess). */
int bd_open(const char *path, const char *layout, bd_reader **out);
bd_layout bd_reader_layout(const bd_reader *r);
/* Next row: 0 and *it; -1 at end of file; LR_EINPUT for a row that is not
 * JSON or lacks its question or answer (message names file, line and
 * field; the row is consumed, so the caller may count it and go on);
 * LR_EIO on a read error. Blank lines are not rows. */
int bd_next(bd_reader *r, bd_item *it);
void bd_item_free(bd_item *it);
void bd_close(bd_reader *r);

/* The full prompt for a question: zero-shot "qwen25-math-cot" ChatML, or for
 * mmlu_stem the toolkit's 5-shot prompt (five worked examples in the same
 * template joined by blank lines), from prompt.c's "qwen25-math-cot" preset.
 * New malloc'd string. Use this, not the bare preset, for benchmark
 * evaluation: only it gives mmlu_stem its shots. */
char *bd_prompt(bd_layout l, const char *question);
/* The same with mmlu_stem's shots chosen: 5 (the toolkit's own script) or
 * 0 (the authors' command, which passes no --num_shots). Other layouts
 * have no shots and ignore it. */
#define BD_MMLU_MAX_SHOTS 5
char *bd_prompt_shots(bd_layout l, const char *question, int mmlu_shots);

#endif
