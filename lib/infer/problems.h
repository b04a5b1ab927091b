/* problems: the questions lr-infer generates for, one at a time, from a
 * benchmark file of a known layout (eval/benchdata.h: ids like
 * "gsm8k/test:17") or from any JSON lines file whose question is a string
 * field (ids "<file stem>:<0-based line>", or another string field). */
#ifndef LR_PROBLEMS_H
#define LR_PROBLEMS_H

#include "eval/benchdata.h"
#include "io/jsonl.h"

#include <stdint.h>

typedef struct {
    bd_reader *bd;            /* a known benchmark layout */
    jsonl jl;                 /* field: any JSON lines */
    int is_jl;
    const char *path, *field, *id_field;
    char *stem;
} prob_source;

/* Opens path ("-": stdin). field NULL: a benchmark file, layout NULL
 * guessing it from the path (stdin needs a layout). Returns 0, LR_EIO or
 * LR_EUSAGE (unknown layout, stdin without a layout or field). */
int prob_open(prob_source *s, const char *path, const char *layout, const char *field, const char *id_field);
/* Next problem: 1 with *id, *question (malloc'd) and *idx (0-based line);
 * 0 at the end; LR_EIO for an unreadable input. A row without a question
 * returns 1 with *bad = 1 and the message set (file, line, field; the row
 * is consumed, the caller reports it and may go on). */
int prob_next(prob_source *s, char **id, char **question, long *idx, int *bad);
/* The benchmark layout, or -1 for a field source. */
int prob_layout(const prob_source *s);
void prob_close(prob_source *s);

/* Lines of a regular file (for a progress bar's total); 0 when unknown. */
uint64_t prob_count_lines(const char *path);

#endif
