/* judge: see judge.h. */
#include "eval/judge.h"

#include "eval/mathequal.h"

#include <stdlib.h>

static char *replace(char *old, char *nw) {
    free(old);
    return nw;
}

static int is_letter1(const char *s) { return s[0] >= 'A' && s[0] <= 'E' && s[1] == 0; }

static int all_choice(const char *s) {
    for (; *s; s++)
        if (*s < 'A' || *s > 'E') return 0;
    return 1;
}

void ans_judge(ans_kind kind, const char *text, const char *gold_raw, ans_verdict *v) {
    v->gold = ans_gold(gold_raw, kind);
    char *code = ans_cut_stop(text);
    char *a = ans_extract_answer(code, kind);
    char *pred = ans_strip(a, kind == ANS_NOUNIT);
    free(a);
    /* math_eval.py: a letter gold with a non-letter prediction re-reads the
     * whole output for a choice; several letters keep only letters. */
    if (is_letter1(v->gold) && !is_letter1(pred)) pred = replace(pred, ans_choice_clean(code));
    else if (all_choice(v->gold) && !all_choice(pred)) {
        size_t j = 0;
        for (size_t i = 0; pred[i]; i++)
            if (pred[i] >= 'A' && pred[i] <= 'E') pred[j++] = pred[i];
        pred[j] = 0;
    }
    free(code);
    v->extracted = pred;
    v->correct = meq_equal(pred, v->gold);
}

void ans_verdict_free(ans_verdict *v) {
    free(v->extracted);
    free(v->gold);
    v->extracted = v->gold = NULL;
}
