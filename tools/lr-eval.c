/* lr-eval: scores model outputs on the seven benchmarks the way the
 * Qwen2.5-Math evaluation toolkit does, from generations given as JSON
 * lines, so generation and scoring can run on different machines. The
 * judging and joining are eval/score.h's, the tables eval/summary.h's and
 * compare.h's; this file holds the commands' options, their output files
 * and what they report on stderr.
 *
 *   lr-eval judge [IN.jsonl]          {"bench","prediction","gold"} lines -> + "extracted", "correct"
 *   lr-eval score --pred P.jsonl (--data FILE ... | --data-dir DIR) [--layout NAME] [--out-dir D] [--label L]
 *   lr-eval compare [--resamples N] [--seed N] [--json F] BASE RUN|LABEL=RUN,RUN... ...
 */
#include "eval/score.h"
#include "eval/summary.h"
#include "eval/benchdata.h"
#include "eval/compare.h"
#include "model/tokenizer.h"
#include "base/opt.h"
#include "base/outfile.h"
#include "base/util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f) {
    fputs("usage: lr-eval judge [IN.jsonl]\n"
          "       lr-eval score --pred PRED.jsonl (--data FILE [--data FILE ...] | --data-dir DIR)\n"
          "                     [--layout NAME] [--out-dir DIR] [--label NAME] [--tokenizer PATH]\n"
          "       lr-eval compare [--resamples N] [--seed N] [--level X] [--json FILE]\n"
          "                       BASE RUN|LABEL=RUN,RUN,... ...   (or: lr-eval --compare ...)\n"
          "       lr-eval prompts FILE.jsonl [--layout NAME]\n"
          "\n"
          "Scores generations with the Qwen2.5-Math toolkit's answer extraction and\n"
          "equivalence rules (docs/EVAL.md).\n"
          "\n"
          "judge    reads JSON lines {\"bench\", \"prediction\", \"gold\"} (file or stdin) and\n"
          "         writes each line back with \"extracted\" and \"correct\" added. bench is\n"
          "         one of gsm8k, math500, svamp, asdiv, minerva_math, olympiadbench,\n"
          "         mmlu_stem (or the toolkit's \"math\"); gold is the gold answer (string or\n"
          "         number; for mmlu_stem a letter or the index 0-3).\n"
          "score    joins predictions {\"id\", \"prediction\"[, \"tokens\"]} (or an lr-infer stream,\n"
          "         .lrs as it is or lr-dump's JSON of it: \"text\", or \"tokens\" ids decoded\n"
          "         with --tokenizer; a dump must end with its {\"lrs_end\"} line;\n"
          "         --pred - reads stdin) with the benchmark\n"
          "         rows by id (\"gsm8k/test:17\" = layout/file stem:0-based line). With\n"
          "         --data-dir the files are DIR/<layout>/<stem>.jsonl for the ids seen.\n"
          "         Rows without a prediction count as wrong and are reported as missing;\n"
          "         predictions without a row are reported as unmatched. Writes per-problem\n"
          "         JSON lines and a summary (markdown and JSON): into --out-dir as\n"
          "         results.jsonl, summary.md, summary.json, else lines to stdout and the\n"
          "         markdown summary to stderr. Rows with a subject or level (MATH-500)\n"
          "         also get accuracy by subject and by level.\n"
          "prompts  writes {\"id\", \"bench\", \"prompt\", \"gold\"} per benchmark row: the\n"
          "         toolkit's prompt (qwen25-math-cot; 5-shot for mmlu_stem), for generating\n"
          "         with any engine and scoring the result with score.\n"
          "compare  one table per benchmark, one row per argument: BASE and each RUN are\n"
          "         score --out-dir folders (or their summary.json; results.jsonl beside it\n"
          "         gives the per-problem verdicts, paired by id). LABEL=RUN,RUN,... is one\n"
          "         variant under several seeds: mean accuracy and its sample sd. For each\n"
          "         row vs BASE: the delta in points with a --level (0.95) interval from a\n"
          "         paired bootstrap over problems (--resamples 10000, --seed 1), the exact\n"
          "         McNemar p (two-sided binomial on the discordant problems; for a group\n"
          "         the median and range over its runs) and the discordant counts.\n"
          "         --json FILE also writes the numbers as JSON lines.\n"
          "\n"
          "Invalid UTF-8 in a prediction is replaced by U+FFFD and counted.\n"
          "Exit: 0 ok, 1 usage, 2 bad input, 3 I/O.\n",
          f);
}

/* ---- judge ---- */

static int cmd_judge(int argc, char **argv) {
    sc_lines L = {0};
    if (argc > 1) return lr_err(LR_EUSAGE, "judge: one input file at most (see --help)");
    if (argc == 1 && strcmp(argv[0], "-")) {
        if (jsonl_open(&L.in, argv[0])) return LR_EIO;
    } else jsonl_from(&L.in, stdin, "<stdin>");
    int rc = 0, ok;
    size_t n = 0, correct = 0;
    json_t *o;
    while ((rc = sc_next_object(&L, &o)) == 0) {
        rc = sc_judge_object(o, L.in.name, L.in.lineno, &ok);
        if (!rc) rc = sc_write_line(stdout, o);
        json_decref(o);
        if (rc == LR_EIO) rc = lr_err(LR_EIO, "stdout: write error");
        if (rc) break;
        n++;
        correct += (size_t)ok;
    }
    if (rc == -1) rc = 0;
    if (L.repaired)
        fprintf(stderr, "%s: %s: %zu line(s) had invalid UTF-8 (replaced by U+FFFD)\n", lr_progname, L.in.name, L.repaired);
    jsonl_close(&L.in);
    if (!rc) fprintf(stderr, "%s: judged %zu, correct %zu\n", lr_progname, n, correct);
    if (!rc && fflush(stdout)) rc = lr_err(LR_EIO, "stdout: write error");
    return rc;
}

/* ---- score ---- */

typedef struct {
    const char *pred, *data_dir, *layout, *out_dir, *label, *tok;
    const char **data; /* --data files, room for argc + 1 */
    int nd;
} score_args;

static int parse_score(int argc, char **argv, score_args *o) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = !strcmp(a, "--pred") ? &o->pred : !strcmp(a, "--data-dir") ? &o->data_dir
                           : !strcmp(a, "--layout") ? &o->layout : !strcmp(a, "--out-dir") ? &o->out_dir
                           : !strcmp(a, "--label") ? &o->label : !strcmp(a, "--tokenizer") ? &o->tok : NULL;
        if (!strcmp(a, "--data")) dst = &o->data[o->nd++];
        if (!dst) return lr_err(LR_EUSAGE, "score: unknown argument \"%s\" (see --help)", a);
        if (i + 1 >= argc) return lr_err(LR_EUSAGE, "score: %s needs a value", a);
        *dst = argv[++i];
    }
    if (!o->pred || (!o->nd && !o->data_dir))
        return lr_err(LR_EUSAGE, "score: needs --pred and --data or --data-dir (see --help)");
    bd_layout l;
    if (o->layout && bd_layout_from_name(o->layout, &l))
        return lr_err(LR_EUSAGE, "unknown benchmark layout \"%s\" (known: %s)", o->layout, bd_layout_list());
    return 0;
}

static int cmd_score(int argc, char **argv) {
    score_args A = {.data = xcalloc((size_t)argc + 1, sizeof(char *))};
    int rc = parse_score(argc, argv, &A);
    const char *pred = A.pred, *data_dir = A.data_dir, *layout = A.layout, *out_dir = A.out_dir, *label = A.label;
    const char *const *data = A.data;
    int nd = A.nd;
    sc_preds P = {0};
    lr_out *ores = NULL, *osj = NULL, *omd = NULL;
    size_t repaired = 0;
    char **owned = NULL;
    int nowned = 0;
    tok_t *tok = NULL;
    if (rc || (A.tok && (rc = tok_load(&tok, A.tok)))) goto out;
    rc = sc_load_preds(pred, tok, &P, &repaired);
    tok_free(tok);
    if (rc) goto out;
    if (!nd) { /* the files the ids name: "<layout>/<stem>:<line>" */
        owned = xcalloc(P.n + 1, sizeof(char *));
        nowned = sc_data_files(&P, data_dir, owned);
        data = (const char *const *)owned; /* as many as the ids name: more than the arguments */
        nd = nowned;
        if (!nd) {
            rc = lr_err(LR_EINPUT, "%s: no id of the form \"<benchmark>/<split>:<line>\"", pred);
            goto out;
        }
    }
    /* --out-dir: the three files are written under temporary names and
     * renamed into place together once all are complete (base/outfile.h),
     * so a failed or interrupted run leaves no empty or partial summary. */
    FILE *out = stdout, *fsj = NULL, *fmd = NULL;
    char path[4096];
    if (out_dir) {
        if (mkdir(out_dir, 0777) && errno != EEXIST) {
            rc = lr_err(LR_EIO, "%s: %s", out_dir, strerror(errno));
            goto out;
        }
        const char *ins[] = {pred};
        snprintf(path, sizeof path, "%s/results.jsonl", out_dir);
        if ((rc = out_check_inputs(path, ins, 1)) || (rc = out_open(&ores, path, 0, &out))) goto out;
        snprintf(path, sizeof path, "%s/summary.json", out_dir);
        if ((rc = out_check_inputs(path, ins, 1)) || (rc = out_open(&osj, path, 0, &fsj))) goto out;
        snprintf(path, sizeof path, "%s/summary.md", out_dir);
        if ((rc = out_check_inputs(path, ins, 1)) || (rc = out_open(&omd, path, 0, &fmd))) goto out;
    }
    sum_bench *S = xcalloc((size_t)nd, sizeof *S);
    int nb = 0;
    for (int k = 0; k < nd && !rc; k++) {
        rc = sc_score_file(data[k], layout, &P, out, &S[nb]);
        if (S[nb].bench) nb++;
        if (rc) lr_err_prefix(rc, "%s", data[k]);
    }
    size_t unmatched = 0;
    for (size_t i = 0; i < P.n && !rc; i++) /* after an error, only its line */
        if (!P.rows[i].used) {
            if (unmatched < 5) fprintf(stderr, "%s: prediction with no benchmark row: id \"%s\"\n", lr_progname, P.rows[i].id);
            unmatched++;
        }
    if (!label) label = pred;
    if (!rc) {
        json_t *sj = sum_json(S, nb, label, unmatched, repaired);
        if (out_dir) {
            if (json_dumpf(sj, fsj, JSON_INDENT(2)) || fputc('\n', fsj) == EOF)
                rc = lr_err(LR_EIO, "%s/summary.json: write error", out_dir);
            sum_md(fmd, S, nb, label);
            if (!rc) rc = out_commit(&ores);
            if (!rc) rc = out_commit(&osj);
            if (!rc) rc = out_commit(&omd);
        }
        json_decref(sj);
        sum_md(stderr, S, nb, label);
        for (int i = 0; i < nb; i++)
            if (S[i].missing)
                fprintf(stderr, "%s: %s: %zu of %zu problems have no prediction (counted as wrong)\n", lr_progname,
                        S[i].bench, S[i].missing, S[i].total);
        if (unmatched) fprintf(stderr, "%s: %zu prediction(s) matched no benchmark row\n", lr_progname, unmatched);
        if (repaired) fprintf(stderr, "%s: %zu prediction line(s) had invalid UTF-8 (replaced by U+FFFD)\n", lr_progname, repaired);
    }
    if (!rc && !out_dir && fflush(stdout)) rc = lr_err(LR_EIO, "stdout: write error");
    for (int i = 0; i < nb; i++) sum_bench_free(&S[i]);
    free(S);
out:
    out_abort(&ores); /* after a failure: nothing reaches the final names */
    out_abort(&osj);
    out_abort(&omd);
    for (int k = 0; k < nowned; k++) free(owned[k]);
    free(owned);
    free(A.data);
    sc_preds_free(&P);
    return rc;
}

/* ---- compare ---- */

/* Options, then the summaries (compare.h does the work). */
static int cmd_compare(int argc, char **argv) {
    cmp_opts o = {.resamples = 10000, .seed = 1, .level = 0.95};
    const char *json_path = NULL;
    const char **args = xcalloc((size_t)argc + 1, sizeof(char *));
    int na = 0, rc = 0;
    for (int i = 0; i < argc && !rc; i++) {
        const char *a = argv[i];
        int flag = !strcmp(a, "--resamples") || !strcmp(a, "--seed") || !strcmp(a, "--level") || !strcmp(a, "--json");
        if (!flag && a[0] == '-' && a[1] == '-') rc = lr_err(LR_EUSAGE, "compare: unknown option \"%s\" (see --help)", a);
        else if (!flag) args[na++] = a;
        else if (i + 1 >= argc) rc = lr_err(LR_EUSAGE, "compare: %s needs a value", a);
        else if (!strcmp(a, "--resamples")) {
            long v;
            rc = opt_long(a, argv[++i], 1, 10000000, &v);
            o.resamples = (size_t)v;
        } else if (!strcmp(a, "--seed")) rc = opt_u64(a, argv[++i], &o.seed);
        else if (!strcmp(a, "--level")) {
            rc = opt_double(a, argv[++i], 0.5, 0.9999, &o.level);
        } else json_path = argv[++i];
    }
    if (!rc && na < 2) rc = lr_err(LR_EUSAGE, "compare: needs a base summary and at least one other (see --help)");
    cmp_set *s = NULL;
    if (!rc) rc = cmp_load(args, na, &s);
    FILE *jf = NULL;
    if (!rc && json_path && !(jf = fopen(json_path, "wb"))) rc = lr_err(LR_EIO, "%s: %s", json_path, strerror(errno));
    if (!rc) rc = cmp_write(s, &o, stdout, jf);
    if (jf && fclose(jf) && !rc) rc = lr_err(LR_EIO, "%s: write error", json_path);
    if (!rc && fflush(stdout)) rc = lr_err(LR_EIO, "stdout: write error");
    cmp_free(s);
    free(args);
    return rc;
}

/* ---- prompts ---- */

static int cmd_prompts(int argc, char **argv) {
    const char *file = NULL, *layout = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--layout") && i + 1 < argc) layout = argv[++i];
        else if ((argv[i][0] != '-' || !strcmp(argv[i], "-")) && !file) file = argv[i];
        else return lr_err(LR_EUSAGE, "prompts: unexpected argument \"%s\" (see --help)", argv[i]);
    }
    if (!file) return lr_err(LR_EUSAGE, "prompts: needs a benchmark file (see --help)");
    bd_reader *r;
    int rc = bd_open(file, layout, &r);
    if (rc) return rc;
    bd_layout l = bd_reader_layout(r);
    size_t n = 0, skipped = 0;
    bd_item it;
    while ((rc = bd_next(r, &it)) != -1) {
        if (rc == LR_EINPUT) {
            if (skipped++ < 5) fprintf(stderr, "%s: skipped row: %s\n", lr_progname, lr_errmsg());
            rc = 0;
            continue;
        }
        if (rc) break;
        char *p = bd_prompt(l, it.question);
        json_t *o = json_object();
        json_object_set_new(o, "id", sc_jstr(it.id));
        json_object_set_new(o, "bench", json_string(bd_layout_name(l)));
        json_object_set_new(o, "prompt", sc_jstr(p));
        json_object_set_new(o, "gold", sc_jstr(it.gold));
        free(p);
        bd_item_free(&it);
        rc = sc_write_line(stdout, o);
        json_decref(o);
        if (rc) break;
        n++;
    }
    if (rc == -1) rc = 0;
    bd_close(r);
    if (!rc) fprintf(stderr, "%s: %zu prompts, %zu rows skipped\n", lr_progname, n, skipped);
    if (!rc && fflush(stdout)) rc = lr_err(LR_EIO, "stdout: write error");
    return rc;
}

/* --help as the command or anywhere after it. */
static int wants_help(int argc, char **argv) {
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return 1;
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help")) return 1;
    return 0;
}

/* The commands, each returning 0 or an LR_E* code with the message set:
 * the one place that reports an error and chooses the exit code. */
int main(int argc, char **argv) {
    lr_progname = "lr-eval";
    const char *cmd = argc > 1 ? argv[1] : "";
    int rc;
    if (argc < 2) rc = lr_err(LR_EUSAGE, "expected a command: judge, score, compare or prompts (see --help)");
    else if (wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    } else if (!strcmp(cmd, "judge")) rc = cmd_judge(argc - 2, argv + 2);
    else if (!strcmp(cmd, "score")) rc = cmd_score(argc - 2, argv + 2);
    else if (!strcmp(cmd, "compare") || !strcmp(cmd, "--compare")) rc = cmd_compare(argc - 2, argv + 2);
    else if (!strcmp(cmd, "prompts")) rc = cmd_prompts(argc - 2, argv + 2);
    else rc = lr_err(LR_EUSAGE, "unknown command \"%s\" (judge, score, compare, prompts; see --help)", cmd);
    return rc ? lr_fail(rc) : 0;
}
