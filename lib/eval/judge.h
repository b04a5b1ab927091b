/* judge: the toolkit's verdict on one output (math_eval.py): the answer
 * extracted by answer.h, compared with the gold by mathequal.h. Kept apart
 * from answer.c so extraction and equality do not depend on each other. */
#ifndef LR_JUDGE_H
#define LR_JUDGE_H

#include "eval/answer.h"

/* The full verdict for one output: extracted answer (after the toolkit's
 * multiple-choice fallback in math_eval.py) and whether it equals the gold. */
typedef struct {
    char *extracted; /* the answer compared */
    char *gold;      /* the normalised gold */
    int correct;
} ans_verdict;

void ans_judge(ans_kind kind, const char *text, const char *gold_raw, ans_verdict *v);
void ans_verdict_free(ans_verdict *v);

#endif
