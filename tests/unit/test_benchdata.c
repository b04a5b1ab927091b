/* test_benchdata: the loaders against what the toolkit's parse_question /
 * parse_ground_truth / construct_prompt make of every row of the seven
 * benchmark files (tests/golden/bench_digest.json and prompt_*_0.txt from
 * tests/ref/make_bench_golden.py), plus layouts and bad rows. */
#include "eval/benchdata.h"
#include "check.h"
#include "base/util.h"

#include <jansson.h>
#include <string.h>
#include <unistd.h>

static const char *env_or(const char *k, const char *d) {
    const char *v = getenv(k);
    return v ? v : d;
}

static void every_row(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/golden/bench_digest.json", env_or("LR_ROOT", "."));
    json_error_t e;
    json_t *dig = json_load_file(path, 0, &e);
    CHECKF(dig != NULL, "%s: %s", path, e.text);
    if (!dig) return;
    for (int l = 0; l < BD_NLAYOUTS; l++) {
        const char *name = bd_layout_name((bd_layout)l);
        char file[4096];
        snprintf(file, sizeof file, "%s/data/%s/test.jsonl", env_or("LR_ROOT", "."), name);
        bd_reader *r;
        int rc = bd_open(file, NULL, &r); /* layout guessed from the path */
        CHECKF(rc == 0, "%s", lr_errmsg());
        if (rc) continue;
        CHECK(bd_reader_layout(r) == (bd_layout)l);
        uint64_t h = LR_FNV_INIT;
        size_t rows = 0, bad = 0;
        bd_item it;
        while ((rc = bd_next(r, &it)) != -1) {
            if (rc) {
                bad++;
                fprintf(stderr, "%s\n", lr_errmsg());
                continue;
            }
            h = lr_fnv1a64(h, it.question, strlen(it.question));
            h = lr_fnv1a64(h, "\t", 1);
            h = lr_fnv1a64(h, it.gold_norm, strlen(it.gold_norm));
            h = lr_fnv1a64(h, "\n", 1);
            char want_id[128];
            snprintf(want_id, sizeof want_id, "%s/test:%zu", name, rows);
            CHECKF(!strcmp(it.id, want_id), "id %s, want %s", it.id, want_id);
            if (rows == 0) { /* the full prompt of the first row, byte for byte */
                char gp[4096], *want = NULL;
                snprintf(gp, sizeof gp, "%s/tests/golden/prompt_%s_0.txt", env_or("LR_ROOT", "."), name);
                CHECK(lr_read_file(gp, &want, NULL) == 0);
                char *got = bd_prompt((bd_layout)l, it.question);
                CHECKF(want && !strcmp(got, want), "%s: prompt of row 0 differs from %s", name, gp);
                free(got);
                free(want);
            }
            rows++;
            bd_item_free(&it);
        }
        bd_close(r);
        json_t *d = json_object_get(dig, name);
        char hex[32];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
        CHECKF(rows == (size_t)json_integer_value(json_object_get(d, "rows")), "%s: %zu rows", name, rows);
        CHECKF(!strcmp(hex, json_string_value(json_object_get(d, "fnv1a64"))),
               "%s: questions/golds digest %s differs from the toolkit's", name, hex);
        CHECK(bad == 0);
    }
    json_decref(dig);
}

static void layouts_and_bad_rows(void) {
    bd_layout l;
    CHECK(bd_layout_guess("/x/data/mmlu_stem/test.jsonl", &l) == 0 && l == BD_MMLU_STEM);
    CHECK(bd_layout_guess("runs/asdiv.jsonl", &l) == 0 && l == BD_ASDIV);
    CHECK(bd_layout_guess("runs/other/test.jsonl", &l) != 0);
    bd_reader *r;
    CHECK(bd_open("whatever.jsonl", "nosuch", &r) == LR_EUSAGE);
    CHECK(strstr(lr_errmsg(), "unknown benchmark layout") != NULL);
    CHECK(bd_open("x/unknown/test.jsonl", NULL, &r) == LR_EUSAGE);

    char dir[] = "/tmp/lr_bd_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char file[256];
    snprintf(file, sizeof file, "%s/test.jsonl", dir);
    FILE *f = fopen(file, "wb");
    fputs("{\"question\": \"q0\", \"answer\": \"x #### 5\"}\n"
          "{\"question\": \"q1\"}\n"
          "not json\n"
          "\n"
          "{\"question\": \"q4\", \"answer\": \"no marker\"}\n"
          "{\"question\": \"q5\", \"answer\": \"#### 7\"}\n"
          "{\"question\": \"  \", \"answer\": \"#### 8\"}\n",
          f);
    fclose(f);
    CHECK(bd_open(file, "gsm8k", &r) == 0);
    bd_item it;
    CHECK(bd_next(r, &it) == 0 && !strcmp(it.id, "gsm8k/test:0") && !strcmp(it.gold_norm, "5"));
    bd_item_free(&it);
    CHECK(bd_next(r, &it) == LR_EINPUT && strstr(lr_errmsg(), "line 2: field \"answer\""));
    CHECK(bd_next(r, &it) == LR_EINPUT && strstr(lr_errmsg(), "line 3: not a JSON object"));
    CHECK(bd_next(r, &it) == LR_EINPUT && strstr(lr_errmsg(), "line 5"));
    CHECK(bd_next(r, &it) == 0 && !strcmp(it.id, "gsm8k/test:5") && !strcmp(it.gold_norm, "7"));
    bd_item_free(&it);
    CHECK(bd_next(r, &it) == LR_EINPUT && strstr(lr_errmsg(), "line 7: empty question"));
    CHECK(bd_next(r, &it) == -1);
    bd_close(r);

    f = fopen(file, "wb");
    fputs("{\"question\": \"q\", \"choices\": [\"a\", \"b\", \"c\"], \"answer\": 1}\n"
          "{\"question\": \" Q \", \"choices\": [\" a\", \"b \", 3, \"d\"], \"answer\": 3}\n"
          "{\"question\": \"q\", \"choices\": [\"a\", \"b\", \"c\", \"d\"], \"answer\": 4}\n",
          f);
    fclose(f);
    CHECK(bd_open(file, "mmlu_stem", &r) == 0);
    CHECK(bd_next(r, &it) == LR_EINPUT && strstr(lr_errmsg(), "field \"choices\""));
    CHECK(bd_next(r, &it) == 0 && !strcmp(it.gold, "D") &&
          !strcmp(it.question, "Q\nAnswer Choices: (A) a (B) b (C) 3 (D) d"));
    bd_item_free(&it);
    CHECK(bd_next(r, &it) == LR_EINPUT && strstr(lr_errmsg(), "field \"answer\""));
    bd_close(r);

    f = fopen(file, "wb");
    fputs("{\"question\": \"Is it?\", \"final_answer\": [\"$Yes$\"]}\n{\"question\": \"q\", \"final_answer\": []}\n", f);
    fclose(f);
    CHECK(bd_open(file, "olympiadbench", &r) == 0);
    CHECK(bd_next(r, &it) == 0 && !strcmp(it.gold, "Yes") && !strcmp(it.question, "Is it? (Yes or No)"));
    bd_item_free(&it);
    CHECK(bd_next(r, &it) == LR_EINPUT && strstr(lr_errmsg(), "final_answer"));
    bd_close(r);
    unlink(file);
    rmdir(dir);

    char *p = bd_prompt(BD_GSM8K, "What is 1+1?");
    CHECK(!strcmp(p, "<|im_start|>system\nPlease reason step by step, and put your final answer within "
                     "\\boxed{}.<|im_end|>\n<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n"));
    /* mmlu_stem: 5 shots by default; 0 shots is the zero-shot prompt of any
     * other layout; other layouts ignore the count */
    char *m5 = bd_prompt(BD_MMLU_STEM, "What is 1+1?"), *m5b = bd_prompt_shots(BD_MMLU_STEM, "What is 1+1?", 5);
    char *m0 = bd_prompt_shots(BD_MMLU_STEM, "What is 1+1?", 0), *g5 = bd_prompt_shots(BD_GSM8K, "What is 1+1?", 5);
    CHECK(!strcmp(m5, m5b) && !strcmp(m0, p) && !strcmp(g5, p));
    CHECK(strlen(m5) > strlen(m0) + 500 && strstr(m5, "The answer is (C).") && !strstr(m0, "The answer is"));
    CHECK(!strcmp(m5 + strlen(m5) - strlen(p), p)); /* the shots come first, the question's turn last */
    free(m5), free(m5b), free(m0), free(g5);
    free(p);
}

int main(void) {
    every_row();
    layouts_and_bad_rows();
    CHECK_DONE();
}
