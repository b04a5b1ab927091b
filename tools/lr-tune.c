/* lr-tune: LoRA fine-tuning on the CPU (METHOD.md stage 2, and the SFT
 * baseline) with the hand-written backward of trainer.c.
 *
 *   lr-tune --model DIR --out ADAPTER_DIR [options] INPUT.lrs...
 *
 * Input kinds: `example` (lr-contrast) -> the soft-KL objective at each
 * example's last context position; `dist` (lr-infer) -> SFT cross-entropy
 * on the `tokens` span after `prompt`. Output: a PEFT adapter folder
 * (adapter_config.json + adapter_model.safetensors). Checkpoints
 * OUT/checkpoint-<step>/ (adapter + optimizer state + trainer_state.json)
 * are written through a temp folder + rename; --resume continues from the
 * latest and ends with the same weights as an uninterrupted run.
 * Per step: loss, gradient norm, learning rate and tokens/s to stderr and,
 * with --log, to a JSON-lines file. */
#include "method/adamw.h"
#include "model/lora.h"
#include "model/merge.h"
#include "model/model.h"
#include "io/safetensors.h"
#include "io/stream.h"
#include "method/tune.h"
#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: lr-tune --model DIR --out DIR [options] INPUT.lrs...\n"
            "LoRA training of the model on `example` records (lr-contrast: soft-KL\n"
            "objective) or `dist` records (lr-infer: SFT on the response tokens).\n"
            "Writes a PEFT adapter (adapter_config.json, adapter_model.safetensors) to --out.\n"
            "\n"
            "  --objective soft-kl|sft  default: from the input kind\n"
            "  --targets LIST           LoRA modules: q,k,v,o,gate,up,down or all [q,v]\n"
            "  --r N [8]  --alpha X [16]  --dropout P [0.05]\n"
            "  --init-adapter DIR       start from this PEFT adapter instead of a fresh one\n"
            "  --full                   train every base weight instead (small models, or\n"
            "                           from scratch); --out gets a HF model folder (f32)\n"
            "  --lr X [5e-5]  --warmup N [0]  --weight-decay X [0]  --clip X [1.0]\n"
            "  --beta1 X [0.9]  --beta2 X [0.999]  --eps X [1e-8]\n"
            "  --batch N [8]  --accum N [2]  --epochs N [1]  --max-steps N [from epochs]\n"
            "  --seed N [42]            data order and LoRA init/dropout\n"
            "  --no-shuffle             keep the input order\n"
            "  --group-by-length        batches of similar lengths (HF group_by_length:\n"
            "                           shuffled mega-batches of 50 batches, sorted by length)\n"
            "  --group-by-problem       shuffle problems, keep each problem's examples\n"
            "                           together (so packing finds shared prefixes)\n"
            "  --pack | --no-pack       one forward per shared prefix [pack]\n"
            "  --vocab-limit N          softmax over the first N logits only (reference\n"
            "                           quirk: 151643 for Qwen) [whole vocabulary]\n"
            "  --max-len N [4096]       longer sequences are cut to their first N tokens\n"
            "  --max-rows N [2048]      token rows per forward call (memory)\n"
            "  --save-every N [0]       checkpoint every N steps (0: never)\n"
            "  --resume                 continue from the latest OUT/checkpoint-N\n"
            "  --stop-after N           exit (code 0, no final adapter) after step N, as a\n"
            "                           killed run would; for resume tests\n"
            "  --log FILE               JSON lines, one per step\n"
            "  --device cpu|auto        where to train: the cpu (auto = cpu: the CUDA backend\n"
            "                           has no backward pass yet; cuda is refused)\n"
            "  -h, --help\n"
            "Exit codes: 0 ok, 1 usage, 2 bad input, 3 I/O error.\n");
}

typedef struct {
    const char *model_dir, *out, *objective_s, *targets_s, *init_adapter, *log_path;
    int full, group_len, stop_after, r, batch, accum, epochs, warmup, pack, shuffle, by_problem, vlim, max_len, max_rows, save_every, resume;
    long max_steps;
    float alpha, dropout, lr, wd, clip, beta1, beta2, eps;
    uint64_t seed;
} opts;

/* ---------- input: the one place that knows the record field names ---------- */

typedef struct {
    tune_example *ex;
    int n, cap, truncated;
    int objective; /* from the first stream's kind */
} dataset;

static int *dup_i32(const int32_t *v, size_t n) {
    int *p = xmalloc((n ? n : 1) * sizeof(int));
    for (size_t i = 0; i < n; i++) p[i] = v[i];
    return p;
}

/* Reads every record of path into ds. `example`: id/idx -> problem, step,
 * context -> tokens, target_ids + weights -> the soft target. `dist`:
 * prompt + tokens -> tokens, nprompt = len(prompt). */
static int read_input(dataset *ds, const char *path, int max_len) {
    lrs_reader *r;
    int rc = lrs_open_read(&r, path, NULL);
    if (rc) return rc;
    const char *kind = lrs_header_of(r)->kind;
    int obj = !strcmp(kind, "example") ? TUNE_SOFTKL : !strcmp(kind, "dist") ? TUNE_SFT : -1;
    if (obj < 0) {
        lrs_close_read(r);
        return lr_err(LR_EINPUT, "%s: record kind \"%s\": lr-tune reads `example` (soft-KL) or `dist` (SFT) streams", path,
                      kind);
    }
    if (ds->n && obj != ds->objective) {
        lrs_close_read(r);
        return lr_err(LR_EINPUT, "%s: kind \"%s\" mixed with another input's kind", path, kind);
    }
    ds->objective = obj;
    int32_t *a = NULL, *b = NULL;
    float *f = NULL;
    size_t ca = 0, cb = 0, cf = 0, na, nb, nf;
    const msgpack_object *rec;
    while ((rc = lrs_next(r, &rec)) == 1) {
        int64_t idx, step = 0;
        tune_example e = {0};
        if ((rc = lrs_get_int(r, rec, "idx", &idx))) break;
        e.problem = idx;
        if (obj == TUNE_SOFTKL) {
            if ((rc = lrs_get_int(r, rec, "step", &step)) || (rc = lrs_get_i32s(r, rec, "context", &a, &ca, &na)) ||
                (rc = lrs_get_i32s(r, rec, "target_ids", &b, &cb, &nb)) || (rc = lrs_get_f32s(r, rec, "weights", &f, &cf, &nf)))
                break;
            if (nb != nf) {
                rc = lrs_field_err(r, "weights", "%zu weights for %zu target_ids", nf, nb);
                break;
            }
            if (na < 1) {
                rc = lrs_field_err(r, "context", "empty");
                break;
            }
            e.step = (int)step;
            e.tokens = dup_i32(a, na);
            e.ntok = (int)na;
            e.ids = dup_i32(b, nb);
            e.w = xmalloc((nf ? nf : 1) * sizeof(float));
            memcpy(e.w, f, nf * sizeof(float));
            e.nt = (int)nf;
        } else {
            if ((rc = lrs_get_i32s(r, rec, "prompt", &a, &ca, &na)) || (rc = lrs_get_i32s(r, rec, "tokens", &b, &cb, &nb))) break;
            if (na < 1 || nb < 1) {
                rc = lrs_field_err(r, na < 1 ? "prompt" : "tokens", "empty");
                break;
            }
            e.tokens = xmalloc((na + nb) * sizeof(int));
            for (size_t i = 0; i < na; i++) e.tokens[i] = a[i];
            for (size_t i = 0; i < nb; i++) e.tokens[na + i] = b[i];
            e.ntok = (int)(na + nb);
            e.nprompt = (int)na;
        }
        if (e.ntok > max_len) { /* the reference truncates its inputs (right side) */
            e.ntok = max_len;
            ds->truncated++;
            if (obj == TUNE_SFT && e.nprompt >= e.ntok) { /* nothing left to learn from */
                free(e.tokens);
                continue;
            }
        }
        if (ds->n == ds->cap) ds->ex = xrealloc(ds->ex, (size_t)(ds->cap = ds->cap ? 2 * ds->cap : 64) * sizeof *ds->ex);
        ds->ex[ds->n++] = e;
    }
    free(a), free(b), free(f);
    lrs_close_read(r);
    return rc == 0 ? LR_OK : rc;
}

/* ---------- data order ---------- */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static const dataset *sort_ds;
static const uint64_t *sort_key;
static int cmp_problem(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    uint64_t ki = sort_key[i], kj = sort_key[j];
    if (ki != kj) return ki < kj ? -1 : 1;
    const tune_example *x = &sort_ds->ex[i], *y = &sort_ds->ex[j];
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    return i < j ? -1 : i > j;
}

static int cmp_len_desc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b, li = sort_ds->ex[i].ntok, lj = sort_ds->ex[j].ntok;
    return li != lj ? (li < lj) - (li > lj) : (i > j) - (i < j);
}

/* The example order of epoch e: a Fisher-Yates shuffle seeded by (seed, e),
 * or problems shuffled with each problem's examples kept together. */
static void epoch_order(const dataset *ds, const opts *o, int e, int *ord) {
    for (int i = 0; i < ds->n; i++) ord[i] = i;
    if (!o->shuffle) return;
    uint64_t s = o->seed * 1000003ULL + (uint64_t)e;
    if (o->by_problem) {
        uint64_t *key = xmalloc((size_t)ds->n * sizeof *key);
        for (int i = 0; i < ds->n; i++) {
            uint64_t z = s ^ (uint64_t)ds->ex[i].problem * 0x9e3779b97f4a7c15ULL;
            key[i] = splitmix(&z);
        }
        sort_ds = ds, sort_key = key;
        qsort(ord, (size_t)ds->n, sizeof *ord, cmp_problem);
        free(key);
        return;
    }
    for (int i = ds->n - 1; i > 0; i--) {
        int j = (int)(splitmix(&s) % (uint64_t)(i + 1)), t = ord[i];
        ord[i] = ord[j], ord[j] = t;
    }
    if (o->group_len) { /* each mega-batch of 50 batches sorted by length, longest first */
        sort_ds = ds;
        int mega = 50 * o->batch;
        for (int b = 0; b < ds->n; b += mega)
            qsort(ord + b, (size_t)(ds->n - b < mega ? ds->n - b : mega), sizeof *ord, cmp_len_desc);
    }
}

/* ---------- checkpoints ---------- */

static int mkdir_p(const char *d) {
    if (mkdir(d, 0777) && errno != EEXIST) return lr_err(LR_EIO, "%s: %s", d, strerror(errno));
    return LR_OK;
}

static int rm_tree(const char *d) {
    DIR *dp = opendir(d);
    if (!dp) return 0;
    struct dirent *de;
    char p[4200];
    while ((de = readdir(dp)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", d, de->d_name);
            unlink(p);
        }
    closedir(dp);
    return rmdir(d);
}

/* The largest N of a complete OUT/checkpoint-N, or -1. */
static long latest_checkpoint(const char *out) {
    DIR *dp = opendir(out);
    if (!dp) return -1;
    long best = -1;
    struct dirent *de;
    while ((de = readdir(dp))) {
        char *end;
        if (strncmp(de->d_name, "checkpoint-", 11)) continue;
        long n = strtol(de->d_name + 11, &end, 10);
        if (*end == 0 && n > best) best = n;
    }
    closedir(dp);
    return best;
}

static int save_checkpoint(const tuner *tu, const opts *o, long step) {
    char tmp[4200], fin[4200], p[4400];
    snprintf(fin, sizeof fin, "%s/checkpoint-%ld", o->out, step);
    snprintf(tmp, sizeof tmp, "%s/.checkpoint-%ld.tmp", o->out, step);
    rm_tree(tmp);
    int rc = mkdir_p(tmp);
    if (!rc && tu->lo) rc = lora_save(tu->lo, tmp, o->model_dir);
    if (!rc) {
        st_wtensor t[3] = {{"params", ST_F32, 1, {(int64_t)tu->n}, tu->params},
                           {"exp_avg", ST_F32, 1, {(int64_t)tu->n}, tu->opt.m},
                           {"exp_avg_sq", ST_F32, 1, {(int64_t)tu->n}, tu->opt.v}};
        snprintf(p, sizeof p, "%s/optimizer.safetensors", tmp);
        rc = st_write(p, t, 3);
    }
    if (!rc) {
        json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I}", "step", (json_int_t)step, "adam_t", (json_int_t)tu->opt.t,
                              "calls", (json_int_t)tu->calls, "rows_fwd", (json_int_t)tu->rows_fwd, "examples",
                              (json_int_t)tu->examples);
        snprintf(p, sizeof p, "%s/trainer_state.json", tmp);
        if (json_dump_file(j, p, JSON_INDENT(1))) rc = lr_err(LR_EIO, "%s: cannot write", p);
        json_decref(j);
    }
    if (!rc && rename(tmp, fin)) rc = lr_err(LR_EIO, "%s: %s", fin, strerror(errno));
    if (!rc) { /* keep only the newest */
        DIR *dp = opendir(o->out);
        struct dirent *de;
        while (dp && (de = readdir(dp))) {
            char *end;
            if (strncmp(de->d_name, "checkpoint-", 11)) continue;
            long n = strtol(de->d_name + 11, &end, 10);
            if (*end == 0 && n != step) {
                snprintf(p, sizeof p, "%s/%s", o->out, de->d_name);
                rm_tree(p);
            }
        }
        if (dp) closedir(dp);
    }
    return rc;
}

static int load_checkpoint(tuner *tu, const opts *o, long step) {
    char d[4200], p[4400];
    snprintf(d, sizeof d, "%s/checkpoint-%ld", o->out, step);
    snprintf(p, sizeof p, "%s/optimizer.safetensors", d);
    st_set s;
    int rc = st_open_file(&s, p);
    if (rc) return rc;
    int64_t sh[1] = {(int64_t)tu->n};
    if (!rc) rc = st_read_f32(&s, "params", 1, sh, tu->params);
    if (!rc) rc = st_read_f32(&s, "exp_avg", 1, sh, tu->opt.m);
    if (!rc) rc = st_read_f32(&s, "exp_avg_sq", 1, sh, tu->opt.v);
    st_close(&s);
    if (rc) return rc;
    snprintf(p, sizeof p, "%s/trainer_state.json", d);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    if (!j) return lr_err(LR_EIO, "%s: %s", p, je.text);
    tu->opt.t = (long)json_integer_value(json_object_get(j, "adam_t"));
    tu->calls = (long)json_integer_value(json_object_get(j, "calls"));
    tu->rows_fwd = (long)json_integer_value(json_object_get(j, "rows_fwd"));
    tu->examples = (long)json_integer_value(json_object_get(j, "examples"));
    json_decref(j);
    return LR_OK;
}

/* ---------- main ---------- */

int main(int argc, char **argv) {
    lr_progname = "lr-tune";
    opts o = {.targets_s = "q,v", .r = 8, .alpha = 16, .dropout = 0.05f, .lr = 5e-5f, .clip = 1.0f, .beta1 = 0.9f,
              .beta2 = 0.999f, .eps = 1e-8f, .batch = 8, .accum = 2, .epochs = 1, .max_steps = -1, .seed = 42, .pack = 1,
              .shuffle = 1, .max_len = 4096, .max_rows = 2048};
    enum { O_OBJ = 256, O_TGT, O_R, O_ALPHA, O_DROP, O_INIT, O_LR, O_WARM, O_WD, O_CLIP, O_B1, O_B2, O_EPS, O_BATCH,
           O_ACCUM, O_EPOCHS, O_MAXSTEPS, O_SEED, O_NOSHUF, O_BYPROB, O_PACK, O_NOPACK, O_VLIM, O_MAXLEN, O_MAXROWS,
           O_SAVE, O_RESUME, O_STOP, O_LOG, O_FULL, O_BYLEN, O_MODEL, O_OUT, O_DEVICE };
    static const struct option lo_opts[] = {
        {"model", 1, 0, O_MODEL},       {"out", 1, 0, O_OUT},           {"objective", 1, 0, O_OBJ},
        {"targets", 1, 0, O_TGT},       {"r", 1, 0, O_R},               {"alpha", 1, 0, O_ALPHA},
        {"dropout", 1, 0, O_DROP},      {"init-adapter", 1, 0, O_INIT}, {"lr", 1, 0, O_LR},
        {"warmup", 1, 0, O_WARM},       {"weight-decay", 1, 0, O_WD},   {"clip", 1, 0, O_CLIP},
        {"beta1", 1, 0, O_B1},          {"beta2", 1, 0, O_B2},          {"eps", 1, 0, O_EPS},
        {"batch", 1, 0, O_BATCH},       {"accum", 1, 0, O_ACCUM},       {"epochs", 1, 0, O_EPOCHS},
        {"max-steps", 1, 0, O_MAXSTEPS}, {"seed", 1, 0, O_SEED},        {"no-shuffle", 0, 0, O_NOSHUF},
        {"group-by-problem", 0, 0, O_BYPROB}, {"pack", 0, 0, O_PACK},   {"no-pack", 0, 0, O_NOPACK},
        {"vocab-limit", 1, 0, O_VLIM},  {"max-len", 1, 0, O_MAXLEN},    {"max-rows", 1, 0, O_MAXROWS},
        {"save-every", 1, 0, O_SAVE},   {"resume", 0, 0, O_RESUME},     {"log", 1, 0, O_LOG},
        {"stop-after", 1, 0, O_STOP},   {"full", 0, 0, O_FULL},         {"group-by-length", 0, 0, O_BYLEN},
        {"device", 1, 0, O_DEVICE},     {"help", 0, 0, 'h'},            {0, 0, 0, 0}};
    int c;
    char *end;
#define NUM(dst, conv, cond)                                                                            \
    do {                                                                                                \
        errno = 0;                                                                                      \
        dst = conv;                                                                                     \
        if (*end || errno || !(cond)) lr_die(LR_EUSAGE, "--%s: bad value \"%s\"", lo_opts[idx].name, optarg); \
    } while (0)
    int idx = 0;
    while ((c = getopt_long(argc, argv, "h", lo_opts, &idx)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case O_MODEL: o.model_dir = optarg; break;
        case O_OUT: o.out = optarg; break;
        case O_OBJ: o.objective_s = optarg; break;
        case O_TGT: o.targets_s = optarg; break;
        case O_R: NUM(o.r, (int)strtol(optarg, &end, 10), o.r >= 1); break;
        case O_ALPHA: NUM(o.alpha, strtof(optarg, &end), o.alpha > 0); break;
        case O_DROP: NUM(o.dropout, strtof(optarg, &end), o.dropout >= 0 && o.dropout < 1); break;
        case O_INIT: o.init_adapter = optarg; break;
        case O_LR: NUM(o.lr, strtof(optarg, &end), o.lr >= 0); break;
        case O_WARM: NUM(o.warmup, (int)strtol(optarg, &end, 10), o.warmup >= 0); break;
        case O_WD: NUM(o.wd, strtof(optarg, &end), o.wd >= 0); break;
        case O_CLIP: NUM(o.clip, strtof(optarg, &end), 1); break;
        case O_B1: NUM(o.beta1, strtof(optarg, &end), o.beta1 >= 0 && o.beta1 < 1); break;
        case O_B2: NUM(o.beta2, strtof(optarg, &end), o.beta2 >= 0 && o.beta2 < 1); break;
        case O_EPS: NUM(o.eps, strtof(optarg, &end), o.eps >= 0); break;
        case O_BATCH: NUM(o.batch, (int)strtol(optarg, &end, 10), o.batch >= 1); break;
        case O_ACCUM: NUM(o.accum, (int)strtol(optarg, &end, 10), o.accum >= 1); break;
        case O_EPOCHS: NUM(o.epochs, (int)strtol(optarg, &end, 10), o.epochs >= 1); break;
        case O_MAXSTEPS: NUM(o.max_steps, strtol(optarg, &end, 10), o.max_steps >= 1); break;
        case O_SEED: NUM(o.seed, strtoull(optarg, &end, 10), 1); break;
        case O_NOSHUF: o.shuffle = 0; break;
        case O_BYPROB: o.by_problem = 1; break;
        case O_BYLEN: o.group_len = 1; break;
        case O_FULL: o.full = 1; break;
        case O_PACK: o.pack = 1; break;
        case O_NOPACK: o.pack = 0; break;
        case O_VLIM: NUM(o.vlim, (int)strtol(optarg, &end, 10), o.vlim >= 1); break;
        case O_MAXLEN: NUM(o.max_len, (int)strtol(optarg, &end, 10), o.max_len >= 2); break;
        case O_MAXROWS: NUM(o.max_rows, (int)strtol(optarg, &end, 10), o.max_rows >= 1); break;
        case O_SAVE: NUM(o.save_every, (int)strtol(optarg, &end, 10), o.save_every >= 0); break;
        case O_RESUME: o.resume = 1; break;
        case O_STOP: NUM(o.stop_after, (int)strtol(optarg, &end, 10), o.stop_after >= 1); break;
        case O_LOG: o.log_path = optarg; break;
        case O_DEVICE:
            /* the CUDA backend has the forward pass only (issue 8, part 1):
             * training stays on the CPU until its backward exists */
            if (!strcmp(optarg, "cuda"))
                lr_die(LR_EUSAGE, "--device cuda: training on the GPU is not implemented yet (the CUDA backend has "
                                  "the forward pass only); use --device cpu");
            if (strcmp(optarg, "cpu") && strcmp(optarg, "auto"))
                lr_die(LR_EUSAGE, "--device %s: expected cpu, cuda or auto", optarg);
            break;
        default: usage(stderr); return LR_EUSAGE;
        }
    }
#undef NUM
    if (!o.model_dir || !o.out) lr_die(LR_EUSAGE, "--model and --out are required (see --help)");
    if (optind >= argc) lr_die(LR_EUSAGE, "no input stream given (see --help)");
    unsigned targets;
    if (lora_parse_targets(o.targets_s, &targets)) return lr_fail(LR_EUSAGE);

    dataset ds = {0};
    int rc = LR_OK;
    for (int i = optind; i < argc && !rc; i++) rc = read_input(&ds, argv[i], o.max_len);
    if (rc) exit(lr_fail(rc)); /* exit, not return: LeakSanitizer still sees the buffers */
    if (!ds.n) lr_die(LR_EINPUT, "no training examples in the input");
    if (o.objective_s) {
        int want = !strcmp(o.objective_s, "soft-kl") ? TUNE_SOFTKL : !strcmp(o.objective_s, "sft") ? TUNE_SFT : -1;
        if (want < 0) lr_die(LR_EUSAGE, "--objective: \"%s\" (soft-kl or sft)", o.objective_s);
        if (want != ds.objective)
            lr_die(LR_EUSAGE, "--objective %s needs %s records", o.objective_s, want == TUNE_SFT ? "`dist`" : "`example`");
    }
    if (ds.truncated) fprintf(stderr, "lr-tune: %d sequences cut to --max-len %d tokens\n", ds.truncated, o.max_len);

    model m;
    if ((rc = model_load(&m, o.model_dir))) exit(lr_fail(rc)); /* exit, not return: LeakSanitizer still sees the buffers */
    lora lo = {0};
    if (o.full) {
        if (o.init_adapter) lr_die(LR_EUSAGE, "--full trains the base weights: no --init-adapter");
    } else if (o.init_adapter) {
        if ((rc = lora_load(&lo, &m.cfg, o.init_adapter))) exit(lr_fail(rc)); /* exit, not return: LeakSanitizer still sees the buffers */
    } else {
        lora_alloc(&lo, &m.cfg, o.r, o.alpha, o.dropout, targets);
        lora_init(&lo, o.seed);
    }
    if ((rc = mkdir_p(o.out))) exit(lr_fail(rc)); /* exit, not return: LeakSanitizer still sees the buffers */

    int maxlen = 1;
    for (int i = 0; i < ds.n; i++)
        if (ds.ex[i].ntok > maxlen) maxlen = ds.ex[i].ntok;
    tuner tu;
    if ((rc = tuner_init(&tu, &m, o.full ? NULL : &lo, ds.objective, o.vlim, o.pack, o.max_rows, maxlen, o.batch, o.lr, o.beta1, o.beta2,
                         o.eps, o.wd, o.clip)))
        exit(lr_fail(rc)); /* exit, not return: LeakSanitizer still sees the buffers */
    tu.dropout_on = 1;
    tu.seed = o.seed;

    long mb_per_epoch = (ds.n + o.batch - 1) / o.batch;
    long steps_per_epoch = (mb_per_epoch + o.accum - 1) / o.accum;
    long total = o.max_steps > 0 ? o.max_steps : steps_per_epoch * o.epochs;
    long start = 0;
    if (o.resume) {
        long ck = latest_checkpoint(o.out);
        if (ck >= 0) {
            if ((rc = load_checkpoint(&tu, &o, ck))) exit(lr_fail(rc)); /* exit, not return: LeakSanitizer still sees the buffers */
            start = ck;
            fprintf(stderr, "lr-tune: resuming from %s/checkpoint-%ld\n", o.out, ck);
        } else fprintf(stderr, "lr-tune: no checkpoint in %s, starting afresh\n", o.out);
    }
    FILE *logf = NULL;
    if (o.log_path && !(logf = fopen(o.log_path, start ? "a" : "w"))) {
        lr_err(LR_EIO, "%s: %s", o.log_path, strerror(errno));
        exit(lr_fail(LR_EIO)); /* exit, not return: LeakSanitizer still sees the buffers */
    }
    /* token ids checked before the summary line, so bad input is one line */
    for (int i = 0; i < ds.n; i++)
        for (int j = 0; j < ds.ex[i].ntok; j++)
            if (ds.ex[i].tokens[j] < 0 || ds.ex[i].tokens[j] >= m.cfg.V) {
                lr_err(LR_EINPUT, "example (problem %lld, step %d): token %d at position %d is outside the model's vocabulary [0, %d)",
                       (long long)ds.ex[i].problem, ds.ex[i].step, ds.ex[i].tokens[j], j, m.cfg.V);
                exit(lr_fail(LR_EINPUT)); /* exit, not return: LeakSanitizer still sees the buffers */
            }
    fprintf(stderr, "lr-tune: %d examples (%s), %ld steps of %d x %d, %zu trainable parameters\n", ds.n,
            ds.objective == TUNE_SFT ? "sft" : "soft-kl", total, o.batch, o.accum, tu.n);

    int *ord = xmalloc((size_t)ds.n * sizeof(int)), cur_epoch = -1;
    tune_example *mb = xmalloc((size_t)o.batch * sizeof *mb);
    double t_start = lr_now();
    int stopped = 0;
    for (long s = start; s < total && !rc; s++) {
        int e = (int)(s / steps_per_epoch);
        if (e != cur_epoch) epoch_order(&ds, &o, cur_epoch = e, ord);
        long mb0 = (s % steps_per_epoch) * o.accum, mb1 = mb0 + o.accum;
        if (mb1 > mb_per_epoch) mb1 = mb_per_epoch;
        /* scale: soft-KL batchmean per micro-batch / accumulation steps; SFT
         * mean over the step's response tokens */
        long sft_tokens = 0;
        for (long k = mb0 * o.batch; k < mb1 * o.batch && k < ds.n; k++)
            sft_tokens += ds.ex[ord[k]].ntok - ds.ex[ord[k]].nprompt;
        double t0 = lr_now(), loss = 0.0;
        long rows0 = tu.rows_fwd;
        tuner_zero_grad(&tu);
        for (long b = mb0; b < mb1 && !rc; b++) {
            int n = 0;
            for (long k = b * o.batch; k < (b + 1) * o.batch && k < ds.n; k++) mb[n++] = ds.ex[ord[k]];
            double scale = ds.objective == TUNE_SFT ? 1.0 / (double)sft_tokens : 1.0 / ((double)n * (double)(mb1 - mb0));
            rc = tuner_accumulate(&tu, mb, n, scale, &loss);
        }
        if (rc) break;
        float lr = lr_linear(o.lr, s, total, o.warmup);
        double norm = tuner_update(&tu, lr);
        double dt = lr_now() - t0, tps = (double)(tu.rows_fwd - rows0) / (dt > 0 ? dt : 1e-9);
        fprintf(stderr, "step %ld/%ld epoch %d loss %.6f grad_norm %.4f lr %.3e tokens/s %.0f\n", s + 1, total, e, loss, norm,
                lr, tps);
        if (logf) {
            fprintf(logf,
                    "{\"step\": %ld, \"epoch\": %d, \"loss\": %.9g, \"grad_norm\": %.9g, \"lr\": %.9g, \"tokens\": %ld, "
                    "\"tokens_per_s\": %.1f, \"step_s\": %.4f, \"examples\": %ld}\n",
                    s + 1, e, loss, norm, lr, tu.rows_fwd - rows0, tps, dt, tu.examples);
            fflush(logf);
        }
        if (o.save_every && (s + 1) % o.save_every == 0 && s + 1 < total) rc = save_checkpoint(&tu, &o, s + 1);
        if (o.stop_after && s + 1 == o.stop_after) {
            fprintf(stderr, "lr-tune: stopping after step %ld (--stop-after)\n", s + 1);
            stopped = 1;
            break;
        }
    }
    if (!rc && !stopped) rc = o.full ? model_save(&m, o.model_dir, o.out, ST_F32) : lora_save(&lo, o.out, o.model_dir);
    if (!rc)
        fprintf(stderr, "lr-tune: done in %.1f s; %.1f token rows forwarded per example (%s)\n", lr_now() - t_start,
                tu.examples ? (double)tu.rows_fwd / tu.examples : 0.0, o.pack ? "packed" : "unpacked");
    if (logf) fclose(logf);
    free(ord);
    free(mb);
    tuner_free(&tu);
    if (!o.full) lora_free(&lo);
    model_free(&m);
    for (int i = 0; i < ds.n; i++) free(ds.ex[i].tokens), free(ds.ex[i].ids), free(ds.ex[i].w);
    free(ds.ex);
    return rc ? lr_fail(rc) : 0;
}
